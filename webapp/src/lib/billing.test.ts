import { describe, expect, it } from 'vitest';
import { depositToResume, monthLabel, signedAmount, totalDue } from './billing';

describe('billing helpers', () => {
  it('names invoice months', () => {
    expect(monthLabel('2026-12')).toBe('December 2026');
    expect(monthLabel('2027-01')).toBe('January 2027');
    expect(monthLabel('2027-13')).toBe('2027-13');
    expect(monthLabel('garbage')).toBe('garbage');
  });

  it('sums what is due over collectable invoices only', () => {
    const inv = [
      { status: 'paid' as const, due_usd_cents: 0 },
      { status: 'void' as const, due_usd_cents: 0 },
      { status: 'failed' as const, due_usd_cents: 1240 },
      { status: 'draft' as const, due_usd_cents: 2000 },
      { status: 'pending' as const, due_usd_cents: 1 },
    ];
    expect(totalDue(inv)).toBe(3241);
    expect(depositToResume(inv, 1000)).toBe(2241);
    expect(depositToResume(inv, 5000)).toBe(0);
    expect(depositToResume([], 0)).toBe(0);
  });

  it('signs ledger amounts', () => {
    expect(signedAmount('deposit', 500)).toBe(500);
    expect(signedAmount('withdraw', 500)).toBe(-500);
    expect(signedAmount('charge', 1806)).toBe(-1806);
  });
});
