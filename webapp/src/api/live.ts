/**
 * The live usage stream, `GET /stats/live` (server-sent events), read with `fetch` so the
 * access token goes in the Authorization header like every other request: `EventSource`
 * cannot set headers and would need the token in the URL (`?access_token=`), where access
 * logs and proxies keep it. Reading it ourselves also turns a refused stream into a status
 * the page can show (401: refresh the session and retry; 503: this server has no live
 * source; 429: too many streams open) instead of a silent retry loop.
 *
 * Reconnects: after a network error or the end of the stream (`end`: shutdown or the
 * stream's maximum duration) it reconnects with `Last-Event-ID`, so the server replays the
 * `settled` events it missed; a `reset` means they cannot be replayed (reload everything).
 */
import { useEffect, useRef, useState } from 'react';
import { accessToken, refresh } from '../auth/session';
import { sseParser } from '../lib/sse';
import type { components } from './schema';

export type LiveProvisional = components['schemas']['LiveProvisional'];
export type LiveSettled = components['schemas']['LiveSettled'];

/**
 * - `connecting`: the first attempt is under way;
 * - `live`: events arrive as metering sees traffic;
 * - `reconnecting`: the stream dropped, trying again (with a growing delay);
 * - `unavailable`: this server has no live source or the account has too many streams open;
 *   tried again after a while, the page falls back to polling meanwhile.
 */
export type LiveStatus = 'connecting' | 'live' | 'reconnecting' | 'unavailable';

export interface LiveHandlers {
  onProvisional?: (d: LiveProvisional) => void;
  onSettled?: (d: LiveSettled) => void;
  /** The missed events cannot be replayed: reload what was built from them. */
  onReset?: () => void;
  /** A stream opened (first time or again): events may have been missed meanwhile. */
  onOpen?: () => void;
}

const MIN_DELAY_MS = 1_000;
const MAX_DELAY_MS = 30_000;
/** How long to wait before asking again a server that has no live source (503) or too many streams (429). */
const UNAVAILABLE_RETRY_MS = 60_000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}

async function connect(lastId: string | undefined, signal: AbortSignal): Promise<Response> {
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  const token = accessToken();
  if (token) headers.authorization = `Bearer ${token}`;
  if (lastId !== undefined) headers['last-event-id'] = lastId;
  return fetch('/stats/live', { headers, signal, cache: 'no-store' });
}

/** Runs the stream until `signal` aborts. */
export async function runLive(handlers: () => LiveHandlers, setStatus: (s: LiveStatus) => void, signal: AbortSignal): Promise<void> {
  let lastId: string | undefined;
  let delay = MIN_DELAY_MS;
  let refreshed = false;
  while (!signal.aborted) {
    let res: Response;
    try {
      res = await connect(lastId, signal);
    } catch {
      if (signal.aborted) return;
      setStatus('reconnecting');
      await sleep(delay, signal);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
      continue;
    }
    if (res.status === 401 && !refreshed) {
      // The access token expired while the stream was away: once, then back off.
      void res.body?.cancel();
      refreshed = true;
      if (await refresh()) continue;
      setStatus('reconnecting');
      await sleep(delay, signal);
      continue;
    }
    if (res.status === 503 || res.status === 429) {
      void res.body?.cancel();
      setStatus('unavailable');
      await sleep(UNAVAILABLE_RETRY_MS, signal);
      continue;
    }
    if (!res.ok || !res.body) {
      void res.body?.cancel();
      setStatus('reconnecting');
      await sleep(delay, signal);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
      continue;
    }
    refreshed = false;
    delay = MIN_DELAY_MS;
    setStatus('live');
    handlers().onOpen?.();
    const parser = sseParser();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let ended = false;
    try {
      while (!ended) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const e of parser.push(value)) {
          const h = handlers();
          if (e.event === 'provisional') h.onProvisional?.(JSON.parse(e.data) as LiveProvisional);
          else if (e.event === 'settled') h.onSettled?.(JSON.parse(e.data) as LiveSettled);
          else if (e.event === 'reset') h.onReset?.();
          else if (e.event === 'end') ended = true;
        }
      }
    } catch {
      // The connection dropped (or the page left): reconnect below unless aborted.
    } finally {
      void reader.cancel().catch(() => undefined);
    }
    lastId = parser.lastEventId() ?? lastId;
    if (signal.aborted) return;
    if (ended) continue; // the server asked us to come back (shutdown or maximum duration)
    setStatus('reconnecting');
    await sleep(parser.retryMs() ?? delay, signal);
  }
}

/**
 * Keeps a live usage stream open while the component is mounted and calls the handlers
 * (the latest ones: they may change on every render) for its events. Returns its status.
 */
export function useLiveUsage(handlers: LiveHandlers, enabled = true): LiveStatus {
  const [status, setStatus] = useState<LiveStatus>('connecting');
  const ref = useRef(handlers);
  useEffect(() => {
    ref.current = handlers;
  });
  useEffect(() => {
    if (!enabled) return;
    const ctl = new AbortController();
    void runLive(() => ref.current, setStatus, ctl.signal);
    return () => ctl.abort();
  }, [enabled]);
  return status;
}
