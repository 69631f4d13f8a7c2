/**
 * Billing: the escrow balance with deposit / withdraw, this month's spending against the
 * monthly limit, the limit itself (editable), the account's suspension and what to do about
 * it, this month's charges so far (re-asked when the live usage stream says usage settled,
 * and every few seconds: the manager bills on its own),
 * the invoices with their line items and payments, and the ledger of deposits, withdrawals
 * and charges.
 */
import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { serviceLabel, type Schemas } from '../api/client';
import { useLiveUsage } from '../api/live';
import { keys, useBalance, useCurrentCharges, useInvoice, useInvoices, useSetLimit, useTransactions } from '../api/queries';
import { FundsDialog, type FundsKind } from '../components/FundsDialog';
import { SuspensionNotice } from '../components/SuspensionNotice';
import { Alert, Badge, Button, Card, EmptyState, ErrorState, Field, PageHeader, Spinner, errorText, formatDate, inputClass } from '../components/ui';
import { INVOICE_STATUS, TX_KIND, monthLabel, signedAmount } from '../lib/billing';
import { centsToInput, formatCents, parseDollars } from '../lib/money';
import { nextMonthLabel } from '../lib/price';

export function BillingPage() {
  const balance = useBalance();
  const [funds, setFunds] = useState<FundsKind | null>(null);
  if (balance.isPending) return <Spinner label="Loading billing" />;
  if (balance.isError) return <ErrorState error={balance.error} onRetry={() => void balance.refetch()} />;
  const b = balance.data;
  // Integer percentage of the limit used (for the bar), computed in cents.
  const used = b.max_monthly_usd_cents > 0 ? Math.min(100, Math.trunc((b.current_month_charged_usd_cents * 100) / b.max_monthly_usd_cents)) : 0;
  return (
    <>
      <PageHeader title="Billing" description="Your escrow balance pays for services; the monthly limit caps what can be charged in a month." />
      <SuspensionNotice />
      <div className="grid gap-4 md:grid-cols-2">
        <Card title="Escrow balance">
          <p className="text-3xl font-semibold" data-testid="billing-balance">
            {formatCents(b.balance_usd_cents)}
          </p>
          <div className="mt-4 flex flex-wrap gap-2">
            <Button onClick={() => setFunds('deposit')}>Deposit</Button>
            <Button variant="secondary" onClick={() => setFunds('withdraw')}>
              Withdraw
            </Button>
          </div>
        </Card>
        <Card title="This month">
          <dl className="grid grid-cols-2 gap-3 text-sm">
            <div>
              <dt className="text-slate-500">Charged so far</dt>
              <dd className="text-xl font-semibold" data-testid="month-charged">
                {formatCents(b.current_month_charged_usd_cents)}
              </dd>
            </div>
            <div>
              <dt className="text-slate-500">Left before the limit</dt>
              <dd className="text-xl font-semibold">{formatCents(b.remaining_authorization_usd_cents)}</dd>
            </div>
            <div className="col-span-2">
              <div
                className="h-2 overflow-hidden rounded bg-slate-100"
                role="meter"
                aria-label="Share of the monthly limit used"
                aria-valuemin={0}
                aria-valuemax={100}
                aria-valuenow={used}
              >
                <div className={`h-full bg-blue-600`} style={{ width: `${used}%` }} />
              </div>
              <p className="mt-1 text-xs text-slate-500">
                {used}% of {formatCents(b.max_monthly_usd_cents)} · the month started {b.current_month_start}, resets on {nextMonthLabel(b.current_month_start)} ·
                last month {formatCents(b.last_month_charged_usd_cents)}
              </p>
            </div>
          </dl>
        </Card>
        <CurrentCard />
        <LimitCard current={b.max_monthly_usd_cents} />
        <InvoicesCard />
        <TransactionsCard />
      </div>
      <FundsDialog kind={funds ?? 'deposit'} open={funds !== null} onClose={() => setFunds(null)} />
    </>
  );
}

function LimitCard({ current }: { current: number }) {
  const [value, setValue] = useState(centsToInput(current));
  const setLimit = useSetLimit();
  const parsed = parseDollars(value);
  return (
    <Card title="Monthly spending limit" className="md:col-span-2">
      <form
        id="limit"
        className="flex flex-col gap-3 sm:flex-row sm:items-end"
        noValidate
        onSubmit={(e) => {
          e.preventDefault();
          if (parsed.ok) setLimit.mutate(parsed.cents);
        }}
      >
        <div className="sm:w-64">
          <Field label="Limit (USD per month)" hint="Between $100 and $50,000" error={parsed.ok ? undefined : parsed.error}>
            {(p) => <input {...p} className={inputClass} inputMode="decimal" value={value} onChange={(e) => {
              setLimit.reset();
              setValue(e.target.value);
            }} />}
          </Field>
        </div>
        <Button type="submit" busy={setLimit.isPending} disabled={!parsed.ok || parsed.cents === current}>
          Save limit
        </Button>
      </form>
      <div className="mt-3" aria-live="polite">
        {setLimit.isError && <Alert tone="red">{errorText(setLimit.error)}</Alert>}
        {setLimit.isSuccess && <Alert tone="green">Limit set to {formatCents(setLimit.data.max_monthly_usd_cents)}.</Alert>}
      </div>
    </Card>
  );
}

