// The LTTng recorder against the real lttng-tools: a real root session daemon, a real
// instrumented C program (test/fixtures/lttng) emitting user-space events, snapshots read
// back with babeltrace2. Every test uses its own session name and, in a finally, destroys
// its session and stops any session daemon that the test (through the recorder) started.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { format } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../lib/config.js';
import type { Logger } from '../../lib/log.js';
import { findProgram } from '../../lib/programs.js';
import {
  KERNEL_UNAVAILABLE_WARNING, LttngRecorder, MIN_SNAPSHOT_INTERVAL_MS, bufferShape, channelStats, countCpuList, sessionNames,
} from '../../recorder/lttng.js';
import { RecorderUnavailable } from '../../recorder/recorder.js';
import { FIXTURES, IS_ROOT, readJson } from '../helpers.js';

const LTTNG = findProgram('lttng');
const BABELTRACE = findProgram('babeltrace2');
const GCC = findProgram('gcc') ?? findProgram('cc');
const HAS_UST_HEADERS = existsSync('/usr/include/lttng/tracepoint.h') || existsSync('/usr/include/x86_64-linux-gnu/lttng/tracepoint.h') ||
  existsSync('/usr/include/aarch64-linux-gnu/lttng/tracepoint.h');

const skipReason = !IS_ROOT ? 'not root (the recorder drives the root lttng session daemon)'
  : LTTNG === null ? 'lttng-tools is not installed (apt-get install lttng-tools)'
    : BABELTRACE === null ? 'babeltrace2 is not installed (apt-get install babeltrace2)'
      : GCC === null ? 'gcc is not installed'
        : !HAS_UST_HEADERS ? 'liblttng-ust-dev is not installed (apt-get install liblttng-ust-dev)'
          : null;
const suite = skipReason === null ? describe : describe.skip;

// CI installs the packages (a green run that skipped everything would hide a missing
// install step), so there a missing package is a failure, not a skip.
if (skipReason !== null && IS_ROOT && process.env.CI) {
  describe('lttng recorder prerequisites', () => {
    it('are installed in CI', () => {
      expect.fail(`${skipReason}; .ci/run must install lttng-tools liblttng-ust-dev babeltrace2 gcc`);
    });
  });
}

interface LogEntry { level: string; ctx: object; text: string }
function captureLog(): { log: Logger; entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const at = (level: string) => (ctx: object, msg: string, ...args: unknown[]) => { entries.push({ level, ctx, text: format(msg, ...args) }); };
  return { log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, entries };
}

