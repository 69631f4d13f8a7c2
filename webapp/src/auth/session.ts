/**
 * The browser session (SPEC section 8): a short-lived access token kept in memory only (never
 * in storage, so a script injected later cannot read an old one) and the httpOnly refresh
 * cookie the API set on `/auth` (the page never sees it).
 *
 * - Start-up: one `POST /auth/refresh` turns a still-valid cookie into an access token, so a
 *   reload keeps the customer signed in.
 * - Silent refresh: a timer refreshes a minute before the access token expires, and a request
 *   that still gets a 401 refreshes once and is retried (see `client.ts`).
 * - Refresh is single-flight and, across tabs, serialized with a Web Lock: the API rotates the
 *   refresh token on every use, so two concurrent refreshes with one cookie would make the
 *   second fail (and a reused token can end the whole session family).
 */
import type { components } from '../api/schema';

export type SessionBody = components['schemas']['Session'];

export type SessionState =
  | { status: 'loading' }
  | { status: 'signedOut'; reason?: string }
  | { status: 'signedIn'; accessToken: string; walletAddress: string; expiresAt: number };

type Listener = () => void;

let state: SessionState = { status: 'loading' };
const listeners = new Set<Listener>();
let timer: ReturnType<typeof setTimeout> | undefined;
let inflight: Promise<boolean> | null = null;

/** Refresh this long before the access token expires. */
const REFRESH_MARGIN_MS = 60_000;

function set(next: SessionState) {
  state = next;
  for (const l of listeners) l();
}

export function getSession(): SessionState {
  return state;
}

export function subscribe(l: Listener): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

export function accessToken(): string | undefined {
  return state.status === 'signedIn' ? state.accessToken : undefined;
}

/** Stores a session returned by `/auth/verify` or `/auth/refresh` and arms the refresh timer. */
export function signedIn(body: SessionBody) {
  const expiresAt = Date.now() + body.expiresIn * 1000;
  clearTimeout(timer);
  const delay = Math.max(body.expiresIn * 1000 - REFRESH_MARGIN_MS, 5_000);
  timer = setTimeout(() => void refresh(), delay);
  set({ status: 'signedIn', accessToken: body.accessToken, walletAddress: body.walletAddress, expiresAt });
}

export function signedOut(reason?: string) {
  clearTimeout(timer);
  set(reason === undefined ? { status: 'signedOut' } : { status: 'signedOut', reason });
}

async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  const locks = typeof navigator !== 'undefined' ? navigator.locks : undefined;
  if (!locks) return fn();
  return locks.request('suiftly-session-refresh', fn);
}

/**
 * Exchanges the refresh cookie for a new access token. Resolves `true` when signed in.
 * Concurrent callers share one request.
 */
export function refresh(): Promise<boolean> {
  if (inflight) return inflight;
  inflight = withLock(async () => {
    try {
      const res = await fetch('/auth/refresh', { method: 'POST', credentials: 'same-origin' });
      if (res.ok) {
        signedIn((await res.json()) as SessionBody);
        return true;
      }
      const wasSignedIn = state.status === 'signedIn';
      signedOut(wasSignedIn ? 'Your session ended. Sign in again.' : undefined);
      return false;
    } catch {
      // Network trouble: keep a signed-in state (requests will show their own errors), but a
      // start-up without a server cannot know the session.
      if (state.status === 'loading') signedOut('Cannot reach the server.');
      return state.status === 'signedIn';
    }
  }).finally(() => {
    inflight = null;
  });
  return inflight;
}

/** Revokes the refresh cookie on the server and forgets the access token. */
export async function signOut(): Promise<void> {
  try {
    await fetch('/auth/logout', { method: 'POST', credentials: 'same-origin' });
  } finally {
    signedOut();
  }
}

let booted: Promise<boolean> | null = null;

/** The start-up refresh, once per page load; route guards await it. */
export function boot(): Promise<boolean> {
  booted ??= refresh();
  return booted;
}
