// The ftrace recorder against the real kernel: a tracefs instance of our own per test,
// real processes with unique names, a real SIGSEGV. Every test removes its instance in a
// finally. DANGER: no test reads an instance's `trace` file itself; only the recorder's
// snapshot does, and it does so only while tracing_on is 0.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../lib/config.js';
import { FlightboxError } from '../../lib/errors.js';
import { findProgram } from '../../lib/programs.js';
import {
  DEFAULT_AUTO_THAW_GRACE_MS, DEFAULT_TRACEFS_ROOT, FATAL_SIGNALS, FtraceRecorder, eventEnablePath, eventsWritten, fatalSignalTrigger,
  lastTraceTimestamp, parseBufferSizeKb, parseCpuStats, parseTraceClock, summarizeStats, type FtraceRecorderOptions,
} from '../../recorder/ftrace.js';
import { RecorderUnavailable, type SnapshotResult } from '../../recorder/recorder.js';
import { IS_ROOT, sleep, waitFor } from '../helpers.js';

type FtraceConfig = Config['recorders']['ftrace'];

const INSTANCES = join(DEFAULT_TRACEFS_ROOT, 'instances');
const TRACE_CMD = findProgram('trace-cmd');
let serial = 0;
const instanceName = () => `fbxtest-${process.pid}-${++serial}`;
const instDir = (name: string) => join(INSTANCES, name);

/** Write a tracefs file the way the recorder does: no O_TRUNC (it would clear triggers). */
function tracefsWrite(path: string, value: string): void {
  writeFileSync(path, value, { flag: 'r+' });
}
const tracefsRead = (path: string) => readFileSync(path, 'utf8').trim();

/** Make sure a test's instance is gone, whatever the recorder did. */
function forceRemove(name: string): void {
  const dir = instDir(name);
  if (!existsSync(dir)) return;
  try { tracefsWrite(join(dir, 'tracing_on'), '0'); } catch { /* removing anyway */ }
  rmdirSync(dir);
}

/**
 * The defaults but no overhead guard: the workloads here (dd one byte at a time) are over
 * maxEventRate, and the tests check their system calls. The guard has tests of its own.
 */
function ftraceConfig(over: Partial<FtraceConfig> = {}): FtraceConfig {
  return { ...defaultConfig().recorders.ftrace, instance: instanceName(), maxEventRate: null, ...over };
}

/** A recorder that is always stopped and whose instance is always gone afterwards. */
async function withRecorder(
  over: Partial<FtraceConfig>,
  opts: FtraceRecorderOptions,
  fn: (rec: FtraceRecorder, name: string) => Promise<void>,
): Promise<void> {
  const cfg = ftraceConfig(over);
  const rec = new FtraceRecorder(cfg, { traceCmd: null, ...opts });
  try {
    await fn(rec, cfg.instance);
  } finally {
    try {
      await rec.stop();
    } finally {
      forceRemove(cfg.instance);
    }
  }
  expect(existsSync(instDir(cfg.instance))).toBe(false);
}

interface Workload {
  bin: string;
  comm: string;
}

let work: string;
/** A copy of dd under a name nobody else uses, so its events are unmistakably ours. */
function makeWorkload(suffix = ''): Workload {
  const comm = `fbxft${randomBytes(3).toString('hex')}${suffix}`; // ≤ 15 characters: the whole comm
  const bin = join(work, comm);
  copyFileSync('/bin/dd', bin);
  return { bin, comm };
}

/** Many syscalls (two per byte). */
function runWorkload(w: Workload, count = 20000): number {
  const r = spawnSync(w.bin, ['if=/dev/zero', 'of=/dev/null', 'bs=1', `count=${count}`], { stdio: 'ignore' });
  expect(r.status).toBe(0);
  return r.pid;
}

const readProc = (pid: number, file: string) => {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return '';
  }
};

/**
 * The workload reading a pipe one byte at a time: once it runs under its own name (after
 * the exec, not before, whatever the load) it is fed `bytes` bytes, and when it has read
 * them it is killed with SIGSEGV, so its syscalls come right before the signal. No core
 * (ulimit -c 0). Returns its pid.
 */
