/**
 * Usage: traffic, billable requests, bandwidth and response time for 24 hours (hourly), 7 or
 * 30 days (daily), all services or one. The numbers come from `/stats/*` (settled buckets plus
 * what metering has not settled yet); the live stream (`/stats/live`) says when they changed,
 * and the page asks again (at most a few times a second), so what is shown is always the
 * API's exactly-once merge, never a client-side sum that could count a row twice.
 *
 * The bucket still in progress is marked in the charts (hatched, "in progress"), in the
 * totals and in the table, which is also the accessible form of the charts.
 */
import { useQueryClient } from '@tanstack/react-query';
import { Link } from '@tanstack/react-router';
import { useEffect, useMemo, useRef, useState } from 'react';
import { SERVICES, serviceLabel, type ServiceName } from '../api/client';
import { useLiveUsage, type LiveStatus } from '../api/live';
import { useUsageSeries } from '../api/queries';
import { Alert, Card, EmptyState, ErrorState, Field, PageHeader, Spinner, cx, errorText, inputClass } from '../components/ui';
import { UsageChart, type ChartSeries } from '../components/UsageChart';
import {
  RANGES,
  bucketLabel,
  formatBytes,
  formatCount,
  formatMs,
  joinSeries,
  rangeLabel,
  totals,
  type Bucket,
  type Range,
} from '../lib/usage';

const SERIES: Record<'traffic' | 'billable' | 'bandwidth' | 'latency', ChartSeries[]> = {
  traffic: [
    { label: 'Requests', value: (b) => b.requests, color: '#2563eb', kind: 'bars' },
    { label: 'Errors', value: (b) => b.errors, color: '#dc2626', kind: 'line' },
    { label: 'Dropped', value: (b) => b.dropped, color: '#64748b', kind: 'line', dash: [4, 3] },
  ],
  billable: [{ label: 'Billable requests', value: (b) => b.billable, color: '#0d9488', kind: 'bars' }],
  bandwidth: [
    { label: 'Total', value: (b) => b.totalBytes, color: '#7c3aed', kind: 'bars' },
    { label: 'Billable', value: (b) => b.billableBytes, color: '#0f766e', kind: 'line' },
  ],
  latency: [
    { label: 'Average', value: (b) => b.avgMs, color: '#2563eb', kind: 'line' },
    { label: 'Maximum', value: (b) => b.maxMs, color: '#94a3b8', kind: 'line', dash: [4, 3] },
  ],
};

function compact(v: number): string {
  if (Math.abs(v) >= 1e6) return `${Number((v / 1e6).toFixed(1)).toString()}M`;
  if (Math.abs(v) >= 1e3) return `${Number((v / 1e3).toFixed(1)).toString()}k`;
  return Number.isInteger(v) ? String(v) : '';
}

const LIVE_TEXT: Record<LiveStatus, { text: string; dot: string }> = {
  connecting: { text: 'Connecting…', dot: 'bg-slate-400' },
  live: { text: 'Live', dot: 'bg-green-500' },
  reconnecting: { text: 'Reconnecting…', dot: 'bg-amber-500' },
  unavailable: { text: 'Live updates unavailable: refreshed every 30 s', dot: 'bg-slate-400' },
};

function LiveBadge({ status }: { status: LiveStatus }) {
  const s = LIVE_TEXT[status];
  return (
    <p role="status" className="inline-flex items-center gap-2 rounded-full bg-white px-3 py-1 text-sm text-slate-700 ring-1 ring-slate-200" data-testid="live-status">
      <span aria-hidden="true" className={cx('h-2 w-2 rounded-full', s.dot, status === 'live' && 'animate-pulse')} />
      {s.text}
    </p>
  );
}

function RangePicker({ value, onChange }: { value: Range; onChange: (r: Range) => void }) {
  return (
    <fieldset className="flex flex-col gap-1">
      <legend className="mb-1 text-sm font-medium text-slate-800">Range</legend>
      <div className="inline-flex rounded-md ring-1 ring-slate-300">
        {RANGES.map((r, i) => (
          <label
            key={r}
            className={cx(
              'cursor-pointer px-3 py-2 text-sm has-[:focus-visible]:outline-2 has-[:focus-visible]:outline-blue-600',
              i > 0 && 'border-l border-slate-300',
              i === 0 && 'rounded-l-md',
              i === RANGES.length - 1 && 'rounded-r-md',
              value === r ? 'bg-blue-600 font-medium text-white' : 'bg-white text-slate-700 hover:bg-slate-50',
            )}
          >
            <input type="radio" name="usage-range" value={r} checked={value === r} onChange={() => onChange(r)} className="sr-only" />
            {rangeLabel(r)}
          </label>
        ))}
      </div>
    </fieldset>
  );
}

