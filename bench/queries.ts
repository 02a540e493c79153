// Section 7: queries on an index of 1,000,000 events (list with filters, info, groups),
// timed in-process through the functions the CLI calls (`list`: listRows for its table,
// eventsJson for --json; the note beside a list figure says how long it takes with the printed
// text made too), and as the CLI's wall time beside a bare `node -e 0` start measured in the
// same run. The index is generated here (IndexDb's own insert path in big transactions, its
// indexes rebuilt from their own definitions at the end, a fixed seed) and deleted afterwards.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { filterFrom, pickEvent, type FilterOptions } from '../cli/args.js';
import { eventsJson, listTable } from '../cli/format.js';
import { makeBundleId } from '../store/bundle-id.js';
import { type EventRow } from '../store/index-db.js';
import { MANIFEST_NAME, MANIFEST_VERSION, readManifest, type Manifest } from '../store/manifest.js';
import { Store } from '../store/store.js';
import { CLI, median, mulberry32, ratio, type BenchOptions, type Row, type Section } from './lib.js';

const SECTION = '7 queries';
const TARGET_MS = 50;
const DAY_MS = 24 * 60 * 60 * 1000;
const SPAN_MS = 90 * DAY_MS;
const EXECUTABLES = 1000;
const RULES = 20;
const INSERT_BATCH = 50_000;

/** Crash signals with rough real-world shares (SIGSEGV and SIGABRT dominate). */
const SIGNALS: readonly [number, string, number][] = [
  [11, 'SIGSEGV', 0.6], [6, 'SIGABRT', 0.25], [7, 'SIGBUS', 0.04], [8, 'SIGFPE', 0.03], [4, 'SIGILL', 0.03],
  [5, 'SIGTRAP', 0.02], [31, 'SIGSYS', 0.02], [3, 'SIGQUIT', 0.01],
];
const UIDS = [0, 33, 101, 999, ...Array.from({ length: 46 }, (_, i) => 1000 + i)];
const DIRS = ['/usr/bin', '/usr/sbin', '/usr/local/bin', '/opt/app/bin', '/usr/lib/jvm/bin', '/srv/svc/bin'];
const STEMS = ['nginx', 'postgres', 'worker', 'api', 'indexer', 'render', 'ingest', 'cron-job', 'agent', 'proxy'];

interface Exe { path: string; comm: string; signatures: { hash: string; text: string }[] }

export interface Dataset {
  root: string;
  configPath: string;
  events: number;
  /** picked from the data: a full path with an average share of the events, its base name, the busiest one */
  midExe: string;
  midExeName: string;
  topExe: string;
  topExeName: string;
  rule: string;
  /** an id in the middle of the range, a unique prefix of another, the newest */
  someId: string;
  prefix: string;
  newestId: string;
  now: number;
  genMs: number;
}

/** Executables with Zipf-like crash frequency: a few crash loops, a long tail of rare crashes. */
function executables(rand: () => number): { exes: Exe[]; cumulative: Float64Array } {
  const exes: Exe[] = [];
  const cumulative = new Float64Array(EXECUTABLES);
  let sum = 0;
  for (let k = 0; k < EXECUTABLES; k++) {
    const name = `${STEMS[k % STEMS.length]}${k < STEMS.length ? '' : `-${k}`}`;
    const path = `${DIRS[k % DIRS.length]}/${name}`;
    const signatures = Array.from({ length: 1 + Math.floor(rand() * 5) }, (_, i) => ({
      hash: Math.floor(rand() * 2 ** 52).toString(16).padStart(13, '0').slice(0, 13) + i.toString(16).padStart(3, '0'),
      text: `${name.slice(0, 15)} SIG f${i}|g${k}|main`,
    }));
    exes.push({ path, comm: name.slice(0, 15), signatures });
    sum += 1 / (k + 1) ** 0.8;
    cumulative[k] = sum;
  }
  for (let k = 0; k < EXECUTABLES; k++) cumulative[k]! /= sum;
  return { exes, cumulative };
}

function pick(cumulative: Float64Array, r: number): number {
  let lo = 0;
  let hi = cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cumulative[mid]! < r) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function signalFor(r: number): [number, string] {
  let acc = 0;
  for (const [n, name, share] of SIGNALS) {
    acc += share;
    if (r < acc) return [n, name];
  }
  return [11, 'SIGSEGV'];
}

