// Monitoring end to end with real parts: a real daemon (metrics recorder only, core_pattern
// left alone) serving /metrics over real HTTP, writing the node_exporter textfile and pushing
// to a real TCP Graphite listener in this process; crashes recorded by the real handler, run
// as the kernel runs it on real processes (see handler-direct.test.ts); `flightbox check`
// spawned as Nagios spawns it.
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { carbonListener, type Carbon } from '../carbon.js';
import { parseExposition, type ParsedSample } from '../exposition.js';
import { IS_ROOT, makeTempStore, runCli, waitFor, type TempStore } from '../helpers.js';
import { startDaemon, stopDaemon, waitRunning, type DaemonProc } from './daemon-proc.js';
import { compileWaiter, gcore, kernelArgs, runHandler, startProcess, stopAll, stopProcess } from './procs.js';

// ---------------------------------------------------------------------------------------
// The text format, read strictly (test/exposition.ts).

type Sample = ParsedSample;
const samplesOf = (text: string): Sample[] => parseExposition(text).samples;

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined =>
  samples.find((s) => s.name === name && JSON.stringify(s.labels) === JSON.stringify(labels))?.value;

/** The families that come from the index (the same in every reading while nothing happens). */
const fromIndex = (samples: Sample[]) =>
  samples.filter((s) => /^flightbox_(crashes_total|snapshots_total|store_events|store_bytes|last_crash_timestamp_seconds)$/.test(s.name));

// ---------------------------------------------------------------------------------------
// Real HTTP, TCP.

function httpGet(port: number, path = '/metrics', method = 'GET'): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => { body += d; }).on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function metrics(port: number): Promise<Sample[]> {
  const r = await httpGet(port);
  expect(r.status).toBe(200);
  return samplesOf(r.body);
}

