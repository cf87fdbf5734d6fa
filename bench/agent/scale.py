#!/usr/bin/env python3
"""The measuring half of bench/agent/scale.sh (which starts the servers): see the comment there.

  scale.py repo DIR APPS OBJECTS          writes apps/aN/objects.yaml (OBJECTS ConfigMaps each)
  scale.py apps REPO_URL APPS             prints the Applications (namespace bench)
  scale.py measure --label L --gantry BIN --work DIR ...   runs one binary's scenario, writes DIR/L.json
  scale.py table A.json [B.json]          prints the table (and B/A ratios)

Only the standard library: it runs wherever the test/env scripts run.
"""

import argparse
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse

# --- the repository ------------------------------------------------------------------------------


def objects_yaml(app, objects, round_=None):
    out = []
    for o in range(objects):
        data = f'app: "a{app}", index: "{o}"'
        if o == 0 and round_ is not None:
            data += f', round: "{round_}"'
        out.append(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{o}}}\ndata: {{{data}}}\n---\n")
    return "".join(out)


def write_app(clone, app, objects, round_=None):
    d = os.path.join(clone, "apps", f"a{app}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "objects.yaml"), "w") as f:
        f.write(objects_yaml(app, objects, round_))


def cmd_repo(a):
    for app in range(a.apps):
        write_app(a.dir, app, a.objects)


def cmd_apps(a):
    for app in range(a.apps):
        print(f"""---
apiVersion: gantry.dev/v1alpha1
kind: Application
metadata: {{name: a{app}, namespace: bench}}
spec:
  source: {{repoURL: "{a.repo_url}", path: apps/a{app}}}
  destination: {{namespace: a{app}}}
  syncPolicy: {{automated: {{prune: true, selfHeal: true}}, syncOptions: [CreateNamespace=true]}}""")


# --- the cluster and the agent -------------------------------------------------------------------


class Api:
    """The apiserver as the admin (client certificate)."""

    def __init__(self, server, pki):
        u = urllib.parse.urlparse(server)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        self.ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))

    def conn(self, timeout=60):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def get(self, path):
        c = self.conn()
        try:
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {r.status}: {body[:300]!r}")
            return body
        finally:
            c.close()

    def watch(self, path, resource_version, timeout):
        """An open watch from resource_version; the caller reads lines from the response."""
        c = self.conn(timeout=timeout)
        sep = "&" if "?" in path else "?"
        c.request("GET", f"{path}{sep}watch=1&resourceVersion={resource_version}&timeoutSeconds={int(timeout)}")
        r = c.getresponse()
        if r.status != 200:
            raise RuntimeError(f"watch {path}: HTTP {r.status}: {r.read()[:300]!r}")
        return c, r