async function segfaultVictim(w: Workload, bytes = 20000): Promise<number> {
  const child = spawn('/bin/sh', ['-c', 'ulimit -c 0; exec "$0" "$@"', w.bin, 'of=/dev/null', 'bs=1'], { stdio: ['pipe', 'ignore', 'ignore'] });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${w.bin}`);
  const exited = new Promise<NodeJS.Signals | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (_code, signal) => resolve(signal));
  });
  try {
    await waitFor(`${w.comm} to exec`, () => readProc(pid, 'comm').trim() === w.comm, 10_000, 5);
    child.stdin?.write(Buffer.alloc(bytes));
    const rchar = () => Number(/^rchar:\s*(\d+)/m.exec(readProc(pid, 'io'))?.[1] ?? 0);
    await waitFor(`${w.comm} to read its input`, () => rchar() >= bytes, 10_000, 5);
  } finally {
    child.kill('SIGSEGV');
  }
  expect(await exited).toBe('SIGSEGV');
  return pid;
}

/** The snapshot as text: `trace-cmd report` of trace.dat, or trace.txt. */
function snapshotText(dir: string, res: SnapshotResult): string {
  if (res.files.includes('trace.dat')) {
    expect(TRACE_CMD).not.toBeNull();
    const r = spawnSync(TRACE_CMD ?? 'trace-cmd', ['report', '-i', join(dir, 'trace.dat')], { encoding: 'utf8', maxBuffer: 1 << 30 });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout;
  }
  expect(res.files).toContain('trace.txt');
  return readFileSync(join(dir, 'trace.txt'), 'utf8');
}

/** The instance's events held now, over its CPUs. */
function parseStatsSum(inst: string): { entries: number } {
  const cpus = readdirSync(join(inst, 'per_cpu')).filter((n) => /^cpu\d+$/.test(n));
  return summarizeStats(cpus.map((c, i) => parseCpuStats(tracefsRead(join(inst, 'per_cpu', c, 'stats')), i)));
}

function newDir(): string {
  return mkdtempSync(join(work, 'snap-'));
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface Found {
  /** pids that sched_switch shows running under the comm */
  pids: Set<number>;
  schedSwitch: boolean;
  sysEnter: boolean;
  segv: boolean;
  segvTs: number | null;
  lastSysEnterTs: number | null;
}

/**
 * What a snapshot's text says about a workload comm and the pid that got SIGSEGV. The
 * TASK-PID column comes from the kernel's saved_cmdlines cache and may still show the name
 * before exec ("bash-2737"), so syscalls are matched by the pids that sched_switch's own
 * comm fields give for the comm (text: prev_comm=C prev_pid=P; trace-cmd report: C:P [prio]).
 */
function findEvents(text: string, comm: string, victimPid: number | null): Found {
  const c = escapeRe(comm);
  const switchPid = new RegExp(`(?:(?:prev|next)_comm=${c} (?:prev|next)_pid=|\\s${c}:)(\\d+)\\b`, 'g');
  const sysEnter = /-(\d+)\s+\[\d+\]\s+(?:\S+\s+)?(\d+\.\d+):\s+sys_enter\b/;
  const sig = new RegExp(`\\s(\\d+\\.\\d+):\\s+signal_generate:\\s+sig=11 .*comm=${c} pid=${victimPid ?? -1}\\b`);
  const found: Found = { pids: new Set(), schedSwitch: false, sysEnter: false, segv: false, segvTs: null, lastSysEnterTs: null };
  const lines = text.split('\n');
  for (const line of lines) {
    if (!/\bsched_switch:/.test(line)) continue;
    for (const m of line.matchAll(switchPid)) {
      found.schedSwitch = true;
      found.pids.add(Number(m[1]));
    }
  }
  for (const line of lines) {
    const t = sysEnter.exec(line);
    if (t && found.pids.has(Number(t[1]))) {
      found.sysEnter = true;
      found.lastSysEnterTs = Number(t[2]);
    }
    const s = sig.exec(line);
    if (s) {
      found.segv = true;
      found.segvTs = Number(s[1]);
    }
  }
  return found;
}

describe('ftrace parsing (pure)', () => {
  it.each([
    {
      name: 'busy CPU in overwrite mode',
      text: 'entries: 86364\noverrun: 5902513\ncommit overrun: 0\nbytes: 4195012\noldest event ts:  1214.038090\nnow ts:  1294.366622\ndropped events: 0\nread events: 0\n',
      want: { entries: 86364, overrun: 5902513, commitOverrun: 0, bytes: 4195012, oldestEventTs: 1214.03809, nowTs: 1294.366622, droppedEvents: 0, readEvents: 0 },
    },
    {
      name: 'empty buffer: oldest 0 means none',
      text: 'entries: 0\noverrun: 0\ncommit overrun: 0\nbytes: 0\noldest event ts:     0.000000\nnow ts:  1177.366622\ndropped events: 0\nread events: 0\n',
      want: { entries: 0, overrun: 0, commitOverrun: 0, bytes: 0, oldestEventTs: null, nowTs: 1177.366622, droppedEvents: 0, readEvents: 0 },
    },
    {
      name: 'unknown and garbled lines are ignored',
      text: 'entries: 7\nsomething new: 3\nbytes: lots\ndropped events: 2\n',
      want: { entries: 7, overrun: 0, commitOverrun: 0, bytes: 0, oldestEventTs: null, nowTs: null, droppedEvents: 2, readEvents: 0 },
    },
  ])('parseCpuStats: $name', ({ text, want }) => {
    expect(parseCpuStats(text, 3)).toEqual({ cpu: 3, ...want });
    // The overhead guard's quick count agrees with the full parse.
    expect(eventsWritten(text)).toBe(want.entries + want.overrun + want.readEvents);
  });

  it('summarizeStats adds bytes and losses and finds the oldest event of a non-empty CPU', () => {
    const a = parseCpuStats('entries: 5\noverrun: 10\ncommit overrun: 1\nbytes: 100\noldest event ts: 20.5\ndropped events: 2\n', 0);
    const b = parseCpuStats('entries: 3\noverrun: 4\nbytes: 50\noldest event ts: 10.25\n', 1);
    const empty = parseCpuStats('entries: 0\nbytes: 0\noldest event ts: 1.0\n', 2);
    expect(summarizeStats([a, b, empty])).toEqual({ entries: 8, usedBytes: 150, eventsLost: 17, oldestTs: 10.25 });
    expect(summarizeStats([])).toEqual({ entries: 0, usedBytes: 0, eventsLost: 0, oldestTs: null });
  });

  it.each([
    ['4099\n', 4099],
    ['1410 (expanded: 1410)\n', 1410],
    ['X\n', null],
    ['', null],
  ])('parseBufferSizeKb(%j) = %j', (text, want) => {
    expect(parseBufferSizeKb(text)).toBe(want);
  });

  it.each([
    ['[local] global counter uptime perf mono mono_raw boot tai x86-tsc\n', 'local'],
    ['local global counter uptime perf mono mono_raw [boot] tai x86-tsc\n', 'boot'],
    ['local global\n', null],
  ])('parseTraceClock(%j).current = %j', (text, want) => {
    const r = parseTraceClock(text);
    expect(r.current).toBe(want);
    expect(r.available).toContain('local');
  });

  it.each([
    ['sched/sched_switch', 'sched/sched_switch/enable'],
    ['raw_syscalls', 'raw_syscalls/enable'],
    ['../../tracing_on', null],
    ['sched/../../x', null],
    ['sched/sched_switch/enable', null],
    ['', null],
    ['Sched/Switch', null],
  ])('eventEnablePath(%j) = %j', (spec, want) => {
    expect(eventEnablePath(spec)).toBe(want);
  });

  it('fatalSignalTrigger names the signal_generate field sig, joined with ||', () => {
    expect(fatalSignalTrigger()).toBe('traceoff if sig == 11 || sig == 6 || sig == 7 || sig == 4 || sig == 8 || sig == 5 || sig == 31');
    expect(fatalSignalTrigger([11])).toBe('traceoff if sig == 11');
    expect(FATAL_SIGNALS).toContain(11);
    expect(() => fatalSignalTrigger([])).toThrow(FlightboxError);
    expect(() => fatalSignalTrigger([0])).toThrow(FlightboxError);
  });

  it.each([
    ['#\n#  TASK-PID\n      fbxft-25169 [000] ..... 1214.042848: sys_exit:             NR 56 = 0\n', 1214.042848],
    ['      fbxft-25169 [001] 1214.5: sys_exit: NR 56 = 0\n\n', 1214.5],
    ['  <...>-7 [000] d..2. 99.000001: sched_switch: prev_comm=a [x] prev_pid=7\npartial line without a times', 99.000001],
    ['# tracer: nop\n#\n', null],
  ])('lastTraceTimestamp(%#)', (tail, want) => {
    expect(lastTraceTimestamp(tail)).toBe(want);
  });

  it('rejects an instance name that is a path (instance: ../x)', () => {
    expect(() => new FtraceRecorder(ftraceConfig({ instance: '../x' }))).toThrow(FlightboxError);
    expect(() => new FtraceRecorder(ftraceConfig({ instance: '..' }))).toThrow(/instance/);
  });

  it('exports the grace period the daemon waits before undoing a freeze made by the kernel', () => {
    expect(DEFAULT_AUTO_THAW_GRACE_MS).toBe(5000);
  });
});

describe.skipIf(!IS_ROOT)('ftrace recorder on the real kernel (needs root: it creates tracefs instances)', () => {
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'fbx-ftrace-'));
  });
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
    // Nothing of this process may be left behind, whatever failed.
    if (existsSync(INSTANCES)) {
      for (const n of readdirSync(INSTANCES)) if (n.startsWith(`fbxtest-${process.pid}-`)) forceRemove(n);
    }
  });

  it('start creates the instance with the buffer size, events and trigger; stop removes it; stop twice is fine', async () => {
    const cfg = ftraceConfig({ bufferSizeBytes: 2 * 1024 * 1024 });
    const rec = new FtraceRecorder(cfg, { traceCmd: null });
    const dir = instDir(cfg.instance);
    try {
      await rec.start();
      expect(existsSync(dir)).toBe(true);
      expect(rec.instanceDir).toBe(dir);
      const kb = parseBufferSizeKb(readFileSync(join(dir, 'buffer_size_kb'), 'utf8'));
      expect(kb).toBeGreaterThanOrEqual(2048);
      expect(kb).toBeLessThan(2048 + 64); // the kernel rounds up to whole pages
      expect(tracefsRead(join(dir, 'options/overwrite'))).toBe('1');
      expect(tracefsRead(join(dir, 'tracing_on'))).toBe('1');
      // "1*" when a trigger is attached too
      for (const e of cfg.events) expect(tracefsRead(join(dir, 'events', e, 'enable')), e).toMatch(/^1\*?$/);
      expect(tracefsRead(join(dir, 'events/signal/signal_generate/trigger'))).toContain(fatalSignalTrigger().replace(/^traceoff/, 'traceoff:unlimited'));
      expect(rec.warnings()).toEqual([]);

      const ncpu = readdirSync(join(dir, 'per_cpu')).filter((n) => /^cpu\d+$/.test(n)).length;
      const st = rec.status();
      expect(st).toMatchObject({ name: 'ftrace', state: 'running', bufferBytes: (kb ?? 0) * 1024 * ncpu, error: null });
      expect(st.usedBytes).toBeGreaterThanOrEqual(0);
      expect(st.eventsLost).toBeGreaterThanOrEqual(0);
      expect(st.detail).toContain('sched/sched_switch');
      expect(st.detail).toContain(dir);
      expect(rec.autoFrozen()).toBe(false);
    } finally {
      await rec.stop();
      forceRemove(cfg.instance);
    }
    expect(existsSync(dir)).toBe(false);
    await rec.stop();
    expect(rec.status().state).toBe('stopped');
    expect(existsSync(dir)).toBe(false);
  });

  it('replaces a stale instance left by a crashed daemon (with its own trigger and settings)', async () => {
    const cfg = ftraceConfig({ bufferSizeBytes: 1024 * 1024 });
    const dir = instDir(cfg.instance);
    const rec = new FtraceRecorder(cfg, { traceCmd: null });
    try {
      mkdirSync(dir);
      tracefsWrite(join(dir, 'buffer_size_kb'), '64');
      tracefsWrite(join(dir, 'events/sched/sched_wakeup/enable'), '1');
      tracefsWrite(join(dir, 'events/signal/signal_generate/trigger'), 'traceoff if sig == 6');
      tracefsWrite(join(dir, 'tracing_on'), '0');

      await rec.start();
      expect(parseBufferSizeKb(readFileSync(join(dir, 'buffer_size_kb'), 'utf8'))).toBeGreaterThanOrEqual(1024);
      expect(tracefsRead(join(dir, 'tracing_on'))).toBe('1');
      expect(tracefsRead(join(dir, 'events/sched/sched_wakeup/enable'))).toBe('0');
      const trig = tracefsRead(join(dir, 'events/signal/signal_generate/trigger'));
      expect(trig).toContain('sig == 11');
      expect(trig).not.toMatch(/^traceoff:unlimited if sig == 6$/m);
    } finally {
      await rec.stop();
      forceRemove(cfg.instance);
    }
    expect(existsSync(dir)).toBe(false);
  });

  it('an unknown event is a warning and the others are still enabled; all unknown is RecorderUnavailable', async () => {
    await withRecorder(
      { events: ['sched/sched_switch', 'nosuchsystem/nosuchevent', 'sched/no_such_event', 'nosuchsystem'], freezeOnFatalSignal: false },
      {},
      async (rec, name) => {
        await rec.start();
        const dir = instDir(name);
        expect(tracefsRead(join(dir, 'events/sched/sched_switch/enable'))).toBe('1');
        expect(rec.warnings()).toHaveLength(3);
        expect(rec.warnings().join('\n')).toMatch(/nosuchsystem\/nosuchevent.*unknown/);
        expect(rec.warnings().join('\n')).toContain('sched/no_such_event');
        expect(rec.status().detail).toContain('nosuchsystem/nosuchevent');
        const out = newDir();
        const res = await rec.snapshot(out, Date.now() + 10_000);
        expect(res.warnings.join('\n')).toContain('sched/no_such_event');
        const meta = JSON.parse(readFileSync(join(out, 'ftrace.json'), 'utf8')) as { events: string[] };
        expect(meta.events).toEqual(['sched/sched_switch']);
      },
    );

    const cfg = ftraceConfig({ events: ['nosuchsystem/nosuchevent'] });
    const rec = new FtraceRecorder(cfg, { traceCmd: null });
    try {
      await expect(rec.start()).rejects.toThrow(RecorderUnavailable);
      expect(rec.status().state).toBe('failed');
      expect(rec.status().error).toMatch(/None of the configured events/);
      expect(existsSync(instDir(cfg.instance))).toBe(false);
    } finally {
      await rec.stop();
      forceRemove(cfg.instance);
    }
  });

  const paths = [
    { path: 'text', traceCmd: null as string | null, nativeTraceDat: true },
    { path: 'native', traceCmd: TRACE_CMD, nativeTraceDat: true },
    { path: 'trace-cmd', traceCmd: TRACE_CMD, nativeTraceDat: false },
  ];
  describe.each(paths)('snapshot through $path', ({ path, traceCmd, nativeTraceDat }) => {
    it.skipIf(path !== 'text' && TRACE_CMD === null)('holds sched_switch, sys_enter and the SIGSEGV of a uniquely named process', async () => {
      await withRecorder({ freezeOnFatalSignal: false }, { traceCmd, nativeTraceDat }, async (rec) => {
        await rec.start();
        const w = makeWorkload();
        const worker = runWorkload(w);
        const victim = await segfaultVictim(w);

        const t0 = performance.now();
        await rec.freeze();
        const freezeMs = performance.now() - t0;
        expect(freezeMs).toBeLessThan(50);

        const out = newDir();
        const t1 = performance.now();
        const res = await rec.snapshot(out, Date.now() + 30_000);
        const snapMs = performance.now() - t1;
        expect(res.files).toEqual([path === 'text' ? 'trace.txt' : 'trace.dat', 'ftrace.json']);
        expect(readdirSync(out).sort()).toEqual([...res.files].sort()); // no trace-cmd debris
        expect(res.warnings).toEqual([]);
        expect(res.from).not.toBeNull();
        expect(res.to).not.toBeNull();
        expect(res.from ?? 0).toBeLessThanOrEqual(res.to ?? 0);
        expect(res.to ?? 0).toBeLessThanOrEqual(Date.now() + 1000);

        const found = findEvents(snapshotText(out, res), w.comm, victim);
        expect(found.schedSwitch, `sched_switch of ${w.comm}`).toBe(true);
        // The earlier workload may be overwritten on a busy machine; the victim's events come last.
        expect([...found.pids]).toContain(victim);
        expect(worker).toBeGreaterThan(0);
        expect(found.sysEnter, `sys_enter of ${w.comm}`).toBe(true);
        expect(found.segv, `signal_generate sig=11 for ${w.comm} pid ${victim}`).toBe(true);

        const meta = JSON.parse(readFileSync(join(out, 'ftrace.json'), 'utf8')) as {
          events: string[]; bufferSizeKbPerCpu: number; perCpu: { entries: number; overrun: number; droppedEvents: number }[];
          data: { method: string; bytes: number }; frozenBy: string;
        };
        expect(meta.events).toEqual(defaultConfig().recorders.ftrace.events);
        expect(meta.bufferSizeKbPerCpu).toBeGreaterThanOrEqual(4096);
        expect(meta.perCpu.length).toBeGreaterThan(0);
        expect(meta.perCpu.reduce((n, c) => n + c.entries, 0)).toBeGreaterThan(0);
        expect(meta.data.method).toBe(path);
        expect(meta.frozenBy).toBe('request');
        console.log(`ftrace ${path}: freeze ${freezeMs.toFixed(2)} ms, snapshot ${snapMs.toFixed(0)} ms, ${meta.data.bytes} bytes`);

        await rec.thaw();
        expect(tracefsRead(join(rec.instanceDir, 'tracing_on'))).toBe('1');
        expect(rec.status().state).toBe('running');
      });
    });
  });

  it.skipIf(TRACE_CMD === null)('native trace.dat: every event the kernel held, from every CPU, as trace-cmd reads it; no holes; the buffer emptied', async () => {
    await withRecorder({ freezeOnFatalSignal: false, bufferSizeBytes: 1024 * 1024 }, { traceCmd: TRACE_CMD }, async (rec) => {
      await rec.start();
      const w = makeWorkload();
      // Work on each CPU (taskset where there is more than one), so that several CPUs hold pages.
      const cpus = readdirSync(join(rec.instanceDir, 'per_cpu')).filter((n) => /^cpu\d+$/.test(n)).length;
      for (let c = 0; c < cpus; c++) {
        const r = spawnSync('taskset', ['-c', String(c), w.bin, 'if=/dev/zero', 'of=/dev/null', 'bs=1', 'count=3000'], { stdio: 'ignore' });
        expect(r.status).toBe(0);
      }
      await rec.freeze();
      const held = parseStatsSum(rec.instanceDir);
      expect(held.entries).toBeGreaterThan(6000);
      const out = newDir();
      const res = await rec.snapshot(out, Date.now() + 10_000);
      expect(res.warnings).toEqual([]);
      const meta = JSON.parse(readFileSync(join(out, 'ftrace.json'), 'utf8')) as { data: { method: string; bytes: number } };
      expect(meta.data.method).toBe('native');
      const st = statSync(join(out, 'trace.dat'));
      expect(meta.data.bytes).toBe(st.size);
      // No holes: every block of the file is allocated (512-byte blocks, rounded up to the filesystem's).
      expect(st.blocks * 512).toBeGreaterThanOrEqual(st.size);
      const text = snapshotText(out, res);
      const lines = text.split('\n').filter((l) => /^\s*\S.*\[\d{3}\]\s*\d+\.\d+: \w+:/.test(l));
      // trace-cmd shows seconds (no trace clock option): the same clock as ftrace.json's "now ts".
      expect(lines.length).toBe(held.entries);
      const perCpu = new Set(lines.filter((l) => l.includes(`${w.comm}-`)).map((l) => /\[(\d{3})\]/.exec(l)![1]));
      expect(perCpu.size).toBe(cpus);
      // trace_pipe_raw was read to the end: the kernel buffer is empty.
      expect(parseStatsSum(rec.instanceDir).entries).toBe(0);
      await rec.thaw();
    });
  });

  it.skipIf(TRACE_CMD === null)('native trace.dat without a working trace-cmd convert (trace-cmd 2.x has none): kept uncompressed, said so, still read whole', async () => {
    // Faked: a trace-cmd that refuses "convert", as versions before 3.0 do.
    const old = join(work, 'trace-cmd-2');
    writeFileSync(old, '#!/bin/sh\necho "unknown command $1" >&2\nexit 1\n', { mode: 0o755 });
    await withRecorder({ freezeOnFatalSignal: false, bufferSizeBytes: 1024 * 1024 }, { traceCmd: old }, async (rec) => {
      await rec.start();
      runWorkload(makeWorkload(), 3000);
      await rec.freeze();
      const held = parseStatsSum(rec.instanceDir).entries;
      const out = newDir();
      const res = await rec.snapshot(out, Date.now() + 10_000);
      expect(res.warnings).toEqual(['trace.dat stored uncompressed: trace-cmd convert failed (exit status 1: unknown command convert)']);
      expect(readdirSync(out).sort()).toEqual(['ftrace.json', 'trace.dat']); // no work directory left
      const lines = snapshotText(out, res).split('\n').filter((l) => /\[\d{3}\]\s*\d+\.\d+: \w+:/.test(l));
      expect(lines.length).toBe(held);
      await rec.thaw();
    });
  });

  it('the kernel freezes the buffer at the SIGSEGV, keeps the history, and the recorder thaws after the grace period', async () => {
    const graceMs = 1500;
    await withRecorder({ freezeOnFatalSignal: true }, { autoThawGraceMs: graceMs, pollIntervalMs: 50 }, async (rec, name) => {
      await rec.start();
      const on = join(instDir(name), 'tracing_on');
      const w = makeWorkload();
      runWorkload(w);
      const victim = await segfaultVictim(w);
      const killedAt = Date.now();
      // Nobody asked: the kernel's traceoff trigger did it.
      expect(tracefsRead(on)).toBe('0');
      await waitFor('the recorder to notice the freeze', () => rec.autoFrozen(), 5000, 10);
      expect(rec.status().state).toBe('frozen');
      expect(rec.status().detail).toMatch(/frozen by the kernel/);

      await waitFor('the automatic thaw', () => tracefsRead(on) === '1', 10_000, 20);
      expect(Date.now() - killedAt).toBeGreaterThanOrEqual(graceMs - 100);
      expect(rec.autoFrozen()).toBe(false);
      expect(rec.status().state).toBe('running');

      // The history from before the signal is still there (thawing does not clear the buffer).
      await rec.freeze();
      const out = newDir();
      const res = await rec.snapshot(out, Date.now() + 30_000);
      const found = findEvents(snapshotText(out, res), w.comm, victim);
      expect(found.sysEnter).toBe(true);
      expect(found.segv).toBe(true);
      expect(found.lastSysEnterTs ?? Infinity).toBeLessThan(found.segvTs ?? -Infinity);
    });
  });

  it('a snapshot claims a freeze made by the kernel: no automatic thaw afterwards', async () => {
    const graceMs = 400;
    await withRecorder({ freezeOnFatalSignal: true }, { autoThawGraceMs: graceMs, pollIntervalMs: 50 }, async (rec, name) => {
      await rec.start();
      const on = join(instDir(name), 'tracing_on');
      const w = makeWorkload();
      const victim = await segfaultVictim(w);
      expect(tracefsRead(on)).toBe('0');
      const out = newDir();
      const res = await rec.snapshot(out, Date.now() + 30_000);
      expect(findEvents(snapshotText(out, res), w.comm, victim).segv).toBe(true);
      await new Promise((r) => setTimeout(r, graceMs * 3));
      expect(tracefsRead(on)).toBe('0');
      expect(rec.status().state).toBe('frozen');
      expect(rec.autoFrozen()).toBe(false);
      await rec.thaw();
      expect(tracefsRead(on)).toBe('1');
    });
  });

  it('freeze really stops overwriting: more workload while frozen adds nothing', async () => {
    await withRecorder({ freezeOnFatalSignal: false }, { traceCmd: null }, async (rec) => {
      await rec.start();
      const a = makeWorkload('a');
      const b = makeWorkload('b');
      runWorkload(a, 5000);
      await rec.freeze();
      const before = rec.status();
      const d1 = newDir();
      const s1 = await rec.snapshot(d1, Date.now() + 30_000);

      runWorkload(b, 5000);
      const after = rec.status();
      const d2 = newDir();
      const s2 = await rec.snapshot(d2, Date.now() + 30_000);
      expect(after.usedBytes).toBe(before.usedBytes);
      const lastTs = (d: string) => (JSON.parse(readFileSync(join(d, 'ftrace.json'), 'utf8')) as { data: { lastTs: number | null } }).data.lastTs;
      expect(lastTs(d1)).not.toBeNull();
      expect(lastTs(d2)).toBe(lastTs(d1));
      expect(s2.files).toEqual(s1.files);
      const t1 = readFileSync(join(d1, 'trace.txt'));
      const t2 = readFileSync(join(d2, 'trace.txt'));
      expect(t2.equals(t1)).toBe(true);
      expect(t1.toString('utf8')).toContain(a.comm);
      expect(t2.toString('utf8')).not.toContain(b.comm);

      // The same check sees b once recording again: the comparison above is not blind.
      await rec.thaw();
      runWorkload(b, 5000);
      await rec.freeze();
      const d3 = newDir();
      const s3 = await rec.snapshot(d3, Date.now() + 30_000);
      expect(readFileSync(join(d3, 'trace.txt'), 'utf8')).toContain(b.comm);
      expect(lastTs(d3) ?? 0).toBeGreaterThan(lastTs(d1) ?? Infinity);
      expect(s3.to ?? 0).toBeGreaterThan(s1.to ?? Infinity);
    });
  });

  it('a deadline already past: returns at once with a warning and the metadata', async () => {
    await withRecorder({}, { traceCmd: TRACE_CMD }, async (rec) => {
      await rec.start();
      runWorkload(makeWorkload(), 5000);
      const out = newDir();
      const t0 = performance.now();
      const res = await rec.snapshot(out, Date.now() - 1);
      expect(performance.now() - t0).toBeLessThan(500);
      expect(res.files).toEqual(['ftrace.json']);
      expect(res.warnings.join('\n')).toMatch(/deadline/);
      const meta = JSON.parse(readFileSync(join(out, 'ftrace.json'), 'utf8')) as { perCpu: unknown[]; data: { file: string | null } };
      expect(meta.perCpu.length).toBeGreaterThan(0);
      expect(meta.data.file).toBeNull();
      expect(rec.status().state).toBe('frozen');
    });
  });

  it.skipIf(TRACE_CMD === null)('a deadline that trace-cmd cannot meet: it is killed, no debris, and the instance still goes away', async () => {
    await withRecorder({}, { traceCmd: TRACE_CMD }, async (rec) => {
      await rec.start();
      runWorkload(makeWorkload(), 200_000); // fill the buffer so the extract takes a while
      const out = newDir();
      const t0 = Date.now();
      const res = await rec.snapshot(out, t0 + 60);
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(readdirSync(out).filter((n) => n.startsWith('.trace-cmd-'))).toEqual([]);
      expect(res.files).toContain('ftrace.json');
      if (!res.files.includes('trace.dat')) expect(res.warnings.join('\n')).toMatch(/deadline|killed/);
    });
  });

  it('stop during a snapshot abandons the copy and still removes the instance (no EBUSY)', async () => {
    await withRecorder({}, { traceCmd: null }, async (rec, name) => {
      await rec.start();
      runWorkload(makeWorkload(), 200_000);
      const out = newDir();
      const snap = rec.snapshot(out, Date.now() + 30_000);
      await new Promise((r) => setTimeout(r, 5));
      await rec.stop();
      const res = await snap;
      expect(existsSync(instDir(name))).toBe(false);
      expect(rec.status().state).toBe('stopped');
      expect(res.files).toContain('ftrace.json');
    });
  });

  describe('the overhead guard (maxEventRate)', () => {
    const SYSCALLS = ['sched/sched_switch', 'raw_syscalls/sys_enter', 'raw_syscalls/sys_exit'];
    const enableOf = (name: string, ev: string) => tracefsRead(join(instDir(name), 'events', ev, 'enable'));
    /** A dd of one byte at a time: two system calls a byte, some hundred thousand a second on one CPU. */
    const busy = () => {
      const w = makeWorkload('b');
      return spawn(w.bin, ['if=/dev/zero', 'of=/dev/null', 'bs=1', 'count=1000000000'], { stdio: 'ignore' });
    };

    it('pauses the system-call events while a CPU records too many, says so in status and snapshots, and resumes when the rate falls', async () => {
      await withRecorder({ events: SYSCALLS, maxEventRate: 20_000, freezeOnFatalSignal: false }, { rateCheckMs: 100, rateProbeMs: 600 }, async (rec, name) => {
        await rec.start();
        // A quiet machine: nothing paused.
        await sleep(600);
        expect(enableOf(name, 'raw_syscalls/sys_enter')).toBe('1');
        expect(rec.syscallPauses()).toEqual([]);
        const child = busy();
        try {
          await waitFor('the system-call events paused', () => enableOf(name, 'raw_syscalls/sys_enter') === '0', 10_000);
          expect(enableOf(name, 'raw_syscalls/sys_exit')).toBe('0');
          expect(enableOf(name, 'sched/sched_switch')).toBe('1');
          const [pause] = rec.syscallPauses();
          expect(pause!.to).toBeNull();
          expect(pause!.eventsPerSecond).toBeGreaterThan(20_000);
          expect(rec.status().detail).toMatch(/system-call events paused since .*maxEventRate \(20000\)/);
          // Still busy: each probe turns them on for one check and off again; one pause all along.
          await sleep(1500);
          expect(rec.syscallPauses()).toHaveLength(1);
          expect(rec.syscallPauses()[0]!.to).toBeNull();
          const out = newDir();
          const res = await rec.snapshot(out, Date.now() + 10_000);
          expect(res.warnings.join('\n')).toMatch(/system-call events paused since .*no system calls since then/);
          const meta = JSON.parse(readFileSync(join(out, 'ftrace.json'), 'utf8')) as { maxEventRate: number; syscallPauses: { to: number | null }[] };
          expect(meta.maxEventRate).toBe(20_000);
          expect(meta.syscallPauses).toHaveLength(1);
          expect(meta.syscallPauses[0]!.to).toBeNull();
          await rec.thaw(); // a snapshot freezes; frozen, nothing is counted
        } finally {
          child.kill('SIGKILL');
        }
        // Quiet again: the next probe finds the rate low and leaves them on.
        await waitFor('the system-call events resumed', () => rec.syscallPauses()[0]!.to !== null, 20_000);
        expect(enableOf(name, 'raw_syscalls/sys_enter')).toBe('1');
        expect(enableOf(name, 'raw_syscalls/sys_exit')).toBe('1');
        expect(rec.status().detail).not.toMatch(/paused/);
        const out = newDir();
        const res = await rec.snapshot(out, Date.now() + 10_000);
        expect(res.warnings.join('\n')).toMatch(/paused 1 time\(s\) within this trace/);
      });
    });

    it('maxEventRate null: the same load pauses nothing', async () => {
      await withRecorder({ events: SYSCALLS, maxEventRate: null, freezeOnFatalSignal: false }, { rateCheckMs: 100, rateProbeMs: 600 }, async (rec, name) => {
        await rec.start();
        const child = busy();
        try {
          await sleep(1000);
          expect(enableOf(name, 'raw_syscalls/sys_enter')).toBe('1');
          expect(rec.syscallPauses()).toEqual([]);
          // The load was there: the buffer filled with its system calls.
          expect(rec.status().usedBytes).toBeGreaterThan(0);
        } finally {
          child.kill('SIGKILL');
        }
      });
    });
  });

  it('snapshot of a stopped recorder is a warning, not a hang or a throw', async () => {
    const rec = new FtraceRecorder(ftraceConfig(), { traceCmd: null });
    const out = newDir();
    const res = await rec.snapshot(out, Date.now() + 1000);
    expect(res.files).toEqual([]);
    expect(res.warnings.join('\n')).toMatch(/stopped/);
    await rec.freeze();
    await rec.thaw();
    await rec.stop();
  });
});
