#!/usr/bin/env bash
# A real Kubernetes control plane on loopback: etcd 3.6, kube-apiserver, kube-controller-manager,
# kube-scheduler (built from Go modules by build-tools.sh) and kwok, which plays the kubelet of fake
# nodes so that Pods run and Deployments become Available. Several clusters may run at once.
# With --real-nodes 1, a real node too (real-node.sh: kubelet, containerd, runc, CNI), tainted so
# that only Pods that ask for it run there.
#
#   kube-cluster.sh start RUN_DIR [--name NAME] [--nodes N] [--real-nodes 1 --registry HOST:PORT]
#       (protocol of lib.sh) prints KUBECONFIG, KUBE_SERVER, KUBE_CONTEXT, KUBE_CA, KUBE_TOKEN,
#       with a real node also REAL_NODE, PAUSE_IMAGE, BUSYBOX_IMAGE (pushed to the registry given,
#       which must serve plain HTTP on 127.0.0.1), then READY=1
#   kube-cluster.sh stop RUN_DIR
#   kube-cluster.sh expose RUN_DIR PORT   with a real node: Pods reach the host's 127.0.0.1:PORT (a
#                                          test server) at REAL_NODE_IP:PORT; prints ADDRESS=IP:PORT
#   kube-cluster.sh loopback-guard RUN_DIR off|on   with a real node: removes or restores the rule
#                                          dropping Pods' packets to the host's loopback that were
#                                          not DNATed (real-node.sh), for the test of what it stops
#   kube-cluster.sh kill-apiserver RUN_DIR   kill -9 of the kube-apiserver (fault tests)
#   kube-cluster.sh start-apiserver RUN_DIR  starts it again on the same port; prints READY=1 once
#                                          it is ready
#   kube-cluster.sh kill-etcd RUN_DIR        kill -9 of etcd (the apiserver keeps running)
#   kube-cluster.sh start-etcd RUN_DIR       starts it again on its ports over its data; READY=1
#   kube-cluster.sh up NAME [--nodes N] [--real-nodes 1 --registry HOST:PORT]
#                                          start a named cluster for a person at a shell; prints the
#                                          kubeconfig path (state in $GANTRY_STATE/clusters/NAME,
#                                          what start prints in its file env)
#   kube-cluster.sh down NAME
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/real-node.sh"

STATE=${GANTRY_STATE:-${XDG_RUNTIME_DIR:-/tmp}/gantry-$(id -u)}

gen_pki() {
  local pki=$1
  mkdir -p "$pki"; chmod 700 "$pki"
  (
    cd "$pki"
    openssl genrsa -out ca.key 2048 2>/dev/null
    printf '[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=gantry-test-ca\n[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,keyEncipherment,keyCertSign\nsubjectKeyIdentifier=hash\n' > ca.cnf
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -config ca.cnf -extensions v3_ca -out ca.crt 2>/dev/null
    openssl genrsa -out apiserver.key 2048 2>/dev/null
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1\n' > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl genrsa -out admin.key 2048 2>/dev/null
    openssl req -new -key admin.key -subj "/O=system:masters/CN=gantry-admin" -out admin.csr 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 -extfile admin.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr
  )
}

# api METHOD PATH [BODY]: a request to the apiserver as the admin.
api() {
  local method=$1 path=$2 body=${3:-}
  curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" -X "$method" \
    -H 'Content-Type: application/json' ${body:+--data "$body"} "https://127.0.0.1:$API_PORT$path"
}

node_ready() {
  api GET "/api/v1/nodes/$1" | python3 -c '
import json, sys
n = json.load(sys.stdin)
ready = any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
tainted = any(t["key"].startswith("node.kubernetes.io/") for t in n.get("spec", {}).get("taints", []) or [])
sys.exit(0 if ready and not tainted else 1)'
}

