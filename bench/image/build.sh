#!/usr/bin/env bash
# Image build from a directory, side by side with umoci, and the gzip floor.
#
#   bench/image/build.sh [GANTRY_BINARY] [REPEATS]
#
# Makes a ~200 MB tree of 2,000 files (sizes from 1 KB to 1 MB; half compressible text, half
# random bytes) and builds a one-layer image from scratch with it, gzip, into a fresh OCI layout:
#   gantry: gantry image build --layer tree:/data --output oci:DIR:bench
#   umoci:  umoci init + umoci new + umoci insert tree /data + umoci repack is NOT used: `umoci
#           insert` is umoci's one-step "add this directory as a new layer" (it also writes the
#           config and manifest), which is what gantry does.
#   floor:  tar of the tree piped to `gzip -6` (single-threaded, what one layer costs at least).
# Each is run REPEATS times (default 3); the best wall time is reported with its CPU time
# (user+sys) and max RSS (GNU time), then the ratios. The layouts are checked with
# `skopeo inspect` and `umoci unpack` at the end.
set -euo pipefail
GANTRY=${1:-${GANTRY_BINARY:-$(dirname "$0")/../../build/default/src/exe/gantry}}
GANTRY=$(realpath "$GANTRY")
REPEATS=${2:-3}
for tool in umoci skopeo /usr/bin/time gzip; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing (scripts/setup installs it)" >&2; exit 2; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$work/tree" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(42)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(4000)]
total = 0
for i in range(2000):
    d = os.path.join(root, f"dir{i % 40:02d}", f"sub{i % 7}")
    os.makedirs(d, exist_ok=True)
    size = int(1024 * (1024 ** rng.random()))  # 1 KB .. 1 MB, log-uniform
    if i % 2:
        data = rng.randbytes(size)
    else:
        out = bytearray()
        while len(out) < size:
            out += b" ".join(rng.choice(words) for _ in range(16)) + b"\n"
        data = bytes(out[:size])
    with open(os.path.join(d, f"file{i:04d}.bin"), "wb") as f:
        f.write(data)
    total += size
# Scale up to ~200 MB with a few large files of the same two kinds.
i = 0
while total < 200 << 20:
    size = min(8 << 20, (200 << 20) - total)
    data = rng.randbytes(size) if i % 2 else (b"lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]
    with open(os.path.join(root, f"large{i}.bin"), "wb") as f:
        f.write(data)
    total += size
    i += 1
print(f"tree: {total / 2**20:.0f} MiB in {2000 + i} files", file=sys.stderr)
PY

# measure NAME CMD...: best wall of REPEATS, with that run's CPU and max RSS.
results=()
measure() {
  local name=$1; shift
  local best_wall="" best_line=""
  for _ in $(seq "$REPEATS"); do
    rm -rf "$work/out"
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    read -r wall user sys rss < "$work/time"
    if [ -z "$best_wall" ] || awk -v a="$wall" -v b="$best_wall" 'BEGIN{exit !(a<b)}'; then
      best_wall=$wall
      best_line=$(awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v m="$rss" \
        'BEGIN{printf "%-8s %8.2f %8.2f %10.1f", n, w, u+s, m/1024}')
    fi
  done
  results+=("$best_line")
  eval "wall_$name=$best_wall"
}

umoci_build() {
  umoci init --layout "$work/out" && umoci new --image "$work/out:bench" &&
    umoci insert --rootless --image "$work/out:bench" "$work/tree" /data
}
floor() { tar -C "$work/tree" -cf - . | gzip -6 > "$work/floor.tar.gz"; }

measure gantry "$GANTRY" image build --layer "$work/tree:/data" --output "oci:$work/out:bench"
cp -r "$work/out" "$work/gantry-layout"
measure umoci bash -c "$(declare -f umoci_build); work=$work; umoci_build"
cp -r "$work/out" "$work/umoci-layout"
measure floor bash -c "$(declare -f floor); work=$work; floor"

echo
printf '%-8s %8s %8s %10s\n' tool wall_s cpu_s maxrss_MiB
printf '%s\n' "${results[@]}"
awk -v g="$wall_gantry" -v u="$wall_umoci" -v f="$wall_floor" \
  'BEGIN{printf "\numoci/gantry wall: %.2fx   gantry/floor wall: %.2fx\n", u/g, g/f}'
size() { du -sb "$1/blobs" | cut -f1; }
echo "layout bytes: gantry $(size "$work/gantry-layout")  umoci $(size "$work/umoci-layout")"

# The result must be readable by the peers.
skopeo inspect "oci:$work/gantry-layout:bench" | grep -q '"Layers"' && echo "skopeo inspect: ok"
umoci unpack --rootless --image "$work/gantry-layout:bench" "$work/bundle" >/dev/null &&
  diff -r "$work/bundle/rootfs/data" "$work/tree" && echo "umoci unpack: ok (same tree)"
# One gzip member per MiB: gzip must read them all as one stream, giving the diff_id.
layer=$(find "$work/gantry-layout/blobs" -size +1M -type f)
gzip -t "$layer" && echo "gzip -t: ok"
