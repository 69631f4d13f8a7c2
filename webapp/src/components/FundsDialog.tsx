/**
 * Deposit into / withdraw from the escrow. Each opening of the dialog gets one idempotency
 * key, so a double click or a retry after a lost answer moves the money once (the API
 * answers `replayed: true` for the repeat).
 */
import { useState } from 'react';
import { useBalance, useMoveFunds } from '../api/queries';
import { centsToInput, formatCents, parseDollars } from '../lib/money';
import { Alert, Button, Dialog, Field, errorText, inputClass } from './ui';

export type FundsKind = 'deposit' | 'withdraw';

function newKey(): string {
  return crypto.randomUUID();
}

export function FundsDialog({
  kind,
  open,
  onClose,
  initialCents,
}: {
  kind: FundsKind;
  open: boolean;
  onClose: () => void;
  /** Pre-filled amount (e.g. what a suspended account must deposit to resume). */
  initialCents?: number;
}) {
  return open ? <FundsForm kind={kind} onClose={onClose} initialCents={initialCents} /> : null;
}

function FundsForm({ kind, onClose, initialCents }: { kind: FundsKind; onClose: () => void; initialCents?: number }) {
  const [amount, setAmount] = useState(initialCents ? centsToInput(initialCents) : '');
  const [touched, setTouched] = useState(false);
  const [key] = useState(newKey);
  const move = useMoveFunds(kind);
  const balance = useBalance();
  const parsed = parseDollars(amount);
  const fieldError = touched && !parsed.ok ? parsed.error : undefined;
  const title = kind === 'deposit' ? 'Deposit funds' : 'Withdraw funds';

  function submit(e: React.FormEvent) {
    e.preventDefault();
    setTouched(true);
    if (!parsed.ok) return;
    if (parsed.cents === 0) return;
    move.mutate({ amount_usd_cents: parsed.cents, idempotency_key: key });
  }

  const done = move.isSuccess;
  return (
    <Dialog open onClose={onClose} title={title}>
      {done ? (
        <>
          <Alert tone="green" title={kind === 'deposit' ? 'Deposit complete' : 'Withdrawal complete'}>
            {formatCents(move.data.amount_usd_cents)} {kind === 'deposit' ? 'added' : 'withdrawn'}. New balance:{' '}
            <strong>{formatCents(move.data.balance_usd_cents)}</strong>.
          </Alert>
          <div className="flex justify-end">
            <Button onClick={onClose} autoFocus>
              Done
            </Button>
          </div>
        </>
      ) : (
        <form onSubmit={submit} className="flex flex-col gap-3" noValidate>
          <p>
            {kind === 'deposit'
              ? 'Funds go into your escrow; services are paid from it.'
              : 'Funds leave your escrow and return to your wallet.'}{' '}
            Current balance: <strong>{balance.data ? formatCents(balance.data.balance_usd_cents) : '…'}</strong>
          </p>
          <Field label="Amount (USD)" hint="For example 25 or 12.50" error={fieldError}>
            {(p) => (
              <input
                {...p}
                className={inputClass}
                inputMode="decimal"
                autoComplete="off"
                autoFocus
                value={amount}
                onChange={(e) => setAmount(e.target.value)}
                onBlur={() => setTouched(true)}
              />
            )}
          </Field>
          {move.isError && <Alert tone="red">{errorText(move.error)}</Alert>}
          <div className="flex flex-wrap justify-end gap-2">
            <Button variant="secondary" onClick={onClose}>
              Cancel
            </Button>
            <Button type="submit" busy={move.isPending}>
              {kind === 'deposit' ? 'Deposit' : 'Withdraw'}
              {parsed.ok && parsed.cents > 0 ? ` ${formatCents(parsed.cents)}` : ''}
            </Button>
          </div>
        </form>
      )}
    </Dialog>
  );
}
