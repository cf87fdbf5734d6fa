# Builds the peers of bench/peers/run.sh from their Go modules (bench only: nothing in CI uses them)
# into version-keyed directories outside the repository, and prints where they are:
#   build.sh [flux]   Flux's source-controller and kustomize-controller; prints SOURCE_CONTROLLER=,
#                     KUSTOMIZE_CONTROLLER= (the binaries) and FLUX_CRDS= (CRD files, space separated;
#                     the output is for `eval`)
#   build.sh flux-notification   Flux's notification-controller (its webhook Receiver); prints
#                     NOTIFICATION_CONTROLLER= and NOTIFICATION_CRDS=
#   build.sh argocd   Argo CD's multi-call binary (application controller, repo server, ... chosen
#                     by ARGOCD_BINARY_NAME); prints ARGOCD= and ARGOCD_CRDS=
# Each lands in ~/.cache/gantry/peers/<name>-<version>/: bin/<name>, crds/*.yaml (the module's
# own), build.log (the build's output, its toolchain and CPU seconds). A directory holding .complete
# is not built again. The wall and CPU seconds of a build are printed on stderr.
#
# Environment: GANTRY_CACHE (default ~/.cache/gantry), FLUX_SOURCE_VERSION, FLUX_KUSTOMIZE_VERSION,
# FLUX_NOTIFICATION_VERSION, ARGOCD_VERSION.
#
# Versions: Flux v1.9.6 of both controllers (Flux 2.9) is the newest release whose go.mod says
# `go 1.26.0`, so the local toolchain builds it (v1.10.x says `go 1.27.0`); notification-controller
# v1.9.3 is Flux 2.9's (`go 1.26.0` too). Argo CD v3.6.2 says
# `go 1.27.0`. For a module that needs more than the local Go the script exports
# GOTOOLCHAIN=go1.27.3, which the module proxy serves.
#
# The module's own go.mod is used (its go.sum pins every dependency), with these changes:
#  - a `replace X => ./dir` is dropped: ./dir is a module of its own (Flux's ./api, Argo CD's
#    ./gitops-engine), not in the zip the proxy serves; the version the go.mod requires of it comes
#    from the proxy instead;
#  - a dependency version the module proxy here does not serve (403 "not available") is replaced by
#    the nearest one it does: github.com/fluxcd/pkg/artifact v0.18.3 -> v0.18.0 for source-controller
#    v1.9.6 (the proxy serves v0.18.0 and v0.29.0 of that module, nothing between).
# Go builds run under `nice -n ${BUILD_NICE:-10}` so that other compiles (and benchmarks) on the machine go
# first.
set -euo pipefail

FLUX_SOURCE_VERSION=${FLUX_SOURCE_VERSION:-v1.9.6}
FLUX_KUSTOMIZE_VERSION=${FLUX_KUSTOMIZE_VERSION:-v1.9.6}
FLUX_NOTIFICATION_VERSION=${FLUX_NOTIFICATION_VERSION:-v1.9.3}
ARGOCD_VERSION=${ARGOCD_VERSION:-v3.6.2}
declare -A REPLACES=(
  [source-controller-v1.9.6]="github.com/fluxcd/pkg/artifact=github.com/fluxcd/pkg/artifact@v0.18.0"
)

CACHE=${GANTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gantry}/peers
mkdir -p "$CACHE"
export CGO_ENABLED=0 GOFLAGS="-modcacherw -buildvcs=false" GOTOOLCHAIN=local
log() { echo "build.sh: $*" >&2; }

