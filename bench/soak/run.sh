#!/usr/bin/env bash
# Soak (issue 21): three kwok clusters, each kept in sync by its own `gantry agent` process with
# several Applications from one Git repository, while a steady stream of commits changes the apps
# (values change, ConfigMaps come and go, so syncs apply and prune) and a seeded fault schedule runs:
# Toxiproxy toxics between the agents and their apiservers and Git (latency, resets, half-open,
# sliced streams with slow close), kill -9 of an agent, an apiserver or an etcd and their restart.
# RSS and open descriptors of every Gantry process are sampled into OUT/samples.csv and plotted
# into OUT/samples.png. At the end the faults stop and the invariant checker reads the truth from
# outside Gantry: every commit pushed is in the server's history; on every cluster every
# Application is Synced and Healthy at the last commit, and each app's ConfigMaps are exactly those
# of that commit with its values (nothing lost, nothing left that should have been pruned).
#
#   bench/soak/run.sh [DURATION=30m] [SEED=1]
#       after: cmake --build build/default --target gantry
# Environment: BUILD_DIR (default build/default), SOAK_OUT (default a new /tmp/gantry-soak.XXXXXX),
# SOAK_APPS (4), SOAK_CLUSTERS (3), SOAK_COMMIT_EVERY (seconds between commits, 10), SOAK_FAULT_EVERY
# (seconds between faults, 30; 0: no faults, to profile memory), SOAK_SPARE_AGENT (a cluster number:
# its agent is never killed, so one agent lives the whole run under every other fault; the agent
# kills drawn for it go to the next cluster, the rest of the seed's schedule is unchanged; the run
# fails unless that agent lived from start to end), SOAK_SAMPLE_EVERY (5), SOAK_WARMUP (share of
# the run ignored by the growth check, 0.2). Exits 0 when the invariants hold and memory and descriptors are flat after warm-up: each
# process life that began before the warm-up ended and has 8 samples after it is judged on its own
# (a process the schedule restarts later starts a life with a warm-up of its own). An agent's
# descriptors rise by one per commit until libgit2's cap of open pack files (64, src/git), so a
# short soak needs enough commits before the warm-up ends (e.g. SOAK_COMMIT_EVERY=3 for 10 min).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
env_dir=$root/test/env
duration=${1:-30m} seed=${2:-1}
build=${BUILD_DIR:-$root/build/default}
gantry=$build/src/exe/gantry
[[ -x $gantry ]] || { echo "soak: build gantry first (cmake --build $build --target gantry)" >&2; exit 2; }
secs=$(python3 -c '
import re, sys
m = re.fullmatch(r"(\d+)([smh]?)", sys.argv[1])
if not m: sys.exit(f"soak: DURATION {sys.argv[1]!r}: expected e.g. 600, 600s, 10m or 2h")
print(int(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[m[2]])' "$duration")
apps=${SOAK_APPS:-4} commit_every=${SOAK_COMMIT_EVERY:-10} fault_every=${SOAK_FAULT_EVERY:-30}
sample_every=${SOAK_SAMPLE_EVERY:-5} warmup=${SOAK_WARMUP:-0.2} spare=${SOAK_SPARE_AGENT:-0}
mapfile -t clusters < <(seq 1 "${SOAK_CLUSTERS:-3}")
[[ $spare =~ ^[0-9]+$ ]] && ((spare <= ${#clusters[@]})) ||
  { echo "soak: SOAK_SPARE_AGENT=$spare: expected a cluster number from 1 to ${#clusters[@]} (0: none)" >&2; exit 2; }
((spare == 0 || ${#clusters[@]} > 1)) || { echo "soak: SOAK_SPARE_AGENT needs another cluster for the agent kills" >&2; exit 2; }
out=${SOAK_OUT:-$(mktemp -d /tmp/gantry-soak.XXXXXX)}
mkdir -p "$out"
log() { echo "soak $(date -u +%H:%M:%S): $*" | tee -a "$out/soak.log" >&2; }
value() { sed -n "s/^$1=//p" "$2" | tail -n 1; }

bg_pids=()
cleanup() {
  local p c
  touch "$out/stop"
  for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for c in "${clusters[@]}"; do
    [[ -f $out/agent-$c.pid ]] && kill -KILL -- "-$(cat "$out/agent-$c.pid")" 2>/dev/null || true
  done
  for c in "${clusters[@]}"; do [[ -d $out/cluster-$c ]] && "$env_dir/kube-cluster.sh" stop "$out/cluster-$c" >/dev/null 2>&1 || true; done
  [[ -d $out/git ]] && "$env_dir/git-server.sh" stop "$out/git" >/dev/null 2>&1 || true
  [[ -d $out/toxiproxy ]] && "$env_dir/toxiproxy.sh" stop "$out/toxiproxy" >/dev/null 2>&1 || true
}
trap cleanup EXIT
log "out=$out duration=${secs}s seed=$seed apps=$apps spare_agent=$spare; load: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- Servers: Git, Toxiproxy, three clusters (started side by side) ----
"$env_dir/git-server.sh" start "$out/git" >"$out/git.env"
"$env_dir/toxiproxy.sh" start "$out/toxiproxy" >"$out/toxiproxy.env"
for c in "${clusters[@]}"; do
  "$env_dir/kube-cluster.sh" start "$out/cluster-$c" --name "soak-$c" --nodes 1 >"$out/cluster-$c.env" 2>"$out/cluster-$c.err" &
  bg_pids+=($!)
done
for p in "${bg_pids[@]}"; do wait "$p" || { cat "$out"/cluster-*.err >&2; exit 1; }; done
bg_pids=()
kubectl=$("$env_dir/build-tools.sh" kube)/kubectl
toxi=$(value TOXIPROXY_URL "$out/toxiproxy.env")
git_url=$(value GIT_URL "$out/git.env") git_user=$(value GIT_USER "$out/git.env") git_password=$(value GIT_PASSWORD "$out/git.env")
repo_path=$(value REPO_PATH <("$env_dir/git-server.sh" create "$out/git" soak))

# proxy NAME UPSTREAM: a Toxiproxy proxy on a port the kernel picks; prints its HOST:PORT.
proxy() {
  curl -sf -X POST "$toxi/proxies" -d "{\"name\":\"$1\",\"listen\":\"127.0.0.1:0\",\"upstream\":\"$2\",\"enabled\":true}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["listen"])'
}
git_proxy=$(proxy git "${git_url#http://}")
for c in "${clusters[@]}"; do
  server=$(value KUBE_SERVER "$out/cluster-$c.env")
  listen=$(proxy "apiserver-$c" "${server#https://}")
  sed "s#server: $server#server: https://$listen#" "$(value KUBECONFIG "$out/cluster-$c.env")" >"$out/cluster-$c/kubeconfig-proxied"
done

# ---- The repository: apps/app-K/ with a few ConfigMaps each, then Applications on every cluster ----
work=$out/work
git init -q -b main "$work"
git -C "$work" config user.name "Soak" && git -C "$work" config user.email soak@gantry.invalid
git -C "$work" remote add origin "http://$git_user:$git_password@${git_url#http://}/soak.git"
# write_app K VERSION COUNT: app-K as COUNT ConfigMaps carrying VERSION.
write_app() {
  rm -rf "$work/apps/app-$1"; mkdir -p "$work/apps/app-$1"
  local j
  for ((j = 0; j < $3; j++)); do
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d}\ndata: {version: "%s"}\n' "$j" "$2" \
      >"$work/apps/app-$1/cm-$j.yaml"
  done
}
for ((k = 0; k < apps; k++)); do write_app "$k" 0 4; done
git -C "$work" add -A && git -C "$work" commit -qm "apps at version 0" && git -C "$work" push -q origin main
pushed=1
"$gantry" install --print | python3 -c '
import sys
docs = sys.stdin.read().split("\n---\n")
print("\n---\n".join(d for d in docs if "kind: CustomResourceDefinition" in d))' >"$out/crd.yaml"
for c in "${clusters[@]}"; do
  kc=$(value KUBECONFIG "$out/cluster-$c.env")
  "$kubectl" --kubeconfig "$kc" apply -f "$out/crd.yaml" >/dev/null
  "$kubectl" --kubeconfig "$kc" create namespace soak >/dev/null
  for ((k = 0; k < apps; k++)); do
    "$kubectl" --kubeconfig "$kc" create namespace "app-$k" >/dev/null
  done
  "$kubectl" --kubeconfig "$kc" wait --for condition=established --timeout=60s crd/applications.gantry.dev >/dev/null
  for ((k = 0; k < apps; k++)); do
    printf 'apiVersion: gantry.dev/v1alpha1\nkind: Application\nmetadata: {name: app-%d, namespace: soak}\nspec:\n  source: {repoURL: "http://%s/soak.git", targetRevision: main, path: apps/app-%d}\n  destination: {namespace: app-%d}\n  syncPolicy:\n    automated: {prune: true, selfHeal: true}\n    retry: {limit: 5, backoff: {duration: 1s}}\n' \
      "$k" "$git_proxy" "$k" "$k"
    echo "---"
  done | "$kubectl" --kubeconfig "$kc" apply -f - >/dev/null
done

# ---- Agents: one process per cluster, through the proxies ----
start_agent() {
  local c=$1
  mkdir -p "$out/agent-$c"
  GIT_CREDS="$git_proxy=$git_user:$git_password" HOME="$out/agent-$c" setsid "$gantry" agent \
    --kubeconfig "$out/cluster-$c/kubeconfig-proxied" -n soak --cache-dir "$out/agent-$c/cache" \
    --identity "soak-agent-$c" --interval 5s --lease-duration 5s --git-credentials-env GIT_CREDS \
    --metrics-listen 127.0.0.1:0 </dev/null >>"$out/agent-$c.log" 2>&1 &
  echo $! >"$out/agent-$c.pid"
}
for c in "${clusters[@]}"; do start_agent "$c"; done

# ---- Sampler: RSS and descriptors of every Gantry process ----
echo "t_s,process,pid,rss_kb,fds,rss_anon_kb,rss_file_kb,packs" >"$out/samples.csv"
start=$SECONDS
(
  while [[ ! -f $out/stop ]]; do
    for c in "${clusters[@]}"; do
      pid=$(cat "$out/agent-$c.pid" 2>/dev/null) || continue
      # VmRSS, RssAnon (the heap), RssFile (mapped files: libgit2 maps pack files and indexes)
      rss=$(awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s,", $2}' "/proc/$pid/status" 2>/dev/null) || continue
      [[ $rss == *,*,*, ]] || continue
      IFS=, read -r vm anon file _ <<<"$rss"
      fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
      packs=$({ find "$out/agent-$c/cache" -name '*.pack' 2>/dev/null || true; } | wc -l)
      echo "$((SECONDS - start)),agent-$c,$pid,$vm,$fds,$anon,$file,$packs" >>"$out/samples.csv"
    done
    sleep "$sample_every"
  done
) &
bg_pids+=($!)

# ---- The fault schedule: seeded, one fault every ~fault_every s, each undone before the next ----
toxic() {  # toxic PROXY NAME TYPE STREAM ATTRIBUTES_JSON
  curl -sf -X POST "$toxi/proxies/$1/toxics" \
    -d "{\"name\":\"$2\",\"type\":\"$3\",\"stream\":\"$4\",\"toxicity\":1,\"attributes\":$5}" >/dev/null
}
python3 - "$seed" "$secs" "$fault_every" "${#clusters[@]}" "$spare" >"$out/schedule.txt" <<'PY'
import random, sys
seed, secs, every, clusters, spare = (int(a) for a in sys.argv[1:])
if every <= 0:
    sys.exit(0)
r = random.Random(seed)
kinds = ["apiserver-latency", "apiserver-reset", "apiserver-half-open", "git-reset", "git-sliced-slow-close",
         "agent-kill9", "apiserver-kill9", "etcd-kill9"]
t = every
while t < secs - every:
    kind, c, hold = r.choice(kinds), r.randint(1, clusters), r.randint(2, 12)
    if kind == "agent-kill9" and c == spare:
        c = c % clusters + 1  # the spared agent lives; the same draws keep the rest of the schedule
    print(t, kind, c, hold)
    t += r.randint(every // 2, every * 3 // 2)
PY
(
  while read -r at kind c hold; do
    while ((SECONDS - start < at)); do [[ -f $out/stop ]] && exit 0; sleep 1; done
    echo "$((SECONDS - start)) $kind cluster-$c ${hold}s" >>"$out/faults.log"
    case $kind in
      apiserver-latency) toxic "apiserver-$c" f latency downstream '{"latency":200,"jitter":100}' ;;
      apiserver-reset) toxic "apiserver-$c" f reset_peer downstream '{"timeout":0}' ;;
      apiserver-half-open) toxic "apiserver-$c" f timeout downstream '{"timeout":0}' ;;
      git-reset) toxic git f reset_peer downstream '{"timeout":0}' ;;
      git-sliced-slow-close)
        toxic git f slicer downstream '{"average_size":64,"size_variation":32,"delay":10}'
        toxic git f2 slow_close downstream '{"delay":1000}' ;;
      agent-kill9) kill -KILL -- "-$(cat "$out/agent-$c.pid")" 2>/dev/null || true ;;
      apiserver-kill9) "$env_dir/kube-cluster.sh" kill-apiserver "$out/cluster-$c" ;;
      etcd-kill9) "$env_dir/kube-cluster.sh" kill-etcd "$out/cluster-$c" ;;
    esac
    sleep "$hold"
    case $kind in
      agent-kill9) start_agent "$c" ;;
      apiserver-kill9) "$env_dir/kube-cluster.sh" start-apiserver "$out/cluster-$c" >/dev/null ;;
      etcd-kill9) "$env_dir/kube-cluster.sh" start-etcd "$out/cluster-$c" >/dev/null ;;
      git-sliced-slow-close)  # the proxy made anew: Toxiproxy 2.12 crashes otherwise (test/env/toxiproxy.h)
        curl -sf -X DELETE "$toxi/proxies/git" >/dev/null
        curl -sf -X POST "$toxi/proxies" \
          -d "{\"name\":\"git\",\"listen\":\"$git_proxy\",\"upstream\":\"${git_url#http://}\",\"enabled\":true}" >/dev/null
        curl -sf -X POST "$toxi/reset" >/dev/null ;;
      *) curl -sf -X POST "$toxi/reset" >/dev/null ;;
    esac
  done <"$out/schedule.txt"
) >>"$out/faults.err" 2>&1 &
faults_pid=$!

