/** Every page is reachable from the navigation, at desktop and phone width, by mouse and keyboard. */
import { expect, test, unnamedControls } from './fixtures';

const pages = [
  { link: 'Overview', heading: 'Overview', path: /\/app\/$/ },
  { link: 'Usage', heading: 'Usage', path: /\/app\/usage$/ },
  { link: 'Seal', heading: 'Seal', path: /\/app\/services\/seal$/ },
  { link: 'gRPC', heading: 'gRPC', path: /\/app\/services\/grpc$/ },
  { link: 'GraphQL', heading: 'GraphQL', path: /\/app\/services\/graphql$/ },
  { link: 'SSFN soon', heading: 'SSFN', path: /\/app\/services\/ssfn$/ },
  { link: 'Sealo soon', heading: 'Sealo', path: /\/app\/services\/sealo$/ },
  { link: 'API keys', heading: 'API keys', path: /\/app\/keys$/ },
  { link: 'Billing', heading: 'Billing', path: /\/app\/billing$/ },
];

test('every page from the sidebar, with the current page marked', async ({ page, signIn }) => {
  await signIn();
  const nav = page.getByRole('navigation', { name: 'Main' });
  for (const p of pages) {
    await nav.getByRole('link', { name: p.link, exact: true }).click();
    await expect(page).toHaveURL(p.path);
    await expect(page.getByRole('heading', { level: 1, name: p.heading })).toBeVisible();
    await expect(nav.getByRole('link', { name: p.link, exact: true })).toHaveAttribute('aria-current', 'page');
  }
  await expect(page.getByText('Coming soon')).toHaveCount(0); // Billing is not a coming-soon page
  await page.goto('/app/services/ssfn');
  await expect(page.getByText('Coming soon')).toBeVisible();
  await page.goto('/app/no/such/page');
  await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
  await page.getByRole('link', { name: 'Go to the overview' }).click();
  await expect(page.getByRole('heading', { level: 1, name: 'Overview' })).toBeVisible();
});

test('the phone menu opens, navigates and closes', async ({ page, signIn }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await signIn();
  const menu = page.getByRole('button', { name: 'Menu' });
  await expect(menu).toHaveAttribute('aria-expanded', 'false');
  await expect(page.getByRole('navigation', { name: 'Main' })).toBeHidden();
  await menu.click();
  await expect(menu).toHaveAttribute('aria-expanded', 'true');
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'API keys' }).click();
  await expect(page.getByRole('heading', { level: 1, name: 'API keys' })).toBeVisible();
  await expect(menu).toHaveAttribute('aria-expanded', 'false');
});

test('the dashboard works from the keyboard', async ({ page, signIn }) => {
  const c = await signIn();
  expect((await c.api('POST', '/billing/deposit', { amount_usd_cents: 10_000 })).status).toBe(200);
  await page.goto('/app/services/seal');
  await expect(page.getByTestId('quote-monthly')).toHaveText('$20/month');
  // Tier radios: focus one and move with the arrow keys.
  await page.getByRole('radio', { name: /Starter/ }).focus();
  await page.keyboard.press('ArrowRight');
  await expect(page.getByRole('radio', { name: /Pro/ })).toBeChecked();
  await expect(page.getByTestId('quote-monthly')).toHaveText('$40/month');
  // Enable with the keyboard.
  await page.getByRole('button', { name: /^Enable Seal/ }).focus();
  await page.keyboard.press('Enter');
  await expect(page.getByText('Active', { exact: true })).toBeVisible();
  // A dialog traps focus and closes on Escape.
  await page.getByRole('button', { name: 'Disable Seal' }).focus();
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', { name: 'Disable Seal?' });
  await expect(dialog).toBeVisible();
  await page.keyboard.press('Escape');
  await expect(dialog).toBeHidden();
  await expect(page.getByText('Active', { exact: true })).toBeVisible();
  // Every form control on the page has an accessible name.
  const unnamed = await unnamedControls(page);
  expect(unnamed).toEqual([]);
});
