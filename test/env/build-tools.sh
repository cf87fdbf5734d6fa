#!/usr/bin/env bash
# Builds the real servers and tools the tests need from the Go module proxy, into version-keyed
# directories outside the repository, and prints the directory that holds the binaries:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, kustomize, helm,
#   oidc-op, jsonnet, sops, age, age-keygen, toxiproxy-server, toxiproxy-cli, cosign, gitea (its
#   templates and options beside it, in ../share/gitea of the real path), and for the real node:
#   kubelet and pause (the sandbox's pause process, from C)
# A component whose directory holds a .complete marker is not built again, so a second run costs
# seconds; a fresh machine builds everything (~25 min on 2 cores, most of it kube-apiserver).
#
# Environment: GANTRY_CACHE (default ~/.cache/gantry), K8S_VERSION, ETCD_VERSION, KWOK_VERSION,
# KUSTOMIZE_VERSION, HELM_VERSION, ZITADEL_OIDC_VERSION, JSONNET_VERSION, SOPS_VERSION, AGE_VERSION,
# TOXIPROXY_VERSION, COSIGN_VERSION, GITEA_VERSION.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
KUSTOMIZE_VERSION=${KUSTOMIZE_VERSION:-v5.8.1}
HELM_VERSION=${HELM_VERSION:-v3.20.2}
ZITADEL_OIDC_VERSION=${ZITADEL_OIDC_VERSION:-v3.52.0}
JSONNET_VERSION=${JSONNET_VERSION:-v0.22.0}
SOPS_VERSION=${SOPS_VERSION:-v3.13.3}
AGE_VERSION=${AGE_VERSION:-v1.3.2}
# v2.12.0 is the newest tag the module proxy serves (go.mod: go 1.23); it builds with Go 1.26.
TOXIPROXY_VERSION=${TOXIPROXY_VERSION:-v2.12.0}
# v2.6.5 is the newest v2.6.x the module proxy serves (go.mod: go 1.25.0, no replace directives).
COSIGN_VERSION=${COSIGN_VERSION:-v2.6.5}
# v1.26.x declares Go 1.26 and is served under its module path; v1.27 is not.
GITEA_VERSION=${GITEA_VERSION:-v1.26.0}

CACHE=${GANTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gantry}/tools
BIN=$CACHE/bin
mkdir -p "$BIN"
# No DWARF from the compiler: every build strips it at link (-ldflags -s -w) anyway, and making it
# was 18% of the CPU (sops from an empty build cache: 337 s of CPU with it, 276 s without). Go's
# own tracebacks do not need it. The C of the one cgo build (gitea's SQLite) likewise without -g.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-modcacherw -buildvcs=false -gcflags=all=-dwarf=false"
export CGO_CFLAGS=${CGO_CFLAGS:--O2}

log() { echo "build-tools: $*" >&2; }
# CPU_SECONDS := the CPU time (user + system) of every build this script has run so far: on a busy
# machine a build's wall time says little, its CPU time says what it costs. (`times` must run in
# this shell: in a subshell, such as $(...) or a pipe, it sees no children.)
trap 'rm -f "$CACHE/.times.$$"' EXIT
cpu_seconds() {
  times >"$CACHE/.times.$$"
  CPU_SECONDS=$(awk 'NR==2 { t=0; for (i=1;i<=2;i++) { split($i,a,"m"); t+=a[1]*60+a[2] } printf "%d", t }' "$CACHE/.times.$$")
}