# ---- The commit stream (pushed straight to the Git server: the developer is not under faults) ----
i=0
while ((SECONDS - start < secs)); do
  i=$((i + 1))
  write_app $((i % apps)) "$i" $((3 + (i * 7 + seed) % 4))
  git -C "$work" add -A && git -C "$work" commit -qm "app-$((i % apps)) at version $i"
  if git -C "$work" push -q origin main 2>>"$out/push.err"; then pushed=$((pushed + 1)); else log "push $i failed"; fi
  sleep "$commit_every"
done
touch "$out/stop"
wait "$faults_pid" || true
curl -sf -X POST "$toxi/reset" >/dev/null
head=$(git -C "$work" rev-parse HEAD)
log "$i commits made, $pushed pushed; faults: $(cat "$out/faults.log" 2>/dev/null | wc -l); head $head; load: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- The invariant checker: the truth read from outside Gantry ----
check() {
  python3 - "$repo_path" "$head" "$pushed" "$apps" "$kubectl" "$out" "${clusters[@]}" <<'PY'
import json, subprocess, sys
repo, head, pushed, apps, kubectl, out, *clusters = sys.argv[1:]
pushed, apps = int(pushed), int(apps)
problems = []
git = lambda *a: subprocess.run(["git", "--git-dir", repo, *a], check=True, capture_output=True, text=True).stdout
if git("rev-parse", "refs/heads/main").strip() != head:
    problems.append(f"the server's main is not the last commit pushed ({head})")
if int(git("rev-list", "--count", "refs/heads/main")) != pushed:
    problems.append(f"the server has {git('rev-list', '--count', 'refs/heads/main').strip()} commits, {pushed} were pushed")
want = {}
for k in range(apps):
    files = git("ls-tree", "--name-only", f"{head}:apps/app-{k}").split()
    want[k] = {f[:-5]: git("show", f"{head}:apps/app-{k}/{f}").split('version: "')[1].split('"')[0] for f in files}
for c in clusters:
    kc = open(f"{out}/cluster-{c}.env").read().split("KUBECONFIG=")[1].split()[0]
    get = lambda *a: json.loads(subprocess.run([kubectl, "--kubeconfig", kc, "get", "-o", "json", *a], check=True,
                                               capture_output=True, text=True).stdout)
    for app in get("applications.gantry.dev", "-n", "soak")["items"]:
        st = app.get("status", {})
        name = app["metadata"]["name"]
        got = (st.get("sync", {}).get("status"), st.get("health", {}).get("status"), st.get("sync", {}).get("revision"))
        if got != ("Synced", "Healthy", head):
            problems.append(f"cluster-{c} {name}: {got}, want Synced Healthy at {head[:12]}")
    for k in range(apps):
        have = {cm["metadata"]["name"]: cm.get("data", {}).get("version")
                for cm in get("configmaps", "-n", f"app-{k}", "-l", f"gantry.dev/app=app-{k}")["items"]}
        if have != want[k]:
            problems.append(f"cluster-{c} app-{k}: ConfigMaps {have}, want {want[k]}")
for p in problems:
    print("  " + p)
sys.exit(1 if problems else 0)
PY
}
converge_start=$SECONDS
until check >"$out/check.txt"; do
  if ((SECONDS - converge_start > 300)); then break; fi
  sleep 5
