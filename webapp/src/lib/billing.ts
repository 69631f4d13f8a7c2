/**
 * Pure helpers of the billing page (integer cents only; vitest in billing.test.ts).
 */

const MONTH_NAMES = [
  'January', 'February', 'March', 'April', 'May', 'June',
  'July', 'August', 'September', 'October', 'November', 'December',
];

/** `"2026-12"` → `"December 2026"` (the API's `YYYY-MM` invoice months). */
export function monthLabel(month: string): string {
  const m = /^(\d{4})-(\d{2})$/.exec(month);
  if (!m) return month;
  const i = Number(m[2]) - 1;
  return i >= 0 && i < 12 ? `${MONTH_NAMES[i]} ${m[1]}` : month;
}

export interface InvoiceLike {
  status: 'draft' | 'pending' | 'paid' | 'failed' | 'void';
  due_usd_cents: number;
}

/** What is owed now: the unpaid part of every invoice still collectable. */
export function totalDue(invoices: readonly InvoiceLike[]): number {
  return invoices.reduce((sum, i) => (i.status === 'paid' || i.status === 'void' ? sum : sum + i.due_usd_cents), 0);
}

/**
 * The deposit that lets the next charge go through for a customer suspended for lack of
 * balance: everything due, less what the balance already covers (never negative).
 */
export function depositToResume(invoices: readonly InvoiceLike[], balanceCents: number): number {
  return Math.max(0, totalDue(invoices) - balanceCents);
}

export const INVOICE_STATUS: Record<InvoiceLike['status'], { label: string; tone: 'green' | 'gray' | 'amber' | 'red' | 'blue' }> = {
  draft: { label: 'Open', tone: 'blue' },
  pending: { label: 'Due', tone: 'amber' },
  paid: { label: 'Paid', tone: 'green' },
  failed: { label: 'Payment failed', tone: 'red' },
  void: { label: 'Nothing due', tone: 'gray' },
};

export const TX_KIND: Record<'deposit' | 'withdraw' | 'charge', string> = {
  deposit: 'Deposit',
  withdraw: 'Withdrawal',
  charge: 'Charge',
};

/** A ledger amount with its direction: deposits add, withdrawals and charges take. */
export function signedAmount(kind: 'deposit' | 'withdraw' | 'charge', cents: number): number {
  return kind === 'deposit' ? cents : -cents;
}