function Tile({ label, value, testId, note }: { label: string; value: string; testId: string; note: string }) {
  return (
    <div className="rounded-lg bg-white p-4 shadow-sm ring-1 ring-slate-200">
      <dt className="text-sm text-slate-500">{label}</dt>
      <dd className="mt-1 text-2xl font-semibold tabular-nums" data-testid={testId}>
        {value}
      </dd>
      <dd className="text-xs text-slate-500">{note}</dd>
    </div>
  );
}

function Swatch() {
  return <span aria-hidden="true" className="inline-block h-3 w-4 rounded-sm bg-amber-100 bg-[repeating-linear-gradient(135deg,rgba(245,158,11,0.6)_0_1px,transparent_1px_5px)] ring-1 ring-amber-300" />;
}

/** Invalidates the stats queries at most every 250 ms however many events arrive. */
function useThrottledInvalidate(): () => void {
  const qc = useQueryClient();
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => () => clearTimeout(timer.current), []);
  return () => {
    if (timer.current !== undefined) return;
    timer.current = setTimeout(() => {
      timer.current = undefined;
      void qc.invalidateQueries({ queryKey: ['stats'] });
    }, 250);
  };
}

export function UsagePage() {
  const [range, setRange] = useState<Range>('24h');
  const [service, setService] = useState<ServiceName | 'all'>('all');
  const changed = useThrottledInvalidate();
  const live = useLiveUsage({
    onProvisional: changed,
    onSettled: (d) => {
      if (d.rows.length > 0) changed();
    },
    onReset: changed,
  });
  const poll = live !== 'live';
  const q = useUsageSeries(range, service, poll);
  const updating = q.isPlaceholderData;

  const view = useMemo(() => {
    if (!q.data) return null;
    const { traffic, usage, bandwidth, responseTime } = q.data;
    const s = { traffic: traffic.points, usage: usage.points, bandwidth: bandwidth.points, responseTime: responseTime.points };
    return {
      // What the answer is for (while another range loads, the previous answer stays shown).
      range: traffic.range ?? range,
      buckets: joinSeries(s),
      totals: totals(s),
      interval: traffic.interval,
      from: Date.parse(traffic.from) / 1000,
      to: Date.parse(traffic.to) / 1000,
      unit: traffic.interval === 'hour' ? 3600 : 86400,
    };
  }, [q.data, range]);

  const shown = view ? rangeLabel(view.range) : rangeLabel(range);
  const scope = `${service === 'all' ? 'All services' : serviceLabel(service)}, last ${shown}`;
  const hasData = view !== null && view.buckets.some((b) => b.requests > 0 || b.totalBytes > 0);
  const partial = view?.buckets.find((b) => b.partial);
  const fx = (t: number) => bucketLabel(new Date(t * 1000).toISOString(), view?.interval ?? 'hour');

  const chart = (title: string, series: ChartSeries[], formatY: (v: number) => string, integer: boolean, total: string) => (
    <Card title={title}>
      <figure>
        {view && (
          <UsageChart
            buckets={view.buckets}
            series={series}
            from={view.from}
            to={view.to}
            unit={view.unit}
            formatY={formatY}
            formatX={fx}
            integer={integer}
          />
        )}
        <figcaption className="mt-2 text-xs text-slate-500">
          {title} per {view?.interval ?? 'hour'} (UTC): {total}. The table below has the same numbers.
        </figcaption>
      </figure>
    </Card>
  );

  return (
    <>
      <PageHeader
        title="Usage"
        description="Requests, billable usage, bandwidth and response time of your API keys, in UTC. Updated live as your traffic is metered."
        actions={<LiveBadge status={live} />}
      />
      <div className="mb-4 flex flex-wrap items-end gap-4">
        <RangePicker value={range} onChange={setRange} />
        <div className="w-48">
          <Field label="Service">
            {(p) => (
              <select {...p} className={inputClass} value={service} onChange={(e) => setService(e.target.value as ServiceName | 'all')}>
                <option value="all">All services</option>
                {SERVICES.map((s) => (
                  <option key={s} value={s}>
                    {serviceLabel(s)}
                  </option>
                ))}
              </select>
            )}
          </Field>
        </div>
        {updating && <Spinner small label="Updating" />}
      </div>

      {q.isError && !view ? (
        <ErrorState error={q.error} onRetry={() => void q.refetch()} />
      ) : !view ? (
        <Spinner label="Loading usage" />
      ) : (
        <div className="flex flex-col gap-4" aria-busy={updating || undefined}>
          {q.isError && (
            <Alert tone="amber" title="Could not refresh: these numbers may be behind">
              {errorText(q.error)}
            </Alert>
          )}
          <dl className="grid grid-cols-2 gap-3 lg:grid-cols-4" aria-label={`Totals: ${scope}`}>
            <Tile label="Requests" value={formatCount(view.totals.requests)} testId="usage-total-requests" note={`last ${shown}`} />
            <Tile label="Billable requests" value={formatCount(view.totals.billable)} testId="usage-total-billable" note={`last ${shown}`} />
            <Tile label="Bandwidth" value={formatBytes(view.totals.totalBytes)} testId="usage-total-bandwidth" note={`last ${shown}`} />
            <Tile label="Avg response time" value={formatMs(view.totals.avgMs)} testId="usage-avg-response" note="billable requests" />
          </dl>
          {partial && (
            <p className="flex items-center gap-2 text-sm text-slate-600" data-testid="partial-note">
              <Swatch />
              The current {view.interval} ({bucketLabel(partial.start, view.interval)} UTC) is still in progress: its numbers grow until it ends.
            </p>
          )}
          {!hasData ? (
            <EmptyState title={`No traffic in the last ${shown}`}>
              Requests made with your API keys show up here within seconds.{' '}
              <Link to="/keys" className="text-blue-700 underline">
                Get an API key
              </Link>
            </EmptyState>
          ) : (
            <>
              <div className="grid gap-4 md:grid-cols-2">
                {chart('Traffic', SERIES.traffic, compact, true, `${formatCount(view.totals.requests)} requests`)}
                {chart('Billable requests', SERIES.billable, compact, true, `${formatCount(view.totals.billable)} billable requests`)}
                {chart('Bandwidth', SERIES.bandwidth, formatBytes, true, formatBytes(view.totals.totalBytes))}
                {chart('Response time', SERIES.latency, formatMs, false, `average ${formatMs(view.totals.avgMs)}`)}
              </div>
              <UsageTable buckets={view.buckets} interval={view.interval} />
            </>
          )}
        </div>
      )}
    </>
  );
}

