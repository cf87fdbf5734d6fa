#!/usr/bin/env bash
# Gantry's own image (deploy/build-image.sh) is self-contained: built with `gantry image build`,
# read by skopeo, unpacked, and run as the image says (its entrypoint, user and environment, nothing
# of the host's filesystem) inside bubblewrap: `gantry version`, and a Kustomize render with the
# bundled kustomize, as deploy/gantry-agent.yaml runs it (--no-render-sandbox). Real containers cannot run on the kwok test
# clusters, so this is how the image is checked.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${GANTRY_BINARY:?set GANTRY_BINARY to the gantry to test}"
work=$(mktemp -d "${TMPDIR:-/tmp}/gantry-image-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$root/deploy/build-image.sh" "$GANTRY_BINARY" "oci:$work/layout:test" >"$work/digest"
digest=$(tail -1 "$work/digest")
[[ $(skopeo inspect --format '{{.Digest}}' "oci:$work/layout:test") == "$digest" ]] || fail "skopeo sees another digest"
skopeo inspect --config "oci:$work/layout:test" >"$work/config.json"
"$GANTRY_BINARY" image unpack "oci:$work/layout:test" "$work/rootfs" >/dev/null

# Run the image's entrypoint with its own environment and user, on its own root.
mapfile -t args < <(python3 - "$work/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["config"]
assert c["User"] == "65532", c["User"]
for e in c["Env"]:
    k, v = e.split("=", 1)
    print("--setenv"); print(k); print(v)
print("--chdir"); print(c["WorkingDir"])
print("--"); print(c["Entrypoint"][0])
PY
)
run() {
  bwrap --bind "$work/rootfs" / --proc /proc --dev /dev --unshare-all --uid 65532 --gid 65532 --clearenv \
    --ro-bind "$root/examples/hello/config" /src "${args[@]}" "$@"
}
run version | grep -q '^gantry ' || fail "gantry version does not run in the image"
# Inside a container the render sandbox usually cannot start (a Pod's seccomp profile, or here the
# outer sandbox's /proc, forbids it): then the render must fail and say how to opt out, never fall
# back silently.
if ! run render /src/base >"$work/render.out" 2>&1; then
  grep -q -- '--no-render-sandbox' "$work/render.out" || { cat "$work/render.out"; fail "a failed render sandbox does not say how to opt out"; }
fi
# What deploy/gantry-agent.yaml runs: the explicit opt-out.
run render --no-render-sandbox /src/base >"$work/render.out" 2>&1 || { cat "$work/render.out"; fail "a Kustomize render fails in the image"; }
grep -q 'kind: Deployment' "$work/render.out" || fail "the render has no Deployment"
echo "PASS: image $digest runs gantry and renders Kustomize on its own"
