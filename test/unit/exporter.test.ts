// The monitoring exporter with real parts: the text exposition format checked by a strict
// parser written here from the format's grammar (not from the exporter's code), the
// collector over a real SQLite index, a real HTTP server and a real TCP Graphite listener on
// loopback, the textfile written into a real directory; and the Nagios ranges of
// `flightbox check`, from tables.
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../lib/config.js';
import { createLogger } from '../../lib/log.js';
import type { EventRow } from '../../store/index-db.js';
import { Store } from '../../store/store.js';
import {
  EventTally, Exporter, MAX_EXE_SERIES, MetricsCollector, OTHER_EXE, PROMETHEUS_CONTENT_TYPE, SCAN_STEP_ROWS, escapeHelp, escapeLabelValue,
  graphiteComponent, graphiteLines, renderExposition, writeTextfile, type MetricFamily, type RecorderReport,
} from '../../daemon/exporter.js';
import { checkState, parseNagiosRange, pluginOutput, pluginText, rangeAlerts } from '../../cli/commands/check.js';
import { carbonListener, type Carbon } from '../carbon.js';
import { parseExposition, sampleOf } from '../exposition.js';

// Names a crashed program can give itself: every one of them is a legal file name.
const HOSTILE_EXES = [
  '/tmp/evil"} 1\nflightbox_daemon_up{x="',
  '/opt/back\\slash\\n/prog',
  '/usr/bin/new\nline',
  '/srv/quote"and\\both\n"',
  '/bin/ü-ñ-✓',
  '/x/lone\ud800surrogate',
];

describe('the text exposition format', () => {
  it.each<[string, string]>([
    ['plain', 'plain'],
    ['a"b', 'a\\"b'],
    ['a\\b', 'a\\\\b'],
    ['a\nb', 'a\\nb'],
    ['\\n', '\\\\n'],
    ['"\\\n', '\\"\\\\\\n'],
    ['tab\there', 'tab\there'],
    ['x\ud800y', 'x\ufffdy'],
  ])('label value %j is written %j', (raw, escaped) => {
    expect(escapeLabelValue(raw)).toBe(escaped);
  });

  it('HELP escapes backslash and line feed only', () => {
    expect(escapeHelp('a\\b\nc "d"')).toBe('a\\\\b\\nc "d"');
  });

  it('hostile executable names stay inside their label: one sample line each, read back exactly', () => {
    const fam: MetricFamily = {
      name: 'flightbox_crashes_total', help: 'with "quotes" and \\ and\nnewline', type: 'counter',
      samples: HOSTILE_EXES.map((exe, i) => ({ labels: { exe, signal: 'SIGSEGV' }, value: i + 1 })),
    };
    const text = renderExposition([fam]);
    expect(text.split('\n').filter((l) => l !== '')).toHaveLength(2 + HOSTILE_EXES.length);
    const p = parseExposition(text);
    expect(p.type.get('flightbox_crashes_total')).toBe('counter');
    expect(p.help.get('flightbox_crashes_total')).toBe('with "quotes" and \\ and\nnewline');
    expect(p.samples.map((s) => s.name)).toEqual(HOSTILE_EXES.map(() => 'flightbox_crashes_total'));
    expect(p.samples.map((s) => s.labels.exe)).toEqual(HOSTILE_EXES.map((e) => e.replace('\ud800', '\ufffd')));
    expect(p.samples.map((s) => s.value)).toEqual([1, 2, 3, 4, 5, 6]);
    // The injection attempt did not make a sample of its own.
    expect(p.samples.some((s) => s.name === 'flightbox_daemon_up')).toBe(false);
  });

  it('a family without samples still has HELP and TYPE; values print as the format wants', () => {
    const text = renderExposition([
      { name: 'a_total', help: 'h', type: 'counter', samples: [] },
      { name: 'b', help: 'h', type: 'gauge', samples: [{ labels: {}, value: 1.5 }, { labels: { k: 'v' }, value: NaN }, { labels: { k: 'w' }, value: Infinity }] },
    ]);
    expect(text).toBe('# HELP a_total h\n# TYPE a_total counter\n# HELP b h\n# TYPE b gauge\nb 1.5\nb{k="v"} NaN\nb{k="w"} +Inf\n');
  });
});

