/**
 * Every page at desktop and phone width: nothing wider than the viewport (no horizontal
 * scrolling, nothing cut off at the right edge), and a full-page screenshot of each. With
 * SUIFTLY_UPDATE_SCREENSHOTS=1 they are written to docs/dashboard/ (committed; look at them
 * after a visual change), otherwise to test-results/screenshots/.
 */
import { expect, test } from './fixtures';
import { customerIdOf, sendLines, sf1 } from './ingest';
import { shoot, widths } from './shoot';

for (const vp of widths) {
  test(`every page at ${vp.name} width`, async ({ page, signIn }) => {
    await page.setViewportSize({ width: vp.width, height: vp.height });
    await page.goto('/app/');
    await expect(page.getByRole('heading', { name: 'Sign in to Suiftly' })).toBeVisible();
    await shoot(page, 'signin', vp.name);

    const c = await signIn();
    expect((await c.api('POST', '/billing/deposit', { amount_usd_cents: 25_000 })).status).toBe(200);
    expect((await c.api('PUT', '/services/seal/config', { tier: 'pro', burst: true, extra_api_keys: 1 })).status).toBe(200);
    expect((await c.api('POST', '/services/seal/enable')).status).toBe(200);
    expect((await c.api('POST', '/keys', { service: 'seal', network: 'mainnet' })).status).toBe(201);
    expect((await c.api('POST', '/keys', { service: 'seal', network: 'testnet', access: 'permission' })).status).toBe(201);

    await page.goto('/app/');
    await expect(page.getByRole('heading', { level: 1, name: 'Overview' })).toBeVisible();
    await shoot(page, 'overview', vp.name);

    // A day of Seal traffic (some errors, some refused) through the metering process.
    const customerId = customerIdOf(c.token());
    const now = Date.now();
    const hour = now - (now % 3_600_000);
    const lines: string[] = [];
    for (let h = 0; h < 24; h++) {
      const n = 4 + ((h * 7) % 11);
      for (let i = 0; i < n; i++) {
        const status = i % 9 === 8 ? 500 : i % 7 === 6 ? 404 : 200;
        const refused = i % 13 === 12;
        lines.push(
          sf1({
            customerId,
            service: 'seal',
            network: i % 3 === 0 ? 'testnet' : 'mainnet',
            trafficType: refused ? 3 : 1,
            status: refused ? 429 : status,
            bytes: 2_000 + ((h * 997 + i * 131) % 9_000),
            ms: 8 + ((h * 13 + i * 5) % 40),
            // This hour up to now; the 23 before it (the 24-hour window) from their middle.
            atMs: h === 0 ? now - i * 1_000 : hour - h * 3_600_000 + 1_800_000 + i * 1_000,
          }),
        );
      }
    }
    await sendLines(lines);
    await page.goto('/app/usage');
    await expect(page.getByTestId('usage-total-requests')).toHaveText(lines.length.toLocaleString('en-US'));
    await expect(page.getByTestId('live-status')).toHaveText('Live');
    await page.getByText('Numbers per hour (table)').click();
    await expect(page.getByTestId('usage-row')).toHaveCount(24);
    await shoot(page, 'usage', vp.name);

    await page.goto('/app/services/seal');
    await expect(page.getByText('Active', { exact: true })).toBeVisible();
    await page.getByRole('radio', { name: /Enterprise/ }).check();
    await expect(page.getByTestId('quote-monthly')).toHaveText('$91/month');
    await shoot(page, 'service-seal', vp.name);

    await page.goto('/app/services/grpc');
    await expect(page.getByTestId('quote-monthly')).toHaveText('$20/month');
    await shoot(page, 'service-grpc', vp.name);

    await page.goto('/app/services/ssfn');
    await expect(page.getByText('Coming soon')).toBeVisible();
    await shoot(page, 'coming-soon', vp.name);

    await page.goto('/app/keys');
    await expect(page.getByTestId('api-key-row')).toHaveCount(2);
    await shoot(page, 'keys', vp.name);
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.getByRole('dialog', { name: 'Create an API key' }).getByRole('button', { name: 'Create key' }).click();
    await expect(page.getByRole('dialog', { name: 'Your new API key' })).toBeVisible();
    await shoot(page, 'keys-new-key', vp.name);
    await page.getByRole('button', { name: 'I have saved it' }).click();

    await page.goto('/app/billing');
    await expect(page.getByTestId('billing-balance')).toHaveText('$250.00');
    await shoot(page, 'billing', vp.name);

    await page.getByRole('main').getByRole('button', { name: 'Deposit' }).click();
    await page.getByLabel('Amount (USD)').fill('100');
    await shoot(page, 'deposit', vp.name);
    await page.getByRole('button', { name: 'Cancel' }).click();

    if (vp.name === 'phone') {
      await page.getByRole('button', { name: 'Menu' }).click();
      await shoot(page, 'menu', vp.name);
      await page.getByRole('button', { name: 'Menu' }).click();
      await page.getByRole('button', { name: /^Wallet 0x/ }).click();
      await shoot(page, 'wallet-menu', vp.name);
    } else {
      await page.getByRole('button', { name: /^Wallet 0x/ }).click();
      await shoot(page, 'wallet-menu', vp.name);
    }

    await page.goto('/app/no/such/page');
    await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
    await shoot(page, 'not-found', vp.name);
  });
}
