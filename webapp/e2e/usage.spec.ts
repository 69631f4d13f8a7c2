/**
 * Usage against the real metering process (`suiftly run` with the API inside, e2e/servers.ts):
 * sf1 lines for the signed-in customer's key go to its UDP listener while the page is open,
 * and the page follows from the live stream (`/stats/live`), without a reload, to the exact
 * numbers sent — first the provisional view of the open minute, then a late line that
 * settles at once. The bucket in progress is marked; range, service filter and keyboard.
 * The billing page's "this month so far" follows settled usage the same way.
 */
import type { Page } from '@playwright/test';
import { bucketLabel } from '../src/lib/usage';
import { expect, test, unnamedControls, type Customer } from './fixtures';
import { customerIdOf, sendLines, sf1, type Sf1 } from './ingest';

/** Enables gRPC (Starter) and creates a mainnet key; a line factory for that key. */
async function withGrpcKey(c: Customer) {
  expect((await c.api('POST', '/billing/deposit', { amount_usd_cents: 10_000 })).status).toBe(200);
  expect((await c.api('PUT', '/services/grpc/config', { tier: 'starter' })).status).toBe(200);
  expect((await c.api('POST', '/services/grpc/enable')).status).toBe(200);
  expect((await c.api('POST', '/keys', { service: 'grpc', network: 'mainnet' })).status).toBe(201);
  const keys = (await c.api<{ keys: { service: string; fingerprint: number }[] }>('GET', '/keys')).body.keys;
  const fingerprint = keys.find((k) => k.service === 'grpc')!.fingerprint;
  const customerId = customerIdOf(c.token());
  return (o: Partial<Sf1>) =>
    sf1({ customerId, service: 'grpc', network: 'mainnet', fingerprint, trafficType: 1, status: 200, bytes: 1000, ms: 10, ...o });
}

/** Lines sent near the end of an hour could land in two buckets: start in the next one. */
async function awayFromHourEnd(page: Page) {
  const toNextHour = 3_600_000 - (Date.now() % 3_600_000);
  if (toNextHour < 45_000) await page.waitForTimeout(toNextHour + 1_000);
}

function totals(page: Page) {
  return {
    requests: page.getByTestId('usage-total-requests'),
    billable: page.getByTestId('usage-total-billable'),
    bandwidth: page.getByTestId('usage-total-bandwidth'),
    avg: page.getByTestId('usage-avg-response'),
  };
}

