import { describe, expect, it } from 'vitest';
import { describeRefusal, nextMonthLabel, quoteLines, quoteSummary, rateLabel, tierLabel } from './price';

const quote = (over: Partial<Parameters<typeof quoteSummary>[0]> = {}) => ({
  monthly_usd_cents: 5000,
  current_monthly_usd_cents: 4000,
  estimated_cost_usd_cents: 1000,
  breakdown: {
    tier_usd_cents: 4000,
    burst_usd_cents: 1000,
    extra_api_keys_usd_cents: 0,
    extra_seal_keys_usd_cents: 0,
    extra_packages_usd_cents: 0,
  },
  ...over,
});

describe('price display', () => {
  it('labels tiers and rates', () => {
    expect(tierLabel('pro')).toBe('Pro');
    expect(rateLabel(2000)).toBe('2,000 req/s per region');
  });

  it('lists the tier and the non-zero extras', () => {
    expect(quoteLines(quote(), 'pro')).toEqual([
      { label: 'Pro tier', cents: 4000 },
      { label: 'Burst add-on', cents: 1000 },
    ]);
    const q = quote({
      breakdown: {
        tier_usd_cents: 2000,
        burst_usd_cents: 0,
        extra_api_keys_usd_cents: 300,
        extra_seal_keys_usd_cents: 500,
        extra_packages_usd_cents: 200,
      },
    });
    expect(quoteLines(q, 'starter').map((l) => l.label)).toEqual([
      'Starter tier',
      'Extra API keys',
      'Extra Seal keys',
      'Extra packages',
    ]);
  });

  it('summarises upgrades, downgrades and first months in exact cents', () => {
    expect(quoteSummary(quote(), true)).toBe(
      '$50/month, $10.00 more per month; $10.00 is checked against your balance now.',
    );
    expect(quoteSummary(quote({ monthly_usd_cents: 2000, estimated_cost_usd_cents: 0 }), true)).toBe(
      '$20/month, $20.00 less per month.',
    );
    expect(quoteSummary(quote({ monthly_usd_cents: 4000 }), true)).toBe('$40/month, unchanged.');
    expect(quoteSummary(quote({ monthly_usd_cents: 2010 }), false)).toBe(
      '$20.10/month; the first month ($20.10) must be covered by your balance.',
    );
  });
});

describe('refusals', () => {
  it('tells how much to deposit', () => {
    const r = describeRefusal({
      code: 'insufficient_balance',
      message: 'insufficient balance: deposit 1240 cents',
      details: { current_balance_usd_cents: 2760, estimated_cost_usd_cents: 4000, required_deposit_usd_cents: 1240 },
    });
    expect(r).toEqual({ text: 'Insufficient balance: deposit $12.40 to continue', action: 'deposit' });
  });

  it('tells when the monthly limit resets', () => {
    const r = describeRefusal(
      {
        code: 'monthly_limit_exceeded',
        message: 'monthly spending limit exceeded',
        details: {
          max_monthly_usd_cents: 10000,
          current_month_charged_usd_cents: 9500,
          estimated_cost_usd_cents: 4000,
          remaining_authorization_usd_cents: 500,
        },
      },
      '2026-12-01',
    );
    expect(r.action).toBe('raise-limit');
    expect(r.text).toBe('Monthly limit reached: raise it or wait until 1 Jan ($40.00 needed, $5.00 left this month)');
  });

  it('words the other structured errors', () => {
    expect(describeRefusal({ code: 'insufficient_escrow_funds', message: '', details: { balance_usd_cents: 700, requested_usd_cents: 900 } }).text).toBe(
      'Not enough funds: you can withdraw at most $7.00',
    );
    expect(describeRefusal({ code: 'limit_out_of_range', message: '', details: { min_usd_cents: 10000, max_usd_cents: 5000000 } }).text).toBe(
      'The monthly limit must be between $100.00 and $50,000.00',
    );
    expect(describeRefusal({ code: 'api_key_limit_reached', message: '', details: { limit: 3 } }).text).toMatch(/^API key limit reached \(3 active keys\)/);
    expect(describeRefusal({ code: 'invalid_config', message: 'burst is not available on the starter tier' }).text).toBe(
      'Burst is not available on the starter tier',
    );
  });

  it('names the next month', () => {
    expect(nextMonthLabel('2026-11-01')).toBe('1 Dec');
    expect(nextMonthLabel('2026-12-01')).toBe('1 Jan');
    expect(nextMonthLabel('2027-01-01')).toBe('1 Feb');
    expect(nextMonthLabel('garbage')).toBe('the start of next month');
  });
});
