// A fake of the /api/v1 routes of the issue 15 contract, as a fetch function, for Vitest only
// (the browser tests use a real gantry server). It checks the bearer token, answers problems,
// ETags and 304s as the contract says, and streams events pushed with emit().
import type {
  ApiToken, AppDetail, AppDiff, Cluster, Environment, KubeEventList, Matrix, Pipeline, Project, Release, ReleaseFlow,
  ResourceTree, Run, RunDetail,
} from '../api/contract';

export const kToken = 'gty_fake';

export interface FakeData {
  matrix: Matrix;
  runs: RunDetail[];
  logs: Record<number, string>;
  releases: Record<string, Release[]>;
  // An app's page: its detail, and per "environment/cluster" its tree, diff and events.
  apps: Record<string, {detail: AppDetail; resources: Record<string, ResourceTree>; diff: Record<string, AppDiff>;
                        events: Record<string, KubeEventList>}>;
  clusters: Cluster[];
  environments: Environment[];
  // Release flows by "app/id".
  flows: Record<string, ReleaseFlow>;
  // What /auth/config answers (no credential needed): single sign-on through this issuer, or none.
  sso: {issuer: string; login: string} | null;
  pipelines: Pipeline[];
  projects: Project[];
  tokens: ApiToken[];
  // Routes (as "POST /runs/1/retry") answered 403, as for a caller without the permission.
  forbidden: string[];
}

export function emptyData(): FakeData {
  return {matrix: {environments: ['dev', 'staging', 'prod'], apps: [], warnings: []}, runs: [], logs: {}, releases: {}, apps: {},
          clusters: [], environments: [], flows: {}, sso: null, pipelines: [], projects: [], tokens: [], forbidden: []};
}

function problem(status: number, title: string, detail: string, code: string): Response {
  return new Response(JSON.stringify({type: 'about:blank', title, status, detail, code, reason: ''}),
                      {status, statusText: title, headers: {'Content-Type': 'application/problem+json'}});
}

export class FakeServer {
  data: FakeData;
  requests: {url: string; headers: Record<string, string>; method: string; body: unknown}[] = [];
  private streams: ReadableStreamDefaultController<Uint8Array>[] = [];
  private nextEventId = 1;
  // While set, /events answers only once it resolves: a stream slow to open.
  eventsOpen: Promise<void> | null = null;

  constructor(data: FakeData = emptyData()) {
    this.data = data;
  }