/** A store with an index of `n` events over the last 90 days, inserted through IndexDb.insert. */
export function generate(dir: string, n: number, log: (m: string) => void): Dataset {
  const t0 = performance.now();
  const root = join(dir, 'store');
  mkdirSync(dir, { recursive: true });
  const store = new Store(root, { create: true, busyTimeoutMs: 10_000 });
  const configPath = join(dir, 'flightbox.yaml');
  writeFileSync(configPath, `store:\n  root: ${root}\n`);
  const rand = mulberry32(0x5eed);
  const { exes, cumulative } = executables(rand);
  const counts = new Uint32Array(EXECUTABLES);
  const now = Date.now();
  const start = now - SPAN_MS;
  const db = store.index();
  // Bulk load: durability does not matter for a throw-away index, and building each index
  // once at the end (from the index's own definitions) is several times faster than
  // updating them row by row. The triggers stay: they keep crash_group_counts.
  db.db.pragma('synchronous = OFF');
  db.db.pragma('cache_size = -1048576');
  const indexes = db.db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL")
    .all() as { name: string; sql: string }[];
  for (const x of indexes) db.db.exec(`DROP INDEX "${x.name}"`);
  const step = SPAN_MS / n;
  let someId = '';
  let prefixOf = '';
  let newestId = '';
  const insertBatch = db.db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const time = Math.floor(start + i * step + rand() * step);
      const pid = 100 + Math.floor(rand() * 4_000_000);
      const id = makeBundleId(new Date(time), pid, Buffer.from([rand() * 256, rand() * 256, rand() * 256]));
      const bundle = store.bundleRel(id);
      let row: EventRow;
      // Whole object literals: V8 is very slow at `{ ...base, <many more keys> }`.
      if (rand() < 0.03) {
        const r = Math.floor(rand() * (RULES + 4));
        const rule = r < RULES ? `rule-${r}` : null;
        row = {
          id, time, host: 'bench-host', boot_id: 'b0075eed', bundle, indexed_at: time + 800, warnings: 0, kind: 'snapshot', pid: null, pid_ns: null, tid: null, uid: null, gid: null, signal: null, signal_name: null,
          exe: null, comm: null, cmdline: null, unit: null, cgroup: null, in_container: null, dumpable: null, signature: null,
          signature_text: null, rule, core_size: null, core_stored_size: null, core_truncated: 0, has_core: 0,
          bundle_size: 200_000 + Math.floor(rand() * 4_000_000), reason: rule ? 'process.rss 2.1 GiB above 2 GiB for 30s' : 'flightbox snapshot',
        };
      } else {
        const k = pick(cumulative, rand());
        counts[k]!++;
        const exe = exes[k]!;
        const sig = exe.signatures[Math.floor(rand() * exe.signatures.length)]!;
        const [signal, signalName] = signalFor(rand());
        const uid = UIDS[Math.floor(rand() * UIDS.length)]!;
        const core = 1_000_000 + Math.floor(rand() * 500_000_000);
        row = {
          id, time, host: 'bench-host', boot_id: 'b0075eed', bundle, indexed_at: time + 800, warnings: 0, kind: 'crash', pid, pid_ns: rand() < 0.2 ? 1 + Math.floor(rand() * 200) : pid, tid: pid, uid, gid: uid,
          signal, signal_name: signalName, exe: exe.path, comm: exe.comm, cmdline: `${exe.path} --config /etc/${exe.comm}.conf`,
          unit: `${exe.comm}.service`, cgroup: `/system.slice/${exe.comm}.service`, in_container: rand() < 0.2 ? 1 : 0, dumpable: 1,
          signature: sig.hash, signature_text: sig.text.replace('SIG', signalName), rule: null, core_size: core,
          core_stored_size: Math.floor(core / 8), core_truncated: rand() < 0.02 ? 1 : 0, has_core: rand() < 0.9 ? 1 : 0,
          bundle_size: Math.floor(core / 8) + 40_000, reason: null,
        };
      }
      db.insert(row);
      if (i === Math.floor(n / 2)) someId = id;
      if (i === Math.floor(n / 3)) prefixOf = id;
      newestId = id;
    }
  });
  for (let i = 0; i < n; i += INSERT_BATCH) {
    insertBatch(i, Math.min(n, i + INSERT_BATCH));
    if ((i / INSERT_BATCH) % 5 === 4) log(`section 7: ${i + INSERT_BATCH} of ${n} events indexed`);
  }
  for (const x of indexes) db.db.exec(x.sql);
  db.db.pragma('wal_checkpoint(TRUNCATE)');
  // An executable with about 1000 events (the middle of the distribution), and the busiest.
  let mid = 0;
  for (let k = 0; k < EXECUTABLES; k++) if (Math.abs(counts[k]! - n / 1000) < Math.abs(counts[mid]! - n / 1000)) mid = k;
  const midExe = exes[mid]!.path;
  // A unique prefix: the id of an event up to its pid (the random part left off).
  const prefix = prefixOf.slice(0, prefixOf.lastIndexOf('-'));
  const ds: Dataset = {
    root, configPath, events: n, midExe, midExeName: midExe.slice(midExe.lastIndexOf('/') + 1), topExe: exes[0]!.path, topExeName: exes[0]!.comm,
    rule: 'rule-3', someId, prefix, newestId, now, genMs: 0,
  };
  // info reads the manifest of the event it finds: give the events it is asked about a bundle.
  for (const id of [someId, prefixOf, newestId]) writeBundle(store, db.get(id)!);
  store.close();
  ds.genMs = performance.now() - t0;
  return ds;
}

