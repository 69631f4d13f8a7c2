/** Balance, deposit and withdraw from the header and the billing page, refusals, the limit. */
import { expect, openWalletMenu, test } from './fixtures';

test('deposit, a refused withdrawal, a withdrawal, and the monthly limit', async ({ page, signIn }) => {
  await signIn();
  await expect(page.getByTestId('header-balance')).toHaveText('$0.00');

  // Deposit from the header widget.
  await page.getByRole('banner').getByRole('button', { name: 'Deposit' }).click();
  const dialog = page.getByRole('dialog', { name: 'Deposit funds' });
  await dialog.getByLabel('Amount (USD)').fill('12.345');
  await dialog.getByRole('button', { name: 'Deposit' }).click();
  await expect(dialog.getByText('Use at most two decimals (cents)')).toBeVisible();
  await dialog.getByLabel('Amount (USD)').fill('$1,012.34');
  await dialog.getByRole('button', { name: 'Deposit $1,012.34' }).click();
  await expect(dialog.getByText('New balance: $1,012.34.')).toBeVisible();
  await dialog.getByRole('button', { name: 'Done' }).click();
  await expect(page.getByTestId('header-balance')).toHaveText('$1,012.34');

  // Billing page.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Billing' }).click();
  await expect(page.getByTestId('billing-balance')).toHaveText('$1,012.34');
  await expect(page.getByTestId('month-charged')).toHaveText('$0.00');
  await expect(page.getByText('Left before the limit')).toBeVisible();

  // Withdrawing more than the balance is refused with the amount that is possible.
  await page.getByRole('main').getByRole('button', { name: 'Withdraw' }).click();
  const w = page.getByRole('dialog', { name: 'Withdraw funds' });
  await w.getByLabel('Amount (USD)').fill('2000');
  await w.getByRole('button', { name: 'Withdraw $2,000.00' }).click();
  await expect(w.getByRole('alert')).toHaveText('Not enough funds: you can withdraw at most $1,012.34');
  await w.getByLabel('Amount (USD)').fill('12.34');
  await w.getByRole('button', { name: 'Withdraw $12.34' }).click();
  await expect(w.getByText('New balance: $1,000.00.')).toBeVisible();
  await w.getByRole('button', { name: 'Done' }).click();
  await expect(page.getByTestId('billing-balance')).toHaveText('$1,000.00');
  await expect(page.getByTestId('header-balance')).toHaveText('$1,000.00');

  // The monthly limit: out of range is refused by the API with the range, then a valid one.
  const limit = page.getByLabel('Limit (USD per month)');
  await expect(limit).toHaveValue('2000.00');
  await limit.fill('50');
  await page.getByRole('button', { name: 'Save limit' }).click();
  await expect(page.getByRole('alert')).toHaveText('The monthly limit must be between $100.00 and $50,000.00');
  await limit.fill('150');
  await page.getByRole('button', { name: 'Save limit' }).click();
  await expect(page.getByText('Limit set to $150.00.')).toBeVisible();
  await expect(page.getByText(/0% of \$150\.00/)).toBeVisible();

  // Reload: everything came from the server.
  await page.reload();
  await expect(page.getByTestId('billing-balance')).toHaveText('$1,000.00');
  await expect(page.getByLabel('Limit (USD per month)')).toHaveValue('150.00');
});

test('the wallet menu works at phone width', async ({ page, signIn }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await signIn();
  // Balance and money buttons move into the wallet menu.
  await expect(page.getByTestId('header-balance')).toBeHidden();
  await openWalletMenu(page);
  await page.getByRole('button', { name: 'Deposit' }).click();
  const dialog = page.getByRole('dialog', { name: 'Deposit funds' });
  await dialog.getByLabel('Amount (USD)').fill('5');
  await dialog.getByRole('button', { name: 'Deposit $5.00' }).click();
  await dialog.getByRole('button', { name: 'Done' }).click();
  await openWalletMenu(page);
  await expect(page.getByTestId('menu-balance')).toHaveText('$5.00');
});
