/**
 * The typed API client. Paths, bodies and responses come from `schema.d.ts`, generated from
 * the document the API serves (`openapi.json`, kept equal to `/openapi.json` by the API's
 * contract test), so a changed endpoint breaks `tsc --noEmit` here instead of a page.
 *
 * Same origin: the dashboard is served by `suiftly api` under /app/ and the API answers at
 * the root (the Vite dev server proxies the same paths).
 */
import createClient from 'openapi-fetch';
import { accessToken, refresh } from '../auth/session';
import type { components, paths } from './schema';

export type Schemas = components['schemas'];
export type Service = Schemas['Service'];
export type ServiceName = Schemas['ServiceName'];
export type ServiceConfig = Schemas['ServiceConfig'];
export type Quote = Schemas['Quote'];
export type ApiKey = Schemas['ApiKey'];
export type Balance = Schemas['Balance'];
export type ErrorBody = Schemas['ErrorBody'];

/** A non-2xx answer of the API, with its JSON error body. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ErrorBody,
  ) {
    super(body.message);
  }
}

function withToken(req: Request, token: string | undefined): Request {
  const r = new Request(req);
  if (token) r.headers.set('Authorization', `Bearer ${token}`);
  return r;
}

/**
 * Adds the access token; a 401 on a request that carried one refreshes the session once and
 * retries (the token may have expired while the tab slept, before the timer fired).
 */
async function authFetch(input: Request): Promise<Response> {
  const retry = input.clone();
  const token = accessToken();
  const res = await fetch(withToken(input, token));
  if (res.status !== 401 || !token) return res;
  if (!(await refresh())) return res;
  return fetch(withToken(retry, accessToken()));
}

export const api = createClient<paths>({ baseUrl: '', fetch: authFetch });

type Result<T> = { data?: T; error?: unknown; response: Response };

/** Turns an openapi-fetch result into data or a thrown [`ApiError`] (for TanStack Query). */
export function unwrap<T>(r: Result<T>): T {
  if (r.response.ok) return r.data as T;
  const body = r.error as { error?: ErrorBody } | undefined;
  throw new ApiError(
    r.response.status,
    body?.error ?? { code: 'internal', message: `the server answered ${r.response.status}` },
  );
}

export const SERVICES: readonly ServiceName[] = ['seal', 'grpc', 'graphql'];

export function serviceLabel(s: string): string {
  return (
    { seal: 'Seal', grpc: 'gRPC', graphql: 'GraphQL', ssfn: 'SSFN', sealo: 'Sealo' } as Record<string, string>
  )[s] ?? s;
}
