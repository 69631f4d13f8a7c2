/** API keys: create (full key once, copied), regenerate with confirmation, revoke, the limit. */
import { expect, test } from './fixtures';

test.use({ permissions: ['clipboard-read', 'clipboard-write'] });

test('create, copy, regenerate and revoke an API key', async ({ page, signIn }) => {
  const c = await signIn();
  await page.goto('/app/keys');
  await expect(page.getByText('Set up a service first')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Create key' })).toBeDisabled();

  expect((await c.api('POST', '/billing/deposit', { amount_usd_cents: 5_000 })).status).toBe(200);
  expect((await c.api('POST', '/services/seal/enable')).status).toBe(200);
  await page.reload();
  await expect(page.getByText('No API keys yet')).toBeVisible();
  await expect(page.getByText('Seal: 0 of 2 keys')).toBeVisible();

  // Create: the full key is shown once and copies to the clipboard.
  await page.getByRole('button', { name: 'Create key' }).click();
  const create = page.getByRole('dialog', { name: 'Create an API key' });
  await create.getByLabel('Network').selectOption('testnet');
  await create.getByRole('button', { name: 'Create key' }).click();
  const shown = page.getByRole('dialog', { name: 'Your new API key' });
  await expect(shown.getByText('This is the only time the full key is shown')).toBeVisible();
  const full = await shown.getByLabel(/Seal key \(testnet\)/).inputValue();
  expect(full).toMatch(/^S[A-Z0-9]{36}$/);
  await shown.getByRole('button', { name: 'Copy key' }).click();
  await expect(shown.getByRole('button', { name: 'Copied' })).toBeVisible();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(full);
  await shown.getByRole('button', { name: 'I have saved it' }).click();
  await expect(shown).toBeHidden();

  // The list shows only the masked preview.
  const rows = page.getByTestId('api-key-row');
  await expect(rows).toHaveCount(1);
  const preview = `${full.slice(0, 6)}…${full.slice(-4)}`;
  await expect(rows.first()).toContainText(preview);
  await expect(rows.first()).toContainText('Seal · testnet · open');
  await expect(page.getByText(full)).toHaveCount(0);

  // Regenerate asks first; cancelling changes nothing.
  await page.getByRole('button', { name: `Regenerate key ${preview}` }).click();
  const confirm = page.getByRole('dialog', { name: 'Regenerate this key?' });
  await expect(confirm).toContainText('stops working immediately');
  await confirm.getByRole('button', { name: 'Cancel' }).click();
  await expect(rows.first()).toContainText(preview);
  await page.getByRole('button', { name: `Regenerate key ${preview}` }).click();
  await confirm.getByRole('button', { name: 'Regenerate' }).click();
  const replacement = await shown.getByLabel(/Seal key \(testnet\)/).inputValue();
  expect(replacement).toMatch(/^S[A-Z0-9]{36}$/);
  expect(replacement).not.toBe(full);
  await shown.getByRole('button', { name: 'I have saved it' }).click();
  const newPreview = `${replacement.slice(0, 6)}…${replacement.slice(-4)}`;
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText(newPreview);
  await expect(rows.first()).toContainText('Seal · testnet'); // same settings

  // The old key is revoked, visible on request.
  await page.getByLabel('Show revoked keys').check();
  await expect(rows).toHaveCount(2);
  await expect(rows.filter({ hasText: preview })).toContainText('Revoked');
  await page.getByLabel('Show revoked keys').uncheck();

  // Revoke.
  await page.getByRole('button', { name: `Revoke key ${newPreview}` }).click();
  await page.getByRole('dialog', { name: 'Revoke this key?' }).getByRole('button', { name: 'Revoke' }).click();
  await expect(page.getByText('No API keys yet')).toBeVisible();
});

test('the key limit is explained', async ({ page, signIn }) => {
  const c = await signIn();
  expect((await c.api('POST', '/billing/deposit', { amount_usd_cents: 5_000 })).status).toBe(200);
  expect((await c.api('POST', '/services/grpc/enable')).status).toBe(200);
  for (let i = 0; i < 2; i++) expect((await c.api('POST', '/keys', { service: 'grpc' })).status).toBe(201);
  await page.goto('/app/keys');
  await expect(page.getByTestId('api-key-row')).toHaveCount(2);
  await page.getByRole('button', { name: 'Create key' }).click();
  const create = page.getByRole('dialog', { name: 'Create an API key' });
  await expect(create.getByLabel('Access')).toHaveCount(0); // Seal only
  await create.getByRole('button', { name: 'Create key' }).click();
  await expect(create.getByRole('alert')).toHaveText(
    'API key limit reached (2 active keys): buy extra keys on the service page or revoke one',
  );
});
