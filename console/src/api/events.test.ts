import {describe, expect, it} from 'vitest';

import {Client} from './client';
import {SseParser, subscribe} from './events';
import {FakeServer, kToken} from '../test/fake';

describe('SseParser', () => {
  it('parses events split anywhere, with ids, comments, CRLF and multi-line data', () => {
    const p = new SseParser();
    const text = ': keep-alive\r\nid: 7\r\nevent: log\r\ndata: {"a":\r\ndata: 1}\r\n\r\nid: 8\nevent: run\ndata:{"id":1}\n\n';
    const out = [];
    for (const ch of text) out.push(...p.push(ch)); // one character at a time
    expect(out).toEqual([
      {event: 'log', data: '{"a":\n1}', id: '7'},
      {event: 'run', data: '{"id":1}', id: '8'},
    ]);
  });
  it('keeps the last id for events without one and ignores data-less blocks', () => {
    const p = new SseParser();
    expect(p.push('id: 3\n\ndata: x\n\n')).toEqual([{event: 'message', data: 'x', id: '3'}]);
  });
});

const tick = () => new Promise((r) => setTimeout(r, 5));
async function until(cond: () => boolean) {
  for (let i = 0; i < 200 && !cond(); i++) await tick();
  expect(cond()).toBe(true);
}

describe('subscribe', () => {
  it('delivers typed events and resumes with Last-Event-ID after the stream ends', async () => {
    const fake = new FakeServer();
    const client = new Client({token: kToken, fetch: fake.fetch});
    const got: string[] = [];
    let opened = 0;
    const stop = subscribe(client, (name, data) => got.push(`${name} ${JSON.stringify(data)}`), {retryMs: 1, onOpen: () => opened++});
    await until(() => fake.openStreams === 1);
    await until(() => opened === 1);
    fake.emit('run', {id: 4, state: 'running'});
    fake.emit('unknown', {x: 1}); // not of the contract: ignored
    fake.emit('log', {run: 4, step: 'build', seq: 1, text: 'hi\n'});
    await until(() => got.length === 2);
    expect(got).toEqual(['run {"id":4,"state":"running"}', 'log {"run":4,"step":"build","seq":1,"text":"hi\\n"}']);

    fake.closeStreams();
    await until(() => fake.openStreams === 1);
    const reconnect = fake.requests.filter((r) => r.url === '/api/v1/events')[1];
    expect(reconnect.headers['last-event-id']).toBe('3');
    await until(() => opened === 2); // a page reads its data again on each open
    stop();
    await until(() => fake.openStreams === 0);
  });
});
