/**
 * Full-page screenshots with an overflow check: nothing wider than the viewport (no
 * horizontal scrolling, nothing cut off at the right edge). With SUIFTLY_UPDATE_SCREENSHOTS=1
 * they are written to docs/dashboard/ (committed; look at them after a visual change),
 * otherwise to test-results/screenshots/.
 */
import type { Page } from '@playwright/test';
import path from 'node:path';
import { expect, quiet } from './fixtures';

export const widths = [
  { name: 'desktop', width: 1280, height: 800 },
  { name: 'phone', width: 390, height: 844 },
];

const outDir = process.env.SUIFTLY_UPDATE_SCREENSHOTS
  ? path.resolve(import.meta.dirname, '../../docs/dashboard')
  : path.resolve(import.meta.dirname, '../test-results/screenshots');

export async function shoot(page: Page, name: string, viewport: string) {
  // Let lazy chunks, fonts and queries settle (the live stream stays open).
  await quiet(page);
  await expect(page.locator('[role=status] .animate-spin')).toHaveCount(0);
  const overflow = await page.evaluate(() => {
    const vw = document.documentElement.clientWidth;
    const wide = [...document.querySelectorAll('body *')]
      .filter((el) => {
        const r = el.getBoundingClientRect();
        return r.width > 0 && (r.right > vw + 1 || r.left < -1) && getComputedStyle(el).position !== 'fixed';
      })
      .map((el) => `${el.tagName.toLowerCase()}.${(el.getAttribute('class') ?? '').split(' ').slice(0, 3).join('.')}`);
    return { scroll: document.documentElement.scrollWidth - vw, wide: wide.slice(0, 5) };
  });
  expect(overflow, `${name} at ${viewport} overflows horizontally`).toEqual({ scroll: 0, wide: [] });
  // From the top: a sticky header is drawn where the page was scrolled to otherwise.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(outDir, `${name}-${viewport}.png`), fullPage: true });
}

