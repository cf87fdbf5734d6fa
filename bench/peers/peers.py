#!/usr/bin/env python3
"""The measuring half of bench/peers/run.sh (which starts the servers and builds the peers): one
GitOps tool's scenario on a fresh cluster, then the side-by-side table. See run.sh for the scenario.

  peers.py apps --tool gantry|flux|argocd REPO_URL APPS   prints the tool's APPS applications
  peers.py measure --tool gantry|flux|argocd --label L ...  runs the scenario, writes WORK/L.json
  peers.py table A.json B.json ...                   the table, each column's ratio to the first

Only the standard library; the apiserver client, /proc and Prometheus readers are the agent
benchmark's (bench/agent/scale.py).
"""

import argparse
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "agent"))
import scale  # noqa: E402  (bench/agent/scale.py)
from scale import Api, log, percentile, proc_cpu, proc_status, prom  # noqa: E402

NS = "bench"  # the namespace of the Applications, GitRepository and Kustomizations
WEBHOOK_SECRET = "bench"  # every tool's webhook secret (HMAC-SHA256 of the body, GitHub's signature)
ARGOCD_NS = "argocd"  # Argo CD's Applications live in its own namespace
# The resources either tool reads or writes; the apiserver's request counts are summed over these
# (leases, nodes and pods are kwok's and the controller manager's background, not the tools').
RESOURCES = ("applications", "appprojects", "kustomizations", "gitrepositories", "ocirepositories", "buckets",
             "externalartifacts", "helmcharts", "helmrepositories", "configmaps", "namespaces", "events",
             "secrets", "serviceaccounts")
