/**
 * A server-sent events parser (the HTML standard's "event stream interpretation") for a
 * stream read with `fetch`: the dashboard reads `/stats/live` that way rather than with
 * `EventSource`, so the access token travels in the Authorization header (not in the URL,
 * where proxies and logs keep it) and a refused stream is an HTTP status it can act on.
 */

export interface SseEvent {
  /** `message` when the server named none. */
  event: string;
  data: string;
  /** The `id` field of this event, if it had one. */
  id?: string;
}

export interface SseParser {
  /** Feeds decoded text; returns the events completed by it. */
  push(text: string): SseEvent[];
  /** The last event id seen (what a reconnect sends as Last-Event-ID). */
  lastEventId(): string | undefined;
  /** The reconnection delay the server asked for (`retry:`), in ms. */
  retryMs(): number | undefined;
}

export function sseParser(): SseParser {
  let buf = '';
  let event = '';
  let data: string[] = [];
  let id: string | undefined;
  let lastId: string | undefined;
  let retry: number | undefined;
  let first = true;

  function line(l: string, out: SseEvent[]) {
    if (l === '') {
      if (data.length > 0) {
        const e: SseEvent = { event: event || 'message', data: data.join('\n') };
        if (id !== undefined) e.id = id;
        out.push(e);
      }
      event = '';
      data = [];
      id = undefined;
      return;
    }
    if (l.startsWith(':')) return; // comment (keep-alive)
    const colon = l.indexOf(':');
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? '' : l.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        event = value;
        break;
      case 'data':
        data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) {
          id = value;
          lastId = value;
        }
        break;
      case 'retry':
        if (/^\d+$/.test(value)) retry = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  return {
    push(text) {
      if (first && text.length > 0) {
        first = false;
        if (text.startsWith('\uFEFF')) text = text.slice(1);
      }
      buf += text;
      const out: SseEvent[] = [];
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buf);
        if (!m) break;
        // A lone \r at the end may be the first half of \r\n: wait for the next chunk.
        if (m[0] === '\r' && m.index === buf.length - 1) break;
        line(buf.slice(0, m.index), out);
        buf = buf.slice(m.index + m[0].length);
      }
      return out;
    },
    lastEventId: () => lastId,
    retryMs: () => retry,
  };
}