describe('Graphite plaintext lines', () => {
  it.each<[string, string]>([
    ['/usr/sbin/nginx', 'usr_sbin_nginx'],
    ['SIGSEGV', 'SIGSEGV'],
    ['a.b c', 'a_b_c'],
    ['evil\n1 2\nother.path', 'evil_1_2_other_path'],
    ['', '_none'],
    ['/', '_'],
    ['ok-name_1', 'ok-name_1'],
  ])('path component %j becomes %j', (raw, comp) => {
    expect(graphiteComponent(raw)).toBe(comp);
    expect(comp).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it('a hostile name is cut to a length a whisper file can have', () => {
    expect(graphiteComponent(`/${'a'.repeat(5000)}`).length).toBe(200);
  });

  it('one line per path, names that sanitize alike summed, build info left out', () => {
    const lines = graphiteLines([
      { name: 'flightbox_crashes_total', help: '', type: 'counter', samples: [
        { labels: { exe: '/a.b', signal: 'SIGSEGV' }, value: 2 },
        { labels: { exe: '/a_b', signal: 'SIGSEGV' }, value: 3 },
        { labels: { exe: HOSTILE_EXES[0]!, signal: 'SIGABRT' }, value: 1 },
      ] },
      { name: 'flightbox_daemon_up', help: '', type: 'gauge', samples: [{ labels: {}, value: 1 }] },
      { name: 'flightbox_build_info', help: '', type: 'gauge', samples: [{ labels: { version: '1' }, value: 1 }], graphite: false },
    ], 'fbx.web1', 1_700_000_000.9);
    expect(lines).toEqual([
      'fbx.web1.crashes_total.a_b.SIGSEGV 5 1700000000',
      'fbx.web1.crashes_total.tmp_evil___1_flightbox_daemon_up_x__.SIGABRT 1 1700000000',
      'fbx.web1.daemon_up 1 1700000000',
    ]);
    for (const l of lines) expect(l).toMatch(/^[A-Za-z0-9_.-]+ \d+(\.\d+)? \d+$/);
  });
});

describe('EventTally: counters that only grow, and the cap on series', () => {
  it('gives the executables with the most events their own series and the rest "other"', () => {
    const t = new EventTally(2, 'other');
    t.baseline([
      { labels: ['/a', 'SIGSEGV'], n: 5 }, { labels: ['/a', 'SIGABRT'], n: 1 },
      { labels: ['/b', 'SIGSEGV'], n: 3 }, { labels: ['/c', 'SIGSEGV'], n: 4 }, { labels: ['/d', 'SIGBUS'], n: 1 },
    ], []);
    expect(t.series()).toEqual([
      { labels: ['/a', 'SIGABRT'], n: 1 }, { labels: ['/a', 'SIGSEGV'], n: 5 }, { labels: ['/c', 'SIGSEGV'], n: 4 },
      { labels: ['other', 'SIGBUS'], n: 1 }, { labels: ['other', 'SIGSEGV'], n: 3 },
    ]);
    // A new executable finds no room: it adds to other; a known one to its own.
    expect(t.add('e1', 1, ['/e', 'SIGSEGV'])).toBe(true);
    expect(t.add('e2', 1, ['/a', 'SIGSEGV'])).toBe(true);
    expect(t.add('e2', 1, ['/a', 'SIGSEGV'])).toBe(false);
    expect(t.series()).toContainEqual({ labels: ['other', 'SIGSEGV'], n: 4 });
    expect(t.series()).toContainEqual({ labels: ['/a', 'SIGSEGV'], n: 6 });
  });

  it('an event already in the baseline is not counted twice; forgotten ids are older than the window', () => {
    const t = new EventTally(10, 'other');
    t.baseline([{ labels: ['/a'], n: 1 }], [{ id: 'x', time: 100 }]);
    expect(t.add('x', 100, ['/a'])).toBe(false);
    t.add('y', 200, ['/a']);
    t.prune(150);
    expect(t.seenSize).toBe(1);
    expect(t.series()).toEqual([{ labels: ['/a'], n: 2 }]);
  });
});

// ---------------------------------------------------------------------------------------
// The collector over a real index.

let dir: string;
let store: Store;
let clock: number;
const T0 = Date.UTC(2026, 10, 26, 6, 0, 0);
let seq = 0;

function row(over: Partial<EventRow> & { time: number }): EventRow {
  const id = over.id ?? `20261126T060000-${1000 + seq}-${(seq++).toString(16).padStart(6, '0')}`;
  return {
    id, kind: 'crash', host: 'h', boot_id: null, pid: 1000, pid_ns: null, tid: 1000, uid: 0, gid: 0, signal: 11, signal_name: 'SIGSEGV',
    exe: '/usr/bin/prog', comm: 'prog', cmdline: null, unit: null, cgroup: null, in_container: 0, dumpable: 1, signature: null,
    signature_text: null, rule: null, core_size: 100, core_stored_size: 50, core_truncated: 0, has_core: 1, bundle_size: 1000, warnings: 0,
    bundle: `bundles/2026-11-26/${id}`, indexed_at: over.time, reason: null, ...over,
  };
}

const quietLog = () => createLogger({ file: null, component: 'test' });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fbx-exporter-'));
  store = new Store(join(dir, 'store'), { create: true, busyTimeoutMs: 2000 });
  clock = T0;
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

function collector(recorders: RecorderReport[] = []): MetricsCollector {
  return new MetricsCollector({ store, recorders: () => recorders, startedAt: T0 - 5000, now: () => clock });
}

describe('MetricsCollector over a real index', () => {
  it('counts crashes by exe and signal, snapshots by rule, store usage, outbox, recorders, uptime', async () => {
    const ix = store.index();
    ix.insert(row({ time: T0 - 10_000, exe: HOSTILE_EXES[0]!, signal: 11 }));
    ix.insert(row({ time: T0 - 9000, exe: HOSTILE_EXES[0]!, signal: 11 }));
    ix.insert(row({ time: T0 - 8000, exe: '/usr/bin/prog', signal: 6, signal_name: 'SIGABRT' }));
    ix.insert(row({ time: T0 - 7000, exe: null, signal: null, signal_name: null }));
    ix.insert(row({ time: T0 - 6000, kind: 'snapshot', exe: null, signal: null, rule: 'api-errors', bundle_size: 10 }));
    ix.insert(row({ time: T0 - 5000, kind: 'snapshot', exe: null, signal: null, rule: null, bundle_size: 10 }), { pinned: true });
    const c = collector([
      { name: 'metrics', state: 'running', bufferBytes: 4096, usedBytes: 1024, eventsLost: null },
      { name: 'ftrace', state: 'failed', eventsLost: 7 },
    ]);
    const p = parseExposition(renderExposition(await c.collect()));
    expect(sampleOf(p, 'flightbox_crashes_total', { exe: HOSTILE_EXES[0]!, signal: 'SIGSEGV' })).toBe(2);
    expect(sampleOf(p, 'flightbox_crashes_total', { exe: '/usr/bin/prog', signal: 'SIGABRT' })).toBe(1);
    expect(sampleOf(p, 'flightbox_crashes_total', { exe: 'unknown', signal: 'unknown' })).toBe(1);
    expect(sampleOf(p, 'flightbox_snapshots_total', { rule: 'api-errors' })).toBe(1);
    expect(sampleOf(p, 'flightbox_snapshots_total', { rule: '' })).toBe(1);
    expect(sampleOf(p, 'flightbox_store_events', { kind: 'crash' })).toBe(4);
    expect(sampleOf(p, 'flightbox_store_events', { kind: 'snapshot' })).toBe(2);
    expect(sampleOf(p, 'flightbox_store_bytes', { kind: 'crash' })).toBe(4000);
    expect(sampleOf(p, 'flightbox_store_pinned_events')).toBe(1);
    expect(sampleOf(p, 'flightbox_last_crash_timestamp_seconds')).toBe((T0 - 7000) / 1000);
    expect(sampleOf(p, 'flightbox_recorder_up', { recorder: 'metrics' })).toBe(1);
    expect(sampleOf(p, 'flightbox_recorder_up', { recorder: 'ftrace' })).toBe(0);
    expect(sampleOf(p, 'flightbox_recorder_events_lost_total', { recorder: 'ftrace' })).toBe(7);
    expect(sampleOf(p, 'flightbox_recorder_events_lost_total', { recorder: 'metrics' })).toBeUndefined();
    expect(sampleOf(p, 'flightbox_recorder_buffer_used_bytes', { recorder: 'metrics' })).toBe(1024);
    expect(sampleOf(p, 'flightbox_outbox_messages', { status: 'pending' })).toBe(0);
    expect(sampleOf(p, 'flightbox_daemon_up')).toBe(1);
    expect(sampleOf(p, 'flightbox_daemon_uptime_seconds')).toBe(5);
    expect(p.type.get('flightbox_crashes_total')).toBe('counter');
    expect(p.type.get('flightbox_store_events')).toBe('gauge');
    // Every family has HELP and TYPE.
    for (const s of p.samples) {
      expect(p.help.has(s.name), s.name).toBe(true);
      expect(p.type.has(s.name), s.name).toBe(true);
    }
  });

  it('counters never go down when retention deletes events, and a re-indexed event is not counted again', async () => {
    const ix = store.index();
    const old = row({ time: T0 - 3 * 3_600_000 });
    const recent = row({ time: T0 - 1000 });
    ix.insert(old);
    ix.insert(recent);
    const c = collector();
    const crashes = async () => sampleOf(parseExposition(renderExposition(await c.collect())), 'flightbox_crashes_total', { exe: '/usr/bin/prog', signal: 'SIGSEGV' });
    expect(await crashes()).toBe(2);
    ix.deleteEvents([old.id, recent.id], 'maxPerExe');
    clock += 2000;
    expect(await crashes()).toBe(2);
    ix.upsert(recent); // reindex brings it back
    clock += 2000;
    expect(await crashes()).toBe(2);
    ix.insert(row({ time: clock - 500 }));
    ix.insert(row({ time: clock - 400, exe: '/usr/bin/other', signal: 7, signal_name: 'SIGBUS' }));
    clock += 2000;
    const p = parseExposition(renderExposition(await c.collect()));
    expect(sampleOf(p, 'flightbox_crashes_total', { exe: '/usr/bin/prog', signal: 'SIGSEGV' })).toBe(3);
    expect(sampleOf(p, 'flightbox_crashes_total', { exe: '/usr/bin/other', signal: 'SIGBUS' })).toBe(1);
    expect(sampleOf(p, 'flightbox_store_events', { kind: 'crash' })).toBe(3);
  });

  it(`caps the executables at ${MAX_EXE_SERIES} series: the ones with the most crashes, the rest as "${OTHER_EXE}"`, async () => {
    const ix = store.index();
    ix.db.transaction(() => {
      for (let e = 0; e < 250; e++) {
        // exe-000 has 250 crashes, exe-249 has 1: the top 200 are exe-000 … exe-199.
        for (let k = 0; k < 250 - e; k++) ix.insert(row({ time: T0 - 2 * 3_600_000 + k, exe: `/x/exe-${String(e).padStart(3, '0')}` }));
      }
    })();
    const c = collector();
    const p = parseExposition(renderExposition(await c.collect()));
    const crashes = p.samples.filter((s) => s.name === 'flightbox_crashes_total');
    expect(crashes).toHaveLength(MAX_EXE_SERIES + 1);
    expect(sampleOf(p, 'flightbox_crashes_total', { exe: '/x/exe-000', signal: 'SIGSEGV' })).toBe(250);
    expect(sampleOf(p, 'flightbox_crashes_total', { exe: '/x/exe-199', signal: 'SIGSEGV' })).toBe(51);
    expect(sampleOf(p, 'flightbox_crashes_total', { exe: '/x/exe-200', signal: 'SIGSEGV' })).toBeUndefined();
    // exe-200 … exe-249: 50 + 49 + … + 1
    expect(sampleOf(p, 'flightbox_crashes_total', { exe: OTHER_EXE, signal: 'SIGSEGV' })).toBe(1275);
    expect(crashes.reduce((a, s) => a + s.value, 0)).toBe((250 * 251) / 2);
    // A crash loop of fresh names later adds to "other", not to the series count.
    for (let k = 0; k < 30; k++) ix.insert(row({ time: clock - 100 + k, exe: `/tmp/random-${k}` }));
    clock += 2000;
    const q = parseExposition(renderExposition(await c.collect()));
    expect(q.samples.filter((s) => s.name === 'flightbox_crashes_total')).toHaveLength(MAX_EXE_SERIES + 1);
    expect(sampleOf(q, 'flightbox_crashes_total', { exe: OTHER_EXE, signal: 'SIGSEGV' })).toBe(1275 + 30);
  });

  it(`reads the whole index in steps of ${SCAN_STEP_ROWS} rowids, leaving the event loop free in between`, async () => {
    const ix = store.index();
    for (let k = 0; k < 5; k++) {
      const r = row({ time: T0 - 3_600_000 + k, exe: `/x/p${k}` });
      ix.insert(r);
      ix.db.prepare('UPDATE events SET rowid = ? WHERE id = ?').run(1 + k * SCAN_STEP_ROWS, r.id);
    }
    let turns = 0;
    let done = false;
    const spin = () => { turns++; if (!done) setImmediate(spin); };
    setImmediate(spin);
    const p = parseExposition(renderExposition(await collector().collect()));
    done = true;
    // 5 steps for the counts when counting starts, 5 for the store's usage
    expect(turns).toBeGreaterThanOrEqual(10);
    expect(p.samples.filter((x) => x.name === 'flightbox_crashes_total').map((x) => x.value)).toEqual([1, 1, 1, 1, 1]);
    expect(sampleOf(p, 'flightbox_store_events', { kind: 'crash' })).toBe(5);
  });

  it('the store usage, though read in full only now and then, counts an event as soon as it is indexed', async () => {
    const ix = store.index();
    ix.insert(row({ time: T0 - 5000, bundle_size: 1000 }));
    const c = collector();
    const a = parseExposition(renderExposition(await c.collect()));
    expect(sampleOf(a, 'flightbox_store_events', { kind: 'crash' })).toBe(1);
    expect(sampleOf(a, 'flightbox_store_bytes', { kind: 'crash' })).toBe(1000);
    // well within the usage's cache time: the crash counter and the usage must agree anyway
    ix.insert(row({ time: T0 - 10, bundle_size: 234 }));
    ix.insert(row({ time: T0 - 5, kind: 'snapshot', exe: null, signal: null, signal_name: null, rule: 'r', bundle_size: 7 }));
    clock += 10;
    const b = parseExposition(renderExposition(await c.collect()));
    expect(sampleOf(b, 'flightbox_store_events', { kind: 'crash' })).toBe(2);
    expect(sampleOf(b, 'flightbox_store_bytes', { kind: 'crash' })).toBe(1234);
    expect(sampleOf(b, 'flightbox_store_events', { kind: 'snapshot' })).toBe(1);
    expect(b.samples.filter((x) => x.name === 'flightbox_crashes_total').reduce((n, x) => n + x.value, 0)).toBe(2);
  });

  it('readings closer together than a second are shared; the final reading says the daemon is down', async () => {
    const c = collector([{ name: 'metrics', state: 'running' }]);
    const a = await c.current();
    expect(await c.current()).toBe(a);
    clock += 1500;
    expect(await c.current()).not.toBe(a);
    const f = parseExposition(renderExposition(await c.current({ final: true })));
    expect(sampleOf(f, 'flightbox_daemon_up')).toBe(0);
    expect(f.samples.some((s) => s.name === 'flightbox_recorder_up')).toBe(false);
  });

  it('the change mark moves when this connection or another one commits', () => {
    const c = collector();
    const m0 = c.changeMark();
    expect(c.changeMark()).toBe(m0);
    store.index().insert(row({ time: T0 }));
    const m1 = c.changeMark();
    expect(m1).not.toBe(m0);
    const other = new Store(store.root, { create: false, busyTimeoutMs: 2000 });
    try {
      other.index().insert(row({ time: T0 }));
    } finally {
      other.close();
    }
    expect(c.changeMark()).not.toBe(m1);
  });
});

// ---------------------------------------------------------------------------------------
// The textfile.

describe('writeTextfile', () => {
  it('replaces the file atomically, mode 0644 whatever the umask, leaving no temp file', () => {
    const d = join(dir, 'textfile');
    mkdirSync(d);
    const path = join(d, 'flightbox.prom');
    const old = process.umask(0o077);
    try {
      writeTextfile(path, 'a 1\n');
      writeTextfile(path, 'a 2\n');
    } finally {
      process.umask(old);
    }
    expect(readFileSync(path, 'utf8')).toBe('a 2\n');
    expect(lstatSync(path).mode & 0o777).toBe(0o644);
    expect(readdirSync(d)).toEqual(['flightbox.prom']);
  });

  it('a symlink planted at the file or the temp name is replaced, never written through', () => {
    const d = join(dir, 'textfile');
    mkdirSync(d);
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious');
    const path = join(d, 'flightbox.prom');
    symlinkSync(victim, path);
    symlinkSync(victim, join(d, `.flightbox.prom.${process.pid}.tmp`));
    writeTextfile(path, 'a 1\n');
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    expect(lstatSync(path).isFile()).toBe(true);
    expect(readFileSync(path, 'utf8')).toBe('a 1\n');
    expect(readdirSync(d)).toEqual(['flightbox.prom']);
  });

  it('a missing directory is an error for the caller to report (nothing is created)', () => {
    expect(() => writeTextfile(join(dir, 'nope', 'x.prom'), 'a 1\n')).toThrow(/ENOENT/);
    expect(readdirSync(dir)).toEqual(['store']);
  });
});

// ---------------------------------------------------------------------------------------
// The HTTP endpoint and the Graphite pusher, for real on loopback.

function cfgWith(over: (c: Config) => void): Config {
  const c = defaultConfig();
  c.store.root = store.root;
  over(c);
  return c;
}

function httpGet(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string | undefined; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => { body += d; }).on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(method === 'POST' ? 'x=1' : undefined);
  });
}

