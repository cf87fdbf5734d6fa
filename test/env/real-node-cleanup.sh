#!/usr/bin/env bash
# Removes what a real node (real-node.sh) leaves outside its processes, whatever state it was left
# in: real-node.sh copies this file to RUN_DIR/cleanup, and stop_all (lib.sh) runs it after the
# recorded processes are stopped, also from the watchdog after the test was killed with SIGKILL.
# Safe to run twice. Usage: RUN_DIR/cleanup (the directory is the script's own).
set -uo pipefail
run=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
node=$run/node
[[ -f $node/identity ]] || exit 0
# shellcheck disable=SC1091
source "$node/identity"   # ID, BRIDGE, CGROUP

# Everything that runs in the node's cgroups (containers, their pause processes), then the shims,
# which containerd started in their own sessions (their command line names our socket).
for round in 1 2 3 4 5; do
  pids=$(find /sys/fs/cgroup/pids"$CGROUP" /sys/fs/cgroup/memory"$CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null)
  pids+=" $(pgrep -f -- "-address $node/containerd.sock" 2>/dev/null)"
  [[ -z ${pids//[[:space:]]/} ]] && break
  kill -KILL $pids 2>/dev/null
  sleep 0.5
done

# Mounts under RUN_DIR (overlay rootfs, shm, tmpfs secrets, network namespaces), deepest first.
awk -v p="$run/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
  umount -l "$m" 2>/dev/null
done

ip link del "$BRIDGE" 2>/dev/null
# The node's rules (real-node.sh: DNAT in nat, the loopback guard in filter), found by their comment.
for table in nat filter; do
  iptables-save -t "$table" 2>/dev/null | grep -- "--comment gantry-node-$ID" | sed 's/^-A /-D /' | while read -r rule; do
    eval "iptables -w -t $table $rule" 2>/dev/null
  done
done
# Pod veths are removed with their namespaces; cgroups go deepest first once empty.
for h in /sys/fs/cgroup/*/; do
  d=$h${CGROUP#/}
  [[ -d $d ]] || continue
  find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
done
# The kubelet's links to its Pods' logs (a fixed directory it does not let us move).
find /var/log/containers -maxdepth 1 -type l -lname "$node/*" -delete 2>/dev/null
rm -f "$node/identity"
exit 0