const th = 'px-2 py-1.5 text-left text-xs font-medium uppercase tracking-wide text-slate-500';
const td = 'px-2 py-1.5 align-top';

/** This month so far: what is on the draft invoice plus settled usage not yet on a line. */
function CurrentCard() {
  const q = useCurrentCharges();
  const qc = useQueryClient();
  // Usage is priced once settled: each settlement that added to this account re-asks.
  const live = useLiveUsage({
    onSettled: (d) => {
      if (d.rows.length > 0) void qc.invalidateQueries({ queryKey: keys.current });
    },
  });
  return (
    <Card title="This month's charges so far" className="md:col-span-2">
      {q.isPending ? (
        <Spinner label="Loading this month's charges" />
      ) : q.isError ? (
        <ErrorState error={q.error} onRetry={() => void q.refetch()} />
      ) : (
        <div className="text-sm">
          <dl className="grid grid-cols-1 gap-3 sm:grid-cols-3">
            <div>
              <dt className="text-slate-500">{monthLabel(q.data.month)} to date</dt>
              <dd className="text-xl font-semibold" data-testid="month-to-date">
                {formatCents(q.data.month_to_date_usd_cents)}
              </dd>
            </div>
            <div>
              <dt className="text-slate-500">On the invoice</dt>
              <dd className="text-xl font-semibold" data-testid="month-invoiced">
                {formatCents(q.data.invoiced_usd_cents)}
              </dd>
            </div>
            <div>
              <dt className="text-slate-500">Usage not invoiced yet</dt>
              <dd className="text-xl font-semibold" data-testid="month-unbilled">
                {formatCents(q.data.unbilled_usage_usd_cents)}
              </dd>
            </div>
          </dl>
          {q.data.usage.length > 0 && (
            <table className="mt-3 w-full">
              <thead>
                <tr>
                  <th className={th}>Service</th>
                  <th className={`${th} text-right`}>Requests</th>
                  <th className={`${th} text-right`}>Usage</th>
                </tr>
              </thead>
              <tbody className="divide-y divide-slate-100">
                {q.data.usage.map((u) => (
                  <tr key={u.service}>
                    <td className={td}>{serviceLabel(u.service)}</td>
                    <td className={`${td} text-right tabular-nums`}>{u.requests.toLocaleString('en-US')}</td>
                    <td className={`${td} text-right tabular-nums`}>{formatCents(u.usage_usd_cents)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <p className="mt-3 text-xs text-slate-500">
            Fees are charged when a service is enabled or upgraded; usage is charged once $5.00 is due and at the end of
            the month. Usage counts settled minutes only
            {q.data.settled_before ? ` (up to ${new Date(q.data.settled_before).toLocaleString('en-GB', { timeZone: 'UTC' })} UTC)` : ''}; this
            view refreshes on its own{live === 'live' ? ', as soon as usage settles' : ''}.
          </p>
        </div>
      )}
    </Card>
  );
}

function InvoicesCard() {
  const q = useInvoices();
  const [open, setOpen] = useState<number | null>(null);
  return (
    <Card title="Invoices" className="md:col-span-2">
      {q.isPending ? (
        <Spinner label="Loading invoices" />
      ) : q.isError ? (
        <ErrorState error={q.error} onRetry={() => void q.refetch()} />
      ) : q.data.length === 0 ? (
        <EmptyState title="No invoices yet">An invoice starts with the month in which you first enable a service.</EmptyState>
      ) : (
        <ul className="divide-y divide-slate-100" aria-label="Invoices">
          {q.data.map((inv) => (
            <li key={inv.id} className="py-2" data-testid={`invoice-${inv.month}`}>
              <div className="flex flex-wrap items-center justify-between gap-2">
                <div className="flex items-center gap-2">
                  <span className="font-medium">{monthLabel(inv.month)}</span>
                  <Badge tone={INVOICE_STATUS[inv.status].tone}>{INVOICE_STATUS[inv.status].label}</Badge>
                </div>
                <div className="flex items-center gap-3 text-sm">
                  <span className="tabular-nums" data-testid="invoice-total">
                    {formatCents(inv.total_usd_cents)}
                  </span>
                  {inv.due_usd_cents > 0 && <span className="text-red-700 tabular-nums">{formatCents(inv.due_usd_cents)} due</span>}
                  <Button
                    variant="secondary"
                    aria-expanded={open === inv.id}
                    aria-controls={`invoice-lines-${inv.id}`}
                    onClick={() => setOpen(open === inv.id ? null : inv.id)}
                  >
                    {open === inv.id ? 'Hide' : 'Details'}
                    <span className="sr-only"> of the {monthLabel(inv.month)} invoice</span>
                  </Button>
                </div>
              </div>
              {open === inv.id && <InvoiceDetail id={inv.id} />}
            </li>
          ))}
        </ul>
      )}
    </Card>
  );
}

function lineNote(l: Schemas['InvoiceLine']): string | null {
  if (l.kind === 'usage' && l.quantity_before !== null && l.quantity_after !== null) {
    const unit = l.metric === 'bandwidth' ? 'bytes' : 'requests';
    return `${l.quantity_before.toLocaleString('en-US')} → ${l.quantity_after.toLocaleString('en-US')} ${unit} this month`;
  }
  if (l.kind === 'adjustment') return `late usage of ${monthLabel(l.for_month)}`;
  return null;
}

function InvoiceDetail({ id }: { id: number }) {
  const q = useInvoice(id, true);
  return (
    <div id={`invoice-lines-${id}`} className="mt-2 rounded-md bg-slate-50 p-2 text-sm">
      {q.isPending ? (
        <Spinner small label="Loading the invoice" />
      ) : q.isError ? (
        <ErrorState error={q.error} onRetry={() => void q.refetch()} />
      ) : (
        <>
          {q.data.lines.length === 0 ? (
            <p className="text-slate-600">No lines yet.</p>
          ) : (
            <table className="w-full" aria-label={`Line items of the ${monthLabel(q.data.month)} invoice`}>
              <thead>
                <tr>
                  <th className={th}>Item</th>
                  <th className={`${th} text-right`}>Amount</th>
                </tr>
              </thead>
              <tbody className="divide-y divide-slate-200">
                {q.data.lines.map((l) => (
                  <tr key={l.id} data-testid="invoice-line">
                    <td className={td}>
                      <span className="break-words">{l.description}</span>
                      {lineNote(l) && <span className="block text-xs text-slate-500">{lineNote(l)}</span>}
                    </td>
                    <td className={`${td} text-right tabular-nums`}>{formatCents(l.amount_usd_cents)}</td>
                  </tr>
                ))}
              </tbody>
              <tfoot>
                <tr className="font-medium">
                  <td className={td}>Total</td>
                  <td className={`${td} text-right tabular-nums`}>{formatCents(q.data.total_usd_cents)}</td>
                </tr>
                <tr>
                  <td className={td}>Paid</td>
                  <td className={`${td} text-right tabular-nums`}>{formatCents(q.data.paid_usd_cents)}</td>
                </tr>
              </tfoot>
            </table>
          )}
          {q.data.payments.length > 0 && (
            <p className="mt-2 text-xs text-slate-600">
              Paid by {q.data.payments.map((p) => `${formatCents(p.amount_usd_cents)} on ${formatDate(p.at)}`).join(', ')}.
            </p>
          )}
          {q.data.finalized_at === null && q.data.status === 'draft' && (
            <p className="mt-2 text-xs text-slate-600">This month's invoice stays open until the month has ended and its usage has settled.</p>
          )}
        </>
      )}
    </div>
  );
}

function TransactionsCard() {
  const q = useTransactions();
  return (
    <Card title="Transactions" className="md:col-span-2">
      {q.isPending ? (
        <Spinner label="Loading transactions" />
      ) : q.isError ? (
        <ErrorState error={q.error} onRetry={() => void q.refetch()} />
      ) : q.data.transactions.length === 0 && q.data.pending.length === 0 ? (
        <EmptyState title="No transactions yet">Deposits, withdrawals and charges appear here.</EmptyState>
      ) : (
        <>
          {q.data.pending.length > 0 && (
            <div className="mb-2">
              <Alert tone="amber" title="In progress">
                {q.data.pending.map((p, i) => (
                  <p key={i}>
                    {TX_KIND[p.kind]} of {formatCents(p.amount_usd_cents)} since {formatDate(p.since)}
                  </p>
                ))}
              </Alert>
            </div>
          )}
          <table className="w-full text-sm" aria-label="Transactions">
            <thead>
              <tr>
                <th className={th}>Date</th>
                <th className={th}>What</th>
                <th className={`${th} text-right`}>Amount</th>
                <th className={`${th} text-right`}>Balance</th>
              </tr>
            </thead>
            <tbody className="divide-y divide-slate-100">
              {q.data.transactions.map((t) => (
                <tr key={t.tx_digest} data-testid="transaction">
                  <td className={`${td} whitespace-nowrap`}>{formatDate(t.at)}</td>
                  <td className={td}>
                    {TX_KIND[t.kind]}
                    {t.invoice_id !== null && <span className="block text-xs text-slate-500">invoice #{t.invoice_id}</span>}
                  </td>
                  <td className={`${td} text-right tabular-nums ${t.kind === 'deposit' ? 'text-green-700' : ''}`}>
                    {signedAmount(t.kind, t.amount_usd_cents) > 0 ? '+' : ''}
                    {formatCents(signedAmount(t.kind, t.amount_usd_cents))}
                  </td>
                  <td className={`${td} text-right tabular-nums`}>{formatCents(t.balance_after_usd_cents)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </Card>
  );
}
