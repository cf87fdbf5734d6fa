#!/usr/bin/env bash
# Proves that test/env never loses a port race: starts N registries, N Git servers and N PostgreSQL
# servers at once (ROUNDS times), with CPU load alongside, and counts the starts that needed a
# retry (start_retrying in test/env/lib.sh). CLUSTERS=K adds K kube-cluster.sh starts (etcd and
# kube-apiserver, both retried) to each round. With --tight (root: a private network namespace whose
# ephemeral port range holds only PORTS ports) collisions are not luck but certain.
#
#   bench/faults/port-race.sh [--tight] [N=8] [ROUNDS=3] [PORTS=24]
# Prints one line per round and a summary; exits 1 when any start failed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
env_dir=$here/../../test/env
if [[ ${1:-} == --tight ]]; then
  shift
  ports=${3:-24}
  exec unshare -n bash -c 'ip link set lo up && sysctl -qw net.ipv4.ip_local_port_range="40000 $(( 40000 + $1 - 1 ))" &&
    exec "$0" "$2" "$3"' "$0" "$ports" "${1:-8}" "${2:-3}"
fi
n=${1:-8} rounds=${2:-3}
work=$(mktemp -d /tmp/gantry-port-race.XXXXXX); chmod a+x "$work"  # postgres.sh runs as postgres
retries=$work/retries.log; : >"$retries"
export GANTRY_TESTENV_RETRY_LOG=$retries
load_pids=()
for ((i = 0; i < 2; i++)); do (while :; do :; done) & load_pids+=($!); done
trap 'kill "${load_pids[@]}" 2>/dev/null || true' EXIT
failed=0 started=0
for ((r = 1; r <= rounds; r++)); do
  pids=() dirs=()
  for ((i = 0; i < n; i++)); do
    kinds=(registry git-server postgres)
    ((i < ${CLUSTERS:-0})) && kinds+=(kube-cluster)
    for kind in "${kinds[@]}"; do
      d=$work/r$r-$kind-$i; dirs+=("$kind:$d")
      "$env_dir/$kind.sh" start "$d" >"$d.out" 2>"$d.err" & pids+=($!)
    done
  done
  rf=0
  for p in "${pids[@]}"; do wait "$p" || rf=$((rf + 1)); done
  # Every server answers on the port it reported, and no two reported the same port.
  ports=$(cat "$work"/r$r-*.out |
    sed -n 's/^\(REGISTRY_HOST=127.0.0.1:\|GIT_URL=http:\/\/127.0.0.1:\|PG_PORT=\|KUBE_SERVER=https:\/\/127.0.0.1:\)//p')
  dup=$(sort <<<"$ports" | uniq -d | wc -l)
  for e in "${dirs[@]}"; do "$env_dir/${e%%:*}.sh" stop "${e#*:}" >/dev/null 2>&1 || true; done
  started=$((started + ${#pids[@]}))
  failed=$((failed + rf + dup))
  echo "round $r: ${#pids[@]} starts, $rf failed, $dup duplicate ports, retries so far $(wc -l <"$retries")"
done
echo "total: $started starts, $failed failed, $(wc -l <"$retries") retries ($(cut -d' ' -f1 "$retries" | sort | uniq -c | tr '\n' ' '))"
((failed == 0 && ${KEEP:-0} == 0)) && rm -rf "$work"
((failed == 0)) || { echo "failed runs kept in $work" >&2; exit 1; }
