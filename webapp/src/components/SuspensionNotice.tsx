/**
 * The account's billing suspension, with what to do about it: for a balance that could not
 * cover a charge, the deposit that lets it through (everything due less the balance, one click
 * to a pre-filled deposit); for the monthly limit, raise it or wait until the date the API
 * gives. Renders nothing when the account is not suspended.
 */
import { Link } from '@tanstack/react-router';
import { useState } from 'react';
import type { Schemas } from '../api/client';
import { useBalance, useInvoices, useSuspension } from '../api/queries';
import { depositToResume } from '../lib/billing';
import { formatCents } from '../lib/money';
import { FundsDialog } from './FundsDialog';
import { Alert, Button, formatDate } from './ui';

export function SuspensionNotice() {
  const suspension = useSuspension();
  const invoices = useInvoices();
  const balance = useBalance();
  const [open, setOpen] = useState(false);
  const s = suspension.data;
  const need = invoices.data && balance.data ? depositToResume(invoices.data, balance.data.balance_usd_cents) : null;
  return (
    <>
      {s && <Notice s={s} need={need} onDeposit={() => setOpen(true)} />}
      {/* Outside the notice, same place in the tree: the manager may lift the suspension (and
          the notice go) while the dialog still shows its confirmation. */}
      <FundsDialog kind="deposit" open={open} onClose={() => setOpen(false)} initialCents={need ?? undefined} />
    </>
  );
}

function Notice({ s, need, onDeposit }: { s: Schemas['Suspension']; need: number | null; onDeposit: () => void }) {
  const since = formatDate(s.since);
  if (s.reason === 'monthly_limit_reached') {
    return (
      <div className="mb-4" data-testid="suspension">
        <Alert tone="red" title="Services suspended: monthly limit reached">
          <p>
            Since {since} a charge would have gone over your monthly spending limit, so your enabled services are paused.
            Raise the limit to resume now, or they resume on {formatDate(s.until)} when the new month's limit starts.
          </p>
          <Link to="/billing" hash="limit" className="mt-2 inline-block font-medium text-red-900 underline">
            Raise the monthly limit
          </Link>
        </Alert>
      </div>
    );
  }
  return (
    <div className="mb-4" data-testid="suspension">
      <Alert tone="red" title="Services suspended: insufficient balance">
        <p>
          Since {since} your escrow balance could not cover a charge, so your enabled services are paused.{' '}
          {need !== null && need > 0
            ? `Deposit ${formatCents(need)} to pay what is due and resume them.`
            : 'Deposit to resume them: billing retries as soon as funds arrive.'}
        </p>
        <Button className="mt-2" onClick={onDeposit}>
          {need !== null && need > 0 ? `Deposit ${formatCents(need)}` : 'Deposit'}
        </Button>
      </Alert>
    </div>
  );
}
