/**
 * The usage page's arithmetic, kept out of React so it is unit-tested: number and byte
 * formatting, the four series joined per bucket, and the totals of a window (the average
 * response time weighted by billable requests, as the API does over several buckets).
 */

export type Range = '24h' | '7d' | '30d';
export const RANGES: readonly Range[] = ['24h', '7d', '30d'];

export function rangeLabel(r: Range): string {
  return { '24h': '24 hours', '7d': '7 days', '30d': '30 days' }[r];
}

/** Exact counts with thousands separators ("12,345"). */
export function formatCount(n: number): string {
  return Math.trunc(n).toLocaleString('en-US');
}

/** Bytes in decimal units, exact below 1 kB ("512 B", "1.5 kB", "12 MB", "3.07 GB"). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '—';
  const sign = n < 0 ? '-' : '';
  let v = Math.abs(n);
  if (v < 1000) return `${sign}${Math.trunc(v)} B`;
  const units = ['kB', 'MB', 'GB', 'TB', 'PB'];
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  if (v >= 999.5 && i < units.length - 1) {
    v /= 1000; // 999,999 B is "1 MB", not "1000 kB"
    i++;
  }
  const digits = v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${sign}${Number(v.toFixed(digits)).toString()} ${units[i]}`;
}

/** Milliseconds: one decimal below 10 ms, whole above, seconds from 10 s; "—" without requests. */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms >= 10_000) return `${Number((ms / 1000).toFixed(1)).toString()} s`;
  if (ms < 10) return `${Number(ms.toFixed(1)).toString()} ms`;
  return `${Math.round(ms).toLocaleString('en-US')} ms`;
}

interface Base {
  start: string;
  partial: boolean;
}
export interface TrafficLike extends Base {
  requests: number;
  dropped_requests: number;
  client_errors: number;
  server_errors: number;
}
export interface UsageLike extends Base {
  billable_requests: number;
  billable_bytes: number;
}
export interface BandwidthLike extends Base {
  total_bytes: number;
  billable_bytes: number;
}
export interface ResponseTimeLike extends Base {
  billable_requests: number;
  avg_response_time_ms: number | null;
  min_response_time_ms: number | null;
  max_response_time_ms: number | null;
}

/** One bucket with every metric (zero when a series has no point there). */
export interface Bucket {
  /** Start, seconds since the epoch (uPlot's x). */
  t: number;
  start: string;
  partial: boolean;
  requests: number;
  dropped: number;
  errors: number;
  billable: number;
  totalBytes: number;
  billableBytes: number;
  avgMs: number | null;
  maxMs: number | null;
}

export interface Series {
  traffic: readonly TrafficLike[];
  usage: readonly UsageLike[];
  bandwidth: readonly BandwidthLike[];
  responseTime: readonly ResponseTimeLike[];
}

/** The buckets of the four series by start time, oldest first. */
export function joinSeries(s: Series): Bucket[] {
  const m = new Map<string, Bucket>();
  const at = (p: Base): Bucket => {
    let b = m.get(p.start);
    if (!b) {
      b = {
        t: Date.parse(p.start) / 1000,
        start: p.start,
        partial: false,
        requests: 0,
        dropped: 0,
        errors: 0,
        billable: 0,
        totalBytes: 0,
        billableBytes: 0,
        avgMs: null,
        maxMs: null,
      };
      m.set(p.start, b);
    }
    b.partial ||= p.partial;
    return b;
  };
  for (const p of s.traffic) {
    const b = at(p);
    b.requests = p.requests;
    b.dropped = p.dropped_requests;
    b.errors = p.client_errors + p.server_errors;
  }
  for (const p of s.usage) at(p).billable = p.billable_requests;
  for (const p of s.bandwidth) {
    const b = at(p);
    b.totalBytes = p.total_bytes;
    b.billableBytes = p.billable_bytes;
  }
  for (const p of s.responseTime) {
    const b = at(p);
    b.avgMs = p.avg_response_time_ms;
    b.maxMs = p.max_response_time_ms;
  }
  return [...m.values()].sort((a, b) => a.t - b.t);
}

export interface Totals {
  requests: number;
  billable: number;
  totalBytes: number;
  /** Weighted by billable requests; null without any. */
  avgMs: number | null;
  partial: boolean;
}

export function totals(s: Series): Totals {
  const sum = <T>(xs: readonly T[], f: (x: T) => number) => xs.reduce((a, x) => a + f(x), 0);
  let weight = 0;
  let weighted = 0;
  for (const p of s.responseTime) {
    if (p.avg_response_time_ms === null || p.billable_requests === 0) continue;
    weight += p.billable_requests;
    weighted += p.avg_response_time_ms * p.billable_requests;
  }
  return {
    requests: sum(s.traffic, (p) => p.requests),
    billable: sum(s.usage, (p) => p.billable_requests),
    totalBytes: sum(s.bandwidth, (p) => p.total_bytes),
    avgMs: weight > 0 ? weighted / weight : null,
    partial: [s.traffic, s.usage, s.bandwidth, s.responseTime].some((xs) => xs.some((p) => p.partial)),
  };
}

/** A bucket's label in UTC: "14:00" for hours, "3 Dec" for days. */
export function bucketLabel(start: string, interval: 'hour' | 'day'): string {
  const d = new Date(start);
  if (interval === 'hour') {
    const day = d.toLocaleDateString('en-GB', { day: 'numeric', month: 'short', timeZone: 'UTC' });
    return `${day}, ${String(d.getUTCHours()).padStart(2, '0')}:00`;
  }
  return d.toLocaleDateString('en-GB', { weekday: 'short', day: 'numeric', month: 'short', timeZone: 'UTC' });
}
