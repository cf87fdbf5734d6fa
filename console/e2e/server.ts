// Starts `gantry server` (GANTRY_BINARY) for the browser tests: a SQLite store and an API token in
// a temporary directory, a file:// repository with a one-step pipeline, listening on a port the
// kernel picks; with GANTRY_KUBE_CLUSTER, a Kubernetes test cluster it deploys to (below). Its URL
// and token reach the tests in GANTRY_URL and GANTRY_TOKEN; the returned function stops it all.
import {spawn, execFileSync} from 'node:child_process';
import {chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';

export const kToken = 'console-e2e-token-0123456789abcdef';
export const kSecret = 'console-e2e-hook-secret';

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, {
    cwd,
    env: {...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e'},
  }).toString().trim();
}

export default async function globalSetup(): Promise<() => Promise<void>> {
  const binary = process.env.GANTRY_BINARY;
  if (!binary) throw new Error('GANTRY_BINARY must name the gantry binary (ctest sets it)');
  const root = mkdtempSync(join(tmpdir(), 'gantry-console-'));
  // A server running as root runs steps as uid 65533, which must reach the data directory.
  chmodSync(root, 0o711);
  const repo = join(root, 'repo');
  mkdirSync(join(repo, '.gantry'), {recursive: true});
  // The step's output has ANSI colours, which the console shows as such.
  writeFileSync(join(repo, '.gantry', 'pipeline.yaml'),
                'shell: sh\nsteps:\n  hello:\n    run: printf "\\033[32mgreen hello\\033[0m from the console test\\n"\n');
  git(repo, 'init', '-q', '-b', 'main');
  git(repo, 'add', '-A');
  git(repo, 'commit', '-q', '-m', 'init');
  const commit = git(repo, 'rev-parse', 'HEAD');

  // With a Kubernetes test cluster (GANTRY_KUBE_CLUSTER names test/env/kube-cluster.sh), the server
  // also deploys: one push environment, dev, on that cluster, from a config repository holding
  // the app "web" (a Deployment and a ConfigMap) under envs/dev.
  const push: string[] = [];
  const clusterScript = process.env.GANTRY_KUBE_CLUSTER;
  let clusterDir = '';
  if (clusterScript) {
    clusterDir = join(root, 'cluster');
    const out = execFileSync('bash', [clusterScript, 'start', clusterDir, '--name', 'console-e2e']).toString();
    const kubeconfig = out.match(/^KUBECONFIG=(.*)$/m)?.[1];
    if (!kubeconfig) throw new Error(`${clusterScript} start printed no KUBECONFIG:\n${out}`);
    const deliver = join(root, 'deliver');
    mkdirSync(deliver);
    writeFileSync(join(deliver, 'dev.yaml'), `apiVersion: gantry.dev/v1alpha1
kind: Cluster
metadata: {name: dev-1}
spec: {kubeconfig: ${kubeconfig}, environment: dev}
---
apiVersion: gantry.dev/v1alpha1
kind: Environment
metadata: {name: dev}
spec: {}
`);
    const config = join(root, 'config');
    mkdirSync(join(config, 'envs', 'dev'), {recursive: true});
    writeFileSync(join(config, 'envs', 'dev', 'web.yaml'), `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "registry.example/web:1"}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, namespace: default}
data: {greeting: hello}
`);
    git(config, 'init', '-q', '-b', 'main');
    git(config, 'add', '-A');
    git(config, 'commit', '-q', '-m', 'web in dev');
    process.env.GANTRY_CONFIG_COMMIT = git(config, 'rev-parse', 'HEAD');
    process.env.GANTRY_KUBECONFIG = kubeconfig;
    push.push('--deliver-config', deliver, '--deploy-repo', `file://${config}`);
  }

  const log = join(root, 'server.log');
  const out = (await import('node:fs')).openSync(log, 'w');
  const proc = spawn(binary, [
    'server', '--listen', '127.0.0.1:0', '--store', `sqlite:${join(root, 'gantry.db')}`,
    '--webhook-secret-env', 'HOOK', '--api-token-env', 'API_TOKEN', '--repo', `file://${repo}`,
    '--data-dir', join(root, 'data'), '--allow-file-repos', '--policy', 'approval=none', ...push,
  ], {env: {...process.env, HOOK: kSecret, API_TOKEN: kToken}, stdio: ['ignore', out, out]});
  const deadline = Date.now() + 30_000;
  let port = '';
  while (!port) {
    const m = readFileSync(log, 'utf8').match(/listening on 127\.0\.0\.1:(\d+)/);
    if (m) port = m[1];
    else if (proc.exitCode !== null || Date.now() > deadline) {
      throw new Error(`gantry server did not start (exit ${proc.exitCode}):\n${readFileSync(log, 'utf8')}`);
    } else await new Promise((r) => setTimeout(r, 100));
  }
  process.env.GANTRY_URL = `http://127.0.0.1:${port}`;
  process.env.GANTRY_TOKEN = kToken;
  process.env.GANTRY_REPO = `file://${repo}`;
  process.env.GANTRY_COMMIT = commit;
  process.env.GANTRY_HOOK_SECRET = kSecret;
  process.env.GANTRY_SERVER_LOG = log;
  return async () => {
    proc.kill('SIGTERM');
    await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once('exit', r)));
    if (clusterDir) execFileSync('bash', [clusterScript!, 'stop', clusterDir]);
    if (!process.env.GANTRY_KEEP_TEMP) rmSync(root, {recursive: true, force: true});
  };
}