test('usage charts follow the log lines sent to the metering process, live', async ({ page, signIn }) => {
  test.setTimeout(120_000);
  const c = await signIn();
  const line = await withGrpcKey(c);
  await awayFromHourEnd(page);

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Usage', exact: true }).click();
  await expect(page).toHaveURL(/\/app\/usage$/);
  await expect(page.getByRole('heading', { level: 1, name: 'Usage' })).toBeVisible();
  await expect(page.getByTestId('live-status')).toHaveText('Live');
  await expect(page.getByText('No traffic in the last 24 hours')).toBeVisible();
  const t = totals(page);
  await expect(t.requests).toHaveText('0');
  await expect(t.avg).toHaveText('—');
  await expect(page.getByTestId('partial-note')).toHaveCount(0);

  // Two billable requests in the open minute: the provisional view, pushed by the stream.
  const at = Date.now();
  await sendLines([line({ atMs: at, ms: 10 }), line({ atMs: at, ms: 20 })]);
  await expect(t.requests).toHaveText('2');
  await expect(t.billable).toHaveText('2');
  await expect(t.bandwidth).toHaveText('2 kB');
  await expect(t.avg).toHaveText('15 ms');
  await expect(page.getByRole('heading', { name: 'Traffic' })).toBeVisible();
  await expect(page.locator('canvas')).toHaveCount(4);

  // One more billable and one refused (dropped: a request, not billable; its bytes count).
  await sendLines([line({ atMs: at, ms: 30 }), line({ atMs: at, trafficType: 3, status: 429, bytes: 200, ms: 1 })]);
  await expect(t.requests).toHaveText('4');
  await expect(t.billable).toHaveText('3');
  await expect(t.bandwidth).toHaveText('3.2 kB');
  await expect(t.avg).toHaveText('20 ms');

  // The current hour is in progress: said above the charts and in the table (newest first).
  const hour = new Date(at - (at % 3_600_000)).toISOString();
  await expect(page.getByTestId('partial-note')).toContainText(`The current hour (${bucketLabel(hour, 'hour')} UTC) is still in progress`);
  await page.getByText('Numbers per hour (table)').click();
  const rows = page.getByTestId('usage-row');
  await expect(rows).toHaveCount(24);
  const current = rows.first();
  await expect(current).toHaveAttribute('data-partial', 'true');
  await expect(current.getByRole('rowheader')).toHaveText(`${bucketLabel(hour, 'hour')}in progress`);
  await expect(current.getByRole('cell')).toHaveText(['4', '3', '3.2 kB', '20 ms']);
  await expect(page.locator('[data-testid=usage-row][data-partial]')).toHaveCount(1);

  // A late line for a minute metering has settled already: a `settled` event; counted once.
  await sendLines([line({ atMs: at - 2 * 60_000, bytes: 500, ms: 40 })]);
  await expect(t.requests).toHaveText('5');
  await expect(t.billable).toHaveText('4');
  await expect(t.bandwidth).toHaveText('3.7 kB');
  await expect(t.avg).toHaveText('25 ms');

  // Range: 7 days by day (six complete days and today, in progress), then 30 by keyboard.
  await page.locator('label', { hasText: '7 days' }).click();
  await expect(page.getByRole('radio', { name: '7 days' })).toBeChecked();
  await expect(page.getByText('Numbers per day (table)')).toBeVisible();
  await expect(rows).toHaveCount(7);
  await expect(t.requests).toHaveText('5');
  await expect(rows.first()).toHaveAttribute('data-partial', 'true');
  await expect(page.getByTestId('partial-note')).toContainText('The current day');
  await page.getByRole('radio', { name: '7 days' }).focus();
  await page.keyboard.press('ArrowRight');
  await expect(page.getByRole('radio', { name: '30 days' })).toBeChecked();
  await expect(rows).toHaveCount(30);
  await expect(t.billable).toHaveText('4');

  // Service filter: nothing for Seal, everything for gRPC.
  const service = page.getByLabel('Service', { exact: true });
  await service.selectOption('seal');
  await expect(page.getByText('No traffic in the last 30 days')).toBeVisible();
  await expect(t.requests).toHaveText('0');
  await service.selectOption('grpc');
  await expect(t.requests).toHaveText('5');

  expect(await unnamedControls(page)).toEqual([]);

  // Still live: one more line shows up without a reload.
  await sendLines([line({ ms: 25 })]);
  await expect(t.requests).toHaveText('6');
  await expect(page.getByTestId('live-status')).toHaveText('Live');
});

test('this month so far on the billing page follows settled usage, live', async ({ page, signIn }) => {
  // Late lines two hours back settle at once (late rows for a settled hour); they must fall in this month.
  const old = Date.now() - 2 * 3_600_000;
  test.skip(new Date(old).getUTCMonth() !== new Date().getUTCMonth(), 'two hours ago was last month: no usage to add to this one');
  const c = await signIn({ from: '/app/billing' });
  const line = await withGrpcKey(c);
  await expect(page.getByTestId('month-to-date')).toBeVisible();
  await expect(page.getByText('this view refreshes on its own, as soon as usage settles')).toBeVisible();
  await expect(page.getByRole('row', { name: /^gRPC/ })).toHaveCount(0);
  // Late lines for a completed hour: the next settlement adds them to the month's usage
  // (billable requests only: the refused one is not).
  await sendLines([line({ atMs: old }), line({ atMs: old }), line({ atMs: old, trafficType: 3, status: 429 })]);
  await expect(page.getByRole('row', { name: /^gRPC/ }).getByRole('cell')).toHaveText(['gRPC', '2', /^\$/]);
});

test('a failing series shows the error and recovers; a refused stream falls back to polling', async ({ page, signIn }) => {
  await signIn();
  // The stream is refused (as by a server without a live source) and one series fails.
  await page.route('**/stats/live', (r) =>
    r.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: { code: 'unavailable', message: 'no live source configured' } }) }),
  );
  let fail = true;
  await page.route('**/stats/bandwidth?*', (r) =>
    fail
      ? r.fulfill({ status: 500, contentType: 'application/json', body: JSON.stringify({ error: { code: 'internal', message: 'internal error' } }) })
      : r.fallback(),
  );
  await page.goto('/app/usage');
  await expect(page.getByTestId('live-status')).toHaveText('Live updates unavailable: refreshed every 30 s');
  const alert = page.getByRole('alert');
  await expect(alert).toContainText('Could not load this');
  fail = false;
  await alert.getByRole('button', { name: 'Try again' }).click();
  await expect(page.getByRole('alert')).toHaveCount(0);
  await expect(page.getByText('No traffic in the last 24 hours')).toBeVisible();
  await expect(page.getByTestId('usage-total-requests')).toHaveText('0');
});