# go_newer_than_local VERSION: true if the go line VERSION needs a newer Go than the local one.
go_newer_than_local() {
  local have
  have=$(GOTOOLCHAIN=local go env GOVERSION); have=${have#go}
  [[ $1 != "$have" && $(printf '%s\n%s\n' "$1" "$have" | sort -V | tail -n 1) == "$1" ]]
}

# peer NAME MODULE VERSION PACKAGE CRDS [LDFLAGS [SCRIPTS]]: builds PACKAGE (relative to the module's
# root) of MODULE at VERSION into $CACHE/NAME-VERSION/bin/NAME, copies the files matching CRDS (a
# glob relative to the module's root) into its crds/ and those matching SCRIPTS into its bin/.
peer() {
  local name=$1 version=$3 dir=$CACHE/$1-$3 lock
  exec {lock}>"$CACHE/.lock-$name"
  flock "$lock"
  if [[ ! -f $dir/.complete ]]; then
    log "building $name $version (cached afterwards in $dir)"
    rm -rf "$dir"; mkdir -p "$dir/bin" "$dir/crds"
    local start=$SECONDS
    local rc
    set +e; ( set -e; build_peer "$dir" "$@" ) >"$dir/build.log" 2>&1; rc=$?; set -e
    if ((rc != 0)); then
      log "building $name $version failed; last lines of $dir/build.log:"; tail -n 30 "$dir/build.log" >&2
      exit 1
    fi
    log "built $name $version in $((SECONDS - start)) s wall ($(sed -n 's/^cpu-seconds //p' "$dir/build.log") s CPU)"
    touch "$dir/.complete"
  fi
  exec {lock}>&-
}

build_peer() {
  local dir=$1 name=$2 module=$3 version=$4 package=$5 crds=$6 ldflags="-s -w ${7:-}" scripts=${8:-} mod need r t0 me=$BASHPID
  # (With the local toolchain, downloading a module that needs a newer Go fails after fetching its go.mod.)
  need=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' || true)
  need=$(awk '$1=="go"{print $2; exit}' "$need")
  if go_newer_than_local "$need"; then export GOTOOLCHAIN=go1.27.3; fi
  echo "$module@$version: go line $need, toolchain $(go env GOVERSION)"
  mod=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d $mod ]] || { echo "$module@$version: not in the module cache after download"; return 1; }
  cp -r "$mod" "$dir/src"; chmod -R u+w "$dir/src"; cd "$dir/src"
  for r in $(awk '$1=="replace" && $4 ~ /^\.\// {print $2} $1 !~ /^(replace|\))$/ && $2=="=>" && $3 ~ /^\.\// {print $1}' go.mod); do
    go mod edit -dropreplace="$r"
  done
  for r in ${REPLACES[$name-$version]:-}; do go mod edit -replace="$r"; done
  # CPU seconds: the utime + stime of this shell's reaped children (go build and what it ran).
  t0=$(awk '{print $16 + $17}' "/proc/$me/stat")
  # -mod=mod: the module's go.sum lacks the hashes of the modules that were directories.
  nice -n "${BUILD_NICE:-10}" go build -mod=mod -trimpath -ldflags "$ldflags" -o "$dir/bin/$name" "./$package"
  echo "cpu-seconds $(( ($(awk '{print $16 + $17}' "/proc/$me/stat") - t0) / $(getconf CLK_TCK) ))"
  # shellcheck disable=SC2086 # a glob
  cp $crds "$dir/crds/"
  # shellcheck disable=SC2086 # a glob
  [[ -z $scripts ]] || cp $scripts "$dir/bin/"
  cd "$dir"; rm -rf "$dir/src"
}

case ${1:-flux} in
  flux)
    peer source-controller github.com/fluxcd/source-controller "$FLUX_SOURCE_VERSION" . 'config/crd/bases/*.yaml'
    peer kustomize-controller github.com/fluxcd/kustomize-controller "$FLUX_KUSTOMIZE_VERSION" . \
      'config/crd/bases/*.yaml'
    echo "SOURCE_CONTROLLER=$CACHE/source-controller-$FLUX_SOURCE_VERSION/bin/source-controller"
    echo "KUSTOMIZE_CONTROLLER=$CACHE/kustomize-controller-$FLUX_KUSTOMIZE_VERSION/bin/kustomize-controller"
    printf 'FLUX_CRDS=%q\n' "$(echo "$CACHE/source-controller-$FLUX_SOURCE_VERSION"/crds/*.yaml \
      "$CACHE/kustomize-controller-$FLUX_KUSTOMIZE_VERSION"/crds/*.yaml)"
    ;;
  flux-notification)
    peer notification-controller github.com/fluxcd/notification-controller "$FLUX_NOTIFICATION_VERSION" . \
      'config/crd/bases/*.yaml'
    echo "NOTIFICATION_CONTROLLER=$CACHE/notification-controller-$FLUX_NOTIFICATION_VERSION/bin/notification-controller"
    printf 'NOTIFICATION_CRDS=%q\n' "$(echo "$CACHE/notification-controller-$FLUX_NOTIFICATION_VERSION"/crds/*.yaml)"
    ;;
  argocd)
    # The repo server runs hack/git-verify-wrapper.sh (on every manifest generation, GPG or not) and
    # hack/gpg-wrapper.sh by name, from PATH, as its image installs them in /usr/local/bin.
    peer argocd github.com/argoproj/argo-cd/v3 "$ARGOCD_VERSION" cmd 'manifests/crds/*-crd.yaml' \
      "-X github.com/argoproj/argo-cd/v3/common.version=${ARGOCD_VERSION#v}" 'hack/git-verify-wrapper.sh hack/gpg-wrapper.sh'
    echo "ARGOCD=$CACHE/argocd-$ARGOCD_VERSION/bin/argocd"
    printf 'ARGOCD_CRDS=%q\n' "$(echo "$CACHE/argocd-$ARGOCD_VERSION"/crds/*.yaml)"
    ;;
  *) echo "usage: $0 [flux|flux-notification|argocd]" >&2; exit 2 ;;
esac