  // Sends an event to every open /events stream.
  emit(event: string, data: unknown): void {
    const bytes = new TextEncoder().encode(`id: ${this.nextEventId++}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    for (const c of this.streams) c.enqueue(bytes);
  }
  get openStreams(): number {
    return this.streams.length;
  }
  // Ends every open stream (as a restarting server would).
  closeStreams(): void {
    for (const c of this.streams) c.close();
    this.streams = [];
  }

  fetch = async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(String(input), 'http://console.test');
    const headers = Object.fromEntries(Object.entries((init.headers ?? {}) as Record<string, string>).map(([k, v]) => [k.toLowerCase(), v]));
    const method = init.method ?? 'GET';
    this.requests.push({url: url.pathname + url.search, headers, method, body: init.body ? JSON.parse(String(init.body)) : null});
    if (url.pathname === '/auth/config') {
      return new Response(JSON.stringify({oidc: this.data.sso}), {status: 200, headers: {'Content-Type': 'application/json'}});
    }
    if (headers.authorization !== `Bearer ${kToken}`) return problem(401, 'Unauthorized', 'no such token', 'Unauthenticated');
    const path = url.pathname.replace(/^\/api\/v1/, '');
    const json = (body: unknown) => {
      const text = JSON.stringify(body);
      const etag = `"${text.length}-${[...text].reduce((h, c) => (h * 31 + c.charCodeAt(0)) | 0, 7)}"`;
      if (headers['if-none-match'] === etag) return new Response(null, {status: 304, headers: {ETag: etag}});
      return new Response(text, {status: 200, headers: {'Content-Type': 'application/json', ETag: etag}});
    };
    let m: RegExpMatchArray | null;
    if (this.data.forbidden.includes(`${method} ${path}`)) {
      return problem(403, 'Forbidden', `user fake-user lacks the permission for ${method} ${path}`, 'PermissionDenied');
    }
    if (path === '/matrix') return json(this.data.matrix);
    if ((m = path.match(/^\/runs\/(\d+)\/retry$/)) && method === 'POST') {
      const old = this.data.runs.find((x) => x.id === Number(m![1]));
      if (!old) return problem(404, 'Not Found', `no run ${m[1]}`, 'NotFound');
      const id = Math.max(...this.data.runs.map((x) => x.id)) + 1;
      const retry: RunDetail = {...old, id, state: 'queued', retry_of: old.id, started_at: null, finished_at: null, steps: []};
      this.data.runs.unshift(retry);
      return new Response(JSON.stringify(retry), {status: 201, headers: {'Content-Type': 'application/json'}});
    }
    if (path === '/pipelines') return json({items: this.data.pipelines, next: null});
    if (path === '/projects') return json({items: this.data.projects, next: null});
    if (path === '/tokens' && method === 'GET') return json({items: this.data.tokens, next: null});
    if (path === '/tokens' && method === 'POST') {
      const body = this.requests[this.requests.length - 1].body as {name: string; project?: string; roles?: string[]};
      const t: ApiToken = {id: `t-${this.data.tokens.length + 1}`, name: body.name, kind: body.project ? 'robot' : 'user',
                           owner: body.project ?? 'fake-user', roles: body.roles ?? [], created_by: 'fake-user', created_at: '2026-01-02T03:04:05Z',
                           expires_at: null, last_used_at: null, revoked_at: null, revoked_by: ''};
      this.data.tokens.unshift(t);
      return new Response(JSON.stringify({...t, token: 'gty_' + 'f'.repeat(64)}), {status: 201, headers: {'Content-Type': 'application/json'}});
    }
    if ((m = path.match(/^\/tokens\/([^/]+)$/)) && method === 'DELETE') {
      const t = this.data.tokens.find((x) => x.id === decodeURIComponent(m![1]));
      if (!t) return problem(404, 'Not Found', `no token ${m[1]}`, 'NotFound');
      t.revoked_at = '2026-01-02T03:05:00Z';
      t.revoked_by = 'fake-user';
      return new Response(JSON.stringify(t), {status: 200, headers: {'Content-Type': 'application/json'}});
    }
    if (path === '/runs') {
      const limit = Number(url.searchParams.get('limit') ?? 50);
      const start = Number(url.searchParams.get('cursor') ?? 0);
      const items: Run[] = this.data.runs.slice(start, start + limit).map(({steps: _, ...r}) => r);
      return json({items, next: start + limit < this.data.runs.length ? String(start + limit) : null});
    }
    if ((m = path.match(/^\/runs\/(\d+)$/))) {
      const r = this.data.runs.find((x) => x.id === Number(m![1]));
      return r ? json(r) : problem(404, 'Not Found', `no run ${m[1]}`, 'NotFound');
    }
    if ((m = path.match(/^\/runs\/(\d+)\/logs$/))) {
      return new Response(this.data.logs[Number(m[1])] ?? '', {status: 200, headers: {'Content-Type': 'text/plain'}});
    }
    if (path === '/clusters' || path === '/environments') {
      // Paged as the server does: the cursor is the 1-based position of the page's first item.
      const all: unknown[] = path === '/clusters' ? this.data.clusters : this.data.environments;
      const limit = Number(url.searchParams.get('limit') ?? 50);
      const start = Number(url.searchParams.get('cursor') ?? 1) - 1;
      return json({items: all.slice(start, start + limit), next: start + limit < all.length ? String(start + limit + 1) : null});
    }
    if ((m = path.match(/^\/apps\/([^/]+)\/releases\/(\d+)$/))) {
      const flow = this.data.flows[`${decodeURIComponent(m[1])}/${m[2]}`];
      return flow ? json(flow) : problem(404, 'Not Found', `no release ${m[2]} of ${m[1]}`, 'NotFound');
    }
    if ((m = path.match(/^\/apps\/([^/]+)\/approve$/)) && method === 'POST') {
      // Approves a waiting release: it leaves its environment's waiting list.
      const app = decodeURIComponent(m[1]);
      const body = this.requests[this.requests.length - 1].body as {environment: string; release: number; project: string};
      const env = this.data.environments.find((e) => e.name === body.environment);
      if (!env) return problem(400, 'Bad Request', `unknown environment "${body.environment}"`, 'InvalidArgument');
      env.waiting = env.waiting.filter((w) => !(w.app === app && w.release === body.release));
      return new Response(JSON.stringify({app, environment: body.environment, release: body.release, approved_by: 'fake-user'}),
                          {status: 200, headers: {'Content-Type': 'application/json'}});
    }
    if ((m = path.match(/^\/apps\/([^/]+)(?:\/(resources|diff|events|sync|refresh|rollback|terminate))?$/))) {
      const app = this.data.apps[decodeURIComponent(m[1])];
      if (!app) return problem(404, 'Not Found', `no application ${m[1]}`, 'NotFound');
      const target = `${url.searchParams.get('environment')}/${url.searchParams.get('cluster')}`;
      const what = m[2];
      if (!what) return json(app.detail);
      if (what === 'resources' || what === 'diff' || what === 'events') {
        const found = app[what][target];
        return found ? json(found) : problem(501, 'Not Implemented', `no ${what} of ${target}`, 'Unimplemented');
      }
      const body = this.requests[this.requests.length - 1].body as {environment: string; cluster: string; to_release?: number;
                                                                    prune?: boolean; dry_run?: boolean};
      if (what === 'terminate') {
        return new Response(JSON.stringify({action: 'terminate', app: m[1], stopping: 'deploy', pull_targets: [], last_event_id: 0}),
                            {status: 202, headers: {'Content-Type': 'application/json'}});
      }
      if (what === 'rollback') {
        return new Response(JSON.stringify({action: 'rollback', app: m[1], release: body.to_release, from_release: 2, environment: body.environment,
                                            state: 'running', last_event_id: 0}), {status: 202, headers: {'Content-Type': 'application/json'}});
      }
      const t = app.detail.targets.find((x) => x.environment === body.environment && x.cluster === body.cluster)!;
      if (what === 'sync' && body.dry_run) {
        return new Response(JSON.stringify({action: 'sync', app: m[1], dry_run: true, prune: body.prune ?? false, targets: [{
          environment: t.environment, cluster: t.cluster, mode: t.mode, release: t.release,
          items: app.diff[`${t.environment}/${t.cluster}`]?.items ?? null, message: app.diff[`${t.environment}/${t.cluster}`] ? '' : 'no diff here'}]}),
          {status: 200, headers: {'Content-Type': 'application/json'}});
      }
      return new Response(JSON.stringify({action: what, app: m[1], last_event_id: 0, targets: [{
        environment: t.environment, cluster: t.cluster, mode: t.mode, release: t.mode === 'push' && what === 'sync' ? 99 : null,
        result: t.mode === 'pull' ? 'requested' : what === 'sync' ? 'deploying' : 'nothing to refresh'}]}),
        {status: 202, headers: {'Content-Type': 'application/json'}});
    }
    if ((m = path.match(/^\/apps\/([^/]+)\/releases$/))) {
      return json({items: this.data.releases[decodeURIComponent(m[1])] ?? [], next: null});
    }
    if (path === '/events') {
      if (this.eventsOpen) await this.eventsOpen;
      let controller!: ReadableStreamDefaultController<Uint8Array>;
      const stream = new ReadableStream<Uint8Array>({
        start: (c) => {
          controller = c;
          c.enqueue(new TextEncoder().encode(': connected\n\n'));
        },
      });
      this.streams.push(controller);
      init.signal?.addEventListener('abort', () => {
        this.streams = this.streams.filter((c) => c !== controller);
        try {
          controller.error(new DOMException('aborted', 'AbortError'));
        } catch {
          // already closed
        }
      });
      return new Response(stream, {status: 200, headers: {'Content-Type': 'text/event-stream'}});
    }
    return problem(404, 'Not Found', `no route ${path}`, 'NotFound');
  };
}

export function run(id: number, over: Partial<RunDetail> = {}): RunDetail {
  return {
    id, pipeline: 'app', repo: 'https://git.example/org/app.git', ref: 'refs/heads/main', commit: 'a'.repeat(40),
    event: 'push', state: 'running', message: '', created_at: '2026-01-02T03:04:05Z', started_at: '2026-01-02T03:04:06Z',
    finished_at: null, approved_by: '', retry_of: null, project: '',
    steps: [{name: 'build', state: 'running', exit_code: null, started_at: null, finished_at: null, needs: [], attempts: 1}],
    ...over,
  };
}
