/**
 * Billing history against the real manager (the "billing" server set: `suiftly api` +
 * `suiftly manager` on their own PostgreSQL, mock escrow): a deposit through the UI, the
 * enable fee charged by the manager, this month's charges, the invoice's line items and the
 * ledger — each compared with the database — then the month rolls over (the manager's clock
 * moves to the 1st of next month) with too little balance: the account is suspended, the
 * dashboard says why and what to deposit, the deposit made from that notice resumes it.
 */
import type { Page } from '@playwright/test';
import { formatCents } from '../src/lib/money';
import { billingSql, expect, manager, test } from './fixtures';
import { shoot, widths } from './shoot';

test.use({ stack: 'billing' });

const STARTER_CENTS = 2000;

/** BILLING.md §2: floor(price × (D − d + 1) / D) for an enable on day d of a D-day month (UTC). */
function proratedToday(price: number): number {
  const now = new Date();
  const days = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 0)).getUTCDate();
  return Math.floor((price * (days - now.getUTCDate() + 1)) / days);
}

function monthOf(d: Date): string {
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
}

async function shootBoth(page: Page, name: string) {
  for (const vp of widths) {
    await page.setViewportSize({ width: vp.width, height: vp.height });
    await shoot(page, name, vp.name);
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

test('billing history from the manager, then a suspension at the rollover and the deposit that lifts it', async ({ page, signIn }) => {
  test.setTimeout(180_000);
  const c = await signIn({ from: '/app/billing' });
  const id = Number(billingSql(`SELECT customer_id FROM customers WHERE wallet_address = '${c.wallet.address}'`));
  expect(id).toBeGreaterThan(0);

  // Deposit $30 from the billing page; the ledger row and the balance are the database's.
  await expect(page.getByText('No transactions yet')).toBeVisible();
  await expect(page.getByText('No invoices yet')).toBeVisible();
  await page.getByRole('main').getByRole('button', { name: 'Deposit', exact: true }).click();
  const dialog = page.getByRole('dialog', { name: 'Deposit funds' });
  await dialog.getByLabel('Amount (USD)').fill('30');
  await dialog.getByRole('button', { name: 'Deposit $30.00' }).click();
  await dialog.getByRole('button', { name: 'Done' }).click();
  await expect(page.getByTestId('transaction').first()).toContainText('Deposit');
  await expect(page.getByTestId('transaction').first()).toContainText('+$30.00');
  expect(billingSql(`SELECT current_balance_usd_cents FROM customers WHERE customer_id = ${id}`)).toBe('3000');

  // Enable Seal (Starter): the API notifies the manager, which adds the pro-rated fee to this
  // month's invoice and charges it at once.
  expect((await c.api('PUT', '/services/seal/config', { tier: 'starter' })).status).toBe(200);
  expect((await c.api('POST', '/services/seal/enable')).status).toBe(200);
  const fee = proratedToday(STARTER_CENTS);
  await expect
    .poll(() => billingSql(`SELECT count(*) FROM escrow_transactions WHERE customer_id = ${id} AND kind = 'charge'`), { timeout: 60_000 })
    .toBe('1');
  const [dbBalance, dbCharged] = billingSql(
    `SELECT current_balance_usd_cents || ' ' || current_month_charged_usd_cents FROM customers WHERE customer_id = ${id}`,
  )
    .split(' ')
    .map(Number);
  const dbFee = Number(
    billingSql(
      `SELECT l.amount_cents FROM invoice_lines l JOIN invoices i USING (invoice_id)
       WHERE i.customer_id = ${id} AND l.kind = 'fee' AND l.service_type IS NOT NULL`,
    ),
  );
  expect(dbFee).toBe(fee);
  expect(dbBalance).toBe(3000 - fee);
  expect(dbCharged).toBe(fee);

  await page.reload();
  await expect(page.getByTestId('billing-balance')).toHaveText(formatCents(dbBalance!));
  await expect(page.getByTestId('month-charged')).toHaveText(formatCents(dbCharged!));
  await expect(page.getByTestId('month-invoiced')).toHaveText(formatCents(fee));
  await expect(page.getByTestId('month-to-date')).toHaveText(formatCents(fee));
  const charge = page.getByTestId('transaction').first();
  await expect(charge).toContainText('Charge');
  await expect(charge).toContainText(`-${formatCents(fee)}`);
  await expect(charge).toContainText(formatCents(3000 - fee));
  const thisMonth = monthOf(new Date());
  const invoice = page.getByTestId(`invoice-${thisMonth}`);
  await expect(invoice).toContainText('Open');
  await expect(invoice.getByTestId('invoice-total')).toHaveText(formatCents(fee));
  await invoice.getByRole('button', { name: /^Details/ }).click();
  await expect(invoice.getByTestId('invoice-line')).toHaveCount(1);
  await expect(invoice.getByTestId('invoice-line')).toContainText(formatCents(fee));

  // Leave $5 and move the manager's clock to 01:00 on the 1st of next month: the month's
  // invoice is finalized (already paid), the new month's full Starter fee cannot be charged.
  const keep = 500;
  expect((await c.api('POST', '/billing/withdraw', { amount_usd_cents: 3000 - fee - keep })).status).toBe(200);
  const now = new Date();
  const next = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1, 1, 0, 0));
  await manager('/manager/clock/set', { now: next.toISOString() });
  await manager('/manager/trigger', { customer_ids: [id] });
  await expect
    .poll(() => billingSql(`SELECT coalesce(suspension_reason, '') FROM customers WHERE customer_id = ${id}`), { timeout: 60_000 })
    .toBe('insufficient_balance');
  expect(billingSql(`SELECT status FROM invoices WHERE customer_id = ${id} AND month = date '${thisMonth}-01'`)).toBe('paid');
  const due = Number(
    billingSql(`SELECT total_cents - paid_cents FROM invoices WHERE customer_id = ${id} AND month = date '${monthOf(next)}-01'`),
  );
  expect(due).toBe(STARTER_CENTS);

  // The dashboard says so everywhere a customer looks, with the deposit that resumes.
  const need = formatCents(due - keep);
  await page.goto('/app/');
  await expect(page.getByTestId('suspension')).toContainText('Services suspended: insufficient balance');
  await expect(page.getByRole('listitem').filter({ hasText: 'Seal' })).toContainText('Suspended: balance');
  await page.goto('/app/services/seal');
  await expect(page.getByTestId('suspension')).toContainText(`Deposit ${need} to pay what is due and resume them.`);
  await page.goto('/app/billing');
  const notice = page.getByTestId('suspension');
  await expect(notice).toContainText(`Deposit ${need} to pay what is due and resume them.`);
  await expect(page.getByTestId(`invoice-${monthOf(next)}`)).toContainText(`${formatCents(due)} due`);
  await expect(page.getByTestId(`invoice-${thisMonth}`)).toContainText('Paid');
  await shootBoth(page, 'billing-suspended');

  await notice.getByRole('button', { name: `Deposit ${need}` }).click();
  const d2 = page.getByRole('dialog', { name: 'Deposit funds' });
  await expect(d2.getByLabel('Amount (USD)')).toHaveValue(centsInput(due - keep));
  await d2.getByRole('button', { name: `Deposit ${need}` }).click();
  await d2.getByRole('button', { name: 'Done' }).click();

  // The deposit notifies the manager, which charges the new month's fee and lifts the
  // suspension; the page follows on its own.
  await expect
    .poll(() => billingSql(`SELECT coalesce(suspension_reason, 'none') FROM customers WHERE customer_id = ${id}`), { timeout: 60_000 })
    .toBe('none');
  expect(billingSql(`SELECT current_balance_usd_cents FROM customers WHERE customer_id = ${id}`)).toBe('0');
  await expect(page.getByTestId('suspension')).toHaveCount(0, { timeout: 30_000 });
  await expect(page.getByTestId('billing-balance')).toHaveText('$0.00', { timeout: 30_000 });
  const last = page.getByTestId('transaction').first();
  await expect(last).toContainText('Charge', { timeout: 30_000 });
  await expect(last).toContainText(`-${formatCents(STARTER_CENTS)}`);
  await expect(page.getByTestId('transaction')).toHaveCount(5); // deposit, charge, withdrawal, deposit, charge
  await page.getByTestId(`invoice-${thisMonth}`).getByRole('button', { name: /^Details/ }).click();
  await expect(page.getByTestId(`invoice-${thisMonth}`)).toContainText(`Paid by ${formatCents(fee)}`);
  await shootBoth(page, 'billing-history');
});

function centsInput(cents: number): string {
  return `${Math.trunc(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
}
