// The console's one way to the server: GET/POST on /api/v1 with the bearer token, errors as
// ApiError (the RFC 9457 problem the server answered, or one made from a non-JSON answer), and
// lists revalidated with their ETag (If-None-Match; a 304 answers what was cached).

import type {
  ActionStarted, ApiToken, AppDetail, AppDiff, AppOperationResult, Approval, Cluster, Environment, KubeEventList, List,
  Matrix, NewApiToken, Pipeline, Problem, Project, Release, ReleaseFlow, ResourceTree, Run, RunDetail, SyncPreview,
  Terminated,
} from './contract';

// One target of an app: its environment and cluster.
export interface TargetRef {
  environment: string;
  cluster: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;
  constructor(problem: Problem) {
    super(problem.detail ? `${problem.title}: ${problem.detail}` : problem.title);
    this.name = 'ApiError';
    this.status = problem.status;
    this.problem = problem;
  }
}

export interface ClientOptions {
  token: string;
  base?: string; // prefix of /api/v1, '' for the same origin
  fetch?: typeof fetch;
  // Called on 401 (a missing, expired or revoked token): the console goes back to the login screen.
  onUnauthenticated?: () => void;
}

async function problemOf(res: Response, path: string): Promise<Problem> {
  const text = await res.text();
  if ((res.headers.get('content-type') ?? '').includes('json')) {
    try {
      const p = JSON.parse(text) as Partial<Problem>;
      if (typeof p.status === 'number' && typeof p.title === 'string') {
        return {type: 'about:blank', detail: '', code: 'Unknown', reason: '', ...p} as Problem;
      }
    } catch {
      // not JSON after all: fall through to the text
    }
  }
  const detail = text.split('\n')[0].trim() || `GET ${path}`;
  return {type: 'about:blank', title: res.statusText || `HTTP ${res.status}`, status: res.status, detail, code: 'Unknown', reason: ''};
}

export class Client {
  private readonly token: string;
  private readonly base: string;
  private readonly fetchFn: typeof fetch;
  private readonly onUnauthenticated?: () => void;
  private readonly cache = new Map<string, {etag: string; body: unknown}>();

  constructor(options: ClientOptions) {
    this.token = options.token;
    this.base = options.base ?? '';
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.onUnauthenticated = options.onUnauthenticated;
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return {Authorization: `Bearer ${this.token}`, ...extra};
  }

  // The raw response of `path` (under /api/v1) or an ApiError for a non-2xx other than 304.
  async raw(path: string, init: RequestInit = {}, extraHeaders: Record<string, string> = {}): Promise<Response> {
    const url = `${this.base}/api/v1${path}`;
    let res: Response;
    try {
      res = await this.fetchFn(url, {...init, headers: this.headers(extraHeaders)});
    } catch (e) {
      throw new ApiError({type: 'about:blank', title: 'Network error', status: 0,
                          detail: `${init.method ?? 'GET'} ${url}: ${(e as Error).message}`, code: 'Unavailable', reason: ''});
    }
    if (res.ok || res.status === 304) return res;
    const problem = await problemOf(res, path);
    if (res.status === 401) this.onUnauthenticated?.();
    throw new ApiError(problem);
  }

  async get<T>(path: string): Promise<T> {
    const cached = this.cache.get(path);
    const res = await this.raw(path, {}, cached ? {'If-None-Match': cached.etag} : {});
    if (res.status === 304 && cached) return cached.body as T;
    const body = (await res.json()) as T;
    const etag = res.headers.get('etag');
    if (etag) this.cache.set(path, {etag, body});
    return body;
  }

