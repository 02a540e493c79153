// Monitoring: the daemon's numbers as Prometheus metric families (text exposition format
// 0.0.4), served on GET /metrics, written as a node_exporter textfile, and pushed to
// Graphite in its plaintext protocol. Everything comes from the index and the daemon's own
// state; a monitoring failure is logged and retried, never fatal to the daemon.
import { closeSync, constants, fchmodSync, openSync, renameSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Socket, isIP } from 'node:net';
import { basename, dirname, join } from 'node:path';
import type Database from 'better-sqlite3';
import type { Config } from '../lib/config.js';
import { errnoCode, messageOf } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { signalName } from '../lib/signals.js';
import { VERSION } from '../lib/version.js';
import { writeFully } from '../lib/safe-fs.js';
import type { Store } from '../store/store.js';

/**
 * Label cardinality: the executables with the most crashes when the daemon starts get a
 * series of their own, then new ones while there is room; every other crash counts under
 * exe="other". A crash loop of random executable names cannot make a million series.
 */
export const MAX_EXE_SERIES = 200;
/** The same for snapshots by rule (rule names come from the config, and from imported bundles). */
export const MAX_RULE_SERIES = 200;
export const OTHER_EXE = 'other';
export const UNKNOWN_EXE = 'unknown';
export const OTHER_RULE = '_other';
/** Snapshots taken without a rule (SIGUSR1, `flightbox snapshot`): rule="" in Prometheus. */
export const NO_RULE = '';
/**
 * Counters are kept since the daemon started, so that retention deleting old events never
 * makes them go down. An event is counted when it appears in the index; one indexed more
 * than this long after it happened (a reindex or an import of old bundles) is not. Spooled
 * events are indexed within a minute (housekeeping), or before counting starts.
 */
export const LATE_INDEX_MS = 10 * 60_000;
/** Scrapes closer together than this share one reading of the index. */
export const MIN_COLLECT_INTERVAL_MS = 1000;
export const TEXTFILE_INTERVAL_MS = 15_000;
/** How often the index is asked whether anything changed (two O(1) pragmas), for the textfile. */
export const CHANGE_POLL_INTERVAL_MS = 1000;
export const HTTP_REQUEST_TIMEOUT_MS = 10_000;
export const HTTP_MAX_CONNECTIONS = 32;
export const LISTEN_RETRY_MS = 30_000;
export const GRAPHITE_CONNECT_TIMEOUT_MS = 10_000;
export const GRAPHITE_BACKOFF_MIN_MS = 1000;
export const GRAPHITE_BACKOFF_MAX_MS = 5 * 60_000;
/** A Graphite server that stops reading: beyond this much unsent, the connection is dropped. */
export const GRAPHITE_MAX_BUFFERED_BYTES = 1024 * 1024;
/** Whisper files are named after path components: a hostile exe path must not exceed NAME_MAX. */
export const GRAPHITE_MAX_COMPONENT_CHARS = 200;
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

// ---------------------------------------------------------------------------------------
// The text exposition format (pure).

export type MetricType = 'counter' | 'gauge';

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
  /** left out of the Graphite push (build info: its value is in its labels) */
  graphite?: false;
}