# The kube-apiserver of cluster $run on $PORT, over etcd on $etcd_port (variables of the caller:
# start, or start-apiserver from RUN_DIR/apiserver.env).
launch_apiserver() {
  start_bg "$run" kube-apiserver "$bin/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$PORT" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 --authorization-mode=Node,RBAC --allow-privileged=true \
    --endpoint-reconciler-type=none --enable-priority-and-fairness=false --cert-dir="$PKI" \
    --kubelet-client-certificate="$PKI/admin.crt" --kubelet-client-key="$PKI/admin.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname --profiling=false
}
apiserver_up() { curl -sf --cacert "$PKI/ca.crt" "https://127.0.0.1:$PORT/readyz"; }

# etcd of cluster $run on client port $PORT and peer port $etcd_peer, over the data in $run/etcd
# (variables of the caller: start, or start-etcd from RUN_DIR/apiserver.env).
launch_etcd() {
  start_bg "$run" etcd "$bin/etcd" --name=node0 --data-dir="$run/etcd" \
    --listen-client-urls="http://127.0.0.1:$PORT" --advertise-client-urls="http://127.0.0.1:$PORT" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
    --initial-cluster="node0=http://127.0.0.1:$etcd_peer" --initial-cluster-state=new \
    --unsafe-no-fsync=true --auto-compaction-retention=1 --quota-backend-bytes=8589934592 --log-level=warn
}
etcd_up() { curl -sf "http://127.0.0.1:$PORT/health"; }

start() {
  local run=$1; shift
  local name=gantry nodes=2 real_nodes=0 registry=
  while (($#)); do
    case $1 in
      --name) name=$2; shift 2 ;;
      --nodes) nodes=$2; shift 2 ;;
      --real-nodes) real_nodes=$2; shift 2 ;;
      --registry) registry=$2; shift 2 ;;
      *) echo "kube-cluster.sh: unknown option $1" >&2; exit 2 ;;
    esac
  done
  if [[ -e $run && -n $(ls -A "$run" 2>/dev/null) ]]; then
    echo "kube-cluster.sh: $run is not empty; start needs a fresh directory" >&2; exit 2
  fi
  case $real_nodes in
    0) ;;
    1) [[ -n $registry ]] || { echo "kube-cluster.sh: --real-nodes needs --registry HOST:PORT" >&2; exit 2; } ;;
    *) echo "kube-cluster.sh: --real-nodes must be 0 or 1 (one real node per cluster: two cores)" >&2; exit 2 ;;
  esac
  mkdir -p "$run"; run=$(cd "$run" && pwd)
  local bin
  bin=${GANTRY_TOOLS_BIN:-$("$TESTENV_DIR/build-tools.sh" etcd kube kwok)}
  PKI=$run/pki
  gen_pki "$PKI"
  local token
  token=$(openssl rand -hex 24)
  printf '%s,gantry-token-admin,uid-gantry-admin,"system:masters"\n' "$token" > "$PKI/tokens.csv"
  chmod 600 "$PKI/tokens.csv"

  # etcd and kube-apiserver cannot bind port 0 and report it: start_retrying picks their ports
  # (and etcd's peer port), and starts them again on others when a port was taken meanwhile.
  local etcd_port etcd_peer
  fresh_etcd() {
    etcd_peer=$(free_port)
    rm -rf "$run/etcd"  # a fresh member on each attempt: its peer URL changes
    launch_etcd
  }
  start_retrying "$run" etcd 60 etcd_up fresh_etcd
  etcd_port=$PORT

  start_retrying "$run" kube-apiserver 180 apiserver_up launch_apiserver
  API_PORT=$PORT
  # What start-apiserver and start-etcd need to start them again on the same ports.
  printf 'bin=%q\netcd_port=%q\netcd_peer=%q\napi_port=%q\n' "$bin" "$etcd_port" "$etcd_peer" "$API_PORT" \
    > "$run/apiserver.env"

  local kc=$run/kubeconfig
  cat > "$kc" <<KC
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $name-admin
  user:
    client-certificate: $PKI/admin.crt
    client-key: $PKI/admin.key
contexts:
- name: $name
  context:
    cluster: $name
    user: $name-admin