done
converge_s=$((SECONDS - converge_start))
if check >"$out/check.txt"; then
  log "invariants hold: every cluster converged on $head ${converge_s}s after the faults stopped"
  invariants=0
else
  log "INVARIANT BROKEN after ${converge_s}s:"; cat "$out/check.txt" >&2
  invariants=1
fi
touch "$out/stop"
for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
bg_pids=()

# ---- Memory and descriptors: flat after warm-up? CSV, summary, plot ----
# Debian's python3 has python3-matplotlib; a python3 of pyenv or a venv earlier in PATH may not.
plot_python=python3
python3 -c 'import matplotlib' 2>/dev/null || ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null ||
  plot_python=/usr/bin/python3
flat=0
"$plot_python" - "$out/samples.csv" "$warmup" "$out/samples.png" "$out/flat.txt" "$spare" "$sample_every" "$commit_every" <<'PY' || flat=1
import collections, csv, shutil, subprocess, sys
path, warmup, png, summary = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
spare, sample_every, commit_every = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
# An agent's descriptors saw-tooth as its mirror's packs are merged (every 17 fetches, src/git): a
# window shorter than that period may hold only the low part of a tooth.
merge_period = -(-17 * commit_every // sample_every)  # in samples
rows = list(csv.DictReader(open(path)))
series = collections.defaultdict(list)  # per process name, across its restarts (for the plot)
lives = collections.defaultdict(list)   # per process name and pid: one life, judged on its own
for r in rows:
    sample = (int(r["t_s"]), int(r["rss_kb"]), int(r["fds"]))
    series[r["process"]].append(sample)
    lives[(r["process"], r["pid"])].append(sample)
end = max((t for s in series.values() for t, _, _ in s), default=0)
lines, flat, judged = [], True, 0
for (name, pid), s in sorted(lives.items()):
    if s[0][0] > warmup * end:
        continue  # started (again) after the warm-up: it had none of its own
    s = [x for x in s if x[0] >= warmup * end]
    if len(s) < 8:
        continue  # killed by the schedule soon after
    judged += 1
    name = f"{name} (pid {pid}, {s[0][0]}-{s[-1][0]} s)"
    q = len(s) // 4
    first, last = s[:q], s[-q:]
    rss0, rss1 = sum(x[1] for x in first) / q, sum(x[1] for x in last) / q
    growth = (rss1 - rss0) / rss0
    ok = growth < 0.10
    w = max(q, merge_period)
    if 2 * w <= len(s):
        fd0, fd1 = max(x[2] for x in s[:w]), max(x[2] for x in s[-w:])
        ok &= fd1 <= fd0 + 5
        fds = f"descriptors max {fd0} -> {fd1}"
    else:
        fds = "descriptors not judged (shorter than two pack-merge periods)"
    flat &= ok
    lines.append(f"{name}: RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB ({growth:+.1%}), {fds}: {'flat' if ok else 'GROWS'}")
if judged == 0:
    lines.append("no process lived long enough after warm-up to be judged"); flat = False
if spare:
    spared = [(pid, s) for (name, pid), s in lives.items() if name == f"agent-{spare}"]
    whole = len(spared) == 1 and spared[0][1][0][0] <= 2 * sample_every and spared[0][1][-1][0] >= end - 2 * sample_every
    flat &= whole
    lives_said = ", ".join(f"pid {pid} {s[0][0]}-{s[-1][0]} s" for pid, s in spared)
    lines.append(f"agent-{spare} (spared): {'one life for the whole run' if whole else 'NOT ONE LIFE FOR THE WHOLE RUN'}: "
                 f"{lives_said} of 0-{end} s")
open(summary, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    for name, s in sorted(series.items()):
        a.plot([x[0] for x in s], [x[1] / 1024 for x in s], label=name)
        b.plot([x[0] for x in s], [x[2] for x in s], label=name)
    a.set_ylabel("RSS (MiB)"); b.set_ylabel("open descriptors"); b.set_xlabel("seconds"); a.legend()
    a.axvline(warmup * end, color="grey", ls=":"); b.axvline(warmup * end, color="grey", ls=":")
    fig.savefig(png, dpi=100)
except ImportError:
    if shutil.which("gnuplot"):
        subprocess.run(["gnuplot", "-e", f"set terminal png size 1000,600; set output '{png}'; set datafile separator ',';"
                        f" plot '{path}' using 1:($4/1024) every ::1 title 'RSS MiB (all agents)'"], check=False)
    else:
        print("no plot: neither python3-matplotlib nor gnuplot is installed (apt-get install python3-matplotlib)")
sys.exit(0 if flat else 1)
PY
log "samples: $out/samples.csv, plot: $out/samples.png, faults: $out/faults.log"
exit $((invariants || flat))