def prom(text):
    """Prometheus text → {name: {labels-string: value}}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            out.setdefault(m.group(1), {})[m.group(2) or ""] = float(m.group(3))
    return out


def total(metrics, name, label_filter=None):
    return sum(v for k, v in metrics.get(name, {}).items() if label_filter is None or label_filter in k)


def apiserver_by_verb(api, resources):
    """apiserver_request_total summed by verb over the given resources."""
    m = prom(api.get("/metrics").decode())
    out = {}
    for labels, v in m.get("apiserver_request_total", {}).items():
        res = re.search(r'resource="([^"]*)"', labels)
        verb = re.search(r'verb="([^"]*)"', labels)
        if res and verb and res.group(1) in resources:
            out[verb.group(1)] = out.get(verb.group(1), 0) + v
    return out


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "Threads"):
                out[k] = int(v.split()[0])
    return out  # kB, kB, count


def proc_cpu(pid, children=False):
    """utime+stime (or cutime+cstime: reaped children) in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
    i = 13 if children else 11
    return (int(fields[i]) + int(fields[i + 1])) / os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Agent:
    def __init__(self, a, interval, tag):
        self.a = a
        self.log_path = os.path.join(a.work, f"agent-{a.label}-{tag}.log")
        self.port = a.port
        self.metrics_port = a.metrics_port
        env = dict(os.environ, WEBHOOK_SECRET="bench", GIT_CREDS=a.git_creds)
        args = [a.gantry, "agent", "--kubeconfig", a.kubeconfig, "-n", "bench",
                "--cache-dir", os.path.join(a.work, f"cache-{a.label}"),
                "--listen", f"127.0.0.1:{a.port}", "--metrics-listen", f"127.0.0.1:{a.metrics_port}",
                "--webhook-secret-env", "WEBHOOK_SECRET", "--git-credentials-env", "GIT_CREDS",
                "--no-leader-election", "--interval", interval, "--workers", str(a.workers)] + a.agent_args
        self.logf = open(self.log_path, "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, env=env, stdout=self.logf, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def check(self):
        if not self.alive():
            raise RuntimeError(f"the agent exited ({self.proc.returncode}); see {self.log_path}")

    def metrics(self):
        deadline = time.monotonic() + 30
        while True:
            self.check()
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
                c.request("GET", "/metrics")
                r = c.getresponse()
                body = r.read().decode()
                c.close()
                if r.status == 200:
                    return prom(body)
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"no /metrics on 127.0.0.1:{self.metrics_port}")
            time.sleep(0.2)

    def counters(self):
        m = self.metrics()
        return {
            "reconciles": total(m, "gantry_agent_reconciles_total"),
            "failed": total(m, "gantry_agent_reconciles_total", 'result="failed"'),
            "renders": total(m, "gantry_agent_renders_total") if "gantry_agent_renders_total" in m else None,
            "api": next((total(m, n) for n in ("gantry_agent_api_requests", "gantry_agent_api_requests_total")
                         if n in m), None),
            "queue": total(m, "gantry_agent_queue_depth"),
        }

    def log_size(self):
        self.logf.flush()
        return os.path.getsize(self.log_path)

    def reconcile_lines(self, since):
        """Lines 'agent: NS/NAME synced|stopped|reconciled ...' written after byte offset `since`."""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return len(re.findall(r"agent: \S+ (?:synced|stopped|reconciled) ", text))

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def wait_all_synced(a, api, agent, revision, timeout):
    """Seconds from the agent's start until every Application reports Synced at `revision`."""
    deadline = time.monotonic() + timeout
    last = -1
    while True:
        agent.check()
        items = json.loads(api.get("/apis/gantry.dev/v1alpha1/namespaces/bench/applications"))["items"]
        n = sum(1 for i in items if i.get("status", {}).get("sync", {}).get("status") == "Synced"
                and i["status"]["sync"].get("revision") == revision)
        if n >= a.apps:
            return time.monotonic() - agent.started
        if n != last:
            log(f"{a.label}: {n}/{a.apps} Synced at {revision[:8]}")
            last = n
        if time.monotonic() > deadline:
            raise RuntimeError(f"{a.label}: only {n} of {a.apps} Applications Synced after {timeout} s")
        time.sleep(1 if a.apps <= 200 else 2)


def wait_quiet(a, agent, since, base, timeout=1800):
    """Waits until the agent's reconcile and render counters have not moved for a.quiet seconds,
    its queue is empty and at least one reconcile happened since `base`. Returns (seconds from
    `since` to the last counter change, counters then)."""
    deadline = time.monotonic() + timeout
    prev = agent.counters()
    changed_at = time.monotonic()
    while True:
        time.sleep(0.25)
        c = agent.counters()
        key = (c["reconciles"], c["renders"])
        if key != (prev["reconciles"], prev["renders"]):
            changed_at = time.monotonic()
        prev = c
        if (c["queue"] == 0 and c["reconciles"] > base["reconciles"]
                and time.monotonic() - changed_at >= a.quiet):
            return changed_at - since, c
        if time.monotonic() > deadline:
            raise RuntimeError(f"{a.label}: the agent did not settle within {timeout} s")


class Git:
    def __init__(self, a):
        self.a = a

    def run(self, *args):
        return subprocess.run(["git", "-C", self.a.clone, "-c", "user.name=bench", "-c", "user.email=b@example.com",
                               *args], check=True, capture_output=True, text=True).stdout.strip()

    def head(self):
        return self.run("rev-parse", "HEAD")