current-context: $name
KC
  chmod 600 "$kc"

  # The controller manager and the scheduler serve nothing the tests read: --secure-port=0, so
  # that they bind no port (and race for none).
  start_bg "$run" kube-controller-manager "$bin/kube-controller-manager" --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --secure-port=0 --leader-elect=false \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --use-service-account-credentials=false --controllers='*' --kube-api-qps=200 --kube-api-burst=400 \
    --concurrent-deployment-syncs=10 --concurrent-replicaset-syncs=10 --profiling=false
  start_bg "$run" kube-scheduler "$bin/kube-scheduler" --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --secure-port=0 --leader-elect=false --profiling=false \
    --kube-api-qps=200 --kube-api-burst=400
  start_bg "$run" kwok "$bin/kwok" --kubeconfig="$kc" --config="$bin/kwok-stages.yaml" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake --node-lease-duration-seconds=40 --cidr=10.244.0.1/16

  local i
  for ((i = 0; i < nodes; i++)); do
    api POST /api/v1/nodes "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"kwok-node-$i\",\"annotations\":{\"kwok.x-k8s.io/node\":\"fake\",\"node.alpha.kubernetes.io/ttl\":\"0\"},\"labels\":{\"kubernetes.io/hostname\":\"kwok-node-$i\",\"kubernetes.io/os\":\"linux\",\"kubernetes.io/arch\":\"amd64\",\"type\":\"kwok\"}},\"status\":{\"allocatable\":{\"cpu\":\"32\",\"memory\":\"256Gi\",\"pods\":\"110\"},\"capacity\":{\"cpu\":\"32\",\"memory\":\"256Gi\",\"pods\":\"110\"}}}" >/dev/null ||
      die_with_log "$run" kube-apiserver "could not create node kwok-node-$i"
  done
  for ((i = 0; i < nodes; i++)); do
    wait_for 90 "node kwok-node-$i Ready and untainted" node_ready "kwok-node-$i" ||
      die_with_log "$run" kwok "node kwok-node-$i did not become Ready"
  done
  if ((real_nodes)); then
    real_node_start "$run" "$name" "https://127.0.0.1:$API_PORT" "$PKI" "$registry" || {
      stop_all "$run"; exit 1; }
  fi
  wait_for 60 "the default ServiceAccount" api GET /api/v1/namespaces/default/serviceaccounts/default ||
    die_with_log "$run" kube-controller-manager "the default ServiceAccount was not created"

  echo "KUBECONFIG=$kc"
  echo "KUBE_SERVER=https://127.0.0.1:$API_PORT"
  echo "KUBE_CONTEXT=$name"
  echo "KUBE_CA=$PKI/ca.crt"
  echo "KUBE_TOKEN=$token"
  echo "READY=1"
}

# kill -9 of the kube-apiserver, then the same apiserver started again on its port (etcd and the
# rest keep running); returns once it is ready again. For fault tests: `kill-apiserver` and
# `start-apiserver` separately, so that a test decides how long it stays down.
# kill-etcd and start-etcd do the same to etcd (its data kept, the apiserver left running).
kill_component() {
  local run=$1 name=$2
  [[ -f $run/apiserver.env ]] || { echo "kube-cluster.sh: no cluster in $run" >&2; exit 1; }
  forget_bg "$run" "$name"
}
start_etcd() {
  local run bin etcd_port etcd_peer api_port PORT
  run=$(cd "$1" && pwd)
  [[ -f $run/apiserver.env ]] || { echo "kube-cluster.sh: no cluster in $run" >&2; exit 1; }
  source "$run/apiserver.env"
  PORT=$etcd_port
  [[ -n $etcd_peer ]] || { echo "kube-cluster.sh: $run was started before start-etcd existed" >&2; exit 1; }
  [[ ! -f $run/pids/etcd.pid ]] || { echo "kube-cluster.sh: the etcd of $run runs" >&2; exit 1; }
  launch_etcd
  wait_for 60 "etcd on 127.0.0.1:$PORT" etcd_up ||
    die_with_log "$run" etcd "etcd did not come back on 127.0.0.1:$PORT"
  echo "READY=1"
}
start_apiserver() {
  local run bin etcd_port etcd_peer api_port PORT
  run=$(cd "$1" && pwd)
  [[ -f $run/apiserver.env ]] || { echo "kube-cluster.sh: no cluster in $run" >&2; exit 1; }
  source "$run/apiserver.env"
  PKI=$run/pki PORT=$api_port
  [[ ! -f $run/pids/kube-apiserver.pid ]] || { echo "kube-cluster.sh: the apiserver of $run runs" >&2; exit 1; }
  launch_apiserver
  wait_for 120 "kube-apiserver on 127.0.0.1:$PORT" apiserver_up ||
    die_with_log "$run" kube-apiserver "the kube-apiserver did not come back on 127.0.0.1:$PORT"
  echo "READY=1"
}