/** A string as the format wants it: well-formed UTF-16 (a lone surrogate would not encode to UTF-8). */
function wellFormed(s: string): string {
  return s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

/** A label value: backslash, double quote and line feed escaped, as the format requires. */
export function escapeLabelValue(v: string): string {
  return wellFormed(v).replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** HELP text: backslash and line feed escaped. */
export function escapeHelp(v: string): string {
  return wellFormed(v).replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

export function formatValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** The families as one exposition (HELP and TYPE before each family's samples). */
export function renderExposition(families: readonly MetricFamily[]): string {
  const out: string[] = [];
  for (const f of families) {
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',');
      out.push(`${f.name}${labels ? `{${labels}}` : ''} ${formatValue(s.value)}`);
    }
  }
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------
// Graphite's plaintext protocol (pure).

/** One path component: only [A-Za-z0-9_-] (dots would split it, spaces would end the path). */
export function graphiteComponent(v: string): string {
  if (v === '') return '_none';
  const s = v.replace(/^\/+/, '').replace(/[^A-Za-z0-9_-]/g, '_').slice(0, GRAPHITE_MAX_COMPONENT_CHARS);
  return s === '' ? '_' : s;
}

/**
 * `prefix.<family without flightbox_>.<label values…> value timestamp`, one line each.
 * Label values that sanitize to the same path are summed: one line per path.
 */
export function graphiteLines(families: readonly MetricFamily[], prefix: string, timestampSec: number): string[] {
  const paths = new Map<string, number>();
  for (const f of families) {
    if (f.graphite === false) continue;
    const base = `${prefix}.${f.name.replace(/^flightbox_/, '')}`;
    for (const s of f.samples) {
      if (!Number.isFinite(s.value)) continue;
      const path = [base, ...Object.values(s.labels).map(graphiteComponent)].join('.');
      paths.set(path, (paths.get(path) ?? 0) + s.value);
    }
  }
  return [...paths].map(([p, v]) => `${p} ${formatValue(v)} ${Math.floor(timestampSec)}`);
}

// ---------------------------------------------------------------------------------------
// Counting events since the daemon started, with a cap on the series.

/**
 * Counts of events by a capped first label (exe, rule) and further labels (signal). Starts
 * from the index's counts; afterwards only grows, by each event id it has not counted yet.
 */
export class EventTally {
  readonly #max: number;
  readonly #other: string;
  readonly #counts = new Map<string, { labels: string[]; n: number }>();
  readonly #named = new Set<string>();
  /** ids already counted whose time is recent enough to be queried again, with that time */
  readonly #seen = new Map<string, number>();

  constructor(max: number, other: string) {
    this.#max = max;
    this.#other = other;
  }

  /**
   * The index's counts when counting starts; `recent`: the ids among them that later
   * queries will see again. The first labels with the most events get the named series.
   */
  baseline(groups: readonly { labels: string[]; n: number }[], recent: readonly { id: string; time: number }[]): void {
    const totals = new Map<string, number>();
    for (const g of groups) totals.set(g.labels[0]!, (totals.get(g.labels[0]!) ?? 0) + g.n);
    const ranked = [...totals].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    for (const [k] of ranked.slice(0, this.#max)) this.#named.add(k);
    for (const g of groups) this.#bump(g.labels, g.n);
    for (const r of recent) this.#seen.set(r.id, r.time);
  }

  /** Count an event unless it was counted already. Returns whether it was new. */
  add(id: string, time: number, labels: string[]): boolean {
    if (this.#seen.has(id)) return false;
    this.#seen.set(id, time);
    const first = labels[0]!;
    if (!this.#named.has(first) && this.#named.size < this.#max) this.#named.add(first);
    this.#bump(labels, 1);
    return true;
  }

  /** Forget ids older than `since`: they are never queried again. */
  prune(since: number): void {
    for (const [id, t] of this.#seen) if (t < since) this.#seen.delete(id);
  }

  get seenSize(): number {
    return this.#seen.size;
  }

  #bump(labels: string[], n: number): void {
    const l = this.#named.has(labels[0]!) ? labels : [this.#other, ...labels.slice(1)];
    const key = JSON.stringify(l);
    const c = this.#counts.get(key);
    if (c) c.n += n;
    else this.#counts.set(key, { labels: l, n });
  }

  /** Every series, sorted by its labels. */
  series(): { labels: string[]; n: number }[] {
    return [...this.#counts.values()].sort((a, b) => {
      const x = JSON.stringify(a.labels);
      const y = JSON.stringify(b.labels);
      return x < y ? -1 : x > y ? 1 : 0;
    });
  }
}

// ---------------------------------------------------------------------------------------
// Collecting the families from the index and the daemon.

/** What a recorder reports (daemon/recorder-set.ts). */
export interface RecorderReport {
  name: string;
  state: string;
  bufferBytes?: number | null;
  usedBytes?: number | null;
  eventsLost?: number | null;
}

export interface ExporterSource {
  store: Store;
  recorders: () => readonly RecorderReport[];
  startedAt: number;
  now?: () => number;
}

interface Statements {
  db: Database.Database;
  maxRowid: Database.Statement;
  groupsIn: Database.Statement;
  usageIn: Database.Statement;
  recentUpTo: Database.Statement;
  recentPage: Database.Statement;
  lastCrash: Database.Statement;
  outbox: Database.Statement;
  totalChanges: Database.Statement;
}

const OUTBOX_STATUSES = ['pending', 'sending', 'held', 'failed', 'sent', 'digested'] as const;

const exeLabel = (exe: string | null): string => exe ?? UNKNOWN_EXE;
const signalLabel = (signal: number | null): string => (signal === null ? 'unknown' : signalName(signal));
const labelsOf = (r: { kind: string; exe: string | null; signal: number | null; rule: string | null }): string[] =>
  r.kind === 'crash' ? [exeLabel(r.exe), signalLabel(r.signal)] : [r.rule ?? NO_RULE];

/**
 * The daemon's event loop also reads the crash handlers' freeze requests (a late one leaves a
 * history that runs past the crash), so no reading may hold it for long: scans of the whole
 * index go in steps of this many rowids (about 15 ms each at a million events), with the
 * event loop free in between.
 */
export const SCAN_STEP_ROWS = 20_000;
/** Events of the last LATE_INDEX_MS are read again each time, this many per step. */
export const RECENT_PAGE_ROWS = 5000;
/**
 * The store's usage (a count and a sum over every event) is read again only when older
 * than this many times what the last reading of it took (at least MIN_COLLECT_INTERVAL_MS):
 * on a big index, a few percent of a core at most, whatever the scrape rate.
 */
export const USAGE_COST_FACTOR = 20;

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

interface Usage {
  byKind: Map<string, { n: number; bytes: number; pinned: number }>;
}

/** Reads the index and the daemon's state into metric families; keeps the counters. */
export class MetricsCollector {
  readonly #src: ExporterSource;
  readonly #now: () => number;
  readonly crashes = new EventTally(MAX_EXE_SERIES, OTHER_EXE);
  readonly snapshots = new EventTally(MAX_RULE_SERIES, OTHER_RULE);
  #stmts: Statements | null = null;
  #baseline: Promise<void> | null = null;
  #inFlight: Promise<MetricFamily[]> | null = null;
  #cached: { at: number; families: MetricFamily[] } | null = null;
  #usage: { at: number; ms: number; value: Usage; maxRowid: number } | null = null;
  #lastCollectMs = 0;

  constructor(src: ExporterSource) {
    this.#src = src;
    this.#now = src.now ?? Date.now;
  }

  #statements(): Statements {
    const db = this.#src.store.index().db;
    if (this.#stmts?.db === db) return this.#stmts;
    // Every statement reads a rowid range, an index range (kind, time) or a small table.
    this.#stmts = {
      db,
      maxRowid: db.prepare('SELECT coalesce(max(rowid), 0) FROM events').pluck(),
      groupsIn: db.prepare('SELECT kind, exe, signal, rule, count(*) AS n FROM events WHERE rowid > ? AND rowid <= ? GROUP BY kind, exe, signal, rule'),
      usageIn: db.prepare('SELECT kind, count(*) AS n, coalesce(sum(bundle_size), 0) AS bytes, coalesce(sum(pinned), 0) AS pinned FROM events WHERE rowid > ? AND rowid <= ? GROUP BY kind'),
      recentUpTo: db.prepare('SELECT id, time, kind FROM events WHERE kind = ? AND time >= ? AND rowid <= ?'),
      recentPage: db.prepare(`SELECT id, time, kind, exe, signal, rule FROM events
                              WHERE kind = @kind AND time >= @t AND (time > @t OR id > @id) ORDER BY time, id LIMIT @n`),
      lastCrash: db.prepare("SELECT max(time) FROM events WHERE kind = 'crash'").pluck(),
      outbox: db.prepare('SELECT status, count(*) AS n FROM outbox GROUP BY status'),
      totalChanges: db.prepare('SELECT total_changes()').pluck(),
    };
    return this.#stmts;
  }

  /**
   * Something in the index changed since the last call: another connection committed
   * (data_version) or this one did (total_changes). Both are O(1).
   */
  changeMark(): string {
    const s = this.#statements();
    return `${String(s.db.pragma('data_version', { simple: true }))}:${String(s.totalChanges.get())}`;
  }

  /** Start counting now (the daemon's start), so that the first scrape need not wait for it. */
  warmUp(): Promise<void> {
    // A failed reading (the index locked past its busy timeout) is tried again next time.
    this.#baseline ??= this.#readBaseline().catch((err: unknown) => {
      this.#baseline = null;
      throw err;
    });
    return this.#baseline;
  }

  /**
   * The index's counts when counting starts, read in steps: the events up to the highest
   * rowid at that moment. Later events have higher rowids and are counted as they come;
   * the recent ones among the first are remembered so they are not counted twice.
   */
  async #readBaseline(): Promise<void> {
    const s = this.#statements();
    const max = s.maxRowid.get() as number;
    const since = this.#now() - LATE_INDEX_MS;
    const recent = {
      crash: s.recentUpTo.all('crash', since, max) as { id: string; time: number }[],
      snapshot: s.recentUpTo.all('snapshot', since, max) as { id: string; time: number }[],
    };
    const groups = { crash: new Map<string, { labels: string[]; n: number }>(), snapshot: new Map<string, { labels: string[]; n: number }>() };
    for (let lo = 0; lo < max; lo += SCAN_STEP_ROWS) {
      for (const r of this.#statements().groupsIn.iterate(lo, Math.min(max, lo + SCAN_STEP_ROWS)) as Iterable<{ kind: string; exe: string | null; signal: number | null; rule: string | null; n: number }>) {
        const m = r.kind === 'crash' ? groups.crash : groups.snapshot;
        const labels = labelsOf(r);
        const key = JSON.stringify(labels);
        const g = m.get(key);
        if (g) g.n += r.n;
        else m.set(key, { labels, n: r.n });
      }
      await nextTurn();
    }
    this.crashes.baseline([...groups.crash.values()], recent.crash);
    this.snapshots.baseline([...groups.snapshot.values()], recent.snapshot);
  }

  /** Count what appeared in the index since the last reading (the last LATE_INDEX_MS, a page at a time). */
  async #catchUp(since: number): Promise<void> {
    for (const [kind, tally] of [['crash', this.crashes], ['snapshot', this.snapshots]] as const) {
      let t = since;
      let id = '';
      for (;;) {
        const page = this.#statements().recentPage.all({ kind, t, id, n: RECENT_PAGE_ROWS }) as { id: string; time: number; kind: string; exe: string | null; signal: number | null; rule: string | null }[];
        for (const r of page) tally.add(r.id, r.time, labelsOf(r));
        if (page.length < RECENT_PAGE_ROWS) break;
        t = page.at(-1)!.time;
        id = page.at(-1)!.id;
        await nextTurn();
      }
      tally.prune(since);
    }
  }

  async #readUsage(): Promise<Usage> {
    const now = this.#now();
    const max = this.#statements().maxRowid.get() as number;
    const cached = this.#usage;
    if (cached && now >= cached.at && now - cached.at < Math.max(MIN_COLLECT_INTERVAL_MS, USAGE_COST_FACTOR * cached.ms)) {
      // Still fresh, but events indexed since are added at once (rowids only grow), so the
      // usage never lags the crash counters read in the same collection; deletions show at
      // the next full reading.
      if (max > cached.maxRowid) {
        const byKind = new Map([...cached.value.byKind].map(([k, u]) => [k, { ...u }]));
        await this.#addUsage(byKind, cached.maxRowid, max);
        cached.value = { byKind };
        cached.maxRowid = max;
      }
      return cached.value;
    }
    const t0 = performance.now();
    const byKind = new Map<string, { n: number; bytes: number; pinned: number }>();
    await this.#addUsage(byKind, 0, max);
    const value = { byKind };
    this.#usage = { at: now, ms: performance.now() - t0, value, maxRowid: max };
    return value;
  }

  /** Add the usage of the events with rowid in (lo, hi], a step at a time. */
  async #addUsage(byKind: Usage['byKind'], from: number, hi: number): Promise<void> {
    for (let lo = from; lo < hi; lo += SCAN_STEP_ROWS) {
      for (const r of this.#statements().usageIn.iterate(lo, Math.min(hi, lo + SCAN_STEP_ROWS)) as Iterable<{ kind: string; n: number; bytes: number; pinned: number }>) {
        const u = byKind.get(r.kind) ?? { n: 0, bytes: 0, pinned: 0 };
        u.n += r.n;
        u.bytes += r.bytes;
        u.pinned += r.pinned;
        byKind.set(r.kind, u);
      }
      await nextTurn();
    }
  }

  /** The families, read again unless the last reading is fresher than MIN_COLLECT_INTERVAL_MS; one reading at a time. */
  current(opts: { final?: boolean } = {}): Promise<MetricFamily[]> {
    const now = this.#now();
    if (!opts.final && this.#cached && now - this.#cached.at < MIN_COLLECT_INTERVAL_MS && now >= this.#cached.at) return Promise.resolve(this.#cached.families);
    if (!opts.final && this.#inFlight) return this.#inFlight;
    const p = this.collect(opts).then((families) => {
      if (!opts.final) this.#cached = { at: now, families };
      return families;
    }).finally(() => {
      if (this.#inFlight === p) this.#inFlight = null;
    });
    if (!opts.final) this.#inFlight = p;
    return p;
  }

  /** Wait for a reading in progress, if any (before the store closes). */
  async idle(): Promise<void> {
    await Promise.allSettled([this.#inFlight, this.#baseline]);
  }

  /** Read everything now. `final`: the daemon is stopping (daemon_up 0, no recorders). */
  async collect(opts: { final?: boolean } = {}): Promise<MetricFamily[]> {
    const t0 = performance.now();
    await this.warmUp();
    const now = this.#now();
    await this.#catchUp(now - LATE_INDEX_MS);
    const usage = (await this.#readUsage()).byKind;
    const s = this.#statements();
    const lastCrash = s.lastCrash.get() as number | null;
    const outbox = new Map((s.outbox.all() as { status: string; n: number }[]).map((o) => [o.status, o.n]));
    const families: MetricFamily[] = [
      {
        name: 'flightbox_crashes_total',
        help: `Crashes recorded, by executable and signal: the store's count when the daemon started, then every crash indexed since, even after retention deletes it. The ${MAX_EXE_SERIES} executables with the most crashes have their own series; the rest count as exe="${OTHER_EXE}".`,
        type: 'counter',
        samples: this.crashes.series().map((x) => ({ labels: { exe: x.labels[0]!, signal: x.labels[1]! }, value: x.n })),
      },
      {
        name: 'flightbox_snapshots_total',
        help: `Snapshot events, by rule (rule="" for snapshots taken by hand or on SIGUSR1); counted as crashes are. Beyond ${MAX_RULE_SERIES} rules: rule="${OTHER_RULE}".`,
        type: 'counter',
        samples: this.snapshots.series().map((x) => ({ labels: { rule: x.labels[0]! }, value: x.n })),
      },
      {
        name: 'flightbox_last_crash_timestamp_seconds',
        help: 'Time of the newest crash in the store (0: none).',
        type: 'gauge',
        samples: [{ labels: {}, value: lastCrash === null ? 0 : lastCrash / 1000 }],
      },
    ];
    const recorders = opts.final ? [] : [...this.#src.recorders()].sort((a, b) => (a.name < b.name ? -1 : 1));
    families.push(
      {
        name: 'flightbox_recorder_up',
        help: 'Whether each configured flight recorder is recording (1: running or frozen for a snapshot; 0: failed, unavailable or stopped).',
        type: 'gauge',
        samples: recorders.map((x) => ({ labels: { recorder: x.name }, value: x.state === 'running' || x.state === 'frozen' ? 1 : 0 })),
      },
      {
        name: 'flightbox_recorder_events_lost_total',
        help: 'Events the recorder backend had to drop (ring overruns, lost sub-buffers), where it says; starts again from 0 when the recorder restarts.',
        type: 'counter',
        samples: recorders.flatMap((x) => (typeof x.eventsLost === 'number' ? [{ labels: { recorder: x.name }, value: x.eventsLost }] : [])),
      },
      {
        name: 'flightbox_recorder_buffer_bytes',
        help: 'Capacity of the recorder\'s buffers, all CPUs, where known.',
        type: 'gauge',
        samples: recorders.flatMap((x) => (typeof x.bufferBytes === 'number' ? [{ labels: { recorder: x.name }, value: x.bufferBytes }] : [])),
      },
      {
        name: 'flightbox_recorder_buffer_used_bytes',
        help: 'Bytes the recorder\'s buffers hold now, where known.',
        type: 'gauge',
        samples: recorders.flatMap((x) => (typeof x.usedBytes === 'number' ? [{ labels: { recorder: x.name }, value: x.usedBytes }] : [])),
      },
    );
    const kinds = ['crash', 'snapshot'];
    families.push(
      {
        name: 'flightbox_store_events',
        help: `Events in the store, by kind (retention deletes old ones). Re-read when older than ${USAGE_COST_FACTOR} times what reading it took (at least every second on a small store).`,
        type: 'gauge',
        samples: kinds.map((k) => ({ labels: { kind: k }, value: usage.get(k)?.n ?? 0 })),
      },
      {
        name: 'flightbox_store_bytes',
        help: 'Bytes of the bundles in the store, by kind; re-read as flightbox_store_events is.',
        type: 'gauge',
        samples: kinds.map((k) => ({ labels: { kind: k }, value: usage.get(k)?.bytes ?? 0 })),
      },
      {
        name: 'flightbox_store_pinned_events',
        help: 'Events retention may not delete (flightbox pin).',
        type: 'gauge',
        samples: [{ labels: {}, value: [...usage.values()].reduce((a, u) => a + u.pinned, 0) }],
      },
      {
        name: 'flightbox_outbox_messages',
        help: 'Mail in the outbox, by status (pending and sending: the backlog; held: waiting for a digest; failed: given up).',
        type: 'gauge',
        samples: OUTBOX_STATUSES.map((st) => ({ labels: { status: st }, value: outbox.get(st) ?? 0 })),
      },
      {
        name: 'flightbox_daemon_up',
        help: 'Whether the daemon is running (the textfile says 0 once it has stopped cleanly).',
        type: 'gauge',
        samples: [{ labels: {}, value: opts.final ? 0 : 1 }],
      },
      {
        name: 'flightbox_daemon_start_time_seconds',
        help: 'When the daemon started.',
        type: 'gauge',
        samples: [{ labels: {}, value: this.#src.startedAt / 1000 }],
      },
      {
        name: 'flightbox_daemon_uptime_seconds',
        help: 'How long the daemon has been running.',
        type: 'gauge',
        samples: [{ labels: {}, value: Math.max(0, Math.round((now - this.#src.startedAt) / 10) / 100) }],
      },
      {
        name: 'flightbox_build_info',
        help: 'The flightbox version and the Node.js version running it.',
        type: 'gauge',
        samples: [{ labels: { version: VERSION, node: process.version }, value: 1 }],
        graphite: false,
      },
      {
        name: 'flightbox_exporter_read_seconds',
        help: 'How long the previous reading of the index took (wall time; the event loop stays free between its steps).',
        type: 'gauge',
        samples: [{ labels: {}, value: this.#lastCollectMs / 1000 }],
      },
    );
    this.#lastCollectMs = Math.round((performance.now() - t0) * 1000) / 1000;
    return families;
  }
}

// ---------------------------------------------------------------------------------------
// Graphite: one TCP connection, pushed to every interval, reconnected with backoff.

export interface GraphiteOptions {
  host: string;
  port: number;
  prefix: string;
  intervalMs: number;
}

export class GraphitePusher {
  readonly #opts: GraphiteOptions;
  readonly #lines: () => Promise<string[]>;
  readonly #log: Logger;
  #socket: Socket | null = null;
  #connected = false;
  #backoffMs = GRAPHITE_BACKOFF_MIN_MS;
  #interval: NodeJS.Timeout | null = null;
  #retry: NodeJS.Timeout | null = null;
  #closed = false;
  /** the last failure logged: the same one again is not logged until a success */
  #lastError: string | null = null;

  constructor(opts: GraphiteOptions, lines: () => Promise<string[]>, log: Logger) {
    this.#opts = opts;
    this.#lines = lines;
    this.#log = log;
  }

  start(): void {
    this.#connect();
    this.#interval = setInterval(() => this.#push(), this.#opts.intervalMs);
    this.#interval.unref();
  }

  #connect(): void {
    if (this.#closed) return;
    const { host, port } = this.#opts;
    const socket = new Socket();
    this.#socket = socket;
    this.#connected = false;
    socket.setNoDelay(true);
    socket.setTimeout(GRAPHITE_CONNECT_TIMEOUT_MS, () => socket.destroy(new Error(`no connection within ${GRAPHITE_CONNECT_TIMEOUT_MS} ms`)));
    socket.on('connect', () => {
      socket.setTimeout(0);
      socket.setKeepAlive(true, 60_000);
      this.#connected = true;
      this.#backoffMs = GRAPHITE_BACKOFF_MIN_MS;
      if (this.#lastError !== null) this.#log.info({ host, port }, 'Graphite: connected again');
      this.#lastError = null;
      this.#push(); // what was missed while away (the counters are totals)
    });
    // Carbon sends nothing back; anything it does is read and dropped.
    socket.on('data', () => {});
    socket.on('error', (err) => this.#failed(socket, err.message));
    socket.on('close', () => this.#failed(socket, 'connection closed'));
    socket.unref();
    socket.connect({ host, port });
  }

  #failed(socket: Socket, why: string): void {
    if (socket !== this.#socket) return; // an old connection, already replaced
    socket.destroy();
    this.#socket = null;
    this.#connected = false;
    if (this.#closed) return;
    const { host, port } = this.#opts;
    if (why !== this.#lastError) {
      this.#log.warn({ host, port }, 'Graphite: %s, reconnecting in %d ms', why, this.#backoffMs);
      this.#lastError = why;
    }
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = setTimeout(() => { this.#retry = null; this.#connect(); }, this.#backoffMs);
    this.#retry.unref();
    this.#backoffMs = Math.min(GRAPHITE_BACKOFF_MAX_MS, this.#backoffMs * 2);
  }

  #push(): void {
    if (!this.#socket || !this.#connected || this.#closed) return; // the retry timer pushes on reconnect
    this.#lines().then((lines) => {
      // Read asynchronously: the connection may have gone, or been replaced, meanwhile.
      const socket = this.#socket;
      if (!socket || !this.#connected || this.#closed || lines.length === 0) return;
      if (socket.writableLength > GRAPHITE_MAX_BUFFERED_BYTES) {
        socket.destroy(new Error(`the server is not reading (${socket.writableLength} bytes unsent)`));
        return;
      }
      socket.write(`${lines.join('\n')}\n`);
    }, (err: unknown) => {
      this.#log.warn({}, 'Graphite: cannot read the metrics, skipping this push: %s', messageOf(err));
    });
  }

  close(): void {
    this.#closed = true;
    if (this.#interval) clearInterval(this.#interval);
    if (this.#retry) clearTimeout(this.#retry);
    this.#interval = this.#retry = null;
    const s = this.#socket;
    this.#socket = null;
    if (s) s.end(() => s.destroy());
    // A server that never takes the last bytes must not keep the socket (or the daemon) around.
    setTimeout(() => s?.destroy(), 2000).unref();
  }
}

// ---------------------------------------------------------------------------------------
// The textfile for node_exporter.

/**
 * Replace `path` atomically: a temp file in the same directory (a dot name not ending in
 * .prom, which the textfile collector skips), created O_EXCL|O_NOFOLLOW so a planted link
 * cannot redirect the write, mode 0644, then renamed over the old file (rename replaces a
 * symlink itself, never its target).
 */
export function writeTextfile(path: string, body: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    unlinkSync(tmp);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;
  const fd = openSync(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
  try {
    fchmodSync(fd, 0o644); // whatever the umask
    writeFully(fd, Buffer.from(body));
  } catch (err) {
    closeSync(fd);
    try { unlinkSync(tmp); } catch { /* best effort */ }
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

// ---------------------------------------------------------------------------------------
// The exporter: what the daemon starts, reconfigures on SIGHUP, and stops.

export interface ExporterOptions extends ExporterSource {
  log: Logger;
  /** one line for the operator (the daemon's stderr) */
  out: (line: string) => void;
}

const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
const hostPort = (l: { host: string; port: number }): string => (isIP(l.host) === 6 ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`);

export class Exporter {
  readonly #opts: ExporterOptions;
  readonly collector: MetricsCollector;
  #cfg: Config;
  #server: Server | null = null;
  #listenRetry: NodeJS.Timeout | null = null;
  #graphite: GraphitePusher | null = null;
  #textTimers: NodeJS.Timeout[] = [];
  /** the textfile being kept up to date (null: none), and its one write at a time */
  #textPath: string | null = null;
  #textWrite: Promise<void> | null = null;
  #textAgain = false;
  #lastMark: string | null = null;
  #lastTextfileError: string | null = null;
  #closed = false;

  constructor(cfg: Config, opts: ExporterOptions) {
    this.#cfg = cfg;
    this.#opts = opts;
    this.collector = new MetricsCollector(opts);
  }

  /** The address /metrics is served on, once listening (the port the kernel chose for port 0). */
  get address(): { host: string; port: number } | null {
    const a = this.#server?.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : null;
  }

  async start(): Promise<void> {
    const { prometheus, graphite } = this.#cfg;
    if (!prometheus.listen && !prometheus.textfile && !graphite.host) return;
    // Counting starts now, in steps in the background (see SCAN_STEP_ROWS).
    this.collector.warmUp().catch((err: unknown) => this.#opts.log.warn({}, 'Metrics: cannot read the index, will retry: %s', messageOf(err)));
    if (prometheus.listen) await this.#startHttp(prometheus.listen);
    if (prometheus.textfile) this.#startTextfile(prometheus.textfile);
    if (graphite.host) this.#startGraphite({ host: graphite.host, port: graphite.port, prefix: graphite.prefix, intervalMs: graphite.intervalMs });
  }

  /**
   * SIGHUP: apply a new config, keeping the counters. The HTTP server and the Graphite
   * connection are kept when their settings did not change; a textfile no longer configured
   * is removed (node_exporter would serve it forever).
   */
  async reconfigure(next: Config): Promise<void> {
    const prev = this.#cfg;
    this.#cfg = next;
    const a = prev.prometheus.listen;
    const b = next.prometheus.listen;
    if (a?.host !== b?.host || a?.port !== b?.port) {
      await this.#stopHttp();
      if (b) await this.#startHttp(b);
    }
    if (prev.prometheus.textfile !== next.prometheus.textfile) {
      await this.#stopTextfile();
      if (prev.prometheus.textfile) {
        try { unlinkSync(prev.prometheus.textfile); } catch { /* gone already */ }
      }
      if (next.prometheus.textfile) this.#startTextfile(next.prometheus.textfile);
    }
    if (JSON.stringify(prev.graphite) !== JSON.stringify(next.graphite)) {
      this.#graphite?.close();
      this.#graphite = null;
      const g = next.graphite;
      if (g.host) this.#startGraphite({ host: g.host, port: g.port, prefix: g.prefix, intervalMs: g.intervalMs });
    }
  }

  /** Stop serving; the textfile is written one last time with flightbox_daemon_up 0. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#graphite?.close();
    this.#graphite = null;
    await this.#stopHttp();
    const path = this.#textPath;
    await this.#stopTextfile();
    if (path) {
      try {
        writeTextfile(path, renderExposition(await this.collector.current({ final: true })));
      } catch (err) {
        this.#opts.log.warn({ file: path }, 'Cannot write the final Prometheus textfile: %s', messageOf(err));
      }
    }
    await this.collector.idle(); // nothing reads the index after this: the daemon closes it next
  }

  /** The exposition now (GET /metrics, the textfile). */
  async render(): Promise<string> {
    return renderExposition(await this.collector.current());
  }

  // ---- HTTP

  async #startHttp(listen: { host: string; port: number }): Promise<void> {
    const server = createServer((req, res) => void this.#serve(req, res));
    server.requestTimeout = HTTP_REQUEST_TIMEOUT_MS;
    server.headersTimeout = HTTP_REQUEST_TIMEOUT_MS;
    server.keepAliveTimeout = 5000;
    server.maxHeadersCount = 64;
    server.maxConnections = HTTP_MAX_CONNECTIONS;
    // A malformed request, a reset, a timeout: that client's socket goes, nothing else.
    server.on('clientError', (_err, socket) => socket.destroy());
    this.#server = server;
    await this.#listen(server, listen);
  }

  #listen(server: Server, listen: { host: string; port: number }): Promise<void> {
    return new Promise((resolve) => {
      const onError = (err: Error) => {
        server.off('listening', onListening);
        if (this.#server !== server) return resolve();
        const msg = `Prometheus endpoint not serving on ${hostPort(listen)}: ${messageOf(err)}; retrying every ${LISTEN_RETRY_MS / 1000}s`;
        this.#opts.out(msg);
        this.#opts.log.warn({ listen: hostPort(listen) }, '%s', msg);
        this.#listenRetry = setTimeout(() => {
          this.#listenRetry = null;
          if (this.#server === server) void this.#listen(server, listen);
        }, LISTEN_RETRY_MS);
        this.#listenRetry.unref();
        resolve();
      };
      const onListening = () => {
        server.off('error', onError);
        server.on('error', (err) => this.#opts.log.warn({}, 'Prometheus endpoint: %s', messageOf(err)));
        const a = this.address;
        const where = a ? hostPort(a) : hostPort(listen);
        this.#opts.out(`Prometheus metrics on http://${where}/metrics${isLoopback(listen.host) ? '' : ' (not a loopback address: reachable from the network)'}`);
        this.#opts.log.info({ listen: where }, 'Serving Prometheus metrics');
        resolve();
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen({ host: listen.host, port: listen.port, exclusive: true });
    });
  }

  async #stopHttp(): Promise<void> {
    if (this.#listenRetry) clearTimeout(this.#listenRetry);
    this.#listenRetry = null;
    const server = this.#server;
    this.#server = null;
    if (!server) return;
    server.closeAllConnections();
    if (server.listening) await new Promise<void>((r) => server.close(() => r()));
  }

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.on('error', () => {}); // a client gone mid-reply is its own problem
    req.resume(); // a body is never read, only drained
    const reply = (status: number, body: string, headers: Record<string, string> = {}) => {
      if (res.destroyed) return;
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': String(Buffer.byteLength(body)), 'Cache-Control': 'no-store', ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    try {
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/metrics') return reply(404, 'Not found: the metrics are at /metrics\n');
      if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'Only GET /metrics\n', { Allow: 'GET, HEAD' });
      reply(200, await this.render(), { 'Content-Type': PROMETHEUS_CONTENT_TYPE });
    } catch (err) {
      this.#opts.log.warn({}, 'Prometheus: cannot read the metrics: %s', messageOf(err));
      try {
        if (!res.headersSent) reply(500, 'flightbox cannot read its metrics now (see the daemon log)\n');
        else res.destroy();
      } catch {
        res.destroy();
      }
    }
  }

  // ---- the textfile

  #startTextfile(path: string): void {
    this.#textPath = path;
    this.#lastMark = null;
    this.#writeTextfileSoon();
    const every = setInterval(() => this.#writeTextfileSoon(), TEXTFILE_INTERVAL_MS);
    // On change: a crash or snapshot indexed, a mail sent. The poll is two O(1) pragmas.
    const poll = setInterval(() => {
      let mark: string;
      try {
        mark = this.collector.changeMark();
      } catch {
        return;
      }
      if (mark !== this.#lastMark) this.#writeTextfileSoon();
    }, CHANGE_POLL_INTERVAL_MS);
    every.unref();
    poll.unref();
    this.#textTimers.push(every, poll);
  }

  async #stopTextfile(): Promise<void> {
    for (const t of this.#textTimers) clearInterval(t);
    this.#textTimers = [];
    this.#textPath = null;
    await this.#textWrite;
  }

  /** One write at a time (they share the temp name); a request during a write runs once after it. */
  #writeTextfileSoon(): void {
    if (this.#textWrite) {
      this.#textAgain = true;
      return;
    }
    this.#textWrite = (async () => {
      do {
        this.#textAgain = false;
        const path = this.#textPath;
        if (!path) break;
        try {
          this.#lastMark = this.collector.changeMark();
          const body = await this.render();
          if (this.#textPath !== path) break; // stopped or moved while reading
          writeTextfile(path, body);
          if (this.#lastTextfileError !== null) this.#opts.log.info({ file: path }, 'Prometheus textfile written again');
          this.#lastTextfileError = null;
        } catch (err) {
          const msg = messageOf(err);
          if (msg !== this.#lastTextfileError) {
            this.#opts.log.warn({ file: path }, 'Cannot write the Prometheus textfile, retrying: %s', msg);
            this.#opts.out(`Cannot write the Prometheus textfile ${path}, retrying: ${msg}`);
          }
          this.#lastTextfileError = msg;
        }
      } while (this.#textAgain);
    })().finally(() => { this.#textWrite = null; });
  }

  // ---- Graphite

  #startGraphite(g: GraphiteOptions): void {
    this.#graphite = new GraphitePusher(g, async () => graphiteLines(await this.collector.current(), g.prefix, this.#now() / 1000), this.#opts.log);
    this.#graphite.start();
    this.#opts.out(`Graphite: pushing to ${hostPort(g)} every ${g.intervalMs / 1000}s as ${g.prefix}.*`);
  }

  #now(): number {
    return (this.#opts.now ?? Date.now)();
  }
}
