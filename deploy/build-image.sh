#!/usr/bin/env bash
# Builds Gantry's own container image (what deploy/gantry-agent.yaml runs) without a Docker daemon,
# with `gantry image build`: from scratch, the gantry binary and every shared library it loads
# (taken from this machine, Debian 12), the CA bundle, kustomize and helm from the tools cache,
# and bubblewrap for the render sandbox; runs as the numeric user 65532.
#
#   deploy/build-image.sh GANTRY_BINARY oci:DIR[:TAG] [--push REF]
#
# The image is only as portable as this machine's libraries are to the node's kernel (any x86-64
# Linux with a glibc-compatible loader in the image: the loader ships inside). Prints the digest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[[ $# -ge 2 ]] || { echo "usage: $0 GANTRY_BINARY oci:DIR[:TAG] [--push REF]" >&2; exit 2; }
gantry=$(realpath "$1"); output=$2; shift 2
tools=${GANTRY_TOOLS_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/gantry/tools/bin}
stage=$(mktemp -d "${TMPDIR:-/tmp}/gantry-image.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# copy_with_libs FILE DEST: FILE at DEST in the image, and every library it loads at its own path.
copy_with_libs() {
  local file=$1 dest=$2
  install -D -m 0755 "$file" "$stage$dest"
  ldd "$file" 2>/dev/null | awk '/=> \// {print $3} /^\t\// {print $1}' | while read -r lib; do
    [[ -e $stage$lib ]] || install -D -m 0644 "$(realpath "$lib")" "$stage$lib"
  done
}

copy_with_libs "$gantry" /usr/local/bin/gantry
copy_with_libs "$(command -v bwrap)" /usr/bin/bwrap        # the render sandbox
for tool in kustomize helm; do
  [[ -x $tools/$tool ]] && install -D -m 0755 "$tools/$tool" "$stage/usr/local/bin/$tool"
done
# The loader must be executable where the binaries' PT_INTERP says.
chmod 0755 "$stage"/lib64/ld-linux-*.so.* 2>/dev/null || true
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$stage/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$stage/tmp" "$stage/home/gantry"
chmod 1777 "$stage/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\ngantry:x:65532:65532:gantry:/home/gantry:/sbin/nologin\n' >"$stage/etc/passwd"
printf 'root:x:0:\ngantry:x:65532:\n' >"$stage/etc/group"

"$gantry" image build --layer "$stage:/" \
  --entrypoint '["/usr/local/bin/gantry"]' --cmd '["agent"]' --user 65532 --workdir /home/gantry \
  --env HOME=/home/gantry --env PATH=/usr/local/bin:/usr/bin:/bin --env GANTRY_KUSTOMIZE=/usr/local/bin/kustomize --env GANTRY_HELM=/usr/local/bin/helm \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --label org.opencontainers.image.title=gantry \
  --source "$(git -C "$root" remote get-url origin 2>/dev/null | sed -E "s#//[^/@]+@#//#" || echo "$root")" \
  --revision "$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" \
  --output "$output" "$@"