/** Poll an asynchronous condition every 100 ms until it holds (or fail after `ms`). */
async function until(what: string, cond: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (await cond()) return;
    } catch { /* not yet */ }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen({ host: '127.0.0.1', port: 0 }, () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

// ---------------------------------------------------------------------------------------
// Crashes through the real handler.

let work: string;
let waiter: string;
/** the fixture copied under a file name a hostile program could choose */
let hostileBin: string;
let corePath: string;

/** Record a crash of `bin` (a live process, named `comm`) with `signal`, as the kernel would. */
async function crashWith(configPath: string, bin: string, comm: string, signal: number, time?: number): Promise<void> {
  const p = await startProcess(bin, [comm], comm);
  try {
    const r = await runHandler(configPath, kernelArgs({ pid: p.pid, signal, time }), corePath);
    expect(r.code).toBe(0);
  } finally {
    stopProcess(p);
  }
}

const BASE_CONFIG = [
  'recorders:',
  '  metrics: { interval: 200ms, window: 10s }',
  '  ftrace: { enabled: false }',
  'backtrace:',
  '  tool: none',
  '',
].join('\n');

beforeAll(async () => {
  if (!IS_ROOT) return;
  work = mkdtempSync(join(tmpdir(), 'fbx-mon-'));
  waiter = compileWaiter(work);
  hostileBin = join(work, 'we"ird\\back\nline');
  copyFileSync(waiter, hostileBin);
  chmodSync(hostileBin, 0o755);
  const p = await startProcess(waiter, [], 'fbxwaiter');
  try {
    corePath = gcore(p.pid, join(work, 'ref'));
  } finally {
    stopProcess(p);
  }
});

afterAll(() => {
  stopAll();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.skipIf(!IS_ROOT)('monitoring: Prometheus, node_exporter textfile, Graphite', () => {
  let store: TempStore | undefined;
  let daemon: DaemonProc | undefined;
  let g: Carbon | undefined;
  afterEach(async () => {
    try {
      await stopDaemon(daemon);
      await g?.close();
    } finally {
      daemon = undefined;
      g = undefined;
      stopAll();
      store?.cleanup();
      store = undefined;
    }
  });

  it('counts real crashes by exe and signal on /metrics, in the textfile and in Graphite, with hostile names escaped', async () => {
    g = await carbonListener();
    const port = await freePort();
    store = makeTempStore(`${BASE_CONFIG}prometheus:\n  listen: 127.0.0.1:${port}\n  textfile: PLACEHOLDER\ngraphite:\n  host: 127.0.0.1\n  port: ${g.port}\n  prefix: fbxtest.web1\n  interval: 1s\n`);
    const textDir = join(store.dir, 'node-exporter');
    mkdirSync(textDir, { mode: 0o755 });
    const textfile = join(textDir, 'flightbox.prom');
    writeFileSync(store.configPath, readFileSync(store.configPath, 'utf8').replace('PLACEHOLDER', textfile));

    daemon = startDaemon(store, ['--no-install']);
    await waitRunning(daemon);
    expect(daemon.log()).toContain(`Prometheus metrics on http://127.0.0.1:${port}/metrics`);
    expect(daemon.log()).toContain(`Graphite: pushing to 127.0.0.1:${g.port} every 1s as fbxtest.web1.*`);

    // Before any crash: the daemon and its recorder, nothing counted.
    const r0 = await httpGet(port);
    expect(r0.status).toBe(200);
    expect(r0.type).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(r0.body).toContain('# TYPE flightbox_crashes_total counter\n');
    const m0 = samplesOf(r0.body);
    expect(value(m0, 'flightbox_daemon_up')).toBe(1);
    expect(value(m0, 'flightbox_recorder_up', { recorder: 'metrics' })).toBe(1);
    expect(m0.some((s) => s.name === 'flightbox_crashes_total')).toBe(false);
    expect(value(m0, 'flightbox_store_events', { kind: 'crash' })).toBe(0);

    await crashWith(store.configPath, hostileBin, 'fbx-hostile', 11);
    await crashWith(store.configPath, hostileBin, 'fbx-hostile', 11);
    await crashWith(store.configPath, waiter, 'fbx-plain', 6);
    const snap = runCli(['--config', store.configPath, 'snapshot', '--reason', 'monitoring']);
    expect(snap.code, snap.stderr).toBe(0);

    await until('the crashes on /metrics', async () => value(await metrics(port), 'flightbox_crashes_total', { exe: waiter, signal: 'SIGABRT' }) === 1);
    await new Promise((r) => setTimeout(r, 1100)); // past the shared reading
    const r1 = await httpGet(port);
    // The hostile name is one escaped label value on one line, not an injected sample.
    expect(r1.body).toContain(`flightbox_crashes_total{exe="${hostileBin.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}",signal="SIGSEGV"} 2\n`);
    const m1 = samplesOf(r1.body);
    expect(value(m1, 'flightbox_crashes_total', { exe: hostileBin, signal: 'SIGSEGV' })).toBe(2);
    expect(value(m1, 'flightbox_crashes_total', { exe: waiter, signal: 'SIGABRT' })).toBe(1);
    expect(m1.filter((s) => s.name === 'flightbox_crashes_total')).toHaveLength(2);
    expect(value(m1, 'flightbox_snapshots_total', { rule: '' })).toBe(1);
    expect(value(m1, 'flightbox_store_events', { kind: 'crash' })).toBe(3);
    expect(value(m1, 'flightbox_store_events', { kind: 'snapshot' })).toBe(1);
    expect(value(m1, 'flightbox_store_bytes', { kind: 'crash' })).toBeGreaterThan(0);
    expect(value(m1, 'flightbox_last_crash_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 120);
    expect(value(m1, 'flightbox_outbox_messages', { status: 'pending' })).toBe(0);

    // Only GET /metrics; a malformed request does not stop the endpoint.
    expect((await httpGet(port, '/')).status).toBe(404);
    expect((await httpGet(port, '/api/events')).status).toBe(404);
    expect((await httpGet(port, '/metrics', 'DELETE')).status).toBe(405);
    await new Promise<void>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => s.end('\x16\x03\x01 not http at all\r\n\r\n'));
      s.on('close', () => resolve());
      s.on('error', () => resolve());
    });
    expect((await httpGet(port)).status).toBe(200);

    // The textfile: the same numbers, mode 0644, rewritten on change.
    await waitFor('the textfile to show the crashes', () => {
      try {
        return value(samplesOf(readFileSync(textfile, 'utf8')), 'flightbox_crashes_total', { exe: waiter, signal: 'SIGABRT' }) === 1 &&
          value(samplesOf(readFileSync(textfile, 'utf8')), 'flightbox_snapshots_total', { rule: '' }) === 1;
      } catch {
        return false;
      }
    }, 20_000);
    expect(statSync(textfile).mode & 0o777).toBe(0o644);
    expect(fromIndex(samplesOf(readFileSync(textfile, 'utf8')))).toEqual(fromIndex(samplesOf((await httpGet(port)).body)));

    // Graphite: one line per counter, `prefix.path value timestamp`, paths sanitized.
    const hostilePath = hostileBin.slice(1).replace(/[^A-Za-z0-9_-]/g, '_');
    await waitFor('Graphite lines with the crashes', () => g!.lines.some((l) => l.startsWith(`fbxtest.web1.crashes_total.${hostilePath}.SIGSEGV 2 `)), 20_000);
    for (const l of g.lines) expect(l).toMatch(/^fbxtest\.web1\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)* -?\d+(\.\d+)? \d{10}$/);
    const latest = (path: string) => g!.lines.filter((l) => l.startsWith(`${path} `)).at(-1)?.split(' ')[1];
    expect(latest(`fbxtest.web1.crashes_total.${waiter.slice(1).replace(/[^A-Za-z0-9_-]/g, '_')}.SIGABRT`)).toBe('1');
    expect(latest('fbxtest.web1.snapshots_total._none')).toBe('1');
    expect(latest('fbxtest.web1.recorder_up.metrics')).toBe('1');
    expect(latest('fbxtest.web1.store_events.crash')).toBe('3');
    expect(g.lines.some((l) => l.includes('build_info'))).toBe(false);
    const ts = Number(g.lines.at(-1)!.split(' ')[2]);
    expect(Math.abs(ts - Date.now() / 1000)).toBeLessThan(30);

    // A clean stop: the endpoint closes, the textfile says the daemon is down.
    await stopDaemon(daemon);
    daemon = undefined;
    const last = samplesOf(readFileSync(textfile, 'utf8'));
    expect(value(last, 'flightbox_daemon_up')).toBe(0);
    expect(value(last, 'flightbox_crashes_total', { exe: hostileBin, signal: 'SIGSEGV' })).toBe(2);
    await expect(httpGet(port)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('SIGHUP moves the endpoint and keeps the counters; a textfile no longer configured is removed', async () => {
    const [a, b] = [await freePort(), await freePort()];
    store = makeTempStore(`${BASE_CONFIG}prometheus:\n  listen: 127.0.0.1:${a}\n  textfile: TEXTFILE\n`);
    const textfile = join(store.dir, 'flightbox.prom');
    const text = readFileSync(store.configPath, 'utf8').replace('TEXTFILE', textfile);
    writeFileSync(store.configPath, text);
    daemon = startDaemon(store, ['--no-install']);
    await waitRunning(daemon);
    await crashWith(store.configPath, waiter, 'fbx-one', 11);
    await until('the crash on /metrics', async () => value(await metrics(a), 'flightbox_crashes_total', { exe: waiter, signal: 'SIGSEGV' }) === 1);
    await waitFor('the textfile', () => existsSync(textfile));

    // A broken config is refused: the endpoint stays where it is.
    writeFileSync(store.configPath, text.replace(`127.0.0.1:${a}`, '127.0.0.1'));
    daemon.child.kill('SIGHUP');
    await waitFor('the reload refused', () => /Reload refused.*prometheus\.listen/.test(daemon!.log()));
    expect((await httpGet(a)).status).toBe(200);

    writeFileSync(store.configPath, text.replace(`127.0.0.1:${a}`, `127.0.0.1:${b}`).replace(/  textfile: .*\n/, ''));
    daemon.child.kill('SIGHUP');
    await waitFor('the reload', () => /Reloaded /.test(daemon!.log()));
    await expect(httpGet(a)).rejects.toThrow(/ECONNREFUSED/);
    expect(value(await metrics(b), 'flightbox_crashes_total', { exe: waiter, signal: 'SIGSEGV' })).toBe(1);
    expect(existsSync(textfile)).toBe(false);
    await crashWith(store.configPath, waiter, 'fbx-two', 11);
    await until('the second crash', async () => value(await metrics(b), 'flightbox_crashes_total', { exe: waiter, signal: 'SIGSEGV' }) === 2);
  });
});

describe.skipIf(!IS_ROOT)('flightbox check (Nagios/Icinga plugin)', () => {
  let store: TempStore | undefined;
  afterEach(() => {
    stopAll();
    store?.cleanup();
    store = undefined;
  });

  /** One line on stdout, nothing on stderr, an exit status of 0 to 3. */
  function check(args: string[], configPath = store!.configPath, opts: Parameters<typeof runCli>[1] = {}): { code: number | null; line: string } {
    const r = runCli(['--config', configPath, 'check', ...args], opts);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^FLIGHTBOX (OK|WARNING|CRITICAL|UNKNOWN) - [^\n|]*( \| [^\n]*)?\n$/);
    expect([0, 1, 2, 3]).toContain(r.code);
    return { code: r.code, line: r.stdout.replace(/\n$/, '') };
  }

  it('exits 0 with no crash in the window, 1 over --warning, 2 over --critical, with perfdata', async () => {
    store = makeTempStore(BASE_CONFIG);
    // A crash two hours ago: in the store, outside the window.
    await crashWith(store.configPath, waiter, 'fbx-old', 11, Math.floor(Date.now() / 1000) - 7200);
    const th = ['--window', '15m', '--warning', '1', '--critical', '5'];
    expect(check(th)).toEqual({ code: 0, line: 'FLIGHTBOX OK - 0 crashes in the last 15m | crashes=0;1;5;0' });
    expect(check(['--window', '3h', '--warning', '1', '--critical', '5']).line).toMatch(/^FLIGHTBOX OK - 1 crash in the last 3h \(newest .*fbxwaiter, SIGSEGV\) \| crashes=1;1;5;0$/);

    await crashWith(store.configPath, waiter, 'fbx-a', 11);
    const one = check(th);
    expect(one.code).toBe(0); // 1 is not more than 1
    expect(one.line).toMatch(/ \| crashes=1;1;5;0$/);
    await new Promise((r) => setTimeout(r, 1100)); // crash times may have whole seconds: this one is the newest
    await crashWith(store.configPath, hostileBin, 'fbx-b', 6);
    const warn = check(th);
    expect(warn.code).toBe(1);
    // The hostile file name cannot break the line or forge perfdata.
    expect(warn.line).toMatch(/^FLIGHTBOX WARNING - 2 crashes in the last 15m \(newest [^|]*we"ird\\\\back\\x0aline, SIGABRT\) \| crashes=2;1;5;0$/);

    for (const sig of [11, 11, 6, 11]) await crashWith(store.configPath, waiter, 'fbx-c', sig);
    expect(check(th)).toMatchObject({ code: 2, line: expect.stringMatching(/^FLIGHTBOX CRITICAL - 6 crashes in the last 15m .* \| crashes=6;1;5;0$/) });
    // Filters: signal, executable (base name or path), and a range form.
    expect(check([...th, '--signal', 'abrt'])).toMatchObject({ code: 1, line: expect.stringMatching(/^FLIGHTBOX WARNING - 2 SIGABRT crashes in the last 15m .*\| crashes=2;1;5;0$/) });
    expect(check([...th, '--exe', 'fbxwaiter'])).toMatchObject({ code: 1, line: expect.stringMatching(/- 5 crashes of fbxwaiter in the last 15m .*\| crashes=5;1;5;0$/) });
    expect(check([...th, '--exe', '/nonexistent/prog'])).toEqual({ code: 0, line: 'FLIGHTBOX OK - 0 crashes of /nonexistent/prog in the last 15m | crashes=0;1;5;0' });
    expect(check(['--warning', '@6:10'])).toMatchObject({ code: 1, line: expect.stringMatching(/\| crashes=6;@6:10;;0$/) });
    expect(check([])).toMatchObject({ code: 0, line: expect.stringMatching(/^FLIGHTBOX OK - 6 crashes in the last 15m .*\| crashes=6;;;0$/) });
  });

  it('exits 3 (UNKNOWN) with its one line for a broken config, a missing or unreadable store, bad arguments', async () => {
    store = makeTempStore(BASE_CONFIG);
    await crashWith(store.configPath, waiter, 'fbx-x', 11);
    const broken = join(store.dir, 'broken.yaml');
    writeFileSync(broken, 'core:\n  maxSize: lots\n');
    expect(check(['--warning', '1'], broken)).toEqual({ code: 3, line: `FLIGHTBOX UNKNOWN - configuration error: core.maxSize: expected a size such as 2GiB or 500MB, got "lots" (${broken}:2)` });
    const noStore = join(store.dir, 'nostore.yaml');
    writeFileSync(noStore, `store:\n  root: ${join(store.dir, 'missing')}\n`);
    expect(check([], noStore)).toMatchObject({ code: 3, line: expect.stringMatching(/^FLIGHTBOX UNKNOWN - the store .*missing does not exist yet/) });
    expect(check(['--warning', 'lots'])).toMatchObject({ code: 3, line: expect.stringMatching(/^FLIGHTBOX UNKNOWN - --warning: expected a count or a Nagios range/) });
    expect(check(['--window', '0s'])).toMatchObject({ code: 3 });
    expect(check(['--signal', 'SIGNOPE'])).toMatchObject({ code: 3 });
    expect(check(['--bogus'])).toEqual({ code: 3, line: "FLIGHTBOX UNKNOWN - unknown option '--bogus'" });
    expect(check(['--critical'])).toMatchObject({ code: 3, line: expect.stringMatching(/argument missing/) });
    expect(check(['extra'])).toMatchObject({ code: 3 });
    // As a user who cannot read the root-only store (Nagios without sudo): UNKNOWN, never "OK, 0".
    chmodSync(store.dir, 0o755);
    chmodSync(store.configPath, 0o644);
    const asNobody = check([], store.configPath, { uid: 65534, gid: 65534 });
    expect(asNobody).toMatchObject({ code: 3, line: expect.stringMatching(/^FLIGHTBOX UNKNOWN - .*permission denied/) });
  });
});