function rawExchange(port: number, data: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => s.end(data));
    let got = '';
    s.setEncoding('utf8').on('data', (d: string) => { got += d; });
    s.on('close', () => resolve(got));
    s.on('error', () => resolve(got));
  });
}

describe('the HTTP endpoint', () => {
  let exporter: Exporter | null = null;
  afterEach(async () => {
    await exporter?.close();
    exporter = null;
  });

  it('serves GET /metrics only: 404 elsewhere, 405 for other methods, and survives garbage', async () => {
    store.index().insert(row({ time: T0, exe: HOSTILE_EXES[1]! }));
    const lines: string[] = [];
    exporter = new Exporter(cfgWith((c) => { c.prometheus.listen = { host: '127.0.0.1', port: 0 }; }), {
      store, log: quietLog(), out: (l) => lines.push(l), recorders: () => [{ name: 'metrics', state: 'running' }], startedAt: Date.now(),
    });
    await exporter.start();
    const port = exporter.address!.port;
    expect(lines.join('\n')).toContain(`Prometheus metrics on http://127.0.0.1:${port}/metrics`);
    const ok = await httpGet(port, '/metrics');
    expect(ok.status).toBe(200);
    expect(ok.type).toBe(PROMETHEUS_CONTENT_TYPE);
    const p = parseExposition(ok.body);
    expect(sampleOf(p, 'flightbox_crashes_total', { exe: HOSTILE_EXES[1]!, signal: 'SIGSEGV' })).toBe(1);
    expect((await httpGet(port, '/metrics?x=1')).status).toBe(200);
    expect((await httpGet(port, '/')).status).toBe(404);
    expect((await httpGet(port, '/metrics/')).status).toBe(404);
    expect((await httpGet(port, '/../metrics')).status).toBe(404);
    const post = await httpGet(port, '/metrics', 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    const head = await httpGet(port, '/metrics', 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    // A malformed request gets its socket closed (or a 400), and the server goes on.
    const garbage = await rawExchange(port, 'GARBAGE\0\r\n\r\n');
    expect(garbage === '' || garbage.startsWith('HTTP/1.1 400')).toBe(true);
    await rawExchange(port, 'GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\npartial');
    expect((await httpGet(port, '/metrics')).status).toBe(200);
  });

  it('an address in use is reported and retried, not fatal', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen({ host: '127.0.0.1', port: 0 }, () => r()));
    const port = (blocker.address() as AddressInfo).port;
    const lines: string[] = [];
    try {
      exporter = new Exporter(cfgWith((c) => { c.prometheus.listen = { host: '127.0.0.1', port }; }), {
        store, log: quietLog(), out: (l) => lines.push(l), recorders: () => [], startedAt: Date.now(),
      });
      await exporter.start();
      expect(lines.join('\n')).toMatch(new RegExp(`Prometheus endpoint not serving on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*retrying`));
    } finally {
      blocker.close();
    }
  });

  it('reconfigure moves the endpoint and keeps the counters', async () => {
    store.index().insert(row({ time: T0 }));
    const opts = { store, log: quietLog(), out: () => {}, recorders: () => [], startedAt: T0, now: () => clock };
    exporter = new Exporter(cfgWith((c) => { c.prometheus.listen = { host: '127.0.0.1', port: 0 }; }), opts);
    await exporter.start();
    const first = exporter.address!.port;
    expect(sampleOf(parseExposition((await httpGet(first, '/metrics')).body), 'flightbox_crashes_total', { exe: '/usr/bin/prog', signal: 'SIGSEGV' })).toBe(1);
    store.index().deleteEvents(store.index().list().map((r) => r.id), 'maxAge');
    // The same address keeps the server; another one moves it.
    await exporter.reconfigure(cfgWith((c) => { c.prometheus.listen = { host: '127.0.0.1', port: 0 }; }));
    expect(exporter.address!.port).toBe(first);
    const free = createServer();
    await new Promise<void>((r) => free.listen({ host: '127.0.0.1', port: 0 }, () => r()));
    const second = (free.address() as AddressInfo).port;
    await new Promise<void>((r) => free.close(() => r()));
    await exporter.reconfigure(cfgWith((c) => { c.prometheus.listen = { host: '127.0.0.1', port: second }; }));
    expect(exporter.address!.port).toBe(second);
    clock += 2000;
    await expect(httpGet(first, '/metrics')).rejects.toThrow(/ECONNREFUSED/);
    const p = parseExposition((await httpGet(second, '/metrics')).body);
    expect(sampleOf(p, 'flightbox_crashes_total', { exe: '/usr/bin/prog', signal: 'SIGSEGV' })).toBe(1);
    expect(sampleOf(p, 'flightbox_store_events', { kind: 'crash' })).toBe(0);
  });
});

