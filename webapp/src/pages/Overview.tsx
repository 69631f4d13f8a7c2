import { Link } from '@tanstack/react-router';
import { SERVICES, serviceLabel } from '../api/client';
import { useBalance, useServices } from '../api/queries';
import { ServiceStatus } from '../components/ServiceStatus';
import { SuspensionNotice } from '../components/SuspensionNotice';
import { Card, ErrorState, PageHeader, Spinner } from '../components/ui';
import { formatCents, formatMonthly } from '../lib/money';
import { tierLabel } from '../lib/price';

export function OverviewPage() {
  const services = useServices();
  const balance = useBalance();
  return (
    <>
      <PageHeader title="Overview" description="Your balance, this month's spending and your services at a glance." />
      <SuspensionNotice />
      <div className="grid gap-4 md:grid-cols-2">
        <Card title="Balance">
          {balance.isPending ? (
            <Spinner label="Loading balance" />
          ) : balance.isError ? (
            <ErrorState error={balance.error} onRetry={() => void balance.refetch()} />
          ) : (
            <dl className="grid grid-cols-2 gap-3 text-sm">
              <div>
                <dt className="text-slate-500">Escrow balance</dt>
                <dd className="text-2xl font-semibold">{formatCents(balance.data.balance_usd_cents)}</dd>
              </div>
              <div>
                <dt className="text-slate-500">Charged this month</dt>
                <dd className="text-2xl font-semibold">{formatCents(balance.data.current_month_charged_usd_cents)}</dd>
              </div>
              <div className="col-span-2 text-slate-600">
                Monthly limit {formatCents(balance.data.max_monthly_usd_cents)} ·{' '}
                {formatCents(balance.data.remaining_authorization_usd_cents)} left this month ·{' '}
                <Link to="/billing" className="text-blue-700 underline">
                  Billing
                </Link>
              </div>
            </dl>
          )}
        </Card>
        <Card title="Services">
          {services.isPending ? (
            <Spinner label="Loading services" />
          ) : services.isError ? (
            <ErrorState error={services.error} onRetry={() => void services.refetch()} />
          ) : (
            <ul className="divide-y divide-slate-100">
              {SERVICES.map((name) => {
                const s = services.data.find((x) => x.service === name);
                return (
                  <li key={name} className="flex flex-wrap items-center justify-between gap-2 py-2">
                    <div className="flex items-center gap-2">
                      <Link to="/services/$service" params={{ service: name }} className="font-medium text-blue-700 hover:underline">
                        {serviceLabel(name)}
                      </Link>
                      <ServiceStatus service={s} />
                    </div>
                    <span className="text-sm text-slate-600">
                      {s ? `${tierLabel(s.tier)} · ${formatMonthly(s.monthly_price_usd_cents)}` : 'Not set up'}
                    </span>
                  </li>
                );
              })}
            </ul>
          )}
        </Card>
      </div>
    </>
  );
}
