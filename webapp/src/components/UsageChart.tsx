/**
 * One usage chart on uPlot (~50 KB, canvas). Buckets are drawn at their middle over a fixed
 * x range (the window the API answered for), in UTC; the bucket still in progress is hatched
 * and labelled "in progress" behind its bar, because its numbers still grow. The canvas is
 * hidden from assistive technology: the page's table carries the same numbers.
 */
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { Bucket } from '../lib/usage';

export interface ChartSeries {
  label: string;
  value: (b: Bucket) => number | null;
  color: string;
  kind: 'bars' | 'line';
  dash?: number[];
}

export interface UsageChartProps {
  buckets: readonly Bucket[];
  series: readonly ChartSeries[];
  /** The window, seconds since the epoch. */
  from: number;
  to: number;
  /** Bucket length in seconds. */
  unit: number;
  formatY: (v: number) => string;
  formatX: (t: number) => string;
  /** Counts and bytes: whole-number ticks only. */
  integer?: boolean;
  height?: number;
}

/** 1, 2, 5, 10, 20, 50, … up to 5e15. */
const INTEGER_INCRS = Array.from({ length: 16 }, (_, e) => [1, 2, 5].map((m) => m * 10 ** e)).flat();

const HOUR = 3600;
const DAY = 86400;
const HOUR_INCRS = [1, 2, 3, 6, 12].map((h) => h * HOUR).concat([1, 2, 7].map((d) => d * DAY));
const DAY_INCRS = [1, 2, 3, 7, 14, 28].map((d) => d * DAY);

/** An x tick in UTC: "18:00" within a day of hours, the date ("4 Dec") at midnight and for days. */
function timeTick(t: number, unit: number): string {
  const d = new Date(t * 1000);
  const h = d.getUTCHours();
  if (unit === HOUR && h !== 0) return `${String(h).padStart(2, '0')}:00`;
  return d.toLocaleDateString('en-GB', { day: 'numeric', month: 'short', timeZone: 'UTC' });
}

const HATCH = 'rgba(245, 158, 11, 0.55)'; // amber-500

function hatch(ctx: CanvasRenderingContext2D, px: number): CanvasPattern | string {
  const size = Math.round(8 * px);
  const c = document.createElement('canvas');
  c.width = size;
  c.height = size;
  const g = c.getContext('2d');
  if (!g) return 'rgba(245, 158, 11, 0.12)';
  g.fillStyle = 'rgba(254, 243, 199, 0.7)'; // amber-100
  g.fillRect(0, 0, size, size);
  g.strokeStyle = HATCH;
  g.lineWidth = px;
  g.beginPath();
  g.moveTo(0, size);
  g.lineTo(size, 0);
  g.moveTo(-size / 2, size / 2);
  g.lineTo(size / 2, -size / 2);
  g.moveTo(size / 2, size * 1.5);
  g.lineTo(size * 1.5, size / 2);
  g.stroke();
  return ctx.createPattern(c, 'repeat') ?? 'rgba(245, 158, 11, 0.12)';
}

/** Hatches the partial bucket's span behind the series and labels it. */
function partialPlugin(get: () => { buckets: readonly Bucket[]; unit: number }): uPlot.Plugin {
  return {
    hooks: {
      drawClear: (u: uPlot) => {
        const { buckets, unit } = get();
        const p = buckets.find((b) => b.partial);
        if (!p) return;
        const { ctx } = u;
        const px = uPlot.pxRatio;
        const x0 = Math.max(u.valToPos(p.t, 'x', true), u.bbox.left);
        const x1 = Math.min(u.valToPos(p.t + unit, 'x', true), u.bbox.left + u.bbox.width);
        if (x1 <= x0) return;
        ctx.save();
        ctx.fillStyle = hatch(ctx, px);
        ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
        ctx.fillStyle = 'rgb(146, 64, 14)'; // amber-800
        ctx.font = `${Math.round(11 * px)}px ui-sans-serif, system-ui, sans-serif`;
        ctx.textBaseline = 'bottom';
        const label = 'in progress';
        const w = ctx.measureText(label).width;
        // Above the plot (in its top padding), right-aligned to the bucket's end.
        const x = Math.max(u.bbox.left, x1 - w);
        ctx.fillText(label, x, u.bbox.top - 3 * px);
        ctx.restore();
      },
    },
  };
}

export function UsageChart({ buckets, series, from, to, unit, formatY, formatX, integer = false, height = 180 }: UsageChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const latest = useRef({ buckets, unit });

  // (Re)build when the shape changes (series, window); data updates go through setData.
  const shape = `${series.map((s) => s.label).join('|')}|${from}|${to}|${unit}`;
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const bars = uPlot.paths.bars?.({ size: [0.7, 48], align: 0 });
    const opts: uPlot.Options = {
      width: Math.max(el.clientWidth, 200),
      height,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
      plugins: [partialPlugin(() => latest.current)],
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      legend: { show: true, live: true },
      scales: {
        x: { time: true, range: () => [from, to] },
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      // Room above the plot for the "in progress" label.
      padding: [18, 8, 0, 0],
      axes: [
        {
          stroke: '#475569',
          grid: { stroke: '#e2e8f0' },
          ticks: { stroke: '#cbd5e1' },
          incrs: unit === HOUR ? HOUR_INCRS : DAY_INCRS,
          values: (_u, splits) => splits.map((t) => timeTick(t, unit)),
        },
        {
          stroke: '#475569',
          grid: { stroke: '#e2e8f0' },
          ticks: { stroke: '#cbd5e1' },
          size: 64,
          incrs: integer ? INTEGER_INCRS : undefined,
          values: (_u, vals) => vals.map((v) => formatY(v)),
        },
      ],
      series: [
        { label: 'Time (UTC)', value: (_u, v) => (v === null ? '—' : formatX(v - unit / 2)) },
        ...series.map(
          (s): uPlot.Series => ({
            label: s.label,
            stroke: s.color,
            width: s.kind === 'bars' ? 0 : 2,
            fill: s.kind === 'bars' ? s.color : undefined,
            paths: s.kind === 'bars' ? bars : undefined,
            points: { show: s.kind === 'line', size: 5, fill: s.color },
            dash: s.dash,
            spanGaps: false,
            value: (_u, v) => (v === null ? '—' : formatY(v)),
          }),
        ),
      ],
    };
    const u = new uPlot(opts, [[], ...series.map(() => [])], el);
    plot.current = u;
    const ro = new ResizeObserver(() => {
      const w = Math.max(el.clientWidth, 200);
      if (w !== u.width) u.setSize({ width: w, height });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
    // `shape` stands for series/from/to/unit; the formatters are stable module functions.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape, height, integer]);

  useEffect(() => {
    const u = plot.current;
    if (!u) return;
    latest.current = { buckets, unit };
    const xs = buckets.map((b) => b.t + unit / 2);
    u.setData([xs, ...series.map((s) => buckets.map((b) => s.value(b)))] as uPlot.AlignedData);
    // setData keeps the x range; draw again so the hatch follows the partial bucket.
    u.redraw(false, false);
  }, [buckets, series, unit, shape]);

  return <div ref={box} aria-hidden="true" className="w-full min-w-0 overflow-hidden" />;
}