function writeBundle(store: Store, row: EventRow): void {
  const dir = join(store.root, row.bundle);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const m: Manifest = {
    version: MANIFEST_VERSION, id: row.id, kind: row.kind, time: new Date(row.time).toISOString(), timeMs: row.time,
    capturedAt: new Date(row.time + 300).toISOString(), host: { hostname: 'bench-host', bootId: row.boot_id, kernel: '6.1.0', machineId: null },
    process: row.kind === 'crash' ? {
      pid: row.pid!, pidInNamespace: row.pid_ns, tid: row.tid, tidInNamespace: row.tid, ppid: 1, uid: row.uid!, gid: row.gid!,
      signal: row.signal!, signalName: row.signal_name!, comm: row.comm, exe: row.exe, cmdline: row.cmdline?.split(' ') ?? null,
      cwd: '/', root: '/', cgroup: row.cgroup, unit: row.unit, namespaces: {}, inContainer: row.in_container === 1,
      hostnameInNamespace: null, dumpable: 1, rlimitCore: null, threads: 4, fdCount: 12, startTimeTicks: 1, procVerified: true,
    } : null,
    core: null, backtrace: null, signature: row.signature ? { hash: row.signature, text: row.signature_text ?? '' } : null,
    modules: [], rule: row.rule, reason: row.reason, warnings: [], timings: {}, files: [], handler: { version: '0.1.0', pid: 1 },
  };
  writeFileSync(join(dir, MANIFEST_NAME), `${JSON.stringify(m, null, 2)}\n`, { mode: 0o600 });
}

interface Query {
  case: string;
  /** what the CLI would be given after `--config FILE` */
  argv: string[];
  /** the same in-process: opens the store as the CLI does, queries, closes; returns a row count */
  run: (store: Store) => number;
  /** run, and then the text the command prints made too (not written): a note beside the figure */
  andText?: (store: Store) => number;
}

function queries(ds: Dataset): Query[] {
  const argv = (o: FilterOptions) => Object.entries(o).flatMap(([k, v]) => (k === 'lines' ? ['-n', String(v)] : k === 'reverse' ? ['--reverse'] : [`--${k}`, String(v)]));
  // The table reads only its own columns: `list` calls listRows (eventsJson for --json,
  // which makes the objects it prints straight from the index's values).
  const list = (name: string, o: FilterOptions): Query => ({
    case: `list ${name}`,
    argv: ['list', ...argv(o)],
    run: (store) => store.index().listRows(filterFrom(o)).length,
    andText: (store) => listTable(store.index().listRows(filterFrom(o))).length,
  });
  const listJson = (name: string, o: FilterOptions): Query => ({
    case: `list ${name} --json`,
    argv: ['list', ...argv(o), '--json'],
    run: (store) => eventsJson(store.index(), filterFrom(o)).length,
    andText: (store) => JSON.stringify(eventsJson(store.index(), filterFrom(o)), null, 2).length,
  });
  return [
    list('-n 20 (newest 20)', { lines: '20' }),
    list('--since 1h', { since: '1h' }),
    list('--since 2d --until 1d', { since: '2d', until: '1d' }),
    list('--exe FULL_PATH (an average executable)', { exe: ds.midExe }),
    list('--exe BASE_NAME (an average executable)', { exe: ds.midExeName }),
    list('--exe BUSIEST_PATH -n 50', { exe: ds.topExe, lines: '50' }),
    list('--exe BASE_NAME --signal SIGABRT --since 30d', { exe: ds.midExeName, signal: 'SIGABRT', since: '30d' }),
    list('--signal SIGBUS -n 100', { signal: 'SIGBUS', lines: '100' }),
    list('--signal SIGSEGV --since 1d', { signal: 'SIGSEGV', since: '1d' }),
    listJson('--since 2d --until 1d', { since: '2d', until: '1d' }),
    list('--uid 1000 --since 7d', { uid: '1000', since: '7d' }),
    list('--kind snapshot --since 7d', { kind: 'snapshot', since: '7d' }),
    list('--kind snapshot --rule NAME', { kind: 'snapshot', rule: ds.rule }),
    list('--comm NAME -n 20', { comm: ds.midExeName.slice(0, 15), lines: '20' }),
    { case: 'info ID', argv: ['info', ds.someId], run: (store) => infoQuery(store, ds.someId) },
    { case: 'info PREFIX (unique)', argv: ['info', ds.prefix], run: (store) => infoQuery(store, ds.prefix) },
    { case: 'info (newest)', argv: ['info'], run: (store) => infoQuery(store, undefined) },
    { case: 'groups', argv: ['groups'], run: (store) => store.index().groups({}).length },
    { case: 'groups --since 7d', argv: ['groups', '--since', '7d'], run: (store) => store.index().groups({ since: filterFrom({ since: '7d' }).since }).length },
    { case: 'groups --exe BASE_NAME', argv: ['groups', '--exe', ds.midExeName], run: (store) => store.index().groups({ exe: ds.midExeName }).length },
    { case: 'groups --exe BUSIEST_NAME', argv: ['groups', '--exe', ds.topExeName], run: (store) => store.index().groups({ exe: ds.topExeName }).length },
  ];
}

