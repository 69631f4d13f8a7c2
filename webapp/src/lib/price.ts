/**
 * What the dashboard says about prices and refusals. Every amount comes from the API (quotes,
 * services, balances); this module only words it.
 */
import { formatCents, formatMonthly } from './money';

export type Tier = 'starter' | 'pro' | 'enterprise';
export const TIERS: readonly Tier[] = ['starter', 'pro', 'enterprise'];

export function tierLabel(tier: Tier): string {
  return { starter: 'Starter', pro: 'Pro', enterprise: 'Enterprise' }[tier];
}

/** `1234` → `"1,234 req/s per region"`. */
export function rateLabel(perSecond: number): string {
  return `${perSecond.toLocaleString('en-US')} req/s per region`;
}

export interface QuoteLike {
  monthly_usd_cents: number;
  current_monthly_usd_cents: number;
  estimated_cost_usd_cents: number;
  breakdown: {
    tier_usd_cents: number;
    burst_usd_cents: number;
    extra_api_keys_usd_cents: number;
    extra_seal_keys_usd_cents: number;
    extra_packages_usd_cents: number;
  };
}

export interface PriceLine {
  label: string;
  cents: number;
}

/** The non-zero lines of a quote's breakdown, tier first. */
export function quoteLines(q: QuoteLike, tier: Tier): PriceLine[] {
  const b = q.breakdown;
  const lines: PriceLine[] = [
    { label: `${tierLabel(tier)} tier`, cents: b.tier_usd_cents },
    { label: 'Burst add-on', cents: b.burst_usd_cents },
    { label: 'Extra API keys', cents: b.extra_api_keys_usd_cents },
    { label: 'Extra Seal keys', cents: b.extra_seal_keys_usd_cents },
    { label: 'Extra packages', cents: b.extra_packages_usd_cents },
  ];
  return lines.filter((l, i) => i === 0 || l.cents !== 0);
}

/** One sentence on what a proposed configuration changes in money. */
export function quoteSummary(q: QuoteLike, enabled: boolean): string {
  const monthly = formatMonthly(q.monthly_usd_cents);
  if (!enabled) return `${monthly}; the first month (${formatCents(q.monthly_usd_cents)}) must be covered by your balance.`;
  const diff = q.monthly_usd_cents - q.current_monthly_usd_cents;
  if (diff === 0) return `${monthly}, unchanged.`;
  if (diff < 0) return `${monthly}, ${formatCents(-diff)} less per month.`;
  return `${monthly}, ${formatCents(diff)} more per month; ${formatCents(q.estimated_cost_usd_cents)} is checked against your balance now.`;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** The first day of the month after `monthStart` (`"2026-12-01"` → `"1 Jan"`). */
export function nextMonthLabel(monthStart: string): string {
  const m = /^(\d{4})-(\d{2})-\d{2}$/.exec(monthStart);
  if (!m) return 'the start of next month';
  const month = Number(m[2]); // 1..12
  return `1 ${MONTHS[month % 12]}`;
}

export interface ErrorLike {
  code: string;
  message: string;
  details?: Record<string, number>;
}

export type RefusalAction = 'deposit' | 'raise-limit' | 'none';

export interface Refusal {
  text: string;
  action: RefusalAction;
}

/**
 * The structured refusal of a cost-adding change, in words a customer can act on:
 * "Insufficient balance: deposit $12.40 to continue", "Monthly limit reached: raise it or
 * wait until 1 Jan".
 */
export function describeRefusal(e: ErrorLike, monthStart?: string): Refusal {
  const d = e.details ?? {};
  switch (e.code) {
    case 'insufficient_balance': {
      const need = d.required_deposit_usd_cents;
      return {
        text:
          need === undefined
            ? 'Insufficient balance: deposit funds to continue'
            : `Insufficient balance: deposit ${formatCents(need)} to continue`,
        action: 'deposit',
      };
    }
    case 'monthly_limit_exceeded': {
      const when = monthStart ? nextMonthLabel(monthStart) : 'the start of next month';
      const left = d.remaining_authorization_usd_cents;
      const cost = d.estimated_cost_usd_cents;
      const detail =
        left !== undefined && cost !== undefined
          ? ` (${formatCents(cost)} needed, ${formatCents(left)} left this month)`
          : '';
      return { text: `Monthly limit reached: raise it or wait until ${when}${detail}`, action: 'raise-limit' };
    }
    case 'insufficient_escrow_funds': {
      const bal = d.balance_usd_cents;
      return {
        text: bal === undefined ? 'Not enough funds in the escrow' : `Not enough funds: you can withdraw at most ${formatCents(bal)}`,
        action: 'none',
      };
    }
    case 'api_key_limit_reached':
      return {
        text: `API key limit reached (${d.limit ?? '?'} active keys): buy extra keys on the service page or revoke one`,
        action: 'none',
      };
    case 'limit_out_of_range': {
      const min = d.min_usd_cents;
      const max = d.max_usd_cents;
      return {
        text:
          min !== undefined && max !== undefined
            ? `The monthly limit must be between ${formatCents(min)} and ${formatCents(max)}`
            : e.message,
        action: 'none',
      };
    }
    case 'rate_limited':
      return { text: 'Too many requests: wait a moment and try again', action: 'none' };
    case 'unavailable':
      return { text: 'The service is temporarily unavailable: try again shortly', action: 'none' };
    default:
      return { text: capitalize(e.message), action: 'none' };
  }
}

function capitalize(s: string): string {
  return s.length === 0 ? s : s[0]!.toUpperCase() + s.slice(1);
}
