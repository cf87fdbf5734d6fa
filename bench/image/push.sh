#!/usr/bin/env bash
# Push a 200 MB image to a loopback registry, side by side:
#   gantry:  gantry image push oci:DIR:TAG HOST/repo:tag
#   skopeo:  skopeo copy oci:DIR:TAG docker://HOST/repo:tag --dest-tls-verify=false
# from the same OCI layout (4 gzip layers of 50 MB of random data + config) to a fresh repository
# each run (a fresh registry per run), then a no-op re-push of the same image to the same repository. The registry is
# test/env/registry.sh (docker-registry, anonymous HTTP on 127.0.0.1). Wall time, best of RUNS
# (default 3).
#
#   bench/image/push.sh [GANTRY_BINARY]        RUNS=5 LAYERS=8 LAYER_MB=25 bench/image/push.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
GANTRY=${1:-${GANTRY_BINARY:-build/default/src/exe/gantry}}
runs=${RUNS:-3}
layers=${LAYERS:-4}
layer_mb=${LAYER_MB:-50}
[[ -x $GANTRY ]] || { echo "no gantry binary at $GANTRY (pass it as the first argument)" >&2; exit 2; }
command -v skopeo >/dev/null || { echo "skopeo is not installed" >&2; exit 2; }

work=$(mktemp -d /tmp/gantry-bench-image.XXXXXX)
trap 'test/env/registry.sh stop "$work/registry" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
test/env/registry.sh start "$work/registry" >"$work/env"
HOST=$(sed -n 's/^REGISTRY_HOST=//p' "$work/env")
export XDG_CACHE_HOME=$work/cache HOME=$work DOCKER_CONFIG=$work/docker

# The layout, written directly in the OCI image-layout format.
python3 - "$work/img" "$layers" "$layer_mb" <<'PY'
import gzip, hashlib, json, os, sys
root, n, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(f"{root}/blobs/sha256")
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    with open(f"{root}/blobs/sha256/{d}", "wb") as f: f.write(data)
    return "sha256:" + d, len(data)
layers, diff_ids = [], []
for i in range(n):
    raw = os.urandom(mb << 20)
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    d, size = blob(gzip.compress(raw, compresslevel=1))
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": size})
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}}).encode()
cd, cs = blob(config)
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
    "layers": layers}).encode()
md, ms = blob(manifest)
with open(f"{root}/oci-layout", "w") as f: f.write('{"imageLayoutVersion":"1.0.0"}')
with open(f"{root}/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
               "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
                              "size": ms, "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}, f)
PY
size_mb=$(du -sm "$work/img/blobs" | cut -f1)
echo "image: $layers layers, ${size_mb} MB in $work/img; registry $HOST"

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
best_sk=999999999 best_gp=999999999 best_sk_noop=999999999 best_gp_noop=999999999
for ((i = 0; i < runs; i++)); do
  # A fresh registry per run: skopeo remembers where it pushed blobs (its blob-info cache, outside
  # $HOME for root) and would mount them from an earlier run's repository, uploading nothing;
  # Gantry mounts only when told (--mount-from). So both upload every byte here.
  if ((i > 0)); then
    test/env/registry.sh stop "$work/registry" >/dev/null
    rm -rf "$work/registry"
    test/env/registry.sh start "$work/registry" >"$work/env"
    HOST=$(sed -n 's/^REGISTRY_HOST=//p' "$work/env")
  fi
  t=$(date +%s%N)
  skopeo copy -q --dest-tls-verify=false "oci:$work/img:bench" "docker://$HOST/skopeo-$i:t"
  d=$(ms "$t"); ((d < best_sk)) && best_sk=$d
  t=$(date +%s%N)
  skopeo copy -q --dest-tls-verify=false "oci:$work/img:bench" "docker://$HOST/skopeo-$i:t"
  d=$(ms "$t"); ((d < best_sk_noop)) && best_sk_noop=$d

  t=$(date +%s%N)
  "$GANTRY" image push "oci:$work/img:bench" "$HOST/gantry-$i:t" --insecure-http "$HOST" >"$work/digest"
  d=$(ms "$t"); ((d < best_gp)) && best_gp=$d
  t=$(date +%s%N)
  "$GANTRY" image push "oci:$work/img:bench" "$HOST/gantry-$i:t" --insecure-http "$HOST" >/dev/null
  d=$(ms "$t"); ((d < best_gp_noop)) && best_gp_noop=$d
done
# Both pushed the same manifest.
[[ $(skopeo inspect --raw --tls-verify=false "docker://$HOST/gantry-$((runs - 1)):t" | sha256sum | cut -d' ' -f1) == \
   $(skopeo inspect --raw --tls-verify=false "docker://$HOST/skopeo-$((runs - 1)):t" | sha256sum | cut -d' ' -f1) ]] ||
  echo "warning: gantry and skopeo pushed different manifests" >&2

printf '%-28s %10s %10s %12s\n' "push ${size_mb} MB (best of $runs)" "gantry ms" "skopeo ms" "skopeo/gantry"
awk -v g="$best_gp" -v s="$best_sk" -v gn="$best_gp_noop" -v sn="$best_sk_noop" 'BEGIN {
  printf "%-28s %10d %10d %12.2f\n", "fresh repository", g, s, s / g
  printf "%-28s %10d %10d %12.2f\n", "no-op re-push", gn, sn, sn / gn
}'
