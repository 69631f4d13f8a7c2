/**
 * Billing: the escrow balance with deposit / withdraw, this month's spending against the
 * monthly limit, and the limit itself (editable). Invoices, line items and transactions
 * arrive with the billing endpoints (issue 11).
 */
import { useState } from 'react';
import { useBalance, useSetLimit } from '../api/queries';
import { FundsDialog, type FundsKind } from '../components/FundsDialog';
import { Alert, Button, Card, ErrorState, Field, PageHeader, Spinner, errorText, inputClass } from '../components/ui';
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
        <LimitCard current={b.max_monthly_usd_cents} />
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
