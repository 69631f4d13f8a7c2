import { describe, expect, it } from 'vitest';
import { bucketLabel, formatBytes, formatCount, formatMs, joinSeries, totals, type Series } from './usage';

describe('formatting', () => {
  it('counts exactly, with separators', () => {
    expect(formatCount(0)).toBe('0');
    expect(formatCount(7)).toBe('7');
    expect(formatCount(1234567)).toBe('1,234,567');
  });

  it('bytes in decimal units, exact below a kilobyte', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(1000)).toBe('1 kB');
    expect(formatBytes(1536)).toBe('1.54 kB');
    expect(formatBytes(12_345_678)).toBe('12.3 MB');
    expect(formatBytes(3_070_000_000)).toBe('3.07 GB');
    expect(formatBytes(999_999)).toBe('1 MB');
    expect(formatBytes(999_499)).toBe('999 kB');
  });

  it('milliseconds', () => {
    expect(formatMs(null)).toBe('—');
    expect(formatMs(9)).toBe('9 ms');
    expect(formatMs(2.25)).toBe('2.3 ms');
    expect(formatMs(123.4)).toBe('123 ms');
    expect(formatMs(2500)).toBe('2,500 ms');
    expect(formatMs(12_500)).toBe('12.5 s');
  });

  it('bucket labels in UTC', () => {
    expect(bucketLabel('2026-12-04T07:00:00Z', 'hour')).toBe('4 Dec, 07:00');
    expect(bucketLabel('2026-12-04T00:00:00Z', 'day')).toBe('Fri 4 Dec');
  });
});

const h = (i: number) => `2026-12-04T${String(i).padStart(2, '0')}:00:00Z`;

const series: Series = {
  traffic: [
    { start: h(1), partial: false, requests: 4, dropped_requests: 1, client_errors: 1, server_errors: 0 },
    { start: h(2), partial: true, requests: 6, dropped_requests: 0, client_errors: 0, server_errors: 2 },
  ],
  usage: [
    { start: h(1), partial: false, billable_requests: 3, billable_bytes: 300 },
    { start: h(2), partial: true, billable_requests: 6, billable_bytes: 600 },
  ],
  bandwidth: [
    { start: h(1), partial: false, total_bytes: 400, billable_bytes: 300 },
    { start: h(2), partial: true, total_bytes: 600, billable_bytes: 600 },
  ],
  responseTime: [
    { start: h(1), partial: false, billable_requests: 3, avg_response_time_ms: 10, min_response_time_ms: 5, max_response_time_ms: 20 },
    { start: h(2), partial: true, billable_requests: 6, avg_response_time_ms: 40, min_response_time_ms: 1, max_response_time_ms: 90 },
  ],
};

describe('series', () => {
  it('joins the four series per bucket, oldest first, keeping the partial mark', () => {
    const b = joinSeries({ ...series, traffic: [...series.traffic].reverse() });
    expect(b.map((x) => [x.start, x.partial, x.requests, x.billable, x.totalBytes, x.avgMs, x.errors])).toEqual([
      [h(1), false, 4, 3, 400, 10, 1],
      [h(2), true, 6, 6, 600, 40, 2],
    ]);
    expect(b[0]!.t).toBe(Date.parse(h(1)) / 1000);
  });

  it('totals weight the average by billable requests', () => {
    expect(totals(series)).toEqual({ requests: 10, billable: 9, totalBytes: 1000, avgMs: 30, partial: true });
  });

  it('totals of nothing', () => {
    expect(totals({ traffic: [], usage: [], bandwidth: [], responseTime: [] })).toEqual({
      requests: 0,
      billable: 0,
      totalBytes: 0,
      avgMs: null,
      partial: false,
    });
  });
});