  matrix(): Promise<Matrix> {
    return this.get<Matrix>('/matrix');
  }
  releases(app: string, cursor?: string): Promise<List<Release>> {
    return this.get<List<Release>>(`/apps/${encodeURIComponent(app)}/releases${query({cursor})}`);
  }
  app(app: string): Promise<AppDetail> {
    return this.get<AppDetail>(`/apps/${encodeURIComponent(app)}`);
  }
  resources(app: string, t: TargetRef): Promise<ResourceTree> {
    return this.get<ResourceTree>(`/apps/${encodeURIComponent(app)}/resources${query({environment: t.environment, cluster: t.cluster})}`);
  }
  diff(app: string, t: TargetRef): Promise<AppDiff> {
    return this.get<AppDiff>(`/apps/${encodeURIComponent(app)}/diff${query({environment: t.environment, cluster: t.cluster})}`);
  }
  events(app: string, t: TargetRef): Promise<KubeEventList> {
    return this.get<KubeEventList>(`/apps/${encodeURIComponent(app)}/events${query({environment: t.environment, cluster: t.cluster})}`);
  }
  // One release's flow: commit → run → images → config commit → environments (GET .../releases/{id}).
  releaseFlow(app: string, id: number): Promise<ReleaseFlow> {
    return this.get<ReleaseFlow>(`/apps/${encodeURIComponent(app)}/releases/${id}`);
  }
  // What a sync of `t` would change, applying nothing (POST .../sync with dry_run).
  syncPreview(app: string, t: TargetRef, prune: boolean): Promise<SyncPreview> {
    return this.post<SyncPreview>(`/apps/${encodeURIComponent(app)}/sync`, {environment: t.environment, cluster: t.cluster, prune, dry_run: true});
  }
  sync(app: string, t: TargetRef, prune: boolean): Promise<AppOperationResult> {
    return this.post<AppOperationResult>(`/apps/${encodeURIComponent(app)}/sync`, {environment: t.environment, cluster: t.cluster, prune});
  }
  refresh(app: string, t: TargetRef): Promise<AppOperationResult> {
    return this.post<AppOperationResult>(`/apps/${encodeURIComponent(app)}/refresh`, {environment: t.environment, cluster: t.cluster});
  }
  // Stops the app's deploy, resume or rollback the server runs (POST .../terminate).
  terminate(app: string): Promise<Terminated> {
    return this.post<Terminated>(`/apps/${encodeURIComponent(app)}/terminate`, {});
  }
  rollback(app: string, project: string, environment: string, toRelease: number): Promise<ActionStarted> {
    return this.post<ActionStarted>(`/apps/${encodeURIComponent(app)}/rollback`, {environment, to_release: toRelease, project});
  }
  // Every cluster and environment: the lists are paged, and the pages show them all.
  clusters(): Promise<List<Cluster>> {
    return this.all<Cluster>('/clusters');
  }
  environments(): Promise<List<Environment>> {
    return this.all<Environment>('/environments');
  }
  // Every page of a list, following "next" (each page revalidated with its own ETag).
  async all<T>(path: string): Promise<List<T>> {
    const items: T[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await this.get<List<T>>(`${path}${query({limit: '500', cursor})}`);
      items.push(...page.items);
      if (!page.next) return {items, next: null};
      cursor = page.next;
    }
  }
  // Approves `release` of `app` at `environment`'s gate (POST /apps/{app}/approve).
  approveRelease(app: string, project: string, environment: string, release: number): Promise<Approval> {
    return this.post<Approval>(`/apps/${encodeURIComponent(app)}/approve`, {environment, release, project});
  }
  async post<T>(path: string, body: unknown): Promise<T> {
    const res = await this.raw(path, {method: 'POST', body: JSON.stringify(body)}, {'Content-Type': 'application/json'});
    return (await res.json()) as T;
  }
  runs(cursor?: string, limit?: number): Promise<List<Run>> {
    return this.get<List<Run>>(`/runs${query({cursor, limit: limit?.toString()})}`);
  }
  run(id: number): Promise<RunDetail> {
    return this.get<RunDetail>(`/runs/${id}`);
  }
  async logs(id: number): Promise<string> {
    return (await this.raw(`/runs/${id}/logs`)).text();
  }
  async cancel(id: number): Promise<string> {
    return (await this.raw(`/runs/${id}/cancel`, {method: 'POST'})).text();
  }
  async approve(id: number): Promise<string> {
    return (await this.raw(`/runs/${id}/approve`, {method: 'POST'})).text();
  }
  // A new run of finished run `id`'s commit (POST /runs/{id}/retry); it says what it retries.
  async retry(id: number): Promise<RunDetail> {
    return (await (await this.raw(`/runs/${id}/retry`, {method: 'POST'})).json()) as RunDetail;
  }
  pipelines(): Promise<List<Pipeline>> {
    return this.get<List<Pipeline>>('/pipelines');
  }
  projects(): Promise<List<Project>> {
    return this.get<List<Project>>('/projects');
  }
  project(name: string): Promise<Project> {
    return this.get<Project>(`/projects/${encodeURIComponent(name)}`);
  }
  // The caller's tokens, or with all every token (an admin's view).
  tokens(all = false): Promise<List<ApiToken>> {
    return this.get<List<ApiToken>>(`/tokens${query({all: all ? '1' : undefined})}`);
  }
  // Creates a token; the answer's `token` is its secret, shown this once.
  createToken(token: NewApiToken): Promise<ApiToken> {
    return this.post<ApiToken>('/tokens', token);
  }
  async revokeToken(id: string): Promise<ApiToken> {
    return (await (await this.raw(`/tokens/${encodeURIComponent(id)}`, {method: 'DELETE'})).json()) as ApiToken;
  }
}

function query(params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}