def webhook(a, before, after, delivery):
    body = json.dumps({"ref": "refs/heads/main", "before": before, "after": after,
                       "repository": {"full_name": "org/config", "clone_url": a.repo_url}, "commits": []}).encode()
    sig = hmac.new(b"bench", body, hashlib.sha256).hexdigest()
    c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
    c.request("POST", "/webhook", body=body, headers={
        "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": f"sha256={sig}",
        "Content-Type": "application/json"})
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    if r.status != 202:
        raise RuntimeError(f"webhook: HTTP {r.status}: {text}")


def watch_cm0(api, app, timeout):
    """An open watch on ConfigMap a{app}/cm-0 from now: the resourceVersion of a list, not the object's
    own (the version it was last written at, which the apiserver's watch cache may have dropped long
    ago: 410 Expired when a tool writes many other objects meanwhile)."""
    path = f"/api/v1/namespaces/a{app}/configmaps"
    selector = "fieldSelector=metadata.name%3Dcm-0"
    listed = json.loads(api.get(f"{path}?{selector}"))
    return api.watch(f"{path}?{selector}", listed["metadata"]["resourceVersion"], timeout)


def seconds_until_round(watch, app, round_, t0):
    """Seconds from t0 until the watch (watch_cm0's) delivers cm-0 with data.round == round_, or
    None if the watch ends first; closes the watch."""
    conn, resp = watch
    try:
        for line in iter(resp.readline, b""):
            ev = json.loads(line)
            if ev.get("type") == "ERROR":
                raise RuntimeError(f"watch of a{app}/cm-0: {ev}")
            if (ev.get("object", {}).get("data") or {}).get("round") == round_:
                return time.monotonic() - t0
        return None
    finally:
        conn.close()


def push_round(a, api, agent, git, rnd):
    """One push changing cm-0 of one application; returns its measurements."""
    app = (rnd * 7919 + 13) % a.apps
    write_app(a.clone, app, a.objects, rnd)
    git.run("add", "-A")
    git.run("commit", "-qm", f"round {rnd}: a{app}")
    before, after = git.run("rev-parse", "HEAD~1"), git.head()
    git.run("push", "-q", a.auth_url, "main")
    watch = watch_cm0(api, app, a.push_timeout)
    base = agent.counters()
    log_at = agent.log_size()
    t0 = time.monotonic()
    webhook(a, before, after, f"{a.label}-{rnd}")
    latency = seconds_until_round(watch, app, str(rnd), t0)
    if latency is None:
        raise RuntimeError(f"{a.label}: round {rnd}: a{app}/cm-0 not applied within {a.push_timeout} s")
    settle, end = wait_quiet(a, agent, t0, base)
    r = {
        "round": rnd, "app": app, "latency": latency, "settle": settle,
        "reconciles": end["reconciles"] - base["reconciles"],
        "renders": None if end["renders"] is None else end["renders"] - base["renders"],
        "log_reconciles": agent.reconcile_lines(log_at),
    }
    log(f"{a.label}: round {rnd} a{app}: {latency * 1000:.0f} ms, settled {settle:.1f} s, "
        f"{r['reconciles']:.0f} reconciles, renders {r['renders']}, log lines {r['log_reconciles']}")
    return r


CI_SOURCE = r"""
#include <algorithm>
#include <iostream>
#include <map>
#include <regex>
#include <string>
#include <vector>
template <int N> struct F { static int v() { return F<N - 1>::v() + N; } };
template <> struct F<0> { static int v() { return 0; } };
int main() {
  std::map<std::string, std::vector<std::regex>> m;
  m["a"].emplace_back("(a+)+b");
  std::cout << F<400>::v() << m.size() << '\n';
}
"""


