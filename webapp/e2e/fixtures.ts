/**
 * Shared fixtures: the base URL of the server started by `servers.ts`, a test wallet with a
 * seed derived from the test's title (one customer per test, so tests run in parallel), a
 * `signIn()` that goes through the real UI, an `api()` helper that calls the API as the signed-in
 * customer (to set up state quickly), and a guard that fails a test on any page error or CSP
 * violation.
 */
import { test as base, expect, type Page, type Request } from '@playwright/test';
import { spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { TEST_JWT_SECRET } from './servers';
import { installWallet, seedFor, type TestWallet, type WalletMode } from './wallet';

export { expect };

export interface Customer {
  wallet: TestWallet;
  /** The access token of the UI's sign-in (captured from /auth/verify). */
  token: () => string;
  api: <T = unknown>(method: string, path: string, body?: unknown) => Promise<{ status: number; body: T }>;
}

type Fixtures = {
  /** Which server set: "default" (API only) or "billing" (API + manager, own database). */
  stack: 'default' | 'billing';
  walletMode: WalletMode;
  wallet: TestWallet;
  signIn: (opts?: { from?: string }) => Promise<Customer>;
  consoleGuard: void;
  requestTracker: void;
};

/** Requests in flight per page, except the live usage stream (open as long as its page). */
const inflight = new WeakMap<Page, Set<Request>>();

/**
 * Waits until the page has had no request in flight for half a second — `networkidle`
 * without the live stream, which never ends while the usage or billing page is open.
 */
export async function quiet(page: Page) {
  const set = inflight.get(page);
  if (!set) throw new Error('quiet(): the page is not tracked (use the fixtures test)');
  let since = Date.now();
  try {
    await expect
      .poll(
        () => {
          if (set.size > 0) since = Date.now();
          return Date.now() - since >= 500;
        },
        { message: 'requests still in flight', timeout: 20_000, intervals: [100] },
      )
      .toBe(true);
  } catch (e) {
    // Name them: a wait that times out should say what it waited for.
    const urls = [...set].map((r) => `${r.method()} ${r.url()}`).join(', ');
    throw new Error(`requests still in flight after 20 s: ${urls}`, { cause: e });
  }
}

export const test = base.extend<Fixtures>({
  stack: ['default', { option: true }],
  baseURL: async ({ stack }, use) => {
    await use(stack === 'billing' ? process.env.E2E_BILLING_URL : process.env.E2E_BASE_URL);
  },
  walletMode: ['valid', { option: true }],
  wallet: async ({ page, walletMode }, use, info) => {
    await use(await installWallet(page, seedFor(`${info.titlePath.join(' > ')} #${info.repeatEachIndex}`), walletMode));
  },
  consoleGuard: [
    async ({ page }, use) => {
      const problems: string[] = [];
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      page.on('console', (m) => {
        // 4xx answers the test provokes are logged by Chromium as "Failed to load resource".
        if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
      });
      await use();
      expect(problems, 'page errors or CSP violations').toEqual([]);
    },
    { auto: true },
  ],
  requestTracker: [
    async ({ page }, use) => {
      const set = new Set<Request>();
      inflight.set(page, set);
      page.on('request', (r) => {
        if (new URL(r.url()).pathname !== '/stats/live') set.add(r);
      });
      page.on('requestfinished', (r) => set.delete(r));
      page.on('requestfailed', (r) => set.delete(r));
      await use();
    },
    { auto: true },
  ],
  signIn: async ({ page, wallet }, use) => {
    await use(async (opts) => {
      let token = '';
      page.on('response', async (r) => {
        if ((r.url().endsWith('/auth/verify') || r.url().endsWith('/auth/refresh')) && r.ok()) {
          token = ((await r.json()) as { accessToken: string }).accessToken;
        }
      });
      await page.goto(opts?.from ?? '/app/');
      await expect(page).toHaveURL(/\/app\/signin/);
      await page.getByRole('button', { name: wallet.name }).click();
      await page.getByRole('button', { name: 'Sign in', exact: true }).click();
      await expect(page.getByRole('button', { name: /^Wallet 0x/ })).toBeVisible();
      await expect.poll(() => token).not.toBe('');
      const api: Customer['api'] = async (method, path, body) => {
        const r = await page.request.fetch(path, {
          method,
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          data: body === undefined ? undefined : JSON.stringify(body),
        });
        const text = await r.text();
        return { status: r.status(), body: (text ? JSON.parse(text) : null) as never };
      };
      return { wallet, token: () => token, api };
    });
  },
});

/** An HS256 access token for `customerId` that expired a minute ago (same secret as the server). */
export function expiredAccessToken(validToken: string): string {
  const payload = JSON.parse(Buffer.from(validToken.split('.')[1]!, 'base64url').toString()) as { sub: string };
  const now = Math.floor(Date.now() / 1000);
  const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = enc({ alg: 'HS256', typ: 'JWT' });
  const body = enc({ sub: payload.sub, iat: now - 1000, exp: now - 60, typ: 'access', jti: randomBytes(16).toString('hex') });
  const sig = createHmac('sha256', TEST_JWT_SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** Opens the wallet menu in the header. */
export async function openWalletMenu(page: Page) {
  await page.getByRole('button', { name: /^Wallet 0x/ }).click();
}

/** One value from the billing stack's database (psql, as the embedded cluster's user). */
export function billingSql(query: string): string {
  const bins = fs.readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a));
  const psql = bins.map((v) => `/usr/lib/postgresql/${v}/bin/psql`).find((p) => fs.existsSync(p)) ?? 'psql';
  const r = spawnSync(psql, [process.env.E2E_BILLING_CONNINFO!, '-XtAc', query], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`psql failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** Calls the billing stack's manager admin endpoint (clock, trigger). */
export async function manager(pathAndQuery: string, body?: unknown): Promise<unknown> {
  const r = await fetch(`${process.env.E2E_MANAGER_URL}${pathAndQuery}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? '' : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`manager ${pathAndQuery}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Form controls on the page without an accessible name (should be none). */
export function unnamedControls(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll('input, select, button, textarea, summary')]
      .filter((el) => {
        const e = el as HTMLInputElement;
        const labelled = e.labels?.length || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby');
        return !labelled && !(el.textContent ?? '').trim() && e.type !== 'hidden';
      })
      .map((el) => el.outerHTML.slice(0, 80)),
  );
}
