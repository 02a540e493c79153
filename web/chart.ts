// Line charts as inline SVG, drawn on the server: no script, no library, nothing fetched.
// Presentation attributes only (no style attributes), so the page's CSP needs no
// 'unsafe-inline'. Pure.
import { html, type SafeHtml } from './html.js';

export interface Series {
  name: string;
  /** an SVG colour, written by this program */
  color: string;
  values: readonly (number | null)[];
}

export interface ChartOptions {
  title: string;
  /** sample times, ms since the epoch, oldest first; one per value of every series */
  times: readonly number[];
  series: readonly Series[];
  /** the event: a vertical marker, and the origin of the time axis */
  eventMs: number;
  format: (v: number) => string;
  /** the y axis starts at 0 and reaches at least this (100 for percentages) */
  minMax?: number;
  width?: number;
  height?: number;
}

const PAD = { left: 64, right: 12, top: 26, bottom: 24 } as const;

/** A round number at or above `v` (1, 2, 2.5, 5 × a power of ten). */
export function niceCeil(v: number): number {
  if (!(v > 0) || !Number.isFinite(v)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v * (1 - 1e-9)) return m * p;
  return 10 * p;
}

/** A time relative to the event: tenths of a second over a short span, minutes over a long one. */
function fmtSeconds(ms: number, spanMs: number): string {
  const s = ms / 1000;
  if (Math.abs(s) < 0.05) return '0 s';
  const abs = Math.abs(s);
  const t = abs >= 120 ? `${Math.round(abs / 60)} min` : spanMs < 20_000 ? `${abs.toFixed(1).replace(/\.0$/, '')} s` : `${Math.round(abs)} s`;
  return s < 0 ? `−${t}` : `+${t}`;
}

/** Runs of consecutive non-null values: a gap in the samples is a gap in the line. */
function runs(times: readonly number[], values: readonly (number | null)[]): [number, number][][] {
  const out: [number, number][][] = [];
  let cur: [number, number][] = [];
  for (let i = 0; i < times.length; i++) {
    const v = values[i];
    if (v === null || v === undefined || !Number.isFinite(v)) {
      if (cur.length) out.push(cur);
      cur = [];
    } else cur.push([times[i]!, v]);
  }
  if (cur.length) out.push(cur);
  return out;
}

/**
 * One chart: a polyline per run of each series (class "series", data-points = its number of
 * points), a dashed line at the event, the time axis in seconds relative to it.
 * Null when no series has a single value.
 */
export function lineChart(o: ChartOptions): SafeHtml | null {
  const width = o.width ?? 580;
  const height = o.height ?? 170;
  const present = o.series.filter((s) => s.values.some((v) => v !== null && Number.isFinite(v)));
  if (present.length === 0 || o.times.length === 0) return null;
  const t0 = Math.min(o.times[0]!, o.eventMs);
  const t1 = Math.max(o.times.at(-1)!, o.eventMs);
  const span = Math.max(1, t1 - t0);
  let top = o.minMax ?? 0;
  for (const s of present) for (const v of s.values) if (v !== null && Number.isFinite(v) && v > top) top = v;
  top = niceCeil(top);
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const x = (t: number) => PAD.left + ((t - t0) / span) * plotW;
  const y = (v: number) => PAD.top + plotH - (Math.max(0, v) / top) * plotH;
  const r1 = (n: number) => Math.round(n * 10) / 10;

  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const v = top * f;
    const yy = r1(y(v));
    return html`<line x1="${PAD.left}" x2="${width - PAD.right}" y1="${yy}" y2="${yy}" stroke="#ddd" stroke-width="1"/>
<text x="${PAD.left - 6}" y="${yy + 4}" text-anchor="end" font-size="11" fill="#555">${o.format(v)}</text>`;
  });
  // Time ticks: the start, the event, and a few between.
  const ticks = new Set<number>([t0, o.eventMs]);
  for (let i = 1; i < 4; i++) ticks.add(t0 + (span * i) / 4);
  const tickMarks = [...ticks].sort((a, b) => a - b).filter((t, i, a) => i === 0 || x(t) - x(a[i - 1]!) > 40 || t === o.eventMs).map((t) =>
    html`<text x="${r1(x(t))}" y="${height - 6}" text-anchor="middle" font-size="11" fill="#555">${fmtSeconds(t - o.eventMs, span)}</text>`);
  const lines = present.flatMap((s) => runs(o.times, s.values).map((run) => {
    const pts = run.map(([t, v]) => `${r1(x(t))},${r1(y(v))}`).join(' ');
    // A single sample is still shown: a dot.
    return run.length === 1
      ? html`<circle class="series" data-points="1" cx="${r1(x(run[0]![0]))}" cy="${r1(y(run[0]![1]))}" r="2.5" fill="${s.color}"><title>${s.name}</title></circle>`
      : html`<polyline class="series" data-points="${run.length}" points="${pts}" fill="none" stroke="${s.color}" stroke-width="1.6" stroke-linejoin="round"><title>${s.name}</title></polyline>`;
  }));
  const lastValues = present.map((s) => {
    const last = [...s.values].reverse().find((v) => v !== null && Number.isFinite(v));
    return `${s.name}: ${last === undefined || last === null ? '-' : o.format(last)}`;
  });
  let lx = PAD.left;
  const legend = present.map((s) => {
    const item = html`<rect x="${lx}" y="8" width="10" height="10" fill="${s.color}"/><text x="${lx + 14}" y="17" font-size="12" fill="#222">${s.name}</text>`;
    lx += 24 + s.name.length * 7;
    return item;
  });
  const ex = r1(x(o.eventMs));
  return html`<figure class="chart"><svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${o.title}">
<title>${o.title} (last: ${lastValues.join(', ')})</title>
${grid}
<line x1="${PAD.left}" x2="${PAD.left}" y1="${PAD.top}" y2="${PAD.top + plotH}" stroke="#999"/>
${lines}
<line class="event-marker" x1="${ex}" x2="${ex}" y1="${PAD.top - 4}" y2="${PAD.top + plotH}" stroke="#c00" stroke-width="1.2" stroke-dasharray="4 3"/>
<text x="${ex}" y="${PAD.top - 6}" text-anchor="end" font-size="11" fill="#c00">event</text>
${tickMarks}
${legend}
</svg><figcaption>${o.title}</figcaption></figure>`;
}

// Fixed colours (written here, never from data).
export const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'] as const;
