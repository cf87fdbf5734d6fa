# Sourced by the agent benchmarks: the servers they run against, from test/env (the tools in
# ~/.cache/gantry/tools), on loopback ports the kernel picks.
#   start_servers WORK   a 1-node kwok cluster and a Git server under WORK, their variables
#                        exported (KUBECONFIG, KUBE_SERVER, GIT_URL, ...), one repository "config":
#                        sets repo (its URL), host (the Git server's host:port), PKI; defines api
#                        (curl to the apiserver as admin)
#   stop_servers WORK
#   push_config CLONE AUTH_URL APPS OBJECTS   the benchmarks' repository (scale.py repo: apps/aN of
#                        OBJECTS ConfigMaps each) committed in a new clone CLONE and pushed to AUTH_URL
start_servers() {
  test/env/kube-cluster.sh start "$1/cluster" --name bench --nodes 1 > "$1/cluster.env"
  test/env/git-server.sh start "$1/git" > "$1/git.env"
  source <(sed 's/^/export /' "$1/cluster.env")
  source <(sed 's/^/export /' "$1/git.env")
  repo=$(test/env/git-server.sh create "$1/git" config | sed -n 's/^REPO_URL=//p')
  host=${GIT_URL#http://}
  PKI=$1/cluster/pki
}
stop_servers() {
  test/env/kube-cluster.sh stop "$1/cluster" >/dev/null 2>&1 || true
  test/env/git-server.sh stop "$1/git" >/dev/null 2>&1 || true
}
push_config() {
  git -c init.defaultBranch=main init -q "$1"
  python3 bench/agent/scale.py repo "$1" "$3" "$4"
  git -C "$1" add -A
  git -C "$1" -c user.name=bench -c user.email=b@example.com commit -qm init
  git -C "$1" push -q "$2" main
}
api() { curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@"; }
