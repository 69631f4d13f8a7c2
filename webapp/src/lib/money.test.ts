import { describe, expect, it } from 'vitest';
import { NotCentsError, centsToInput, formatCents, formatMonthly, formatPrice, parseDollars } from './money';

describe('formatCents', () => {
  it('formats whole and fractional amounts', () => {
    expect(formatCents(0)).toBe('$0.00');
    expect(formatCents(1)).toBe('$0.01');
    expect(formatCents(10)).toBe('$0.10');
    expect(formatCents(99)).toBe('$0.99');
    expect(formatCents(100)).toBe('$1.00');
    expect(formatCents(1240)).toBe('$12.40');
    expect(formatCents(123456)).toBe('$1,234.56');
    expect(formatCents(100_000_000)).toBe('$1,000,000.00');
  });

  it('formats negative amounts with a leading minus', () => {
    expect(formatCents(-1)).toBe('-$0.01');
    expect(formatCents(-1240)).toBe('-$12.40');
    expect(formatCents(-123456789)).toBe('-$1,234,567.89');
  });

  it('keeps every cent of the largest safe integer (no float rounding)', () => {
    // 2^53 - 1 cents: a float division by 100 would print ...40.99 as ...41.00.
    expect(formatCents(Number.MAX_SAFE_INTEGER)).toBe('$90,071,992,547,409.91');
    expect(formatCents(Number.MAX_SAFE_INTEGER - 92)).toBe('$90,071,992,547,408.99');
  });

  it('sums in cents are exact where dollars in floats are not', () => {
    expect(0.1 + 0.2).not.toBe(0.3);
    expect(formatCents(10 + 20)).toBe('$0.30');
  });

  it('refuses values that are not whole cents', () => {
    expect(() => formatCents(12.5)).toThrow(NotCentsError);
    expect(() => formatCents(Number.NaN)).toThrow(NotCentsError);
    expect(() => formatCents(Number.POSITIVE_INFINITY)).toThrow(NotCentsError);
    expect(() => formatCents(2 ** 53)).toThrow(NotCentsError);
  });
});

describe('formatPrice and formatMonthly', () => {
  it('drops .00 from whole dollars only', () => {
    expect(formatPrice(2000)).toBe('$20');
    expect(formatPrice(1240)).toBe('$12.40');
    expect(formatPrice(5)).toBe('$0.05');
    expect(formatPrice(500000)).toBe('$5,000');
    expect(formatMonthly(4000)).toBe('$40/month');
    expect(formatMonthly(5050)).toBe('$50.50/month');
  });
});

describe('parseDollars', () => {
  const cents = (s: string) => {
    const r = parseDollars(s);
    return r.ok ? r.cents : r.error;
  };

  it('accepts the ways people type dollars', () => {
    expect(cents('12')).toBe(1200);
    expect(cents('12.4')).toBe(1240);
    expect(cents('12.40')).toBe(1240);
    expect(cents('12.')).toBe(1200);
    expect(cents(' $1,234.56 ')).toBe(123456);
    expect(cents('$ 5')).toBe(500);
    expect(cents('0.01')).toBe(1);
    expect(cents('1000000')).toBe(100_000_000);
  });

  it('is exact where float parsing is not', () => {
    // parseFloat('1.15') * 100 === 114.99999999999999
    expect(parseFloat('1.15') * 100).not.toBe(115);
    expect(cents('1.15')).toBe(115);
    expect(cents('4.35')).toBe(435);
  });

  it('refuses what it cannot read exactly', () => {
    expect(cents('')).toBe('Enter an amount');
    expect(cents('1.234')).toBe('Use at most two decimals (cents)');
    expect(cents('-5')).toMatch(/Enter an amount in dollars/);
    expect(cents('1e3')).toMatch(/Enter an amount in dollars/);
    expect(cents('12,34')).toMatch(/Enter an amount in dollars/);
    expect(cents('abc')).toMatch(/Enter an amount in dollars/);
    expect(cents('.5')).toMatch(/Enter an amount in dollars/);
    expect(cents('99999999999999')).toBe('That amount is too large');
  });

  it('round-trips with centsToInput', () => {
    for (const c of [0, 1, 99, 100, 1240, 123456, 100_000_000]) {
      expect(cents(centsToInput(c))).toBe(c);
    }
    expect(centsToInput(123456)).toBe('1234.56');
  });
});