# component NAME KEY FUNCTION: runs FUNCTION in a fresh work dir unless NAME at KEY is already built,
# then links its binaries into $BIN.
component() {
  local name=$1 key=$2 fn=$3
  local dir=$CACHE/$name-$key lock
  # One builder at a time per component: a second caller waits, then finds it complete. (Per
  # component, not per cache, so that a test building one tool does not wait for another.)
  exec {lock}>"$CACHE/.lock-$name"
  flock "$lock"
  if [[ ! -f $dir/.complete ]]; then
    log "building $name $key (cached afterwards in $dir)"
    local start=$SECONDS cpu
    cpu_seconds; cpu=$CPU_SECONDS
    rm -rf "$dir"; mkdir -p "$dir/bin" "$dir/src"
    # In the background and then waited for: a subshell on the left of `||` would run its builder
    # with set -e ignored, so a failing command in the middle would go unnoticed.
    ( cd "$dir/src" && "$fn" "$dir/bin" ) >"$dir/build.log" 2>&1 &
    if ! wait $!; then
      log "building $name failed; last lines of $dir/build.log:"; tail -n 30 "$dir/build.log" >&2; exit 1
    fi
    touch "$dir/.complete"
    cpu_seconds
    log "built $name in $((SECONDS - start)) s ($((CPU_SECONDS - cpu)) s of CPU)"
  fi
  local f
  for f in "$dir"/bin/*; do ln -sfn "$f" "$BIN/$(basename "$f")"; done
  [[ -f $dir/kwok-stages.yaml ]] && ln -sfn "$dir/kwok-stages.yaml" "$BIN/kwok-stages.yaml"
  exec {lock}>&-
  return 0
}

mod_file() { go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p'; }
mod_dir() { go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'; }

# kube_module NAME: a module in the current directory that requires k8s.io/kubernetes at K8S_VERSION
# (with its staging modules mapped to their published tags); sets KUBE_LDFLAGS to the version stamp.
kube_module() {
  local minor patch staging kmod gd m p
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}; patch=${K8S_VERSION##*.}
  staging=v0.${minor}.${patch}
  go mod init "gantry-testenv/$1"
  kmod=$(mod_file "k8s.io/kubernetes@${K8S_VERSION}")
  go mod edit -go="$(awk '$1=="go"{print $2; exit}' "$kmod")"
  gd=$(awk '$1=="godebug" && $2 ~ /=/{print $2; exit}' "$kmod")
  [[ -n $gd ]] && go mod edit -godebug="$gd"
  go mod edit -require="k8s.io/kubernetes@${K8S_VERSION}"
  # k8s.io/kubernetes requires its staging modules at the fake v0.0.0 and replaces them with
  # directories; replaces only work in the main module, so map each to its published tag.
  for m in $(awk '$1 ~ /^k8s\.io\/[a-z0-9-]+$/ && $2=="v0.0.0"{print $1}' "$kmod"); do
    go mod edit -replace="${m}=${m}@${staging}"
  done
  KUBE_LDFLAGS="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    KUBE_LDFLAGS+=" -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${minor}"
    KUBE_LDFLAGS+=" -X $p.gitTreeState=clean -X $p.buildDate=2000-01-01T00:00:00Z"
  done
}

build_kube() {
  local out=$1
  kube_module kube
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
  go mod tidy
  go build -trimpath -ldflags "$KUBE_LDFLAGS" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler
  "$out/kube-apiserver" --version
}

# kubectl: the real client, for tests of objects people created with `kubectl apply`. Its own
# component so that adding it does not rebuild the control plane.
build_kubectl() {
  local out=$1
  kube_module kubectl
  printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kubectl"\n' > tools.go
  go mod tidy
  go build -trimpath -ldflags "$KUBE_LDFLAGS" -o "$out/kubectl" k8s.io/kubernetes/cmd/kubectl
  "$out/kubectl" version --client
}

# kubelet and pause: the real node (kube-cluster.sh --real-nodes). The kubelet comes from the same
# module and version as the control plane; pause is build/pause/linux/pause.c of that module,
# compiled static as its Makefile does (CFLAGS -Os -Wall -Werror -static -DVERSION=...).
build_kubelet() {
  local out=$1 kdir
  kube_module kubelet
  printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kubelet"\n' > tools.go
  go mod tidy
  go build -trimpath -ldflags "$KUBE_LDFLAGS" -o "$out/kubelet" k8s.io/kubernetes/cmd/kubelet
  "$out/kubelet" --version
  kdir=$(mod_dir "k8s.io/kubernetes@${K8S_VERSION}")
  cc -Os -Wall -Werror -static -DVERSION="${K8S_VERSION}-gantry" -o "$out/pause" "$kdir/build/pause/linux/pause.c"
  "$out/pause" -v
}

build_etcd() {
  local out=$1
  go mod init gantry-testenv/etcd
  go mod edit -require="go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
  "$out/etcd" --version
}

build_kwok() {
  local out=$1 dir f
  GOBIN=$out go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
  dir=$(mod_dir "sigs.k8s.io/kwok@${KWOK_VERSION}")
  # kwok v0.8.0 has no built-in stages: give it the upstream "fast" node and pod lifecycles.
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo '---'; cat "$dir/kustomize/stage/$f"
  done > "$out/../kwok-stages.yaml"
}

build_kustomize() {
  GOBIN=$1 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}"
}

# helm: built with the ldflags of its Makefile. Without the k8sVersionMajor/Minor ones helm assumes
# Kubernetes 1.20 when no --kube-version is given, and charts with a `kubeVersion:` constraint fail.
# The Kubernetes version is the one of the client-go helm's go.mod requires (v0.35 -> 1.35), the
# commit the one the module proxy records for the tag, when it records one (its .info file may
# carry no Origin; the commit is only shown by `helm version`, so it is left empty then).
build_helm() {
  local out=$1 json dir commit cgo major minor ld p
  json=$(go mod download -json "helm.sh/helm/v3@${HELM_VERSION}")
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
  commit=$(sed -n 's/^[[:space:]]*"Hash": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
  cgo=$(awk '$1=="k8s.io/client-go"{print $2; exit}' "$dir/go.mod")
  cgo=${cgo#v}; major=$(( ${cgo%%.*} + 1 )); minor=${cgo#*.}; minor=${minor%%.*}
  [[ -n $minor ]] || { echo "cannot read the client-go version helm's go.mod requires" >&2; return 1; }
  ld="-w -s -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
  ld+=" -X helm.sh/helm/v3/internal/version.metadata="
  ld+=" -X helm.sh/helm/v3/internal/version.gitCommit=${commit}"
  ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in pkg/lint/rules pkg/chartutil; do
    ld+=" -X helm.sh/helm/v3/$p.k8sVersionMajor=${major} -X helm.sh/helm/v3/$p.k8sVersionMinor=${minor}"
  done
  GOBIN=$out go install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
  "$out/helm" version
}

# oidc-op: the example OpenID Provider of github.com/zitadel/oidc/v3 with our small main
# (test/env/oidc-op/main.go: issuer and port from flags, the "gantry" client, a groups claim).
build_oidc_op() {
  local out=$1
  go mod init gantry-testenv/oidc-op
  cp "$OIDC_OP_SRC/main.go" .
  go mod edit -require="github.com/zitadel/oidc/v3@${ZITADEL_OIDC_VERSION}"
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$out/oidc-op" .
}
# jsonnet: the Go implementation Argo CD embeds (go.mod: go 1.24.5), for the Jsonnet renderer.
build_jsonnet() {
  GOBIN=$1 go install -trimpath -ldflags "-s -w" "github.com/google/go-jsonnet/cmd/jsonnet@${JSONNET_VERSION}"
  "$1/jsonnet" --version
}

# sops: decrypts SOPS-encrypted objects after render (go.mod: go 1.25.8). Its version is stamped
# in the source, not by ldflags.
build_sops() {
  GOBIN=$1 go install -trimpath -ldflags "-s -w" "github.com/getsops/sops/v3/cmd/sops@${SOPS_VERSION}"
  "$1/sops" --version --disable-version-check
}

# age, age-keygen: make the keys of the SOPS tests (go.mod: go 1.25.0; its toolchain line only
# names a preferred toolchain, GOTOOLCHAIN=local builds with ours).
build_age() {
  GOBIN=$1 go install -trimpath -ldflags "-s -w" "filippo.io/age/cmd/age@${AGE_VERSION}" \
    "filippo.io/age/cmd/age-keygen@${AGE_VERSION}"
  "$1/age" --version
}

# toxiproxy-server, toxiproxy-cli: the TCP proxy that injects network faults between Gantry and the
# real servers (test/env/toxiproxy.sh, test/integration/faults_test.cc).
build_toxiproxy() {
  GOBIN=$1 go install -trimpath -ldflags "-s -w -X github.com/Shopify/toxiproxy/v2.Version=${TOXIPROXY_VERSION#v}" \
    "github.com/Shopify/toxiproxy/v2/cmd/server@${TOXIPROXY_VERSION}" \
    "github.com/Shopify/toxiproxy/v2/cmd/cli@${TOXIPROXY_VERSION}"
  mv "$1/server" "$1/toxiproxy-server"; mv "$1/cli" "$1/toxiproxy-cli"
  "$1/toxiproxy-server" -version
}

# cosign: the real signer and verifier the supply-chain tests check Gantry's signatures and
# attestations with, both ways (test/integration/sign_test.cc). Built as its Makefile does (CGO off,
# no PIV/PKCS#11), with the version stamp of release-utils.
build_cosign() {
  GOBIN=$1 go install -trimpath \
    -ldflags "-s -w -buildid= -X sigs.k8s.io/release-utils/version.gitVersion=${COSIGN_VERSION}" \
    "github.com/sigstore/cosign/v2/cmd/cosign@${COSIGN_VERSION}"
  "$1/cosign" version
}

# gitea: the forge of the forge tests (test/env/gitea.sh), with SQLite, so with cgo (this component
# only). Its go.mod has replace directives, which `go install pkg@version` refuses: a wrapper module
# requires it and copies them (and its godebug line). Built without the bindata tag, it reads its
# templates and options from disk: they are copied to share/gitea (gitea.sh sets STATIC_ROOT_PATH).
build_gitea() {
  local out=$1 gmod gdir gd
  go mod init gantry-testenv/gitea
  gmod=$(mod_file "code.gitea.io/gitea@${GITEA_VERSION}")
  go mod edit -go="$(awk '$1=="go"{print $2; exit}' "$gmod")"
  gd=$(awk '$1=="godebug" && $2 ~ /=/{print $2; exit}' "$gmod")
  [[ -n $gd ]] && go mod edit -godebug="$gd"
  go mod edit -require="code.gitea.io/gitea@${GITEA_VERSION}"
  awk '$1=="replace" && $3=="=>"{print $2 "=" $4 "@" $5}' "$gmod" | while read -r r; do go mod edit -replace="$r"; done
  printf '//go:build tools\n\npackage tools\n\nimport _ "code.gitea.io/gitea"\n' > tools.go
  go mod tidy
  CGO_ENABLED=1 go build -trimpath -tags "sqlite sqlite_unlock_notify" \
    -ldflags "-s -w -X main.Version=${GITEA_VERSION#v} -X main.Tags=sqlite,sqlite_unlock_notify" \
    -o "$out/gitea" code.gitea.io/gitea
  gdir=$(mod_dir "code.gitea.io/gitea@${GITEA_VERSION}")
  mkdir -p "$out/../share/gitea"
  cp -r "$gdir/templates" "$gdir/options" "$out/../share/gitea/"
  chmod -R u+w "$out/../share/gitea"
  "$out/gitea" --version
}

OIDC_OP_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/oidc-op" && pwd)

want=${*:-etcd kwok kustomize helm kube kubectl kubelet oidc-op jsonnet sops age toxiproxy cosign gitea}
for c in $want; do
  case $c in
    kube) component kube "$K8S_VERSION" build_kube ;;
    kubectl) component kubectl "$K8S_VERSION" build_kubectl ;;
    kubelet) component kubelet "$K8S_VERSION-$(declare -f build_kubelet | sha256sum | cut -c1-12)" build_kubelet ;;
    etcd) component etcd "$ETCD_VERSION" build_etcd ;;
    kwok) component kwok "$KWOK_VERSION" build_kwok ;;
    kustomize) component kustomize "$KUSTOMIZE_VERSION" build_kustomize ;;
    # Keyed by the build recipe too, so that changing build_helm (e.g. its ldflags) rebuilds.
    helm) component helm "$HELM_VERSION-$(declare -f build_helm | sha256sum | cut -c1-12)" build_helm ;;
    # Keyed by our main.go too, so that changing it rebuilds.
    oidc-op) component oidc-op "$ZITADEL_OIDC_VERSION-$(sha256sum "$OIDC_OP_SRC/main.go" | cut -c1-12)" \
               build_oidc_op ;;
    jsonnet) component jsonnet "$JSONNET_VERSION-$(declare -f build_jsonnet | sha256sum | cut -c1-12)" build_jsonnet ;;
    sops) component sops "$SOPS_VERSION-$(declare -f build_sops | sha256sum | cut -c1-12)" build_sops ;;
    age) component age "$AGE_VERSION-$(declare -f build_age | sha256sum | cut -c1-12)" build_age ;;
    toxiproxy) component toxiproxy "$TOXIPROXY_VERSION-$(declare -f build_toxiproxy | sha256sum | cut -c1-12)" \
                 build_toxiproxy ;;
    cosign) component cosign "$COSIGN_VERSION-$(declare -f build_cosign | sha256sum | cut -c1-12)" build_cosign ;;
    gitea) component gitea "$GITEA_VERSION-$(declare -f build_gitea | sha256sum | cut -c1-12)" build_gitea ;;
    *) log "unknown component $c"; exit 2 ;;
  esac
done
echo "$BIN"
