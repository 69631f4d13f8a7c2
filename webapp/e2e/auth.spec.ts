/** Sign-in with a real Sui signature, protected routes, reload, silent refresh, sign-out, mock mode. */
import { expect, expiredAccessToken, openWalletMenu, test } from './fixtures';
import { WALLET_NAME, installWallet, seedFor } from './wallet';

test('a protected page sends to sign-in and back after a real signature', async ({ page, wallet, signIn }) => {
  await page.goto('/app/keys');
  await expect(page).toHaveURL(/\/app\/signin\?redirect=%2Fkeys/);
  await expect(page.getByRole('heading', { name: 'Sign in to Suiftly' })).toBeVisible();
  await signIn({ from: '/app/keys' });
  await expect(page).toHaveURL(/\/app\/keys$/);
  await expect(page.getByRole('heading', { name: 'API keys' })).toBeVisible();
  expect(wallet.signed()).toBe(1);
  // The header shows who is signed in.
  await openWalletMenu(page);
  await expect(page.getByText(wallet.address)).toBeVisible();
});

test('the session survives a reload through the refresh cookie', async ({ page, wallet, signIn }) => {
  await signIn();
  await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();
  const refreshed = page.waitForResponse((r) => r.url().endsWith('/auth/refresh') && r.status() === 200);
  await page.reload();
  await refreshed;
  await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();
  await expect(page).not.toHaveURL(/signin/);
  expect(wallet.signed()).toBe(1);
});

test('an expired access token is refreshed silently and the request retried', async ({ page, signIn }) => {
  const customer = await signIn();
  await page.getByRole('link', { name: 'Billing' }).first().click();
  await expect(page.getByTestId('billing-balance')).toHaveText('$0.00');

  // The next balance request carries a token the server sees as expired (signed with its secret).
  const expired = expiredAccessToken(customer.token());
  let swapped = 0;
  await page.route('**/billing/balance', async (route) => {
    const auth = route.request().headers().authorization ?? '';
    if (swapped === 0 && auth.startsWith('Bearer ')) {
      swapped++;
      await route.continue({ headers: { ...route.request().headers(), authorization: `Bearer ${expired}` } });
    } else {
      await route.continue();
    }
  });
  const rejected = page.waitForResponse((r) => r.url().endsWith('/billing/balance') && r.status() === 401);
  const refreshed = page.waitForResponse((r) => r.url().endsWith('/auth/refresh') && r.status() === 200);
  const retried = page.waitForResponse((r) => r.url().endsWith('/billing/balance') && r.status() === 200);
  // Depositing invalidates the balance, which refetches it with the expired token.
  await page.getByRole('main').getByRole('button', { name: 'Deposit' }).click();
  await page.getByLabel('Amount (USD)').fill('7.25');
  await page.getByRole('button', { name: 'Deposit $7.25' }).click();
  await expect(page.getByText('Deposit complete')).toBeVisible();
  await Promise.all([rejected, refreshed, retried]);
  expect(swapped).toBe(1);
  await page.getByRole('button', { name: 'Done' }).click();
  await expect(page.getByTestId('billing-balance')).toHaveText('$7.25');
  await expect(page).not.toHaveURL(/signin/);
});

test('the session is refreshed before the access token expires', async ({ page, signIn }) => {
  await page.clock.install();
  await signIn();
  await expect(page.getByRole('heading', { level: 1, name: 'Overview' })).toBeVisible();
  // The access token lives 15 minutes; the timer refreshes a minute before.
  const refreshed = page.waitForResponse((r) => r.url().endsWith('/auth/refresh') && r.status() === 200);
  await page.clock.fastForward('14:01');
  await refreshed;
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Billing' }).click();
  await expect(page.getByTestId('billing-balance')).toHaveText('$0.00');
  await expect(page).not.toHaveURL(/signin/);
});

test('sign-out revokes the refresh token and protects the pages again', async ({ page, context, signIn }) => {
  await signIn();
  const before = (await context.cookies()).find((c) => c.name === 'suiftly_refresh');
  expect(before?.httpOnly).toBe(true);
  await openWalletMenu(page);
  const logout = page.waitForResponse((r) => r.url().endsWith('/auth/logout'));
  await page.getByRole('button', { name: 'Sign out' }).click();
  expect((await logout).status()).toBe(204);
  await expect(page).toHaveURL(/\/app\/signin/);
  // The old refresh token is dead on the server, not only forgotten by the browser.
  const replay = await page.request.post('/auth/refresh', { headers: { cookie: `suiftly_refresh=${before!.value}` } });
  expect(replay.status()).toBe(401);
  await page.goto('/app/billing');
  await expect(page).toHaveURL(/\/app\/signin\?redirect=%2Fbilling/);
});

test.describe('a wallet that signs wrongly', () => {
  test.use({ walletMode: 'bogus-signature' });

  test('is refused by the real server and accepted in mock mode', async ({ page, browser, wallet }) => {
    await page.goto('/app/');
    await page.getByRole('button', { name: WALLET_NAME }).click();
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await expect(page.getByRole('alert')).toHaveText(/could not verify the signature/);
    await expect(page).toHaveURL(/signin/);
    expect(wallet.signed()).toBe(1);

    // The same production build served by a MOCK_AUTH=true server signs the wallet in.
    const mock = await browser.newPage({ baseURL: process.env.E2E_MOCK_URL });
    try {
      const w = await installWallet(mock, seedFor('mock mode'), 'bogus-signature');
      await mock.goto('/app/billing');
      await mock.getByRole('button', { name: WALLET_NAME }).click();
      await mock.getByRole('button', { name: 'Sign in', exact: true }).click();
      await expect(mock.getByRole('heading', { name: 'Billing' })).toBeVisible();
      await expect(mock.getByRole('button', { name: /^Wallet 0x/ })).toHaveAccessibleName(`Wallet ${w.address}`);
      expect(w.signed()).toBe(1);
    } finally {
      await mock.close();
    }
  });
});

test.describe('a wallet that declines', () => {
  test.use({ walletMode: 'reject' });

  test('shows that the wallet declined', async ({ page, wallet }) => {
    await page.goto('/app/');
    await page.getByRole('button', { name: WALLET_NAME }).click();
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await expect(page.getByRole('alert')).toHaveText('The wallet declined the request.');
    expect(wallet.signed()).toBe(0);
  });
});
