#!/usr/bin/env bash
# End to end, both delivery models, through the README's main command: runs scripts/quickstart in
# a state directory of its own (three clusters, registry, Git server, gantry server, two pull
# agents), then checks what it claims from the outside:
#   - prod's agent runs in the cluster: the Deployment gantry-system/gantry-agent has its Pods
#     Running and Ready on the real node, from the image the quickstart pushed, no agent process
#     runs for prod, and prod's Application is synced at the config commit (as root; otherwise the
#     quickstart says it fell back to an agent next to the cluster, which is checked instead);
#   - the Deployment in every cluster runs the image of the pushed commit, with its replicas
#     available (asked of each apiserver directly, not of Gantry);
#   - the registry has that image under the commit's tag, with the digest the ledger recorded
#     (asked of skopeo);
#   - the ledger links commit → run → digest → config commit, and the config repository's commit
#     rewrote only the newTag lines;
#   - a commit whose test step fails makes no image, no config commit and no release;
#   - the image is signed and attested (gantry image verify and verify-attestation with the
#     quickstart's public key), prod runs it pinned to the verified digest, and the config commit
#     is SSH-signed (git verify-commit with the server's published key);
#   - an image pushed to the registry by hand (not built by Gantry, unsigned) and written into
#     prod's overlay is refused by prod's agent (condition ImageVerificationFailed naming the image
#     and the rule) and by a push deploy to prod; nothing of it is applied.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${GANTRY_BINARY:?set GANTRY_BINARY to the gantry to test}"
export GANTRY_STATE
GANTRY_STATE=$(mktemp -d "${TMPDIR:-/tmp}/gantry-e2e.XXXXXX")
cleanup() {
  local rc=$?
  if ((rc != 0)); then
    for f in "$GANTRY_STATE"/quickstart/logs/{server,agent-staging,agent-prod,cluster-prod,agent-image}.log; do
      [[ -f $f ]] && { echo "--- $f (last 40 lines)"; tail -40 "$f"; }
    done
    if [[ -f $GANTRY_STATE/clusters/prod/kubeconfig ]]; then
      echo "--- prod's in-cluster agent"
      "$tools/kubectl" --kubeconfig "$GANTRY_STATE/clusters/prod/kubeconfig" -n gantry-system get pods -o wide 2>&1
      "$tools/kubectl" --kubeconfig "$GANTRY_STATE/clusters/prod/kubeconfig" -n gantry-system logs --tail=40 \
        deploy/gantry-agent 2>&1
    fi
  fi
  "$root/scripts/quickstart" down >/dev/null 2>&1 || true
  rm -rf "$GANTRY_STATE"
  exit "$rc"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
tools=${GANTRY_TOOLS_BIN:-${GANTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gantry}/tools/bin}
# get CLUSTER PATH: an object of CLUSTER's apiserver as JSON, asked directly (not through Gantry).
get() {
  # shellcheck disable=SC1090
  (source "$GANTRY_STATE/clusters/$1/env"
   curl -fsS --cacert "$KUBE_CA" -H "Authorization: Bearer $KUBE_TOKEN" "$KUBE_SERVER$2")
}

"$root/scripts/quickstart"

qs=$GANTRY_STATE/quickstart
gantry=$GANTRY_BINARY
export GANTRY_HOME=$qs/home
# shellcheck disable=SC1091
source "$qs/registry.env"
# shellcheck disable=SC1091
source "$qs/git.env"
# shellcheck disable=SC1091
source "$qs/server.env"
export GANTRY_SERVER GANTRY_TOKEN
commit=$(git -C "$qs/work/hello-app" rev-parse HEAD)
tag=${commit:0:12}

digest=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$REGISTRY_HOST/demo/hello:$tag")
echo "### the clusters run $tag (prod pinned to the digest it verified)"
for c in dev staging prod; do
  get "$c" "/apis/apps/v1/namespaces/hello-$c/deployments/hello" >"$qs/deploy-$c.json" ||
    fail "no Deployment hello in cluster $c"
  want=$REGISTRY_HOST/demo/hello:$tag
  [[ $c == prod ]] && want+=@$digest
  python3 - "$qs/deploy-$c.json" "$want" "$c" <<'PY' || fail "cluster $c does not run $want"
import json, sys
d = json.load(open(sys.argv[1]))
image = d["spec"]["template"]["spec"]["containers"][0]["image"]
available = d.get("status", {}).get("availableReplicas", 0)
print(f"{sys.argv[3]}: {image}, {available}/{d['spec']['replicas']} available")
sys.exit(0 if image == sys.argv[2] and available == d["spec"]["replicas"] else 1)
PY
done

echo "### prod's agent runs in the cluster, on the real node"
config_commit=$(git ls-remote "$GIT_URL/hello-config.git" refs/heads/main | cut -f1)
get prod /apis/gantry.dev/v1alpha1/namespaces/gantry-system/applications/hello >"$qs/app-prod.json" ||
  fail "no Application hello in prod"
python3 - "$qs/app-prod.json" "$config_commit" <<'PY' || fail "prod's Application is not synced at the config commit $config_commit"
import json, sys
a = json.load(open(sys.argv[1]))
st = a.get("status", {})
sync = st.get("sync", {})
print(f"prod: Application hello {sync.get('status')} at {sync.get('revision')}, {st.get('health', {}).get('status')}")
sys.exit(0 if sync.get("status") == "Synced" and sync.get("revision") == sys.argv[2] else 1)
PY
prod_agent=$(cat "$qs/prod-agent")
if [[ $(id -u) == 0 ]]; then
  [[ $prod_agent == in-cluster ]] || fail "as root, prod's agent should run in the cluster, but ran $prod_agent (see $qs/logs/cluster-prod.log)"
  [[ ! -f $qs/pids/agent-prod.pid ]] || fail "an agent process runs for prod besides the in-cluster one"
  get prod "/api/v1/namespaces/gantry-system/pods?labelSelector=app.kubernetes.io/name%3Dgantry-agent" >"$qs/agents-prod.json" ||
    fail "cannot list prod's agent Pods"
  python3 - "$qs/agents-prod.json" "$REGISTRY_HOST/gantry/gantry:quickstart" <<'PY' || fail "prod's agent Pods are not Running and Ready on the real node"
import json, sys
pods = json.load(open(sys.argv[1]))["items"]
ok = 0
for p in pods:
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    image = p["spec"]["containers"][0]["image"]
    node = p["spec"].get("nodeName")
    print(f"prod: agent Pod {p['metadata']['name']} {p['status'].get('phase')} ready={ready} on {node} ({image})")
    ok += p["status"].get("phase") == "Running" and ready and node == "real-node-0" and image == sys.argv[2]
sys.exit(0 if ok >= 1 else 1)
PY
  # The kubelet really started the agent: the container has a containerd ID and a start time.
  python3 - "$qs/agents-prod.json" <<'PY' || fail "prod's agent container never started on the real node"
import json, sys
pods = json.load(open(sys.argv[1]))["items"]
sys.exit(0 if any(s.get("containerID", "").startswith("containerd://") and "running" in s.get("state", {})
                  for p in pods for s in p["status"].get("containerStatuses", [])) else 1)
PY
else
  [[ $prod_agent == out-of-cluster ]] || fail "not root, yet prod's agent is $prod_agent"
  [[ -f $qs/pids/agent-prod.pid ]] || fail "not root, and no agent process runs for prod"
  echo "prod: not root, so no real node; the quickstart fell back to an agent next to the cluster"
fi

echo "### the registry has the image the ledger recorded"
echo "registry: $digest"
"$gantry" history hello | tee "$qs/history.out"
grep -E "^[0-9]+ .* $tag .* hello@${digest:0:19} " "$qs/history.out" >/dev/null ||
  fail "the ledger has no release of $tag with image digest ${digest:0:19}"

echo "### the config commit changed only the newTag lines"
# The old tag is the previous release's, or "initial" when the polled first commit's run was
# superseded by the push's (it found the branch already moved and the push's run building it).
config=$qs/config-clone
git clone -q "$GIT_URL/hello-config.git" "$config"
git -C "$config" log --format='%an <%ae>: %s' -1
changed=$(git -C "$config" diff HEAD~1 HEAD --unified=0 | grep -E '^[-+][^-+]' | grep -vcE '^[-+]    newTag: ([0-9a-f]{12}|initial) # the tag in the base until the first release$' || true)
[[ $changed == 0 ]] || { git -C "$config" diff HEAD~1 HEAD; fail "the config commit changed more than newTag"; }

echo "### a commit whose test fails releases nothing"
releases_before=$("$gantry" history hello | tail -n +2 | wc -l)
config_head=$(git -C "$config" rev-parse HEAD)
work=$qs/work/hello-app
sed -i 's|<h1>.*</h1>|<p>no heading</p>|' "$work/site/index.html"
git -C "$work" -c user.name=Dev -c user.email=dev@example.com commit -qam "Drop the heading"
git -C "$work" push -q origin main
bad=$(git -C "$work" rev-parse HEAD)
# The state of the run whose COMMIT column is the bad commit (not a run whose message names it).
bad_state() { "$gantry" runs | awk -v c="${bad:0:12}" '$5 == c {print $2; exit}'; }
for _ in $(seq 120); do
  [[ $(bad_state) =~ ^(succeeded|failed|cancelled)$ ]] && break
  sleep 1
done
[[ $(bad_state) == failed ]] || fail "the run of ${bad:0:12} did not fail"
[[ $("$gantry" history hello | tail -n +2 | wc -l) == "$releases_before" ]] || fail "a failed run made a release"
git -C "$config" fetch -q origin
[[ $(git -C "$config" rev-parse origin/main) == "$config_head" ]] || fail "a failed run committed to the config repository"
if skopeo inspect --tls-verify=false "docker://$REGISTRY_HOST/demo/hello:${bad:0:12}" >/dev/null 2>&1; then
  fail "a failed run pushed an image"
fi
echo "### the image is signed and attested, the config commit signed"
supply_chain_start=$SECONDS
"$gantry" image verify "$REGISTRY_HOST/demo/hello:$tag" --key "$qs/keys/signing.pub" >/dev/null ||
  fail "gantry image verify refuses the image CI built"
"$gantry" image verify-attestation "$REGISTRY_HOST/demo/hello:$tag" --key "$qs/keys/signing.pub" \
  --type slsaprovenance1 >/dev/null || fail "the image CI built has no provenance that verifies"
curl -fsS "$GANTRY_SERVER/api/v1/signing-keys" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["commits"]["allowed_signers"])' >"$qs/allowed_signers"
git -C "$config" -c gpg.format=ssh -c gpg.ssh.allowedSignersFile="$qs/allowed_signers" verify-commit "$config_head" 2>/dev/null ||
  fail "the release's config commit $config_head is not signed by the server's key"