WRITES = ("CREATE", "POST", "UPDATE", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION")

# SIGUSR1 to a `measure` process ends the wait it is in (for all in sync, or for a no-op pass) as if
# its timeout had passed: how far the tool got is recorded and the scenario goes on. For a long run
# on a deadline; the log says when it was used.
cut_short = False


def _cut_short(signum, frame):
    global cut_short
    cut_short = True
    log("SIGUSR1: ending the current wait now, as if its timeout had passed")


def timed_out(deadline):
    """True once `deadline` has passed or SIGUSR1 came (which then counts for this wait only)."""
    global cut_short
    if cut_short:
        cut_short = False
        return True
    return time.monotonic() > deadline

# --- the tools' objects ---------------------------------------------------------------------------


# Each tool's objects, formatted with i (the application's number), repo (its URL) and ns:
#  - gantry: an Application as bench/agent/scale.py's, without CreateNamespace (the namespaces exist
#    for every tool);
#  - argocd: the same sync policy (the default AppProject and the repository's credentials are
#    run.sh's; they exist before the clock starts, as Flux's Secret does);
#  - flux: a Kustomization per application, prune on, interval 10m (the value of `flux bootstrap`'s
#    own Kustomization and the Kustomization docs' examples), after FLUX_SOURCE.
APP = {
    "gantry": """---
apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {{name: a{i}, namespace: {ns}}}
spec:
  source: {{repoURL: "{repo}", path: apps/a{i}}}
  destination: {{namespace: a{i}}}
  syncPolicy: {{automated: {{prune: true, selfHeal: true}}}}""",
    "argocd": """---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: a{i}, namespace: {ns}}}
spec:
  project: default
  source: {{repoURL: "{repo}", path: apps/a{i}, targetRevision: main}}
  destination: {{server: "https://kubernetes.default.svc", namespace: a{i}}}
  syncPolicy: {{automated: {{prune: true, selfHeal: true}}}}""",
    "flux": """---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: a{i}, namespace: {ns}}}
spec:
  interval: 10m
  path: ./apps/a{i}
  prune: true
  targetNamespace: a{i}
  sourceRef: {{kind: GitRepository, name: config}}""",
}
# Flux's one GitRepository: interval 1m, `flux create source git`'s default and the docs' usual value.
FLUX_SOURCE = """---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: config, namespace: {ns}}}
spec:
  url: "{repo}"
  ref: {{branch: main}}
  interval: 1m
  secretRef: {{name: git-auth}}"""


def cmd_apps(a):
    ns = ARGOCD_NS if a.tool == "argocd" else NS
    if a.tool == "flux":
        print(FLUX_SOURCE.format(repo=a.repo_url, ns=ns))
    for i in range(a.apps):
        print(APP[a.tool].format(i=i, repo=a.repo_url, ns=ns))


def app_revisions(api, tool):
    """{name: revision the application is in sync at, or None}."""
    if tool in ("gantry", "argocd"):
        path = (f"/apis/gantry.dev/v1alpha1/namespaces/{NS}/applications" if tool == "gantry" else
                f"/apis/argoproj.io/v1alpha1/namespaces/{ARGOCD_NS}/applications")
        items = json.loads(api.get(path))["items"]
        out = {}
        for i in items:
            s = i.get("status", {}).get("sync", {})
            out[i["metadata"]["name"]] = s.get("revision") if s.get("status") == "Synced" else None
        return out
    # A Kustomization is in sync at the revision it last applied unless its last reconcile failed
    # (Ready=False). Each reconcile first sets Ready=Unknown ("Reconciliation in progress"), the
    # periodic ones (interval 10m) too: at 1,000 a pass takes longer than the interval, so some
    # applied Kustomizations are always being reconciled again, and requiring Ready=True of all at
    # once would never be met.
    items = json.loads(api.get(f"/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/{NS}/kustomizations"))["items"]
    out = {}
    for i in items:
        st = i.get("status", {})
        failed = any(c.get("type") == "Ready" and c.get("status") == "False" for c in st.get("conditions", []))
        rev = st.get("lastAppliedRevision", "")  # "main@sha1:<sha>"
        out[i["metadata"]["name"]] = rev.rsplit(":", 1)[-1] if rev and not failed else None
    return out


def wait_all_at(a, api, procs, revision, since, timeout, strict=True):
    """(seconds from `since` until every application is in sync at `revision`, how many are); after
    `timeout` seconds an error, or (None, how many are) if not strict."""
    deadline = since + timeout
    last = -1
    while True:
        for p in procs:
            p.check()
        revs = app_revisions(api, a.tool)
        n = sum(1 for r in revs.values() if r == revision)
        if n >= a.apps:
            return time.monotonic() - since, n
        if n != last:
            log(f"{a.label}: {n}/{a.apps} at {revision[:8]}")
            last = n
        if timed_out(deadline):
            if not strict:
                log(f"{a.label}: {n} of {a.apps} applications at {revision[:8]} after {timeout} s; not waiting longer")
                return None, n
            raise RuntimeError(f"{a.label}: only {n} of {a.apps} applications at {revision[:8]} after {timeout} s")
        time.sleep(2)


# --- the processes --------------------------------------------------------------------------------


class Proc(scale.Agent):
    """One controller process; its log in WORK/LABEL-NAME.log. stop() is the agent benchmark's:
    SIGTERM, then SIGKILL after 60 s."""

    def __init__(self, a, name, args, env, metrics_url, queue_metric):
        self.name = name
        self.log_path = os.path.join(a.work, f"{a.label}-{name}.log")
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, env=dict(os.environ, **env), stdout=self.logf, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.metrics_url = metrics_url
        self.queue_metric = queue_metric

    def check(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); see {self.log_path}")

    def metrics(self):
        self.check()
        return prom(subprocess.run(["curl", "-sf", "--max-time", "10", self.metrics_url], check=True,
                                   capture_output=True, text=True).stdout)

    def queue(self):
        return scale.total(self.metrics(), self.queue_metric) if self.queue_metric else 0



def wait_http(url, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while subprocess.run(["curl", "-sf", "-o", "/dev/null", "--max-time", "5", url]).returncode != 0:
        proc.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name}: {url} not answering after {timeout} s")
        time.sleep(0.5)


def start_tool(a):
    """Starts the tool's controllers, idle until their objects exist; returns [Proc]."""
    port = iter(a.ports)
    if a.tool == "gantry":
        listen, metrics = next(port), next(port)
        args = [a.gantry, "agent", "--kubeconfig", a.kubeconfig, "-n", NS,
                "--cache-dir", os.path.join(a.work, f"cache-{a.label}"), "--listen", f"127.0.0.1:{listen}",
                "--metrics-listen", f"127.0.0.1:{metrics}", "--git-credentials-env", "GIT_CREDS",
                "--webhook-secret-env", "WEBHOOK_SECRET", "--no-leader-election"] + a.args
        p = Proc(a, "gantry-agent", args, {"GIT_CREDS": a.git_creds, "WEBHOOK_SECRET": WEBHOOK_SECRET},
                 f"http://127.0.0.1:{metrics}/metrics", "gantry_agent_queue_depth")
        wait_http(f"http://127.0.0.1:{listen}/healthz", p)
        a.webhook_url = f"http://127.0.0.1:{listen}/webhook"
        return [p]
    if a.tool == "argocd":
        return start_argocd(a, port)
    procs = []
    env = {"KUBECONFIG": a.kubeconfig, "RUNTIME_NAMESPACE": NS}
    storage, m, h = next(port), next(port), next(port)
    storage_dir = os.path.join(a.work, f"storage-{a.label}")
    os.makedirs(storage_dir, exist_ok=True)
    procs.append(Proc(a, "source-controller", [
        a.source_controller, f"--storage-path={storage_dir}", f"--storage-addr=127.0.0.1:{storage}",
        f"--storage-adv-addr=127.0.0.1:{storage}", f"--metrics-addr=127.0.0.1:{m}",
        f"--health-addr=127.0.0.1:{h}", "--enable-leader-election=false", "--log-level=info"] + a.source_args,
        env, f"http://127.0.0.1:{m}/metrics", "workqueue_depth"))
    wait_http(f"http://127.0.0.1:{h}/readyz", procs[-1])
    m, h = next(port), next(port)
    procs.append(Proc(a, "kustomize-controller", [
        a.kustomize_controller, f"--metrics-addr=127.0.0.1:{m}", f"--health-addr=127.0.0.1:{h}",
        "--enable-leader-election=false", "--log-level=info"] + a.args,
        env, f"http://127.0.0.1:{m}/metrics", "workqueue_depth"))
    wait_http(f"http://127.0.0.1:{h}/readyz", procs[-1])
    if a.webhooks:
        # Flux's webhook path: notification-controller's Receiver server, which annotates the
        # GitRepository (reconcile.fluxcd.io/requestedAt) on a verified push event.
        m, h, events, receiver = next(port), next(port), next(port), next(port)
        procs.append(Proc(a, "notification-controller", [
            a.notification_controller, f"--metrics-addr=127.0.0.1:{m}", f"--health-addr=127.0.0.1:{h}",
            f"--events-addr=127.0.0.1:{events}", f"--receiverAddr=127.0.0.1:{receiver}",
            "--enable-leader-election=false", "--log-level=info"],
            env, f"http://127.0.0.1:{m}/metrics", "workqueue_depth"))
        wait_http(f"http://127.0.0.1:{h}/readyz", procs[-1])
        a.webhook_url = flux_receiver(a, receiver)
    return procs


def flux_receiver(a, port):
    """A GitHub Receiver for the GitRepository (the token is its HMAC secret); its URL once Ready."""
    manifest = f"""apiVersion: v1
kind: Secret
metadata: {{name: webhook-token, namespace: {NS}}}
stringData: {{token: {WEBHOOK_SECRET}}}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {{name: config, namespace: {NS}}}
spec:
  type: github
  events: [push]
  secretRef: {{name: webhook-token}}
  resources: [{{apiVersion: source.toolkit.fluxcd.io/v1, kind: GitRepository, name: config}}]
"""
    subprocess.run(["kubectl", "--kubeconfig", a.kubeconfig, "apply", "--server-side", "-f", "-"], input=manifest,
                   text=True, check=True, stdout=subprocess.DEVNULL)
    api = Api(a.kube_server, a.pki)
    deadline = time.monotonic() + 120
    while True:
        st = json.loads(api.get(f"/apis/notification.toolkit.fluxcd.io/v1/namespaces/{NS}/receivers/config")).get(
            "status", {})
        if st.get("webhookPath"):
            return f"http://127.0.0.1:{port}{st['webhookPath']}"
        if time.monotonic() > deadline:
            raise RuntimeError(f"{a.label}: the Receiver has no webhookPath after 120 s: {st}")
        time.sleep(0.5)


def start_argocd(a, port):
    """Redis (Debian's redis-server, no persistence), the repo server and the application controller,
    as Argo CD's own Procfile runs them out of cluster (ARGOCD_FAKE_IN_CLUSTER: the in-cluster
    destination is the kubeconfig's cluster)."""
    redis, repo, repo_metrics, ctl_metrics = next(port), next(port), next(port), next(port)
    procs = [Proc(a, "redis-server", ["redis-server", "--port", str(redis), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], {}, None, None)]
    env = {"KUBECONFIG": a.kubeconfig, "ARGOCD_FAKE_IN_CLUSTER": "true", "ARGOCD_GPG_ENABLED": "false",
           "ARGOCD_TLS_DATA_PATH": os.path.join(a.work, "argocd-tls"),
           "ARGOCD_SSH_DATA_PATH": os.path.join(a.work, "argocd-ssh"),
           # The repo server gives git GIT_ASKPASS=argocd: its own binary, found on PATH, answers
           # with the repository's credentials (as the image's /usr/local/bin/argocd does).
           "PATH": os.path.dirname(a.argocd) + os.pathsep + os.environ.get("PATH", "")}
    for d in ("argocd-tls", "argocd-ssh"):
        os.makedirs(os.path.join(a.work, d), exist_ok=True)
    procs.append(Proc(a, "argocd-repo-server", [
        a.argocd, "--port", str(repo), "--metrics-port", str(repo_metrics), "--redis", f"127.0.0.1:{redis}",
        "--loglevel", "info"], dict(env, ARGOCD_BINARY_NAME="argocd-repo-server"),
        f"http://127.0.0.1:{repo_metrics}/metrics", None))
    wait_http(procs[-1].metrics_url, procs[-1])
    procs.append(Proc(a, "argocd-application-controller", [
        a.argocd, "--namespace", ARGOCD_NS, "--redis", f"127.0.0.1:{redis}", "--repo-server", f"127.0.0.1:{repo}",
        "--metrics-port", str(ctl_metrics), "--loglevel", "info"] + a.args,
        dict(env, ARGOCD_BINARY_NAME="argocd-application-controller"),
        f"http://127.0.0.1:{ctl_metrics}/metrics", None))
    wait_http(procs[-1].metrics_url, procs[-1])
    if a.webhooks:
        # Argo CD's webhook path: the API server's /api/webhook (the secret is argocd-secret's
        # webhook.github.secret, run.sh's), which annotates each matching Application for a refresh.
        server, server_metrics = next(port), next(port)
        procs.append(Proc(a, "argocd-server", [
            a.argocd, "--namespace", ARGOCD_NS, "--redis", f"127.0.0.1:{redis}", "--repo-server", f"127.0.0.1:{repo}",
            "--port", str(server), "--metrics-port", str(server_metrics), "--insecure", "--disable-auth",
            "--dex-server", "http://127.0.0.1:1", "--loglevel", "info"],
            dict(env, ARGOCD_BINARY_NAME="argocd-server"), f"http://127.0.0.1:{server_metrics}/metrics", None))
        wait_http(procs[-1].metrics_url, procs[-1])
        wait_http(f"http://127.0.0.1:{server}/healthz", procs[-1])
        a.webhook_url = f"http://127.0.0.1:{server}/api/webhook"
    return procs


def sample(api, procs):
    return {"t": time.monotonic(), "api": scale.apiserver_by_verb(api, RESOURCES),
            "cpu": {p.name: proc_cpu(p.pid) for p in procs},
            "rss": {p.name: proc_status(p.pid)["VmRSS"] for p in procs}}


def per_minute(s0, s1):
    """Rates between two samples: CPU seconds, apiserver requests and writes per minute."""
    minutes = (s1["t"] - s0["t"]) / 60
    v0, v1 = s0["api"], s1["api"]
    verbs = {k: (v1.get(k, 0) - v0.get(k, 0)) / minutes for k in sorted(set(v0) | set(v1))
             if v1.get(k, 0) != v0.get(k, 0)}
    return {
        "seconds": s1["t"] - s0["t"],
        "cpu_s": {k: (s1["cpu"][k] - s0["cpu"][k]) / minutes for k in s0["cpu"]},
        "requests": sum(verbs.values()), "writes": sum(v for k, v in verbs.items() if k in WRITES),
        "by_verb": verbs,
    }


def wait_quiet(a, procs, quiet=5, timeout=600):
    """Until every process's work queue has been empty for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    empty_since = None
    while True:
        if all(p.queue() == 0 for p in procs):
            empty_since = empty_since or time.monotonic()
            if time.monotonic() - empty_since >= quiet:
                return
        else:
            empty_since = None
        if time.monotonic() > deadline:
            raise RuntimeError(f"{a.label}: work queues not empty after {timeout} s")
        time.sleep(0.5)


# --- commits --------------------------------------------------------------------------------------


def git(a, *args):
    return subprocess.run(["git", "-C", a.clone, "-c", "user.name=bench", "-c", "user.email=b@example.com", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def send_webhook(a, before, after, app, delivery):
    """The push event every tool's webhook path takes: GitHub's, signed with X-Hub-Signature-256.
    The repository is named by its clone URL (Gantry), its web URL (Argo CD: the URL without .git);
    Flux's Receiver only checks the signature and the event. The changed file is listed (Argo CD
    refreshes the Applications whose paths it touches, all of them without its
    manifest-generate-paths annotation)."""
    web = a.repo_url[:-len(".git")] if a.repo_url.endswith(".git") else a.repo_url
    body = json.dumps({
        "ref": "refs/heads/main", "before": before, "after": after,
        "repository": {"full_name": "org/config", "name": "config", "clone_url": a.repo_url, "html_url": web,
                       "default_branch": "main"},
        "commits": [{"id": after, "modified": [f"apps/a{app}/objects.yaml"], "added": [], "removed": []}],
        "head_commit": {"id": after}}).encode()
    sig = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(a.webhook_url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={sig}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        if r.status // 100 != 2:
            raise RuntimeError(f"{a.label}: webhook {a.webhook_url}: HTTP {r.status}")


def commit_round(a, api, procs, rnd, webhook):
    """A commit changing cm-0 of one application, found by the tool's webhook path or (webhook
    False) its polling at its default interval: seconds from `git push` returning to a watch seeing
    the new data, and to every application at the new revision (None: not within the timeouts)."""
    app = (rnd * 7919 + 13) % a.apps
    tag = f"{a.label}-{'hook' if webhook else 'poll'}-{rnd}"
    scale.write_app(a.clone, app, a.objects, tag)
    git(a, "add", "-A")
    git(a, "commit", "-qm", f"{tag}: a{app}")
    before, sha = git(a, "rev-parse", "HEAD~1"), git(a, "rev-parse", "HEAD")
    timeout = a.webhook_timeout if webhook else a.poll_timeout
    watch = scale.watch_cm0(api, app, timeout)
    git(a, "push", "-q", a.auth_url, "main")
    t0 = time.monotonic()
    if webhook:
        send_webhook(a, before, sha, app, tag)
    applied = scale.seconds_until_round(watch, app, tag, t0)
    if applied is None:
        log(f"{a.label}: {tag}: a{app}/cm-0 not applied within {timeout} s")
        everyone = None
    else:
        everyone, _ = wait_all_at(a, api, procs, sha, t0, a.all_timeout, strict=False)
    log(f"{a.label}: {tag} a{app}: applied after {applied} s, all at {sha[:8]} after {everyone} s")
    return {"round": rnd, "app": app, "applied_s": applied, "all_s": everyone}


# --- a no-op pass ---------------------------------------------------------------------------------

# How each tool is asked to reconcile every application once more with nothing changed (the
# resource, the annotation), and how it says it has: Gantry's `gantry app refresh` annotation (fetch,
# render, compare) acknowledged in status.lastRefreshRequest; Flux's `flux reconcile kustomization`
# annotation (what its interval does: fetch the artifact, build, dry-run apply) acknowledged in
# status.lastHandledReconcileAt; Argo CD's `argocd app get --refresh` annotation (what its 120 s
# resync does: compare against the manifests cached for the revision), removed when done.
REFRESH = {
    "gantry": ("applications.gantry.dev", NS, "gantry.dev/refresh-requested"),
    "flux": ("kustomizations.kustomize.toolkit.fluxcd.io", NS, "reconcile.fluxcd.io/requestedAt"),
    "argocd": ("applications.argoproj.io", ARGOCD_NS, "argocd.argoproj.io/refresh"),
}


def refreshed(a, api, token):
    """How many applications have handled the refresh request `token`."""
    path = {"gantry": f"/apis/gantry.dev/v1alpha1/namespaces/{NS}/applications",
            "flux": f"/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/{NS}/kustomizations",
            "argocd": f"/apis/argoproj.io/v1alpha1/namespaces/{ARGOCD_NS}/applications"}[a.tool]
    n = 0
    for i in json.loads(api.get(path))["items"]:
        st = i.get("status", {})
        if a.tool == "gantry":
            n += st.get("lastRefreshRequest") == token
        elif a.tool == "flux":
            n += st.get("lastHandledReconcileAt") == token
        else:
            n += REFRESH["argocd"][2] not in i["metadata"].get("annotations", {})
    return n


def noop(a, api, procs):
    """Every application reconciled once more with nothing changed: seconds from the first
    annotation to the last acknowledgement, the tools' CPU and the apiserver's requests meanwhile."""
    resource, ns, key = REFRESH[a.tool]
    token = "normal" if a.tool == "argocd" else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    s0 = sample(api, procs)
    subprocess.run(["kubectl", "--kubeconfig", a.kubeconfig, "-n", ns, "annotate", resource, "--all", "--overwrite",
                    f"{key}={token}"], check=True, stdout=subprocess.DEVNULL)
    annotated = time.monotonic() - s0["t"]
    deadline = s0["t"] + a.noop_timeout
    last = -1
    while True:
        for p in procs:
            p.check()
        n = refreshed(a, api, token)
        if n >= a.apps or timed_out(deadline):
            break
        if n != last:
            log(f"{a.label}: no-op: {n}/{a.apps} done")
            last = n
        time.sleep(1)
    s1 = sample(api, procs)
    rates = per_minute(s0, s1)
    minutes = rates["seconds"] / 60
    out = {"seconds": s1["t"] - s0["t"] if n >= a.apps else None, "done": n, "annotate_s": annotated,
           "cpu_s": {k: v * minutes for k, v in rates["cpu_s"].items()},
           "requests": rates["requests"] * minutes, "writes": rates["writes"] * minutes}
    log(f"{a.label}: no-op pass: {json.dumps(out)}")
    return out


# --- the scenario ---------------------------------------------------------------------------------


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cmd_measure(a):
    api = Api(a.kube_server, a.pki)
    k = ["kubectl", "--kubeconfig", a.kubeconfig]
    out = {"label": a.label, "tool": a.tool, "apps": a.apps, "objects": a.objects, "args": a.args,
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "loadavg_start": os.getloadavg(), "uptime_start": uptime()}
    log(f"{a.label}: {out['uptime_start']}")
    # The apiserver's background (kwok, the controller manager) on the same resources, before the tool.
    b0 = {"t": time.monotonic(), "api": scale.apiserver_by_verb(api, RESOURCES), "cpu": {}, "rss": {}}
    time.sleep(a.baseline_seconds)
    out["background"] = per_minute(b0, {"t": time.monotonic(), "api": scale.apiserver_by_verb(api, RESOURCES), "cpu": {}, "rss": {}})

    procs = start_tool(a)
    try:
        out["versions"] = {p.name: p.proc.args[0] for p in procs}
        # 1. From creating the applications to every one in sync at HEAD (or SYNC_TIMEOUT: how far).
        head = git(a, "rev-parse", "HEAD")
        s0 = sample(api, procs)
        t0 = time.monotonic()
        subprocess.run(k + ["apply", "--server-side", "-f", a.apps_file], check=True, stdout=subprocess.DEVNULL)
        out["create_s"] = time.monotonic() - t0
        out["synced_s"], out["synced_n"] = wait_all_at(a, api, procs, head, t0, a.sync_timeout, strict=False)
        s1 = sample(api, procs)
        out["sync_wall_s"] = s1["t"] - t0
        out["sync_cpu_s"] = {n: s1["cpu"][n] - s0["cpu"][n] for n in s0["cpu"]}
        out["sync_hwm_kib"] = {p.name: proc_status(p.pid)["VmHWM"] for p in procs}
        log(f"{a.label}: {out['synced_n']} of {a.apps} in sync after {out['sync_wall_s']:.1f} s; CPU {out['sync_cpu_s']}")
        if out["synced_s"] is None:
            log(f"{a.label}: not in sync within {a.sync_timeout} s: stopped, nothing more is measured")
            return

        # 2. Steady state: nothing changes for STEADY_SECONDS, after the queues have drained.
        try:
            wait_quiet(a, procs, timeout=300)
        except RuntimeError as e:
            log(f"{e}; measuring the steady state anyway")
            out["steady_not_quiet"] = True
        samples = [sample(api, procs)]
        rss_max = {p.name: 0 for p in procs}
        while time.monotonic() - samples[0]["t"] < a.steady_seconds:
            time.sleep(1)
            for p in procs:
                p.check()
                rss_max[p.name] = max(rss_max[p.name], proc_status(p.pid)["VmRSS"])
            if time.monotonic() - samples[-1]["t"] >= 60:
                samples.append(sample(api, procs))
        if time.monotonic() - samples[-1]["t"] > 1:
            samples.append(sample(api, procs))
        out["steady"] = {"minutes": [per_minute(x, y) for x, y in zip(samples, samples[1:])],
                         "total": per_minute(samples[0], samples[-1]), "rss_max_kib": rss_max,
                         "hwm_kib": {p.name: proc_status(p.pid)["VmHWM"] for p in procs}}
        log(f"{a.label}: steady {json.dumps(out['steady']['total'])}, RSS max {rss_max}")

        # 3. A no-op pass over every application.
        if a.noop:
            out["noop"] = noop(a, api, procs)
        # 4. Commits through the webhook path, then found by polling at the tool's default interval;
        # each round is kept as it ends, so that a run interrupted (SIGINT) keeps the rounds done.
        out["webhook"], out["poll"] = [], []
        for r in range(1, a.webhooks + 1):
            out["webhook"].append(commit_round(a, api, procs, r, True))
        for r in range(1, a.polls + 1):
            out["poll"].append(commit_round(a, api, procs, r, False))
        out["end_hwm_kib"] = {p.name: proc_status(p.pid)["VmHWM"] for p in procs}
    finally:
        for p in reversed(procs):
            p.stop()
        out["loadavg_end"] = os.getloadavg()
        out["uptime_end"] = uptime()
        log(f"{a.label}: {out['uptime_end']}")
        with open(os.path.join(a.work, f"{a.label}.json"), "w") as f:
            json.dump(out, f, indent=1)


# --- the table ------------------------------------------------------------------------------------


def cmd_table(a):
    runs = []
    for p in a.json:
        if os.path.exists(p):  # a run that failed before writing its JSON has no column
            with open(p) as f:
                runs.append(json.load(f))
    mib = 1 / 1024

    def steady(key):
        return lambda r: r["steady"]["total"][key]

    def rounds(kind, key, q):
        def get(r):
            v = [x[key] for x in r.get(kind, [])]
            return percentile(v, q) if v and None not in v else None
        return get

    rows = [
        ("time from creating the apps to all in sync", "s", lambda r: r["synced_s"], "{:.1f}"),
        ("applications in sync at the end of the sync phase", "", lambda r: r["synced_n"], "{:.0f}"),
        ("length of the sync phase (to all in sync, or stopped)", "s", lambda r: r["sync_wall_s"], "{:.1f}"),
        ("CPU used by the tool meanwhile (all its processes)", "s", lambda r: sum(r["sync_cpu_s"].values()), "{:.2f}"),
        ("apps brought in sync per CPU-second of the tool", "", lambda r: r["apps"] /
         max(sum(r["sync_cpu_s"].values()), 1e-9), "{:.1f}"),
        ("RSS peak at the end of the initial sync (sum of processes)", "MiB",
         lambda r: sum(r["sync_hwm_kib"].values()) * mib, "{:.1f}"),
        ("steady: RSS max (sum of processes)", "MiB", lambda r: sum(r["steady"]["rss_max_kib"].values()) * mib,
         "{:.1f}"),
        ("steady: CPU per minute (sum of processes)", "s", lambda r: sum(steady("cpu_s")(r).values()), "{:.2f}"),
        ("steady: apiserver requests per minute (tools' resources)", "", steady("requests"), "{:.1f}"),
        ("steady: apiserver writes per minute (tools' resources)", "", steady("writes"), "{:.1f}"),
        ("no-op pass over every app: time to all acknowledged", "s", lambda r: r["noop"]["seconds"], "{:.1f}"),
        ("no-op pass: CPU of the tool", "s", lambda r: sum(r["noop"]["cpu_s"].values()), "{:.2f}"),
        ("no-op pass: apiserver requests (tools' resources)", "", lambda r: r["noop"]["requests"], "{:.0f}"),
        ("commit → changed app applied, webhook, p50", "s", rounds("webhook", "applied_s", 0.5), "{:.2f}"),
        ("commit → changed app applied, webhook, p99", "s", rounds("webhook", "applied_s", 0.99), "{:.2f}"),
        ("commit → all apps at the new revision, webhook, p50", "s", rounds("webhook", "all_s", 0.5), "{:.1f}"),
        ("commit → changed app applied, polling, p50", "s", rounds("poll", "applied_s", 0.5), "{:.1f}"),
        ("commit → changed app applied, polling, max", "s", rounds("poll", "applied_s", 1), "{:.1f}"),
        ("commit → all apps at the new revision, polling, p50", "s", rounds("poll", "all_s", 0.5), "{:.1f}"),
        ("RSS peak over the whole run (sum of processes)", "MiB",
         lambda r: sum(r.get("end_hwm_kib", r["sync_hwm_kib"]).values()) * mib, "{:.1f}"),
    ]
    r0 = runs[0]
    print(f"\n{r0['apps']} applications × {r0['objects']} ConfigMaps, one repository, {r0['date']}\n")
    scale.print_table(runs, rows)
    print()
    for r in runs:
        print(f"- {r['label']} ({r['tool']}, flags {' '.join(r['args']) or 'defaults'}): `uptime` at the start: "
              f"{r.get('uptime_start', '?')}; at the end: {r.get('uptime_end', '?')}; sync CPU "
              f"{ {k: round(v, 2) for k, v in r.get('sync_cpu_s', {}).items()} }; {r.get('synced_n')} of {r['apps']} "
              f"in sync after {r.get('sync_wall_s', 0):.0f} s")
        if "steady" in r:
            st = r["steady"]["total"]
            print(f"  steady RSS max (MiB) { {k: round(v * mib, 1) for k, v in r['steady']['rss_max_kib'].items()} }; "
                  f"requests/min by verb { {k: round(v, 1) for k, v in st['by_verb'].items()} } (background before the "
                  f"tool started: {r['background']['requests']:.1f}/min); per minute: "
                  + "; ".join(f"CPU {sum(m['cpu_s'].values()):.2f} s, {m['requests']:.0f} req, {m['writes']:.0f} writes"
                              for m in r["steady"]["minutes"]))
        if "noop" in r:
            n = r["noop"]
            took = "–" if n["seconds"] is None else f"{n['seconds']:.1f}"
            print(f"  no-op: {n['done']}/{r['apps']} acknowledged after {took} s (annotating took "
                  f"{n['annotate_s']:.1f} s); CPU { {k: round(v, 1) for k, v in n['cpu_s'].items()} }; "
                  f"{n['requests']:.0f} requests, {n['writes']:.0f} writes")
        for kind in ("webhook", "poll"):
            if r.get(kind):
                print(f"  {kind} rounds (changed app / all apps, s): " + ", ".join(
                    f"{'–' if p['applied_s'] is None else round(p['applied_s'], 2)}/"
                    f"{'–' if p['all_s'] is None else round(p['all_s'], 1)}" for p in r[kind]))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("apps")
    s.add_argument("--tool", choices=("gantry", "flux", "argocd"), required=True)
    s.add_argument("repo_url")
    s.add_argument("apps", type=int)
    s = sub.add_parser("measure")
    s.add_argument("--tool", choices=("gantry", "flux", "argocd"), required=True)
    for k in ("label", "work", "clone", "kube-server", "pki", "kubeconfig", "auth-url", "apps-file"):
        s.add_argument(f"--{k}", required=True)
    for k in ("gantry", "source-controller", "kustomize-controller", "notification-controller", "argocd", "git-creds",
              "repo-url"):
        s.add_argument(f"--{k}", default="")
    for k in ("apps", "objects"):
        s.add_argument(f"--{k}", type=int, required=True)
    s.add_argument("--ports", type=lambda v: [int(x) for x in v.split(",")], required=True)
    s.add_argument("--args", default="", help="extra flags of gantry agent / kustomize-controller / application controller")
    s.add_argument("--source-args", default="", help="extra flags of source-controller")
    s.add_argument("--polls", type=int, default=3)
    s.add_argument("--webhooks", type=int, default=0, help="commits through each tool's webhook path")
    s.add_argument("--noop", type=int, default=1, help="1: measure a no-op pass over every application")
    s.add_argument("--noop-timeout", type=float, default=900)
    s.add_argument("--webhook-timeout", type=float, default=300)
    s.add_argument("--steady-seconds", type=float, default=120)
    s.add_argument("--baseline-seconds", type=float, default=30)
    s.add_argument("--sync-timeout", type=float, default=2400,
                   help="seconds to wait for all in sync; then how far the tool got is recorded and it is stopped")
    s.add_argument("--poll-timeout", type=float, default=900)
    s.add_argument("--all-timeout", type=float, default=900,
                   help="seconds a poll round waits for every application at the new commit")
    s = sub.add_parser("table")
    s.add_argument("json", nargs="+")
    a = p.parse_args()
    if a.cmd == "apps":
        cmd_apps(a)
    elif a.cmd == "measure":
        signal.signal(signal.SIGUSR1, _cut_short)
        # SIGTERM (SIGINT is ignored in a backgrounded run.sh) ends the scenario where it stands: the
        # tool's processes are stopped and its JSON written with what was measured.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(f"{a.label}: SIGTERM: stopped"))
        a.args, a.source_args = a.args.split(), a.source_args.split()
        cmd_measure(a)
    else:
        cmd_table(a)


if __name__ == "__main__":
    main()
