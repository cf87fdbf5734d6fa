# A real node beside kwok's fake ones: Debian's containerd (CRI plugin) and runc, the kubelet built
# from the control plane's own module, pod networking with Debian's CNI plugins. Sourced by
# kube-cluster.sh (after lib.sh); do not run it.
#
# One node per cluster, named real-node-0, labelled type=real and tainted
# gantry.dev/real-node=true:NoSchedule, so that only Pods that ask for it (toleration + nodeSelector)
# run there and every other test keeps its Pods on kwok nodes. Everything is private to RUN_DIR/node:
#   containerd  root, state, socket, CRI config; the registry given is reached over plain HTTP
#               (hosts.toml) and its pause image is the sandbox image;
#   network     a bridge gn-XXXXXXXX with a free 10.2xx.yy.0/24 (bridge + host-local + portmap +
#               loopback); the bridge's address .1 is the node's InternalIP and the kubelet's
#               listen address (never 0.0.0.0: nothing outside the machine reaches it); Pods reach
#               each other and the node there. There is no kube-proxy: the `kubernetes` Service
#               (10.96.0.1:443) is DNATed to the apiserver on 127.0.0.1 (route_localnet on the
#               bridge only), so in-cluster clients work; `kube-cluster.sh expose DIR PORT` does
#               the same for a test server on 127.0.0.1:PORT, reached by Pods at REAL_NODE_IP:PORT;
#   cgroups     cgroup v1 (failCgroupV1: false) under /gantry-node-XXXXXXXX in every hierarchy;
#   kubelet     root dir, Pod logs, its serving certificate and its client certificate
#               (system:node:real-node-0) signed by the cluster's CA.
# Stopping (stop_all, also from the watchdog after a kill -9 of the test) runs RUN_DIR/cleanup:
# kills what runs in the node's cgroups and the shims, unmounts everything under RUN_DIR, deletes
# the bridge, the cgroups and the kubelet's links in /var/log/containers.
#
# Needs root (or the same capabilities: mounts, network namespaces, cgroups) and the Debian
# packages containerd, runc, containernetworking-plugins, busybox-static and iptables (scripts/setup
# installs them).

REAL_NODE_NAME=real-node-0

# pick_subnet: a 10.2XX.YY prefix (three octets) no interface of this machine uses.
pick_subnet() {
  local i a b
  for ((i = 0; i < 50; i++)); do
    a=$((200 + RANDOM % 50)); b=$((RANDOM % 256))
    if ! ip -4 -o addr show | grep -q " 10\.$a\.$b\."; then echo "10.$a.$b"; return 0; fi
  done
  echo "real-node: no free 10.2xx.yy.0/24 found" >&2; return 1
}

# node_images RUN REGISTRY: builds the pause image (from the kubelet component's static pause) and
# a busybox image (Debian's busybox-static, with its applets as links in /bin) with `gantry image
# build` and pushes both to REGISTRY over plain HTTP; sets PAUSE_IMAGE and BUSYBOX_IMAGE.
node_images() {
  local run=$1 registry=$2 gantry=${GANTRY_BINARY:-gantry} ctx applet
  command -v "$gantry" >/dev/null || { echo "real-node: no gantry binary (set GANTRY_BINARY)" >&2; return 1; }
  [[ -x /bin/busybox ]] || { echo "real-node: /bin/busybox missing (apt-get install busybox-static)" >&2; return 1; }
  ctx=$run/node/images
  mkdir -p "$ctx/pause" "$ctx/busybox/bin"
  cp "$REAL_NODE_BIN/pause" "$ctx/pause/pause"
  cp /bin/busybox "$ctx/busybox/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [[ $applet == busybox ]] || ln -sfn busybox "$ctx/busybox/bin/$applet"
  done
  PAUSE_IMAGE=$registry/gantry-test/pause:3.10
  BUSYBOX_IMAGE=$registry/gantry-test/busybox:1.35
  "$gantry" image build --layer "$ctx/pause/pause:/pause" --entrypoint '["/pause"]' \
    --output "oci:$ctx/layout:pause" --push "$PAUSE_IMAGE" --insecure-registry "$registry" >/dev/null
  "$gantry" image build --layer "$ctx/busybox:/" --env PATH=/bin --cmd '["sh"]' \
    --output "oci:$ctx/layout:busybox" --push "$BUSYBOX_IMAGE" --insecure-registry "$registry" >/dev/null
}

