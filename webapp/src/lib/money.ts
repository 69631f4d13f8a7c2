/**
 * Money is integer USD cents everywhere (the API's `*_usd_cents` fields). These helpers format
 * and parse it with integer and string arithmetic only: no value is ever divided into a
 * fraction, so $0.10 + $0.20 is never $0.30000000000000004 and a large balance never loses
 * its last cent.
 */

/** Thrown for a value that is not a whole number of cents (a bug upstream, never rounded). */
export class NotCentsError extends Error {
  constructor(value: unknown) {
    super(`not an integer number of cents: ${String(value)}`);
  }
}

function groupThousands(digits: string): string {
  let out = '';
  for (let i = 0; i < digits.length; i++) {
    if (i > 0 && (digits.length - i) % 3 === 0) out += ',';
    out += digits[i];
  }
  return out;
}

function split(cents: number): { negative: boolean; dollars: string; rest: string } {
  if (!Number.isSafeInteger(cents)) throw new NotCentsError(cents);
  const negative = cents < 0;
  const abs = negative ? -cents : cents;
  const rest = abs % 100;
  // (abs - rest) is an exact multiple of 100, so the quotient is an exact integer.
  const dollars = (abs - rest) / 100;
  return { negative, dollars: groupThousands(String(dollars)), rest: String(rest).padStart(2, '0') };
}

/** `123456` → `"$1,234.56"`, `-1240` → `"-$12.40"`. */
export function formatCents(cents: number): string {
  const { negative, dollars, rest } = split(cents);
  return `${negative ? '-' : ''}$${dollars}.${rest}`;
}

/** Prices read better without `.00`: `2000` → `"$20"`, `1240` → `"$12.40"`. */
export function formatPrice(cents: number): string {
  const { negative, dollars, rest } = split(cents);
  return `${negative ? '-' : ''}$${dollars}${rest === '00' ? '' : `.${rest}`}`;
}

/** `4000` → `"$40/month"`. */
export function formatMonthly(cents: number): string {
  return `${formatPrice(cents)}/month`;
}

export type ParseResult = { ok: true; cents: number } | { ok: false; error: string };

/**
 * Parses what a customer types as a dollar amount: `12`, `12.4`, `12.40`, `$1,234.56`,
 * ` 5 `. More than two decimals, signs, exponents and stray characters are refused rather
 * than rounded.
 */
export function parseDollars(input: string): ParseResult {
  const s = input.trim().replace(/^\$\s*/, '');
  if (s === '') return { ok: false, error: 'Enter an amount' };
  const m = /^(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{0,2}))?$/.exec(s);
  if (!m) {
    if (/^\d[\d,]*\.\d{3,}$/.test(s)) return { ok: false, error: 'Use at most two decimals (cents)' };
    return { ok: false, error: 'Enter an amount in dollars, like 25 or 12.50' };
  }
  const whole = (m[1] ?? '0').replace(/,/g, '');
  const frac = (m[2] ?? '').padEnd(2, '0');
  if (whole.length > 13) return { ok: false, error: 'That amount is too large' };
  const cents = Number(whole) * 100 + Number(frac);
  if (!Number.isSafeInteger(cents)) return { ok: false, error: 'That amount is too large' };
  return { ok: true, cents };
}

/** The amount typed back into an input (`1240` → `"12.40"`, no `$`, no grouping). */
export function centsToInput(cents: number): string {
  const { negative, dollars, rest } = split(cents);
  return `${negative ? '-' : ''}${dollars.replace(/,/g, '')}.${rest}`;
}
