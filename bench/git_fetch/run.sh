#!/usr/bin/env bash
# Fetch a 10,000-file repository and read one path of it (100 files), side by side:
#   gantry:  a fresh bare mirror (libgit2 fetch of all branches and tags) + ReadTree from the
#            object database, no checkout; then a fetch with nothing changed + the same read
#   git:     git clone --depth 1 (checks out every file) + reading the files of the path; then
#            git fetch in that clone with nothing changed + the same read
# against test/env/git-server.sh (smart HTTP with basic auth, on 127.0.0.1). Wall time, best of
# RUNS (default 3).
#
#   bench/git_fetch/run.sh          RUNS=5 bench/git_fetch/run.sh
#   GIT_FETCH_BENCH=/path/to/git_fetch_bench bench/git_fetch/run.sh   (a binary built elsewhere)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
runs=${RUNS:-3}
files=10000
dirs=100
read_path=apps/app-042

bench=${GIT_FETCH_BENCH:-}
if [[ -z $bench ]]; then
  build=${GANTRY_BUILD_DIR:-build/default}
  cmake --preset default >/dev/null
  cmake --build "$build" --target git_fetch_bench >/dev/null
  bench=$build/bench/git_fetch/git_fetch_bench
fi

work=$(mktemp -d /tmp/gantry-bench-git.XXXXXX)
trap 'test/env/git-server.sh stop "$work/server" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
test/env/git-server.sh start "$work/server" >"$work/env"
GIT_URL=$(sed -n 's/^GIT_URL=//p' "$work/env")
GIT_USER=$(sed -n 's/^GIT_USER=//p' "$work/env")
GIT_PASSWORD=$(sed -n 's/^GIT_PASSWORD=//p' "$work/env")
repo_path=$(test/env/git-server.sh create "$work/server" bench | sed -n 's/^REPO_PATH=//p')
url=$GIT_URL/bench.git

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null HOME=$work LANG=C GIT_TERMINAL_PROMPT=0
g() { git -c user.name=bench -c user.email=bench@gantry.invalid "$@"; }

# The repository: 10,000 distinct ~1 KiB manifests in 100 directories (one commit), then 20 small
# commits of history on top, built with fast-import.
mkdir "$work/src" && g -C "$work/src" init -q -b main
python3 - "$files" "$dirs" >"$work/import" <<'PY'
import sys
files, dirs = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
def w(s): out.write(s.encode())
w("commit refs/heads/main\ncommitter b <b@x> 1700000000 +0000\ndata 4\nbulk\n")
for i in range(files):
    body = (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n" +
            "".join(f"  key{k}: value-{i}-{k}-{'x' * 20}\n" for k in range(25)))
    w(f"M 100644 inline apps/app-{i % dirs:03d}/cm-{i:05d}.yaml\ndata {len(body)}\n{body}\n")
for c in range(20):
    w(f"commit refs/heads/main\ncommitter b <b@x> {1700000001 + c} +0000\ndata 7\nhistory\n")
    body = f"revision: {c}\n"
    w(f"M 100644 inline apps/app-{c:03d}/revision.txt\ndata {len(body)}\n{body}\n")
PY
g -C "$work/src" fast-import --quiet <"$work/import"
g -C "$work/src" push -q "file://$repo_path" main
echo "repository: $files files in $dirs directories + 20 commits; reading $read_path ($(
  g -C "$work/src" ls-tree -r --name-only main "$read_path" | wc -l) files)"

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
auth="Authorization: Basic $(printf '%s:%s' "$GIT_USER" "$GIT_PASSWORD" | base64 -w0)"
best_clone=999999999 best_fetch=999999999
for ((i = 0; i < runs; i++)); do
  rm -rf "$work/clone"
  t=$(date +%s%N)
  g -c "http.extraHeader=$auth" clone -q --depth 1 "$url" "$work/clone"
  find "$work/clone/$read_path" -type f -exec cat {} + >/dev/null
  d=$(ms "$t"); ((d < best_clone)) && best_clone=$d
  t=$(date +%s%N)
  g -C "$work/clone" -c "http.extraHeader=$auth" fetch -q --depth 1 origin
  find "$work/clone/$read_path" -type f -exec cat {} + >/dev/null
  d=$(ms "$t"); ((d < best_fetch)) && best_fetch=$d
done

GIT_HOST=${GIT_URL#http://} GIT_USER=$GIT_USER GIT_PASSWORD=$GIT_PASSWORD \
  "$bench" "$work/cache" "$url" "$read_path" "$runs" >"$work/gantry"
gantry_fresh=$(awk '$1 == "gantry-fresh" {print $2}' "$work/gantry")
gantry_nochange=$(awk '$1 == "gantry-nochange" {print $2}' "$work/gantry")

printf '%-34s %12s %12s %10s\n' "operation (best of $runs)" "gantry ms" "git ms" "git/gantry"
awk -v gf="$gantry_fresh" -v gc="$best_clone" -v gn="$gantry_nochange" -v gt="$best_fetch" 'BEGIN {
  printf "%-34s %12.1f %12.1f %10.2f\n", "fresh fetch + read one path", gf, gc, gc / gf
  printf "%-34s %12.1f %12.1f %10.2f\n", "no-change fetch + read one path", gn, gt, gt / gn
}'