# dnat RUN FROM_IP FROM_PORT TO_PORT: Pods' connections to FROM_IP:FROM_PORT go to 127.0.0.1:TO_PORT.
# Each rule carries the node's comment, by which the cleanup finds it.
dnat() {
  local run=$1 ip=$2 port=$3 to=$4 id bridge
  id=$(sed -n 's/^ID=//p' "$run/node/identity"); bridge=$(sed -n 's/^BRIDGE=//p' "$run/node/identity")
  iptables -w -t nat -A PREROUTING -i "$bridge" -d "$ip" -p tcp --dport "$port" \
    -m comment --comment "gantry-node-$id" -j DNAT --to-destination "127.0.0.1:$to"
}

# loopback_guard RUN -A|-D: adds (-A) or deletes (-D) the rule that drops every packet from the
# node's bridge to 127.0.0.0/8 that was not DNATed here. route_localnet (which the DNAT to the
# apiserver on loopback needs) would otherwise let a Pod crafting packets to 127.0.0.1 itself (a
# packet socket) reach every server on the host's loopback, etcd included (kube-proxy's
# CVE-2020-8558). `kube-cluster.sh loopback-guard DIR off|on` lets a test show what it stops.
loopback_guard() {
  local run=$1 op=$2 id bridge
  id=$(sed -n 's/^ID=//p' "$run/node/identity"); bridge=$(sed -n 's/^BRIDGE=//p' "$run/node/identity")
  iptables -w "$op" INPUT -i "$bridge" -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT \
    -m comment --comment "gantry-node-$id" -j DROP
}

# real_node_expose RUN PORT: Pods reach the host's 127.0.0.1:PORT at the node's address, same port.
real_node_expose() {
  local run=$1 port=$2 ip
  [[ -f $run/node/identity ]] || { echo "kube-cluster.sh: $run has no real node" >&2; return 2; }
  ip=$(sed -n 's/^REAL_NODE_IP=//p' "$run/node/identity")
  dnat "$run" "$ip" "$port" "$port"
  echo "ADDRESS=$ip:$port"
}