const th = 'px-1.5 py-1.5 text-left align-bottom text-xs font-medium uppercase text-slate-500 sm:px-2 sm:tracking-wide';
const td = 'px-1.5 py-1.5 tabular-nums sm:px-2';

/** A column name shortened on phones (the long one stays the accessible name). */
function Short({ short, long }: { short: string; long: string }) {
  return (
    <>
      <span aria-hidden="true" className="sm:hidden">
        {short}
      </span>
      <span className="sr-only sm:not-sr-only">{long}</span>
    </>
  );
}

function UsageTable({ buckets, interval }: { buckets: readonly Bucket[]; interval: 'hour' | 'day' }) {
  const rows = [...buckets].reverse();
  return (
    <Card>
      <details>
        <summary className="cursor-pointer text-base font-semibold text-slate-900 focus-visible:outline-2 focus-visible:outline-blue-600">
          Numbers per {interval} (table)
        </summary>
        <div className="mt-3">
          <table className="w-full text-xs sm:text-sm">
            <caption className="sr-only">Usage per {interval}, newest first (UTC)</caption>
            <thead>
              <tr>
                <th scope="col" className={th}>
                  {interval === 'hour' ? 'Hour' : 'Day'}
                  <span className="hidden sm:inline"> (UTC)</span>
                </th>
                <th scope="col" className={`${th} text-right`}>
                  <Short short="Req." long="Requests" />
                </th>
                <th scope="col" className={`${th} text-right`}>Billable</th>
                <th scope="col" className={`${th} text-right`}>
                  <Short short="Bytes" long="Bandwidth" />
                </th>
                <th scope="col" className={`${th} text-right`}>
                  <Short short="Avg" long="Avg response" />
                </th>
              </tr>
            </thead>
            <tbody className="divide-y divide-slate-100">
              {rows.map((b) => (
                <tr key={b.start} data-testid="usage-row" data-partial={b.partial || undefined} className={b.partial ? 'bg-amber-50' : undefined}>
                  <th scope="row" className={`${td} text-left font-normal`}>
                    {bucketLabel(b.start, interval)}
                    {b.partial && <span className="block text-xs font-medium text-amber-800 sm:ml-2 sm:inline">in progress</span>}
                  </th>
                  <td className={`${td} text-right`}>{formatCount(b.requests)}</td>
                  <td className={`${td} text-right`}>{formatCount(b.billable)}</td>
                  <td className={`${td} text-right`}>{formatBytes(b.totalBytes)}</td>
                  <td className={`${td} text-right`}>{formatMs(b.avgMs)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </Card>
  );
}
