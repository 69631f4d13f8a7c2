/**
 * One service: status, tier selection with a live price quote from the API, the burst add-on,
 * extra keys and packages, enable / save / disable. A change the API would refuse shows the
 * structured reason (balance, monthly limit) with the way out (deposit, raise the limit).
 */
import { useQueries } from '@tanstack/react-query';
import { Link, useParams } from '@tanstack/react-router';
import { useState } from 'react';
import { ApiError, SERVICES, api, serviceLabel, unwrap, type Quote, type Service, type ServiceConfig, type ServiceName } from '../api/client';
import { keys, useBalance, useDisableService, useQuote, useSaveService, useServices } from '../api/queries';
import { FundsDialog } from '../components/FundsDialog';
import { ServiceStatus } from '../components/ServiceStatus';
import { SuspensionNotice } from '../components/SuspensionNotice';
import { Alert, Button, Card, Dialog, ErrorState, Field, PageHeader, Spinner, cx, formatDate, inputClass } from '../components/ui';
import { formatMonthly, formatPrice } from '../lib/money';
import { TIERS, describeRefusal, quoteLines, quoteSummary, rateLabel, tierLabel, type Tier } from '../lib/price';
import { ComingSoon } from './ComingSoon';
import { NotFound } from './NotFound';

const RESERVED = ['ssfn', 'sealo'];

export function ServicePage() {
  const { service } = useParams({ from: '/authed/services/$service' });
  if (RESERVED.includes(service)) return <ComingSoon service={service} />;
  if (!(SERVICES as readonly string[]).includes(service)) return <NotFound />;
  // key: a fresh draft per service.
  return <ServiceView key={service} service={service as ServiceName} />;
}

/** The stored config with every optional field filled in (what the API prices). */
function normalize(c: ServiceConfig | undefined): Required<ServiceConfig> {
  return {
    tier: c?.tier ?? 'starter',
    burst: c?.burst ?? false,
    extra_api_keys: c?.extra_api_keys ?? 0,
    extra_seal_keys: c?.extra_seal_keys ?? 0,
    extra_packages: c?.extra_packages ?? 0,
  };
}

function same(a: Required<ServiceConfig>, b: Required<ServiceConfig>): boolean {
  return (
    a.tier === b.tier &&
    a.burst === b.burst &&
    a.extra_api_keys === b.extra_api_keys &&
    a.extra_seal_keys === b.extra_seal_keys &&
    a.extra_packages === b.extra_packages
  );
}

/** What the quote endpoint takes: only the fields this service can buy. */
function body(service: ServiceName, c: Required<ServiceConfig>): ServiceConfig {
  const out: ServiceConfig = { tier: c.tier, burst: c.burst, extra_api_keys: c.extra_api_keys };
  if (service === 'seal') {
    out.extra_seal_keys = c.extra_seal_keys;
    out.extra_packages = c.extra_packages;
  }
  return out;
}

function ServiceView({ service }: { service: ServiceName }) {
  const services = useServices();
  const balance = useBalance();
  if (services.isPending) return <Spinner label="Loading service" />;
  if (services.isError) return <ErrorState error={services.error} onRetry={() => void services.refetch()} />;
  const current = services.data.find((s) => s.service === service);
  return <ServiceEditor service={service} current={current} monthStart={balance.data?.current_month_start} />;
}

