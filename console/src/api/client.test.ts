import {describe, expect, it, vi} from 'vitest';

import {ApiError, Client} from './client';
import {FakeServer, kToken, run} from '../test/fake';

describe('Client', () => {
  it('sends the token as Bearer and reads the matrix', async () => {
    const fake = new FakeServer();
    fake.data.matrix.apps = [{app: 'web', cells: []}];
    const c = new Client({token: kToken, fetch: fake.fetch});
    expect((await c.matrix()).apps[0].app).toBe('web');
    expect(fake.requests[0].url).toBe('/api/v1/matrix');
    expect(fake.requests[0].headers.authorization).toBe(`Bearer ${kToken}`);
  });

  it('turns a problem+json answer into an ApiError and calls onUnauthenticated on 401', async () => {
    const fake = new FakeServer();
    const gone = vi.fn();
    const c = new Client({token: 'wrong', fetch: fake.fetch, onUnauthenticated: gone});
    const e = await c.runs().catch((x) => x);
    expect(e).toBeInstanceOf(ApiError);
    expect(e.status).toBe(401);
    expect(e.problem.code).toBe('Unauthenticated');
    expect(e.message).toBe('Unauthorized: no such token');
    expect(gone).toHaveBeenCalledTimes(1);

    const ok = new Client({token: kToken, fetch: fake.fetch, onUnauthenticated: gone});
    const missing = await ok.run(9).catch((x) => x);
    expect(missing.status).toBe(404);
    expect(missing.problem.detail).toBe('no run 9');
    expect(gone).toHaveBeenCalledTimes(1);
  });

  it('makes a problem of a non-JSON error and of a network failure', async () => {
    const proxy = async () => new Response('<html>bad gateway</html>\nmore', {status: 502, statusText: 'Bad Gateway', headers: {'Content-Type': 'text/html'}});
    const e = await new Client({token: 't', fetch: proxy}).matrix().catch((x) => x);
    expect(e.problem).toMatchObject({status: 502, title: 'Bad Gateway', detail: '<html>bad gateway</html>'});
    const down = async () => {
      throw new TypeError('Failed to fetch');
    };
    const n = await new Client({token: 't', fetch: down}).matrix().catch((x) => x);
    expect(n.status).toBe(0);
    expect(n.message).toContain('GET /api/v1/matrix: Failed to fetch');
  });

  it('revalidates with If-None-Match and answers the cached list on 304', async () => {
    const fake = new FakeServer();
    fake.data.runs = [run(2), run(1)];
    const c = new Client({token: kToken, fetch: fake.fetch});
    const first = await c.runs();
    const second = await c.runs();
    expect(fake.requests[1].headers['if-none-match']).toMatch(/^".+"$/);
    expect(second).toBe(first); // the 304 answered the cached object
    fake.data.runs = [run(3), ...fake.data.runs];
    expect((await c.runs()).items.map((r) => r.id)).toEqual([3, 2, 1]);
  });

  it('pages with the cursor and limit', async () => {
    const fake = new FakeServer();
    fake.data.runs = [run(3), run(2), run(1)];
    const c = new Client({token: kToken, fetch: fake.fetch});
    const page = await c.runs(undefined, 2);
    expect(page.items.map((r) => r.id)).toEqual([3, 2]);
    expect(fake.requests[0].url).toBe('/api/v1/runs?limit=2');
    const rest = await c.runs(page.next!, 2);
    expect(rest.items.map((r) => r.id)).toEqual([1]);
    expect(rest.next).toBeNull();
  });

  it('escapes app names in paths', async () => {
    const fake = new FakeServer();
    await new Client({token: kToken, fetch: fake.fetch}).releases('team a/web');
    expect(fake.requests[0].url).toBe('/api/v1/apps/team%20a%2Fweb/releases');
  });
});
