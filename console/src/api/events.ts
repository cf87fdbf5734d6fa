// GET /api/v1/events as a stream of typed events. EventSource cannot send an Authorization header,
// so the stream is read with fetch and parsed here (the text/event-stream format of the HTML
// standard); when it ends or fails it is opened again after `retryMs` with Last-Event-ID, so no
// event is lost across a reconnect.

import type {Client} from './client';
import type {Events} from './contract';

export interface SseMessage {
  event: string;
  data: string;
  id: string | null;
}

// Splits text/event-stream into messages; push() takes chunks as they arrive, in any size.
export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private id: string | null = null;

  push(chunk: string): SseMessage[] {
    this.buffer += chunk;
    const out: SseMessage[] = [];
    let nl: number;
    while ((nl = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      // A CR that ends the chunk may be the first half of a CRLF: wait for the next chunk.
      if (this.buffer[nl] === '\r' && nl === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, nl);
      const eol = this.buffer.startsWith('\r\n', nl) ? 2 : 1;
      this.buffer = this.buffer.slice(nl + eol);
      if (line === '') {
        if (this.data.length > 0) out.push({event: this.event || 'message', data: this.data.join('\n'), id: this.id});
        this.data = [];
        this.event = '';
        continue;
      }
      if (line.startsWith(':')) continue; // a comment: keep-alive
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') this.data.push(value);
      else if (field === 'event') this.event = value;
      else if (field === 'id' && !value.includes('\0')) this.id = value;
    }
    return out;
  }
}

export type EventHandler = <K extends keyof Events>(name: K, data: Events[K], id: string | null) => void;

export interface SubscribeOptions {
  retryMs?: number;
  onError?: (e: Error) => void;
  // Called each time the stream is open: the server has subscribed it before answering, so every
  // event from here on arrives. A page reads its data (again) here; what it read before the first
  // open may already be stale, and nothing would tell it.
  onOpen?: () => void;
}

// Streams events to `handler` until the returned function is called.
export function subscribe(client: Client, handler: EventHandler, options: SubscribeOptions = {}): () => void {
  const abort = new AbortController();
  let lastId: string | null = null;
  const retryMs = options.retryMs ?? 2000;
  const known = new Set(['run', 'step', 'log', 'release', 'app']);

  const loop = async () => {
    while (!abort.signal.aborted) {
      try {
        const headers: Record<string, string> = {Accept: 'text/event-stream'};
        if (lastId !== null) headers['Last-Event-ID'] = lastId;
        const res = await client.raw('/events', {signal: abort.signal}, headers);
        if (!res.body) throw new Error('the event stream has no body');
        options.onOpen?.();
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        const parser = new SseParser();
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          for (const m of parser.push(value)) {
            if (m.id !== null) lastId = m.id;
            if (!known.has(m.event)) continue;
            try {
              handler(m.event as keyof Events, JSON.parse(m.data), m.id);
            } catch (e) {
              options.onError?.(e as Error);
            }
          }
        }
      } catch (e) {
        if (abort.signal.aborted) return;
        options.onError?.(e as Error);
      }
      await new Promise((r) => setTimeout(r, retryMs));
    }
  };
  void loop();
  return () => abort.abort();
}