case ${1:-} in
  start) [[ $# -ge 2 ]] || { echo "usage: $0 start RUN_DIR [--name N] [--nodes N]" >&2; exit 2; }
         run=$2; shift 2; start "$run" "$@" ;;
  stop) [[ $# -ge 2 ]] || { echo "usage: $0 stop RUN_DIR" >&2; exit 2; }; stop_all "$2" ;;
  expose) [[ $# -ge 3 ]] || { echo "usage: $0 expose RUN_DIR PORT" >&2; exit 2; }; real_node_expose "$2" "$3" ;;
  loopback-guard)
    [[ $# -ge 3 && -f $2/node/identity ]] || { echo "usage: $0 loopback-guard RUN_DIR off|on (a cluster with a real node)" >&2; exit 2; }
    case $3 in
      off) loopback_guard "$2" -D ;;
      # Once only: a rule added twice would survive one "off".
      on) loopback_guard "$2" -C 2>/dev/null || loopback_guard "$2" -A ;;
      *) echo "kube-cluster.sh loopback-guard: want off or on, not $3" >&2; exit 2 ;;
    esac ;;
  kill-apiserver) [[ $# -ge 2 ]] || { echo "usage: $0 kill-apiserver RUN_DIR" >&2; exit 2; }; kill_component "$2" kube-apiserver ;;
  kill-etcd) [[ $# -ge 2 ]] || { echo "usage: $0 kill-etcd RUN_DIR" >&2; exit 2; }; kill_component "$2" etcd ;;
  start-etcd) [[ $# -ge 2 ]] || { echo "usage: $0 start-etcd RUN_DIR" >&2; exit 2; }; start_etcd "$2" ;;
  start-apiserver) [[ $# -ge 2 ]] || { echo "usage: $0 start-apiserver RUN_DIR" >&2; exit 2; }; start_apiserver "$2" ;;
  up)
    [[ $# -ge 2 ]] || { echo "usage: $0 up NAME [--nodes N] [--real-nodes 1 --registry HOST:PORT]" >&2; exit 2; }
    name=$2; shift 2; dir=$STATE/clusters/$name
    if [[ -f $dir/pids/kube-apiserver.pid ]] && kill -0 "$(cat "$dir/pids/kube-apiserver.pid")" 2>/dev/null; then
      echo "$dir/kubeconfig"; exit 0
    fi
    # What a killed `up` left (a real node's mounts, bridge, iptables rules, cgroups) goes first:
    # stop_all runs DIR/cleanup; removing the directory alone would leave those behind.
    [[ -d $dir ]] && stop_all "$dir"
    rm -rf "$dir" "$dir.env"; mkdir -p "$(dirname "$dir")"
    start "$dir" --name "$name" "$@" > "$dir.env"
    mv "$dir.env" "$dir/env"
    echo "$dir/kubeconfig" ;;
  down)
    [[ $# -ge 2 ]] || { echo "usage: $0 down NAME" >&2; exit 2; }
    stop_all "$STATE/clusters/$2"; rm -rf "${STATE:?}/clusters/$2" ;;
  *) echo "usage: $0 start RUN_DIR [--name N] [--nodes N] | stop RUN_DIR | up NAME | down NAME" >&2; exit 2 ;;
esac