class CiLoad:
    """The stand-in for a CI build: a shell loop compiling a small, template- and regex-heavy C++
    file with -O2, one compile at a time, so it keeps one core busy (or CI_LOAD, a command)."""

    def __init__(self, a):
        src = os.path.join(a.work, "ci-load.cc")
        with open(src, "w") as f:
            f.write(CI_SOURCE)
        cmd = a.ci_load or f"while :; do c++ -std=c++20 -O2 -c -o /dev/null {src}; done"
        self.proc = subprocess.Popen(["bash", "-c", cmd], start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.t0 = time.monotonic()
        self.cmd = cmd

    def cpu(self):
        """CPU seconds of the loop so far: its reaped children, and what runs in its group now."""
        cpu = proc_cpu(self.proc.pid, children=True)
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:  # field 5, pgrp: the loop leads its own session
                cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return cpu

    def stop(self):
        """Stops the loop; returns the cores it kept busy on average."""
        cpu = self.cpu()
        wall = time.monotonic() - self.t0
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait()
        return cpu / wall if wall > 0 else 0


def percentile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def summarize_rounds(rounds):
    lat = [r["latency"] for r in rounds]
    renders = [r["renders"] for r in rounds]
    return {
        "p50_ms": percentile(lat, 0.5) * 1000, "p99_ms": percentile(lat, 0.99) * 1000,
        "settle_p50_s": percentile([r["settle"] for r in rounds], 0.5),
        "reconciles_per_push": percentile([r["reconciles"] for r in rounds], 0.5),
        "renders_per_push": None if None in renders else percentile(renders, 0.5),
        "log_reconciles_per_push": percentile([r["log_reconciles"] for r in rounds], 0.5),
        "rounds": rounds,
    }


def cmd_measure(a):
    api = Api(a.kube_server, a.pki)
    git = Git(a)
    out = {"label": a.label, "gantry": a.gantry, "apps": a.apps, "objects": a.objects, "pushes": a.pushes,
           "workers": a.workers, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "loadavg_start": os.getloadavg()[0]}

    # 1. Cold start, then pushes (idle, then with the CI stand-in), one agent with a long interval so
    # no periodic refresh falls in the window.
    agent = Agent(a, "60m", "pushes")
    try:
        out["cold_start_s"] = wait_all_synced(a, api, agent, git.head(), a.cold_timeout)
        log(f"{a.label}: all {a.apps} Synced after {out['cold_start_s']:.1f} s")
        _, c = wait_quiet(a, agent, agent.started, {"reconciles": -1})
        st = proc_status(agent.pid)
        out["rss_after_cold_kib"], out["hwm_after_cold_kib"] = st["VmRSS"], st["VmHWM"]
        out["threads"] = st["Threads"]
        out["idle"] = summarize_rounds([push_round(a, api, agent, git, i) for i in range(1, a.pushes + 1)])
        st = proc_status(agent.pid)
        out["rss_steady_kib"] = st["VmRSS"]
        load = CiLoad(a)
        try:
            time.sleep(2)
            rounds = [push_round(a, api, agent, git, i) for i in range(a.pushes + 1, 2 * a.pushes + 1)]
        finally:
            out["ci_cores"] = load.stop()
        out["ci_load"] = load.cmd
        out["loaded"] = summarize_rounds(rounds)
        st = proc_status(agent.pid)
        out["hwm_kib"], out["rss_end_kib"] = st["VmHWM"], st["VmRSS"]
    finally:
        agent.stop()

    # 2. No-op reconciles: everything in sync, a short interval; a window of steady refreshes.
    agent = Agent(a, a.noop_interval, "noop")
    try:
        wait_all_synced(a, api, agent, git.head(), a.cold_timeout)
        # The restart reconciles every application once; the window starts after that and one more
        # interval, so it sees periodic refreshes only.
        deadline = time.monotonic() + a.cold_timeout
        while agent.counters()["reconciles"] < a.apps:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{a.label}: fewer than {a.apps} reconciles after the restart")
            time.sleep(1)
        time.sleep(parse_seconds(a.noop_interval))
        resources = ("applications", "configmaps", "namespaces", "events")
        m0, v0, cpu0, t0 = agent.counters(), apiserver_by_verb(api, resources), proc_cpu(agent.pid), time.monotonic()
        time.sleep(a.noop_seconds)
        m1, v1, cpu1, t1 = agent.counters(), apiserver_by_verb(api, resources), proc_cpu(agent.pid), time.monotonic()
        n = m1["reconciles"] - m0["reconciles"]
        if n <= 0:
            raise RuntimeError(f"{a.label}: no reconciles in the {a.noop_seconds} s no-op window")
        out["noop"] = {
            "interval": a.noop_interval, "seconds": t1 - t0, "reconciles": n,
            "failed": m1["failed"] - m0["failed"],
            "renders": None if m1["renders"] is None else m1["renders"] - m0["renders"],
            "api_per_reconcile": None if m1["api"] is None else (m1["api"] - m0["api"]) / n,
            "apiserver_per_reconcile": {k: (v1.get(k, 0) - v0.get(k, 0)) / n for k in sorted(set(v0) | set(v1))
                                        if v1.get(k, 0) != v0.get(k, 0)},
            "cpu_ms_per_reconcile_per_100": (cpu1 - cpu0) * 1000 / n / (a.objects / 100),
            "cpu_cores": (cpu1 - cpu0) / (t1 - t0),
        }
        out["noop"]["hwm_kib"] = proc_status(agent.pid)["VmHWM"]
    finally:
        agent.stop()
    out["loadavg_end"] = os.getloadavg()[0]
    with open(os.path.join(a.work, f"{a.label}.json"), "w") as f:
        json.dump(out, f, indent=1)


def parse_seconds(d):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", d)
    if not m:
        raise SystemExit(f"scale.py: bad duration {d!r} (expected e.g. 10s, 5m)")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


# --- the table -----------------------------------------------------------------------------------


def cmd_table(a):
    runs = []
    for p in a.json:
        with open(p) as f:
            runs.append(json.load(f))
    r0 = runs[0]

    def mib(k):
        return lambda r: r[k] / 1024

    def renders(section):
        def f(r):
            s = r[section]
            return s["renders_per_push"] if s["renders_per_push"] is not None else s["log_reconciles_per_push"]
        return f

    def renders_src(r, section):
        return "metric" if r[section]["renders_per_push"] is not None else "log lines"

    def verbs(r):
        return ", ".join(f"{k} {v:.2f}" for k, v in r["noop"]["apiserver_per_reconcile"].items()) or "0"

    rows = [
        ("cold start: all Applications Synced", "s", lambda r: r["cold_start_s"], "{:.1f}"),
        ("agent RSS peak (VmHWM, cold start + pushes)", "MiB", mib("hwm_kib"), "{:.1f}"),
        ("agent RSS steady (VmRSS, idle after the idle pushes)", "MiB", mib("rss_steady_kib"), "{:.1f}"),
        ("agent RSS peak, no-op phase (VmHWM, restart + --interval NOOP_INTERVAL)", "MiB",
         lambda r: r["noop"]["hwm_kib"] / 1024, "{:.1f}"),
        ("webhook → ConfigMap applied, p50 (idle)", "ms", lambda r: r["idle"]["p50_ms"], "{:.0f}"),
        ("webhook → ConfigMap applied, p99 (idle)", "ms", lambda r: r["idle"]["p99_ms"], "{:.0f}"),
        ("webhook → ConfigMap applied, p50 (CI build alongside)", "ms", lambda r: r["loaded"]["p50_ms"], "{:.0f}"),
        ("webhook → ConfigMap applied, p99 (CI build alongside)", "ms", lambda r: r["loaded"]["p99_ms"], "{:.0f}"),
        ("push settled: last reconcile after the webhook, p50 (idle)", "s",
         lambda r: r["idle"]["settle_p50_s"], "{:.1f}"),
        ("reconciles per push (gantry_agent_reconciles_total), p50", "", lambda r: r["idle"]["reconciles_per_push"],
         "{:.0f}"),
        ("renders per push, p50 (counted from: see below)", "", renders("idle"), "{:.0f}"),
        ("no-op: API requests per reconcile (gantry_agent_api_requests)", "",
         lambda r: r["noop"]["api_per_reconcile"], "{:.2f}"),
        ("no-op: agent CPU per reconcile", "ms",
         lambda r: r["noop"]["cpu_ms_per_reconcile_per_100"] * r["objects"] / 100, "{:.2f}"),
        ("no-op: agent CPU per reconcile per 100 objects", "ms",
         lambda r: r["noop"]["cpu_ms_per_reconcile_per_100"], "{:.2f}"),
        ("no-op: reconciles per second in the window", "/s",
         lambda r: r["noop"]["reconciles"] / r["noop"]["seconds"], "{:.1f}"),
    ]
    print(f"\nAgent scale benchmark: {r0['apps']} Applications × {r0['objects']} ConfigMaps, one repository, "
          f"{r0['pushes']} pushes per phase, --workers {r0['workers']}, {r0['date']}")
    loads = ", ".join("{} {:.1f}".format(r["label"], r["loadavg_start"]) for r in runs)
    print(f"load average (1 min) when each run began: {loads}\n")
    print_table(runs, rows)
    print()
    for r in runs:
        print(f"- {r['label']}: {r['gantry']}; renders counted from "
              f"{renders_src(r, 'idle')}; CI stand-in kept {r['ci_cores']:.2f} cores busy "
              f"(`{r['ci_load']}`); no-op window {r['noop']['seconds']:.0f} s at --interval "
              f"{r['noop']['interval']}, {r['noop']['reconciles']:.0f} reconciles ({r['noop']['failed']:.0f} failed), "
              f"agent {r['noop']['cpu_cores']:.2f} cores; apiserver requests per no-op reconcile on "
              f"applications/configmaps/namespaces/events: {verbs(r)}")


def print_table(runs, rows):
    """A Markdown table: a row per (name, unit, get(run), format), a column per run (its label),
    then each later run's ratio to the first."""
    names = [r["label"] for r in runs]
    head = "| metric | unit | " + " | ".join(names) + "".join(f" | {n}/{names[0]}" for n in names[1:]) + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, unit, get, fmt in rows:
        vals = []
        for r in runs:
            try:
                vals.append(get(r))
            except (KeyError, TypeError, ValueError):
                vals.append(None)
        cells = [fmt.format(v) if v is not None else "–" for v in vals]
        for v in vals[1:]:
            if v is None or vals[0] is None:
                cells.append("–")
            elif vals[0]:
                cells.append(f"{v / vals[0]:.2f}")
            else:
                cells.append("1.00" if v == 0 else "∞")
        print(f"| {name} | {unit} | " + " | ".join(cells) + " |")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("repo")
    s.add_argument("dir")
    s.add_argument("apps", type=int)
    s.add_argument("objects", type=int)
    s = sub.add_parser("apps")
    s.add_argument("repo_url")
    s.add_argument("apps", type=int)
    s = sub.add_parser("measure")
    for k in ("label", "gantry", "work", "clone", "kube-server", "pki", "kubeconfig", "repo-url", "auth-url",
              "git-creds"):
        s.add_argument(f"--{k}", required=True)
    for k in ("apps", "objects", "pushes", "port", "metrics-port"):
        s.add_argument(f"--{k}", type=int, required=True)
    s.add_argument("--workers", type=int, default=4)
    s.add_argument("--quiet", type=float, default=3)
    s.add_argument("--cold-timeout", type=float, default=3600)
    s.add_argument("--push-timeout", type=float, default=300)
    s.add_argument("--noop-interval", default="10s")
    s.add_argument("--noop-seconds", type=float, default=60)
    s.add_argument("--ci-load", default="")
    s.add_argument("--agent-args", default="")
    s = sub.add_parser("table")
    s.add_argument("json", nargs="+")
    a = p.parse_args()
    if a.cmd == "repo":
        cmd_repo(a)
    elif a.cmd == "apps":
        cmd_apps(a)
    elif a.cmd == "measure":
        a.agent_args = a.agent_args.split()
        parse_seconds(a.noop_interval)
        cmd_measure(a)
    else:
        cmd_table(a)


if __name__ == "__main__":
    main()