# real_node_start RUN NAME API_URL PKI REGISTRY: starts containerd and the kubelet; waits until the
# node is Ready. Prints REAL_NODE, REAL_NODE_IP, PAUSE_IMAGE, BUSYBOX_IMAGE.
real_node_start() {
  local run=$1 name=$2 api_url=$3 pki=$4 registry=$5
  local node=$run/node id subnet bridge cg s kport hport
  REAL_NODE_BIN=${GANTRY_TOOLS_BIN:-$("$TESTENV_DIR/build-tools.sh" kubelet)}
  [[ -x $REAL_NODE_BIN/kubelet ]] || REAL_NODE_BIN=$("$TESTENV_DIR/build-tools.sh" kubelet)
  local missing=()
  for s in containerd containerd-shim-runc-v2 runc; do command -v "$s" >/dev/null || missing+=("$s"); done
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  if ((${#missing[@]})); then
    echo "real-node: missing ${missing[*]} (apt-get install containerd runc containernetworking-plugins)" >&2
    return 1
  fi
  mkdir -p "$node"
  id=$(openssl rand -hex 4)
  subnet=$(pick_subnet)
  bridge=gn-$id
  cg=/gantry-node-$id
  # The cleanup knows what to remove from these, whatever happens to this shell.
  printf 'ID=%s\nBRIDGE=%s\nCGROUP=%s\nREAL_NODE_IP=%s\n' "$id" "$bridge" "$cg" "$subnet.1" > "$node/identity"
  cp "$TESTENV_DIR/real-node-cleanup.sh" "$run/cleanup"; chmod +x "$run/cleanup"

  node_images "$run" "$registry" || return 1

  # Network: the bridge exists before the kubelet starts, so its address can be the node's.
  ip link add "$bridge" type bridge
  ip addr add "$subnet.1/24" dev "$bridge"
  ip link set "$bridge" up
  # The kubernetes Service without kube-proxy: DNAT to the apiserver on loopback, which the kernel
  # allows for packets from this bridge once route_localnet is on (for this bridge only).
  sysctl -qw "net.ipv4.conf.$bridge.route_localnet=1"
  # ... and only those DNATed here: a Pod crafting packets to 127.0.0.1 itself (raw sockets) would
  # otherwise reach every server on the host's loopback, etcd included (kube-proxy's CVE-2020-8558).
  loopback_guard "$run" -A
  dnat "$run" 10.96.0.1 443 "${api_url##*:}"
  mkdir -p "$node/cni" "$node/certs.d/$registry"
  cat > "$node/cni/10-gantry.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "gantry-$id", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$node/cni-ipam",
            "ranges": [[{"subnet": "$subnet.0/24", "rangeStart": "$subnet.10"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}]}
EOF
  printf 'server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' \
    "$registry" "$registry" > "$node/certs.d/$registry/hosts.toml"

  # containerd. restrict_oom_score_adj: the Pods' oom_score_adj never goes below containerd's own
  # (lowering it needs CAP_SYS_RESOURCE, which a sandboxed host may not give, and runc then fails
  # with "can't get final child's PID from pipe").
  cat > "$node/containerd.toml" <<EOF
version = 2
root = "$node/containerd/root"
state = "$node/containerd/state"
[grpc]
  address = "$node/containerd.sock"
[ttrpc]
  address = "$node/containerd.sock.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_tcp_service = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$node/certs.d"
EOF
  start_bg "$run" containerd containerd --config "$node/containerd.toml"
  wait_for 60 "containerd" test -S "$node/containerd.sock" || die_with_log "$run" containerd "containerd did not start"

  # cgroups: the Pods' root in every v1 hierarchy (cpuset needs its cpus and mems filled in).
  for s in /sys/fs/cgroup/*/; do
    [[ -f $s/cgroup.procs && ! -L ${s%/} ]] || continue
    mkdir -p "$s${cg#/}"
  done
  if [[ -d /sys/fs/cgroup/cpuset$cg ]]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus > "/sys/fs/cgroup/cpuset$cg/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems > "/sys/fs/cgroup/cpuset$cg/cpuset.mems"
  fi

  # The kubelet's client certificate: the Node authorizer knows it by system:node:NAME.
  (
    cd "$pki"
    openssl genrsa -out node.key 2048 2>/dev/null
    openssl req -new -key node.key -subj "/O=system:nodes/CN=system:node:$REAL_NODE_NAME" -out node.csr 2>/dev/null
    openssl x509 -req -in node.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 \
      -extfile admin.ext -out node.crt 2>/dev/null
    rm -f node.csr
  )
  cat > "$node/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster: {server: "$api_url", certificate-authority: "$pki/ca.crt"}
users:
- name: kubelet
  user: {client-certificate: "$pki/node.crt", client-key: "$pki/node.key"}
contexts:
- name: kubelet
  context: {cluster: $name, user: kubelet}
current-context: kubelet
EOF
  kport=$(free_port); hport=$(free_port)
  # Eviction thresholds low and image GC off: the node shares its disk with the whole machine, and
  # a test Pod must not be evicted because someone else's build filled it.
  cat > "$node/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $cg
containerRuntimeEndpoint: unix://$node/containerd.sock
address: $subnet.1
port: $kport
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $hport
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
registerWithTaints:
- {key: gantry.dev/real-node, value: "true", effect: NoSchedule}
podLogsDir: $node/pod-logs
failSwapOn: false
enforceNodeAllocatable: []
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: /etc/resolv.conf
maxPods: 20
serializeImagePulls: false
makeIPTablesUtilChains: false
localStorageCapacityIsolation: false
EOF
  start_bg "$run" kubelet "$REAL_NODE_BIN/kubelet" --config="$node/kubelet.yaml" --kubeconfig="$node/kubeconfig" \
    --root-dir="$node/kubelet" --cert-dir="$node/kubelet-pki" --hostname-override="$REAL_NODE_NAME" \
    --node-ip="$subnet.1" --node-labels=type=real
  wait_for 120 "node $REAL_NODE_NAME Ready" node_ready "$REAL_NODE_NAME" ||
    die_with_log "$run" kubelet "the real node did not become Ready"
  echo "REAL_NODE=$REAL_NODE_NAME"
  echo "REAL_NODE_IP=$subnet.1"
  echo "PAUSE_IMAGE=$PAUSE_IMAGE"
  echo "BUSYBOX_IMAGE=$BUSYBOX_IMAGE"
}