function ServiceEditor({ service, current, monthStart }: { service: ServiceName; current: Service | undefined; monthStart: string | undefined }) {
  const stored = normalize(current?.config);
  const [draft, setDraft] = useState<Required<ServiceConfig>>(stored);
  const [counts, setCounts] = useState<Record<string, string>>({});
  const [confirmDisable, setConfirmDisable] = useState(false);
  const [deposit, setDeposit] = useState(false);
  const save = useSaveService(service);
  const disable = useDisableService(service);
  const enabled = current?.is_enabled ?? false;
  const dirty = !same(draft, stored);
  const countErrors = Object.values(counts).some((v) => !/^\d{1,4}$/.test(v) || Number(v) > 1000);
  const quote = useQuote(service, body(service, draft), !countErrors);
  const tierQuotes = useQueries({
    queries: TIERS.map((tier) => ({
      queryKey: keys.quote(service, { tier }),
      queryFn: async () => unwrap(await api.POST('/services/{service}/quote', { params: { path: { service } }, body: { tier } })),
      staleTime: 60_000,
    })),
  });

  function setTier(tier: Tier) {
    save.reset();
    setDraft((d) => ({ ...d, tier, burst: tier === 'starter' ? false : d.burst }));
  }

  function setCount(field: 'extra_api_keys' | 'extra_seal_keys' | 'extra_packages', raw: string) {
    save.reset();
    setCounts((c) => ({ ...c, [field]: raw }));
    if (/^\d{1,4}$/.test(raw) && Number(raw) <= 1000) setDraft((d) => ({ ...d, [field]: Number(raw) }));
  }

  const q: Quote | undefined = quote.data;
  const refusal = q && !q.allowed && q.refusal ? describeRefusal(q.refusal, monthStart) : null;
  const saveError = save.error instanceof ApiError ? describeRefusal(save.error.body, monthStart) : null;
  const label = serviceLabel(service);
  const needsChange = !enabled || dirty;

  return (
    <>
      <PageHeader
        title={label}
        description={
          <span className="inline-flex flex-wrap items-center gap-2">
            <ServiceStatus service={current} />
            {current && enabled && (
              <span>
                {tierLabel(current.tier)} · {formatMonthly(current.monthly_price_usd_cents)} · {rateLabel(current.rate_limit_per_region)}
              </span>
            )}
            {current && !enabled && current.disabled_at && <span>Disabled since {formatDate(current.disabled_at)}</span>}
          </span>
        }
        actions={
          enabled ? (
            <Button variant="secondary" onClick={() => setConfirmDisable(true)}>
              Disable {label}
            </Button>
          ) : undefined
        }
      />
      <SuspensionNotice />

      {current && enabled && (
        <p className="mb-4 text-sm text-slate-600">
          {current.active_api_keys} of {current.api_key_limit} API keys in use ·{' '}
          <Link to="/keys" className="text-blue-700 underline">
            Manage API keys
          </Link>
          {current.enabled_at && <> · Active since {formatDate(current.enabled_at)}</>}
        </p>
      )}

      <div className="grid gap-4 lg:grid-cols-[minmax(0,1fr)_18rem]">
        <div className="flex min-w-0 flex-col gap-4">
          <Card title="Tier">
            <fieldset>
              <legend className="sr-only">Tier</legend>
              <div className="grid gap-3 sm:grid-cols-3">
                {TIERS.map((tier, i) => {
                  const tq = tierQuotes[i]?.data;
                  const checked = draft.tier === tier;
                  return (
                    <label
                      key={tier}
                      className={cx(
                        'flex cursor-pointer flex-col gap-1 rounded-lg p-3 ring-1 has-[:focus-visible]:outline-2 has-[:focus-visible]:outline-blue-600',
                        checked ? 'bg-blue-50 ring-2 ring-blue-600' : 'ring-slate-300 hover:bg-slate-50',
                      )}
                    >
                      <span className="flex items-center gap-2">
                        <input type="radio" name="tier" value={tier} checked={checked} onChange={() => setTier(tier)} className="accent-blue-600" />
                        <span className="font-medium">{tierLabel(tier)}</span>
                        {current?.tier === tier && enabled && <span className="text-xs text-slate-500">current</span>}
                      </span>
                      <span className="text-lg font-semibold">{tq ? formatMonthly(tq.breakdown.tier_usd_cents) : '…'}</span>
                      <span className="text-xs text-slate-600">{tq ? rateLabel(tq.rate_limit_per_region) : ''}</span>
                    </label>
                  );
                })}
              </div>
            </fieldset>
          </Card>

          <Card title="Add-ons">
            <div className="flex flex-col gap-4">
              <label className={cx('flex items-start gap-3', draft.tier === 'starter' && 'opacity-60')}>
                <input
                  type="checkbox"
                  className="mt-1 accent-blue-600"
                  checked={draft.burst}
                  disabled={draft.tier === 'starter'}
                  aria-describedby="burst-hint"
                  onChange={(e) => {
                    save.reset();
                    setDraft((d) => ({ ...d, burst: e.target.checked }));
                  }}
                />
                <span>
                  <span className="font-medium">Burst</span>
                  <span id="burst-hint" className="block text-sm text-slate-600">
                    {draft.tier === 'starter'
                      ? 'Available on Pro and Enterprise.'
                      : 'Short bursts above the guaranteed rate; its monthly price shows in the quote when checked.'}
                  </span>
                </span>
              </label>
              <div className="grid gap-3 sm:grid-cols-3">
                <CountField label="Extra API keys" hint="2 included" value={counts.extra_api_keys ?? String(draft.extra_api_keys)} onChange={(v) => setCount('extra_api_keys', v)} />
                {service === 'seal' && (
                  <>
                    <CountField label="Extra Seal keys" hint="1 included" value={counts.extra_seal_keys ?? String(draft.extra_seal_keys)} onChange={(v) => setCount('extra_seal_keys', v)} />
                    <CountField label="Extra packages" hint="3 per Seal key included" value={counts.extra_packages ?? String(draft.extra_packages)} onChange={(v) => setCount('extra_packages', v)} />
                  </>
                )}
              </div>
            </div>
          </Card>
        </div>

        <Card title="Price" className="self-start">
          <div aria-live="polite" className="flex flex-col gap-3 text-sm">
            {countErrors ? (
              <p className="text-red-700">Enter whole numbers from 0 to 1000.</p>
            ) : quote.isError ? (
              <Alert tone="red">{describeRefusalOrText(quote.error, monthStart)}</Alert>
            ) : !q ? (
              <Spinner label="Pricing" />
            ) : (
              <>
                <ul className="flex flex-col gap-1" data-testid="quote-lines">
                  {quoteLines(q, draft.tier).map((l) => (
                    <li key={l.label} className="flex justify-between gap-2">
                      <span>{l.label}</span>
                      <span>{formatPrice(l.cents)}</span>
                    </li>
                  ))}
                </ul>
                <p className="flex justify-between border-t border-slate-200 pt-2 font-semibold">
                  <span>Monthly</span>
                  <span data-testid="quote-monthly">{formatMonthly(q.monthly_usd_cents)}</span>
                </p>
                {needsChange && <p className="text-slate-600">{quoteSummary(q, enabled)}</p>}
                {needsChange && refusal && (
                  <Alert tone="amber" title="This change would be refused">
                    <p>{refusal.text}</p>
                    <RefusalAction action={refusal.action} onDeposit={() => setDeposit(true)} />
                  </Alert>
                )}
              </>
            )}

            {saveError && (
              <Alert tone="red" title="Not saved">
                <p>{saveError.text}</p>
                <RefusalAction action={saveError.action} onDeposit={() => setDeposit(true)} />
              </Alert>
            )}
            {save.isError && !saveError && <Alert tone="red">{describeRefusalOrText(save.error, monthStart)}</Alert>}
            {save.isSuccess && !dirty && <Alert tone="green">{enabled ? 'Saved.' : `${label} is disabled.`}</Alert>}

            {!enabled ? (
              <Button
                busy={save.isPending}
                disabled={countErrors || (refusal !== null && !quote.isFetching)}
                onClick={() => save.mutate({ config: body(service, draft), enable: true })}
              >
                Enable {label}
                {q ? ` · ${formatMonthly(q.monthly_usd_cents)}` : ''}
              </Button>
            ) : (
              <div className="flex flex-wrap gap-2">
                <Button
                  className="flex-1"
                  busy={save.isPending}
                  disabled={!dirty || countErrors || (refusal !== null && !quote.isFetching)}
                  onClick={() => save.mutate({ config: body(service, draft), enable: false })}
                >
                  Save changes
                </Button>
                {dirty && (
                  <Button
                    variant="secondary"
                    onClick={() => {
                      save.reset();
                      setCounts({});
                      setDraft(stored);
                    }}
                  >
                    Discard
                  </Button>
                )}
              </div>
            )}
          </div>
        </Card>
      </div>

      <Dialog
        open={confirmDisable}
        onClose={() => setConfirmDisable(false)}
        title={`Disable ${label}?`}
        footer={
          <>
            <Button variant="secondary" onClick={() => setConfirmDisable(false)}>
              Keep it
            </Button>
            <Button
              variant="danger"
              busy={disable.isPending}
              onClick={() =>
                disable.mutate(undefined, {
                  onSuccess: () => {
                    setConfirmDisable(false);
                    save.reset();
                  },
                })
              }
            >
              Disable
            </Button>
          </>
        }
      >
        <p>Requests with this service's API keys are refused until you enable it again. Your configuration and keys are kept.</p>
        {disable.isError && <Alert tone="red">{describeRefusalOrText(disable.error, monthStart)}</Alert>}
      </Dialog>
      <FundsDialog kind="deposit" open={deposit} onClose={() => setDeposit(false)} />
    </>
  );
}

function describeRefusalOrText(e: unknown, monthStart: string | undefined): string {
  if (e instanceof ApiError) return describeRefusal(e.body, monthStart).text;
  if (e instanceof TypeError) return 'Cannot reach the server: check your connection and try again.';
  return e instanceof Error ? e.message : 'Something went wrong.';
}

function RefusalAction({ action, onDeposit }: { action: string; onDeposit: () => void }) {
  if (action === 'deposit')
    return (
      <Button variant="secondary" className="mt-2" onClick={onDeposit}>
        Deposit funds
      </Button>
    );
  if (action === 'raise-limit')
    return (
      <Link to="/billing" hash="limit" className="mt-2 inline-block text-blue-700 underline">
        Raise the monthly limit
      </Link>
    );
  return null;
}

function CountField({ label, hint, value, onChange }: { label: string; hint: string; value: string; onChange: (v: string) => void }) {
  const bad = !/^\d{1,4}$/.test(value) || Number(value) > 1000;
  return (
    <Field label={label} hint={hint} error={bad ? '0 to 1000' : undefined}>
      {(p) => <input {...p} className={inputClass} inputMode="numeric" value={value} onChange={(e) => onChange(e.target.value.trim())} />}
    </Field>
  );
}

