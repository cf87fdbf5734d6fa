# Sourced by the agent benchmarks: the servers they run against, from test/env (the tools in
# ~/.cache/gantry/tools), on loopback ports the kernel picks.
#   start_servers WORK   a 1-node kwok cluster and a Git server under WORK, their variables
#                        exported (KUBECONFIG, KUBE_SERVER, GIT_URL, ...), one repository "config":
#                        sets repo (its URL), host (the Git server's host:port), PKI; defines api
#                        (curl to the apiserver as admin)
#   stop_servers WORK
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
api() { curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@"; }