echo "### an image pushed by hand is refused in prod, by its agent and by push deploy"
# An image made without Gantry (one layer, a file), pushed with skopeo: nothing signed it.
hand=$qs/handmade
python3 - "$hand" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
root = sys.argv[1]
os.makedirs(f"{root}/blobs/sha256")
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{root}/blobs/sha256/{d}", "wb").write(data)
    return {"digest": "sha256:" + d, "size": len(data)}
tar = io.BytesIO()
with tarfile.open(fileobj=tar, mode="w") as t:
    body = b"<h1>pushed by hand</h1>\n"
    info = tarfile.TarInfo("srv/www/index.html"); info.size = len(body)
    t.addfile(info, io.BytesIO(body))
layer = gzip.compress(tar.getvalue(), mtime=0)
config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
    "diff_ids": ["sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()]}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(layer)}]}).encode()
index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    **blob(manifest), "annotations": {"org.opencontainers.image.ref.name": "handmade"}}]}
json.dump(index, open(f"{root}/index.json", "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(f"{root}/oci-layout", "w"))
PY
skopeo copy -q --dest-tls-verify=false "oci:$hand:handmade" "docker://$REGISTRY_HOST/demo/hello:handmade"
hand_digest=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$REGISTRY_HOST/demo/hello:handmade")
sed -i 's|newTag: .*|newTag: handmade|' "$config/envs/prod/kustomization.yaml"
git -C "$config" -c user.name=Someone -c user.email=someone@example.com commit -qam "prod: run the hotfix image"
git -C "$config" push -q "${GIT_URL/http:\/\//http://$GIT_USER:$GIT_PASSWORD@}/hello-config.git" HEAD:main
hand_commit=$(git -C "$config" rev-parse HEAD)
prod_app() { get prod /apis/gantry.dev/v1alpha1/namespaces/gantry-system/applications/hello; }
# Prod's agent polls Git every 5 s in the cluster (30 s next to it): a refresh request makes it fetch now.
"$tools/kubectl" --kubeconfig "$GANTRY_STATE/clusters/prod/kubeconfig" -n gantry-system annotate --overwrite \
  applications.gantry.dev/hello "gantry.dev/refresh-requested=$(date +%s)" >/dev/null
refused() {
  prod_app | python3 -c '
import json, sys
a = json.load(sys.stdin)
for c in a.get("status", {}).get("conditions", []):
    if c["type"] == "ImageVerificationFailed" and c["status"] == "True":
        print(c["message"]); sys.exit(0)
sys.exit(1)'
}
for _ in $(seq 60); do refused >"$qs/refusal.txt" 2>/dev/null && break; sleep 1; done
message=$(cat "$qs/refusal.txt")
echo "prod's agent: $message"
for want in "demo/hello:handmade" "$hand_digest" "verification[0]" "of project hello" "no signature verifies"; do
  [[ $message == *"$want"* ]] || fail "prod's ImageVerificationFailed condition does not say $want: '$message'"
done
get prod /apis/apps/v1/namespaces/hello-prod/deployments/hello >"$qs/deploy-prod-after.json"
python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["spec"]["template"]["spec"]["containers"][0]["image"] != sys.argv[2])' \
  "$qs/deploy-prod-after.json" "$REGISTRY_HOST/demo/hello:$tag@$digest" || fail "prod's agent applied the unsigned image"
# The same Project for a push deploy to prod, run locally (not through the server) with a Cluster
# of its own in a state directory of its own.
push_home=$qs/push-home
unset GANTRY_SERVER GANTRY_TOKEN
export GANTRY_HOME=$push_home
"$gantry" cluster add prod --kubeconfig "$GANTRY_STATE/clusters/prod/kubeconfig" --env prod >/dev/null
"$gantry" env add prod >/dev/null
sed -e "s|GIT_URL|$GIT_URL|g" -e "s|APP_REPO|$GIT_URL/hello-app.git|g" -e "s|REGISTRY|$REGISTRY_HOST|g" \
  "$root/examples/hello/agent/prod/project.yaml" >"$push_home/config/project.yaml"
if "$gantry" deploy hello --repo "$GIT_URL/hello-config.git" --revision "$hand_commit" --env prod --project hello \
  --namespace hello-prod >"$qs/push-deploy.out" 2>&1; then
  cat "$qs/push-deploy.out"; fail "the push deploy of the unsigned image to prod succeeded"
fi
cat "$qs/push-deploy.out"
grep -q "demo/hello:handmade ($hand_digest): verification\[0\]" "$qs/push-deploy.out" ||
  fail "the push deploy's refusal does not name the image and the rule"
get prod /apis/apps/v1/namespaces/hello-prod/deployments/hello >"$qs/deploy-prod-after.json"
python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["spec"]["template"]["spec"]["containers"][0]["image"] != sys.argv[2])' \
  "$qs/deploy-prod-after.json" "$REGISTRY_HOST/demo/hello:$tag@$digest" || fail "the push deploy applied the unsigned image"
echo "supply-chain checks: $((SECONDS - supply_chain_start)) s"
echo "PASS"