/** What `flightbox info` does before printing: find the event, read its manifest. */
function infoQuery(store: Store, id: string | undefined): number {
  const row = pickEvent(store, id, {});
  readManifest(join(store.root, row.bundle));
  return 1;
}

function timeSpawn(argv: string[]): { ms: number; ok: boolean; err: string } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, argv, { encoding: 'utf8', maxBuffer: 1024 * 1024 * 1024, stdio: ['ignore', 'pipe', 'pipe'] });
  // The message, not the bottom of a stack trace: the first line of stderr.
  return { ms: performance.now() - t0, ok: r.status === 0, err: (r.stderr ?? '').trim().split('\n')[0] ?? `exit status ${String(r.status)}` };
}

export const run: Section = async (opts: BenchOptions): Promise<Row[]> => {
  const n = opts.quick ? 100_000 : 1_000_000;
  const runs = Math.max(opts.quick ? 3 : 5, opts.runs);
  const dir = join(opts.workDir, 'queries');
  const rows: Row[] = [];
  const events = n === 1_000_000 ? '1M events' : `${n / 1000}k events`;
  try {
    opts.log(`section 7: generating an index of ${n} events`);
    const ds = generate(dir, n, opts.log);
    rows.push({ section: SECTION, case: `generate the index (${events})`, subject: 'IndexDb.insert, 50k rows a transaction, indexes built after', value: ds.genMs / 1000, unit: 's', runs: 1, note: 'setup, not a query' });

    // Node's own start-up: the floor under every CLI figure.
    const node: number[] = [];
    for (let i = 0; i < runs; i++) node.push(timeSpawn(['-e', '0']).ms);
    const nodeMs = median(node);
    rows.push({ section: SECTION, case: 'bare start-up (reference for CLI rows)', subject: 'node -e 0', value: nodeMs, unit: 'ms', runs });

    for (const q of queries(ds)) {
      const times: number[] = [];
      let count = 0;
      let error: string | null = null;
      for (let i = 0; i < runs && error === null; i++) {
        const t0 = performance.now();
        try {
          // As the CLI does it: a fresh read connection per command (cold SQLite page cache).
          const store = new Store(ds.root, { create: false, busyTimeoutMs: 10_000 });
          try {
            count = q.run(store);
          } finally {
            store.close();
          }
          times.push(performance.now() - t0);
        } catch (err) {
          error = err instanceof Error ? err.message : String(err);
        }
      }
      const v = median(times);
      // The same again with the command's output text made: how much printing adds.
      const withText: number[] = [];
      for (let i = 0; i < runs && error === null && q.andText; i++) {
        const t0 = performance.now();
        const store = new Store(ds.root, { create: false, busyTimeoutMs: 10_000 });
        try {
          q.andText(store);
        } finally {
          store.close();
        }
        withText.push(performance.now() - t0);
      }
      const t = median(withText);
      rows.push({
        section: SECTION, case: `${q.case}, ${events}`, subject: 'flightbox in-process', value: v, unit: 'ms', runs: times.length,
        target: `≤ ${TARGET_MS} ms`, met: v === null ? null : v <= TARGET_MS,
        note: error ?? `${count} row${count === 1 ? '' : 's'}; open + query + close, as one CLI command` +
          `${t === null ? '' : `; ${t.toFixed(1)} ms with the text it prints made (median of ${withText.length})`}`,
      });
      const cli: number[] = [];
      const cliErrors: string[] = [];
      for (let i = 0; i < runs; i++) {
        const r = timeSpawn([CLI, '--config', ds.configPath, ...q.argv]);
        if (r.ok) cli.push(r.ms);
        else cliErrors.push(r.err);
      }
      const cliError = cliErrors.length === 0 ? null : `${cliErrors.length} of ${runs} runs failed (not counted): ${cliErrors[0]}`;
      const c = median(cli);
      rows.push({
        section: SECTION, case: `${q.case}, ${events}`, subject: 'flightbox CLI (wall)', value: c, unit: 'ms', runs: cli.length,
        ratio: ratio(c, nodeMs), note: cliError ?? 'ratio to node -e 0; includes Node start-up and printing',
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
};