describe('the Graphite pusher', () => {
  let exporter: Exporter | null = null;
  const listening: Carbon[] = [];
  afterEach(async () => {
    await exporter?.close();
    exporter = null;
    for (const g of listening.splice(0)) await g.close();
  });

  async function listen(port = 0): Promise<Carbon> {
    const g = await carbonListener(port);
    listening.push(g);
    return g;
  }

  async function until(cond: () => boolean, ms = 10_000): Promise<void> {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('pushes one sanitized line per counter on connect and every interval, and reconnects after the server goes away', async () => {
    store.index().insert(row({ time: T0, exe: HOSTILE_EXES[0]! }));
    const g = await listen();
    const log: string[] = [];
    exporter = new Exporter(cfgWith((c) => { c.graphite = { host: '127.0.0.1', port: g.port, prefix: 'fbx.test', intervalMs: 1000 }; }), {
      store, log: { ...quietLog(), warn: (_c, m, ...a) => log.push(`${m} ${a.join(' ')}`) }, out: () => {}, recorders: () => [{ name: 'metrics', state: 'running' }], startedAt: Date.now(),
    });
    await exporter.start();
    await until(() => g.lines.some((l) => l.startsWith('fbx.test.crashes_total.')));
    for (const l of g.lines) expect(l).toMatch(/^fbx\.test\.[A-Za-z0-9_.-]+ -?\d+(\.\d+)? \d{10}$/);
    expect(g.lines).toContainEqual(expect.stringMatching(/^fbx\.test\.crashes_total\.tmp_evil___1_flightbox_daemon_up_x__\.SIGSEGV 1 \d+$/));
    expect(g.lines).toContainEqual(expect.stringMatching(/^fbx\.test\.recorder_up\.metrics 1 \d+$/));
    const n = g.lines.length;
    await until(() => g.lines.length > n); // the next interval
    // The server goes away and comes back on the same port: the pusher reconnects with backoff.
    await g.close();
    await until(() => log.some((l) => /Graphite: .*reconnecting in/.test(l)));
    const again = await listen(g.port);
    await until(() => again.lines.some((l) => l.startsWith('fbx.test.crashes_total.')), 15_000);
  });
});

// ---------------------------------------------------------------------------------------
// flightbox check: the Nagios plugin guidelines' ranges.

describe('Nagios threshold ranges (flightbox check)', () => {
  // [range, value, alerts?]: the table of the plugin guidelines, and the edges.
  it.each<[string, number, boolean]>([
    ['10', -1, true], ['10', 0, false], ['10', 10, false], ['10', 11, true],
    ['1', 1, false], ['1', 2, true], ['0', 0, false], ['0', 1, true],
    ['10:', 9, true], ['10:', 10, false], ['10:', 1e9, false],
    ['~:10', -1e9, false], ['~:10', 10, false], ['~:10', 11, true],
    ['10:20', 9, true], ['10:20', 10, false], ['10:20', 20, false], ['10:20', 21, true],
    ['@10:20', 9, false], ['@10:20', 10, true], ['@10:20', 20, true], ['@10:20', 21, false],
    ['@5', 0, true], ['@5', 6, false], [':5', 5, false], [':5', 6, true], ['2.5', 3, true],
  ])('range %s with value %d alerts: %s', (text, value, alerts) => {
    const r = parseNagiosRange(text);
    expect(r).toBeDefined();
    expect(rangeAlerts(r!, value)).toBe(alerts);
  });

  it.each(['', '@', 'x', '10:5', '1:2:3', '~', '5~', '--1', '1e3'])('%j is not a range', (text) => {
    expect(parseNagiosRange(text)).toBeUndefined();
  });

  it.each<[number, string | null, string | null, string]>([
    [0, '1', '5', 'OK'], [1, '1', '5', 'OK'], [2, '1', '5', 'WARNING'], [5, '1', '5', 'WARNING'], [6, '1', '5', 'CRITICAL'],
    [0, '0', '5', 'OK'], [1, '0', '5', 'WARNING'], [9, null, null, 'OK'], [9, null, '5', 'CRITICAL'], [9, '1', null, 'WARNING'],
  ])('%d crashes with warning %s and critical %s is %s', (n, w, c, state) => {
    expect(checkState(n, w === null ? null : parseNagiosRange(w)!, c === null ? null : parseNagiosRange(c)!)).toBe(state);
  });

  it('the status line is one line, its text free of "|" and control characters', () => {
    const o = pluginOutput('WARNING', pluginText('2 crashes (newest: /tmp/a|b\nFLIGHTBOX OK)'), 'crashes=2;1;5;0');
    expect(o).toEqual({ line: 'FLIGHTBOX WARNING - 2 crashes (newest: /tmp/a\\x7cb\\x0aFLIGHTBOX OK) | crashes=2;1;5;0', status: 1 });
    expect(pluginOutput('UNKNOWN', 'x').status).toBe(3);
  });
});