function lttng(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(LTTNG ?? 'lttng', ['--no-sessiond', ...args], { encoding: 'utf8', timeout: 10_000 });
  return { code: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}
/** Is a root session daemon answering? */
function sessiondRunning(): boolean {
  return lttng(['list']).code === 0;
}
function sessionExists(name: string): boolean {
  const r = lttng(['--mi=xml', 'list']);
  return r.code === 0 && r.out.includes(`<session><name>${name}</name>`);
}

// The pure parts run everywhere, from tables.
describe('lttng recorder helpers', () => {
  it.each([
    ['0-1\n', 2], ['0', 1], ['0-3,8,10-11', 7], ['', 0],
  ])('countCpuList(%j) = %d', (text, n) => {
    expect(countCpuList(text)).toBe(n);
  });
  it.each([
    [512 * 1024, 8, 512 * 1024, 8], [500_000, 5, 524288, 8], [1000, 3, 4096, 8], [65536, 16, 65536, 16], [65536, 17, 65536, 32],
  ])('bufferShape(%d, %d) = %d × %d', (size, count, wantSize, wantCount) => {
    expect(bufferShape(size, count)).toEqual({ subbufSizeBytes: wantSize, numSubbuf: wantCount });
  });
  it('reads session names and channel statistics from lttng --mi=xml', () => {
    const xml = '<command><name>list</name><output><sessions><session><name>fbx&amp;1</name><path></path><domains><domain><type>UST</type>' +
      '<channels><channel><name>flightbox_ust</name><enabled>true</enabled><attributes><overwrite_mode>OVERWRITE</overwrite_mode>' +
      '<subbuffer_size>524288</subbuffer_size><subbuffer_count>8</subbuffer_count><discarded_events>3</discarded_events>' +
      '<lost_packets>7</lost_packets></attributes><events/></channel></channels></domain></domains></session>' +
      '<session><name>other</name></session></sessions></output></command>';
    expect(sessionNames(xml)).toEqual(['fbx&1', 'other']);
    expect(channelStats(xml)).toEqual([{ name: 'flightbox_ust', subbufSizeBytes: 524288, numSubbuf: 8, discardedEvents: 3, lostPackets: 7 }]);
  });
});

suite(`lttng recorder${skipReason === null ? '' : ` (skipped: ${skipReason})`}`, () => {
  let tmp: string;
  let app: string;
  let n = 0;

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'fbx-lttng-'));
    // The tracepoint provider is compiled into the app: only gcc and liblttng-ust-dev needed.
    app = join(tmp, 'tp-app');
    const src = join(FIXTURES, 'lttng');
    const r = spawnSync(GCC ?? 'gcc', ['-O0', '-g', `-I${src}`, '-o', app, join(src, 'tp-app.c'), '-llttng-ust', '-ldl'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  });
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  function lttngCfg(over: Partial<Config['recorders']['lttng']> = {}): Config['recorders']['lttng'] {
    return { ...defaultConfig().recorders.lttng, enabled: true, kernel: [], session: `fbxt-${process.pid}-${++n}`, ...over };
  }
  function newDir(name: string): string {
    const d = join(tmp, `${name}-${n}`);
    mkdirSync(d, { mode: 0o700 });
    return d;
  }
  /** Emit `count` flightbox_test:tick events with this marker, and wait for the app to exit. */
  function emit(marker: string, count = 30): void {
    const r = spawnSync(app, [marker, String(count), '1'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(0);
  }
  function readTrace(dir: string): string {
    const r = spawnSync(BABELTRACE ?? 'babeltrace2', [join(dir, 'ctf')], { encoding: 'utf8', timeout: 30_000, maxBuffer: 64 * 1024 * 1024 });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout;
  }
  function ticks(trace: string, marker: string): string[] {
    return trace.split('\n').filter((l) => l.includes('flightbox_test:tick') && l.includes(`marker = "${marker}"`));
  }

  /**
   * Run a test with a recorder; whatever happens, stop it, destroy its session if still
   * listed, and stop a session daemon that was not running before.
   */
  async function withRecorder(cfg: Config['recorders']['lttng'], fn: (rec: LttngRecorder, workDir: string) => Promise<void>, opts: { log?: Logger; now?: () => number } = {}): Promise<void> {
    const before = sessiondRunning();
    const workDir = join(tmp, `work-${cfg.session}`);
    const rec = new LttngRecorder(cfg, { workDir, ...opts });
    try {
      await fn(rec, workDir);
    } finally {
      await rec.stop();
      if (sessionExists(cfg.session)) lttng(['destroy', cfg.session]);
      if (!before && sessiondRunning()) {
        const pid = Number(readFileSync('/var/run/lttng/lttng-sessiond.pid', 'utf8'));
        process.kill(pid, 'SIGTERM');
        throw new Error(`the recorder left the session daemon it started running (pid ${pid}); killed it`);
      }
    }
  }

  it('start creates a snapshot-mode session; stop destroys it and is safe twice', async () => {
    // Sizes LTTng would round (or refuse): the recorder passes powers of two, ≥ 8 sub-buffers.
    const cfg = lttngCfg({ subbufSizeBytes: 300_000, numSubbuf: 3 });
    const before = sessiondRunning();
    const { log, entries } = captureLog();
    await withRecorder(cfg, async (rec, workDir) => {
      const t0 = performance.now();
      await rec.start();
      const startMs = performance.now() - t0;
      console.info(`lttng recorder start: ${startMs.toFixed(0)} ms (session daemon ${before ? 'already running' : 'started by the recorder'})`);
      const listed = lttng(['list', cfg.session]);
      expect(listed.code, listed.out).toBe(0);
      expect(listed.out).toContain(`Recording session ${cfg.session}: [active snapshot]`);
      expect(listed.out).toContain('Buffering scheme: per-user');
      expect(listed.out).toContain('Event-loss mode:  overwrite');
      expect(listed.out).toMatch(/Sub-buffer size: +524288 bytes/);
      expect(listed.out).toMatch(/Sub-buffer count: +8\n/);
      expect(entries.filter((e) => e.level === 'warn').map((e) => e.text)).toEqual([
        'lttng buffers: 3 sub-buffers of 300000 bytes configured, using 8 of 524288 (powers of two, at least 8 of at least 4096 bytes)',
      ]);
      const st = rec.status();
      expect(st.state).toBe('running');
      expect(st.bufferBytes).toBe(524288 * 8 * countCpuList(readFileSync('/sys/devices/system/cpu/possible', 'utf8')));
      expect(st.eventsLost).toBe(0);
      expect(st.detail).toContain(cfg.session);
      expect(st.detail).toContain('per-UID');

      await rec.stop();
      expect(sessionExists(cfg.session)).toBe(false);
      expect(rec.status().state).toBe('stopped');
      expect(sessiondRunning()).toBe(before); // a daemon the recorder started is gone
      expect(existsSync(join(workDir, 'home'))).toBe(false);
      expect(existsSync(join(workDir, 'out'))).toBe(false);
      await rec.stop();
      expect(rec.status().state).toBe('stopped');
    }, { log });
  });

  it('records the events of a real instrumented process; babeltrace2 reads the snapshot', async () => {
    const cfg = lttngCfg();
    await withRecorder(cfg, async (rec) => {
      await rec.start();
      const marker = `crash-${process.pid}`;
      emit(marker, 40); // the app exits: per-UID buffers keep its events
      const dir = newDir('snap');
      const t0 = performance.now();
      const res = await rec.snapshot(dir, Date.now() + 10_000);
      console.info(`lttng recorder snapshot (freeze + record + move): ${(performance.now() - t0).toFixed(0)} ms`);
      expect(rec.status().state).toBe('frozen');
      expect(res.warnings).toEqual([]);
      expect(res.files).toContain('lttng.json');
      expect(res.files.some((f) => /^ctf\/ust\/uid\/\d+\/64-bit\/metadata$/.test(f))).toBe(true);
      for (const f of res.files) expect(existsSync(join(dir, f)), f).toBe(true);
      expect(res.to).not.toBeNull();

      const trace = readTrace(dir);
      const mine = ticks(trace, marker);
      expect(mine).toHaveLength(40);
      expect(mine[0]).toContain('seq = 0');
      expect(mine[39]).toContain('seq = 39');
      expect(mine[0]).toContain('procname = "tp-app"');
      expect(mine[0]).toMatch(/vpid = \d+, vtid = \d+/);

      const meta = readJson<{ session: string; kernel: { available: boolean }; channels: { name: string; domain: string; buffers: string; events: string[] }[]; warnings: string[] }>(join(dir, 'lttng.json'));
      expect(meta.session).toBe(cfg.session);
      expect(meta.kernel.available).toBe(false);
      expect(meta.channels).toMatchObject([{ domain: 'ust', buffers: 'per-uid', events: ['*'] }]);
      expect(meta.warnings).toEqual([]);

      await rec.thaw();
      expect(rec.status().state).toBe('running');
    });
  });

  it('freeze holds the history of that moment; repeat snapshots are rate-limited', async () => {
    const cfg = lttngCfg({ userspace: ['flightbox_test:*'] });
    let clock = Date.now();
    await withRecorder(cfg, async (rec) => {
      await rec.start();
      emit('before');
      const f0 = performance.now();
      await rec.freeze();
      console.info(`lttng recorder freeze (snapshot record): ${(performance.now() - f0).toFixed(1)} ms`);
      expect(rec.status().state).toBe('frozen');
      await rec.freeze(); // idempotent
      emit('while-frozen');

      const first = newDir('first');
      const r1 = await rec.snapshot(first, clock + 10_000);
      expect(r1.warnings).toEqual([]);
      const t1 = readTrace(first);
      expect(ticks(t1, 'before')).toHaveLength(30);
      expect(ticks(t1, 'while-frozen')).toHaveLength(0);

      // Still frozen: the same history, copied, silently.
      clock += 5;
      const second = newDir('second');
      const r2 = await rec.snapshot(second, clock + 10_000);
      expect(r2.warnings).toEqual([]);
      expect(r2.files).toEqual(r1.files);
      expect(readJson<{ reusedFrom: string | null }>(join(second, 'lttng.json')).reusedFrom).not.toBeNull();
      expect(ticks(readTrace(second), 'before')).toHaveLength(30);

      // Thawed and frozen again too soon for another record: a copy, with a warning.
      await rec.thaw();
      expect(rec.status().state).toBe('running');
      emit('after-thaw');
      clock += 10;
      await rec.freeze();
      const third = newDir('third');
      const r3 = await rec.snapshot(third, clock + 10_000);
      expect(r3.warnings.join('\n')).toMatch(/reused the lttng snapshot taken 15 ms before/);
      expect(ticks(readTrace(third), 'after-thaw')).toHaveLength(0);

      // After the interval: a fresh record, and the ring kept recording all along
      // (while-frozen is there now: freezing never stopped the tracer).
      await rec.thaw();
      clock += MIN_SNAPSHOT_INTERVAL_MS;
      const fourth = newDir('fourth');
      const r4 = await rec.snapshot(fourth, clock + 10_000); // freezes first
      expect(r4.warnings).toEqual([]);
      const t4 = readTrace(fourth);
      for (const m of ['before', 'while-frozen', 'after-thaw']) expect(ticks(t4, m), m).toHaveLength(30);

      // Many quick freeze/thaw cycles do not push the history out of the 8 sub-buffers.
      for (let i = 0; i < 12; i++) {
        clock += 10;
        await rec.freeze();
        await rec.thaw();
      }
      clock += MIN_SNAPSHOT_INTERVAL_MS;
      const fifth = newDir('fifth');
      await rec.snapshot(fifth, clock + 10_000);
      expect(ticks(readTrace(fifth), 'before')).toHaveLength(30);
    }, { now: () => clock });
  });

  it('freeze is fast while an instrumented process cannot answer (as one being dumped cannot)', async () => {
    // lttng stop / disable-channel wait LTTNG_APP_SOCKET_TIMEOUT (5 s) for such a process;
    // snapshot record does not talk to applications. SIGSTOP stands in for the core dump.
    const cfg = lttngCfg({ userspace: ['flightbox_test:*'] });
    let child: ReturnType<typeof spawn> | undefined;
    try {
      await withRecorder(cfg, async (rec) => {
        await rec.start();
        // lttng-ust registers in the app's constructor, before main; give it time to emit.
        child = spawn(app, ['hung', '1000000', '5'], { stdio: 'ignore' });
        await new Promise((r) => setTimeout(r, 300));
        process.kill(child.pid!, 'SIGSTOP');
        const t0 = performance.now();
        await rec.freeze();
        const ms = performance.now() - t0;
        console.info(`lttng recorder freeze with a stopped instrumented process: ${ms.toFixed(0)} ms`);
        expect(ms).toBeLessThan(2_000);
        const dir = newDir('hung');
        await rec.snapshot(dir, Date.now() + 10_000);
        expect(ticks(readTrace(dir), 'hung').length).toBeGreaterThan(0);
        child.kill('SIGKILL'); // before stop(): destroy would wait for it too
      });
    } finally {
      child?.kill('SIGKILL');
    }
  });

  it('with kernel events configured and no lttng-modules: one warning, user space still recorded', async () => {
    // The kernel tracer needs lttng-modules; these test machines have no loadable modules.
    const kernelTracer = existsSync('/sys/module/lttng_tracer') ||
      (existsSync('/proc/modules') && spawnSync('modinfo', ['lttng-tracer'], { encoding: 'utf8' }).status === 0);
    const cfg = lttngCfg({ kernel: ['sched_switch', 'syscalls'] });
    const { log, entries } = captureLog();
    await withRecorder(cfg, async (rec) => {
      await rec.start();
      const kernelWarnings = () => entries.filter((e) => e.level === 'warn' && e.text.includes('kernel tracing unavailable'));
      emit('with-kernel');
      const dir = newDir('kernel');
      const res = await rec.snapshot(dir, Date.now() + 10_000);
      await rec.thaw();
      const meta = readJson<{ kernel: { requested: string[]; available: boolean; reason: string | null }; channels: { domain: string }[] }>(join(dir, 'lttng.json'));
      expect(meta.kernel.requested).toEqual(['sched_switch', 'syscalls']);
      expect(ticks(readTrace(dir), 'with-kernel')).toHaveLength(30);
      if (kernelTracer) {
        expect(meta.kernel.available).toBe(true);
        expect(kernelWarnings()).toHaveLength(0);
        expect(meta.channels.map((c) => c.domain).sort()).toEqual(['kernel', 'ust']);
        expect(res.files.some((f) => f.startsWith('ctf/kernel/'))).toBe(true);
        return;
      }
      expect(meta.kernel.available).toBe(false);
      expect(meta.kernel.reason).toMatch(/Kernel tracer not available|exit|killed by/);
      expect(kernelWarnings()).toHaveLength(1);
      expect(kernelWarnings()[0]?.text).toBe(KERNEL_UNAVAILABLE_WARNING);
      expect(rec.status().detail).toContain(KERNEL_UNAVAILABLE_WARNING);
      expect(res.warnings).toEqual([KERNEL_UNAVAILABLE_WARNING]);
      expect(meta.channels.map((c) => c.domain)).toEqual(['ust']);
      // Once: a second snapshot repeats it in its own warnings, but not in the log.
      const again = await rec.snapshot(newDir('kernel2'), Date.now() + 10_000);
      expect(again.warnings).toContain(KERNEL_UNAVAILABLE_WARNING);
      expect(kernelWarnings()).toHaveLength(1);
    }, { log });
  });

  it('after a crash of ours, the next start destroys the stale session and adopts our session daemon', async () => {
    const cfg = lttngCfg();
    const before = sessiondRunning();
    const workDir = join(tmp, `work-${cfg.session}`);
    const crashed = new LttngRecorder(cfg, { workDir });
    await withRecorder(cfg, async (rec) => {
      try {
        await crashed.start(); // and never stopped: the daemon "crashed"
        expect(sessionExists(cfg.session)).toBe(true);
        const { log, entries } = captureLog();
        const next = new LttngRecorder(cfg, { workDir, log });
        await next.start();
        expect(entries.some((e) => e.level === 'warn' && e.text.includes('already exists'))).toBe(true);
        expect(lttng(['list', cfg.session]).out).toContain('[active snapshot]');
        await next.stop();
        expect(sessionExists(cfg.session)).toBe(false);
        expect(sessiondRunning()).toBe(before);
      } finally {
        if (sessionExists(cfg.session)) await crashed.stop();
      }
    });
  });

  it('a snapshot whose deadline has passed gives up at once with a warning', async () => {
    const cfg = lttngCfg();
    await withRecorder(cfg, async (rec) => {
      await rec.start();
      const dir = newDir('late');
      const res = await rec.snapshot(dir, Date.now() - 1);
      expect(res.files).toEqual(['lttng.json']);
      expect(res.warnings.join('\n')).toContain('deadline had passed');
      expect(existsSync(join(dir, 'ctf'))).toBe(false);
    });
  });

  it('lttng missing: start fails with RecorderUnavailable naming the package', async () => {
    // We cannot uninstall lttng-tools under a running test suite: the program path is
    // pointed at a file that does not exist instead.
    const cfg = lttngCfg();
    await withRecorder(cfg, async () => {
      const rec = new LttngRecorder(cfg, { workDir: join(tmp, `work-missing-${n}`), programs: { lttng: '/nonexistent/bin/lttng' } });
      const err = await rec.start().then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(RecorderUnavailable);
      expect((err as RecorderUnavailable).recorder).toBe('lttng');
      expect((err as Error).message).toContain('lttng-tools is not installed (apt-get install lttng-tools)');
      expect((err as Error).message).toContain('/nonexistent/bin/lttng');
      expect(rec.status().state).toBe('failed');
      await rec.stop();
      await rec.stop();
      expect(rec.status().state).toBe('stopped');
    });
  });
});
