/** Service configuration: refusal with its reason, enable Seal, Starter → Pro, add-ons, disable. */
import { expect, test } from './fixtures';

test('enable Seal after a balance refusal, upgrade to Pro, add burst and keys, disable', async ({ page, signIn }) => {
  await signIn();
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Seal', exact: true }).click();
  await expect(page.getByRole('heading', { name: 'Seal' })).toBeVisible();
  await expect(page.getByText('Not enabled')).toBeVisible();

  // Live quote for the default (Starter) and the structured refusal: the balance is $0.
  await expect(page.getByTestId('quote-monthly')).toHaveText('$20/month');
  await expect(page.getByText('Insufficient balance: deposit $20.00 to continue')).toBeVisible();
  const enable = page.getByRole('button', { name: /^Enable Seal/ });
  await expect(enable).toBeDisabled();

  // Tier cards are priced by the server.
  await expect(page.getByRole('radio', { name: /Pro/ })).toBeVisible();
  const enterprise = page.locator('label').filter({ has: page.getByRole('radio', { name: /Enterprise/ }) });
  await expect(enterprise).toContainText('$80/month');
  await expect(enterprise).toContainText('2,000 req/s per region');

  // The refusal offers the way out: deposit from here.
  await page.getByRole('button', { name: 'Deposit funds' }).click();
  await page.getByLabel('Amount (USD)').fill('40');
  await page.getByRole('button', { name: 'Deposit $40.00' }).click();
  await expect(page.getByText('Deposit complete')).toBeVisible();
  await page.getByRole('button', { name: 'Done' }).click();
  await expect(page.getByTestId('header-balance')).toHaveText('$40.00');

  await expect(page.getByText(/Insufficient balance/)).toHaveCount(0);
  await expect(enable).toBeEnabled();
  await enable.click();
  await expect(page.getByText('Active', { exact: true })).toBeVisible();
  await expect(page.getByText('Starter · $20/month · 100 req/s per region')).toBeVisible();

  // Starter → Pro: the quote follows the selection before anything is saved.
  await page.getByRole('radio', { name: /Pro/ }).check();
  await expect(page.getByTestId('quote-monthly')).toHaveText('$40/month');
  await expect(page.getByText('$40/month, $20.00 more per month')).toBeVisible();
  // Burst is a Pro option; the Starter tier keeps it off.
  const burst = page.getByRole('checkbox', { name: /Burst/ });
  await expect(burst).toBeEnabled();
  await burst.check();
  await page.getByLabel('Extra API keys').fill('1');
  await expect(page.getByTestId('quote-monthly')).toHaveText('$51/month');
  await expect(page.getByTestId('quote-lines')).toContainText('Burst add-on$10');
  await expect(page.getByTestId('quote-lines')).toContainText('Extra API keys$1');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await expect(page.getByText('Saved.')).toBeVisible();
  await expect(page.getByText('Pro · $51/month · 500 req/s per region')).toBeVisible();
  await expect(page.getByText('0 of 3 API keys in use')).toBeVisible();

  // Back to Starter turns burst off (not sold on Starter).
  await page.getByRole('radio', { name: /Starter/ }).check();
  await expect(burst).toBeDisabled();
  await expect(burst).not.toBeChecked();
  await page.getByRole('button', { name: 'Discard' }).click();
  await expect(burst).toBeChecked();

  // Disable, with confirmation.
  await page.getByRole('button', { name: 'Disable Seal' }).click();
  const dialog = page.getByRole('dialog', { name: 'Disable Seal?' });
  await expect(dialog).toBeVisible();
  await dialog.getByRole('button', { name: 'Disable' }).click();
  await expect(dialog).toBeHidden();
  await expect(page.getByText('Disabled', { exact: true })).toBeVisible();
  // Enabling again costs the full month, which the $40 balance cannot cover.
  await expect(page.getByText('Insufficient balance: deposit $11.00 to continue')).toBeVisible();
  await expect(page.getByRole('button', { name: /^Enable Seal · \$51\/month/ })).toBeDisabled();

  // The overview agrees.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Overview' }).click();
  await expect(page.getByRole('listitem').filter({ hasText: 'Seal' })).toContainText('Disabled');
  await expect(page.getByRole('listitem').filter({ hasText: 'Seal' })).toContainText('Pro · $51/month');
});

test('a monthly-limit refusal names the limit and when it resets', async ({ page, signIn }) => {
  const c = await signIn();
  expect((await c.api('POST', '/billing/deposit', { amount_usd_cents: 20_000 })).status).toBe(200);
  expect((await c.api('PUT', '/billing/limit', { max_monthly_usd_cents: 10_000 })).status).toBe(200);
  await page.goto('/app/services/graphql');
  await page.getByRole('radio', { name: /Enterprise/ }).check();
  await page.getByRole('checkbox', { name: /Burst/ }).check();
  await page.getByLabel('Extra API keys').fill('30');
  await expect(page.getByTestId('quote-monthly')).toHaveText('$120/month');
  const balance = (await c.api<{ current_month_start: string }>('GET', '/billing/balance')).body;
  const month = Number(balance.current_month_start.slice(5, 7));
  const next = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][month % 12];
  await expect(
    page.getByText(`Monthly limit reached: raise it or wait until 1 ${next} ($120.00 needed, $100.00 left this month)`),
  ).toBeVisible();
  await page.getByRole('link', { name: 'Raise the monthly limit' }).click();
  await expect(page).toHaveURL(/\/app\/billing#limit$/);
  await page.getByLabel('Limit (USD per month)').fill('500');
  await page.getByRole('button', { name: 'Save limit' }).click();
  await expect(page.getByText('Limit set to $500.00.')).toBeVisible();
  await page.goBack();
  await page.getByRole('radio', { name: /Enterprise/ }).check();
  await page.getByRole('checkbox', { name: /Burst/ }).check();
  await page.getByLabel('Extra API keys').fill('30');
  await page.getByRole('button', { name: /^Enable GraphQL/ }).click();
  await expect(page.getByText('Active', { exact: true })).toBeVisible();
});

test('the API refusal itself is shown when the quote was still allowed', async ({ page, signIn }) => {
  const c = await signIn();
  expect((await c.api('POST', '/billing/deposit', { amount_usd_cents: 2_500 })).status).toBe(200);
  await page.goto('/app/services/grpc');
  await expect(page.getByTestId('quote-monthly')).toHaveText('$20/month');
  const enable = page.getByRole('button', { name: /^Enable gRPC/ });
  await expect(enable).toBeEnabled();
  // The money leaves in another tab after the quote was shown.
  expect((await c.api('POST', '/billing/withdraw', { amount_usd_cents: 1_000 })).status).toBe(200);
  await enable.click();
  await expect(page.getByRole('alert').filter({ hasText: 'Not saved' })).toContainText(
    'Insufficient balance: deposit $5.00 to continue',
  );
  await expect(page.getByText('Not enabled')).toBeVisible();
});
