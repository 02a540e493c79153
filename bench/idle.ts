// Section 6 of the benchmark: what flightbox costs while nothing happens. The daemon with its
// default recorders (metrics; ftrace, as root) on a store of the bench's own, core_pattern
// left alone (--no-install): its CPU time and resident memory over idle windows; then a
// syscall-heavy workload (bench/fixtures/syscalls.c) with the ftrace recorder off, on (its
// defaults: the overhead guard pauses the system-call events within a quarter second), on
// without the guard, and on without system-call events, alternating, each time in a freshly
// started daemon.
// tracefs is machine-wide: run one bench at a time. The recorder's instance has a name of the
// bench's own and the daemon removes it when it stops.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_FTRACE_MAX_EVENT_RATE } from '../lib/config.js';
import { compileFixture, makeBenchStore, median, ratio, sleep, startBenchDaemon, type Row, type Section } from './lib.js';

const SECTION = '6 idle cost';
const MIB = 1024 * 1024;
const FTRACE_INSTANCE = 'flightbox-bench';
const TRACEFS_ROOTS = ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'];
/** Start-up work (first samples, buffers being set up) is not idle: the windows start after this. */
const WARMUP_MS = 5000;
const RSS_SAMPLE_MS = 1000;
/** The ftrace recorder's default events but the two that fire on every system call. */
const EVENTS_WITHOUT_SYSCALLS = [
  'sched/sched_switch', 'sched/sched_process_fork', 'sched/sched_process_exec', 'sched/sched_process_exit', 'signal/signal_generate',
];

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** The daemon's process tree: CPU ticks (its own, its reaped children's, its live children's) and resident bytes. */
function treeUsage(pid: number): { ticks: number; rss: number } {
  let ticks = 0;
  let rss = 0;
  const todo = [pid];
  while (todo.length > 0) {
    const p = todo.pop()!;
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields after the comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21)
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
      rss += Number(f[21]) * 4096;
      const kids = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim();
      if (kids) todo.push(...kids.split(' ').map(Number));
    } catch {
      // exited meanwhile
    }
  }
  return { ticks, rss };
}

function tracefsInstance(): string | null {
  for (const root of TRACEFS_ROOTS) {
    const dir = join(root, 'instances', FTRACE_INSTANCE);
    if (existsSync(dir)) return dir;
  }
  return null;
}

function workload(bin: string, seconds: number): number | null {
  const r = spawnSync(bin, [String(seconds)], { encoding: 'utf8', timeout: (seconds + 30) * 1000 });
  try {
    return (JSON.parse(r.stdout) as { callsPerSec: number }).callsPerSec;
  } catch {
    return null;
  }
}

export const run: Section = async (opts) => {
  const windowS = opts.quick ? 10 : 60;
  const workloadS = opts.quick ? 2 : 5;
  const dir = join(opts.workDir, 'idle');
  const ftraceOn = makeBenchStore(join(dir, 'on'), { extra: `recorders:\n  ftrace:\n    instance: ${FTRACE_INSTANCE}\n` });
  const ftraceOff = makeBenchStore(join(dir, 'off'), { extra: 'recorders:\n  ftrace:\n    enabled: false\n' });
  // The same recorder without raw_syscalls, to tell the cost of recording every system call
  // from the cost of the rest.
  const ftraceNoSyscalls = makeBenchStore(join(dir, 'nosys'), {
    extra: `recorders:\n  ftrace:\n    instance: ${FTRACE_INSTANCE}\n    events: [${EVENTS_WITHOUT_SYSCALLS.join(', ')}]\n`,
  });
  // The defaults but no overhead guard: what recording every system call costs.
  const ftraceUnguarded = makeBenchStore(join(dir, 'unguarded'), {
    extra: `recorders:\n  ftrace:\n    instance: ${FTRACE_INSTANCE}\n    maxEventRate: null\n`,
  });
  const syscalls = compileFixture('syscalls', opts.workDir);
  const rows: Row[] = [];
  try {
    // 1. Idle: CPU and RSS of the daemon with its defaults, window after window.
    const cpu: number[] = [];
    const rssMax: number[] = [];
    let tracing = false;
    const d = await startBenchDaemon(ftraceOn);
    try {
      await sleep(WARMUP_MS);
      const inst = tracefsInstance();
      tracing = inst !== null && readFileSync(join(inst, 'tracing_on'), 'utf8').trim() === '1';
      for (let i = 0; i < opts.runs; i++) {
        const t0 = process.hrtime.bigint();
        const u0 = treeUsage(d.pid);
        let peak = u0.rss;
        const end = Date.now() + windowS * 1000;
        while (Date.now() < end) {
          await sleep(Math.min(RSS_SAMPLE_MS, Math.max(0, end - Date.now())));
          peak = Math.max(peak, treeUsage(d.pid).rss);
        }
        const u1 = treeUsage(d.pid);
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        cpu.push(((u1.ticks - u0.ticks) / CLK_TCK / seconds) * 100);
        rssMax.push(peak);
        opts.log(`  idle window ${i + 1}/${opts.runs}: ${cpu.at(-1)!.toFixed(2)} % of one core, RSS at most ${(peak / MIB).toFixed(1)} MiB`);
      }
    } finally {
      await d.stop();
    }
    const recorders = `recorders: metrics, ftrace (${tracing ? 'recording' : 'NOT recording: no tracefs instance seen'})`;
    const cpuMed = median(cpu);
    const rssMed = median(rssMax);
    rows.push({
      section: SECTION, case: `daemon CPU, idle ${windowS} s`, subject: 'flightbox daemon', value: cpuMed, unit: '%', runs: cpu.length,
      target: '≤ 1 % of one core', met: cpuMed === null ? null : cpuMed <= 1,
      note: `${recorders}; user+system time of the daemon and its children over each window, after ${WARMUP_MS / 1000} s of start-up; clock ticks of 1/${CLK_TCK} s`,
    });
    rows.push({
      section: SECTION, case: `daemon RSS, idle ${windowS} s`, subject: 'flightbox daemon', value: rssMed === null ? null : rssMed / MIB, unit: 'MiB', runs: rssMax.length,
      target: '≤ 100 MB', met: rssMed === null ? null : rssMed <= 100e6,
      note: `${recorders}; the largest RSS of the daemon's process tree in each window (sampled every ${RSS_SAMPLE_MS / 1000} s); the ftrace ring buffers are kernel memory, not in it`,
    });

    // 2. A syscall-heavy workload, the ftrace recorder off (metrics only) and on, alternating.
    const off: number[] = [];
    const on: number[] = [];
    const unguarded: number[] = [];
    const noSys: number[] = [];
    let onTracing = true;
    let paused = 0;
    for (let i = 0; i < opts.runs; i++) {
      for (const [store, into] of [[ftraceOff, off], [ftraceOn, on], [ftraceUnguarded, unguarded], [ftraceNoSyscalls, noSys]] as const) {
        const daemon = await startBenchDaemon(store);
        try {
          await sleep(1000);
          if (store !== ftraceOff && tracefsInstance() === null) onTracing = false;
          const v = workload(syscalls, workloadS);
          if (v !== null) into.push(v);
          // The guard's doing: the system-call events off when the workload ends.
          const inst = tracefsInstance();
          if (store === ftraceOn && inst && readFileSync(join(inst, 'events/raw_syscalls/sys_enter/enable'), 'utf8').trim() === '0') paused++;
        } finally {
          await daemon.stop();
        }
      }
      opts.log(`  syscall workload ${i + 1}/${opts.runs}: off ${off.at(-1)?.toFixed(0) ?? 'n/a'}/s, on ${on.at(-1)?.toFixed(0) ?? 'n/a'}/s, on without the guard ${unguarded.at(-1)?.toFixed(0) ?? 'n/a'}/s, on without raw_syscalls ${noSys.at(-1)?.toFixed(0) ?? 'n/a'}/s`);
    }
    const offMed = median(off);
    const onMed = median(on);
    const workNote = `bench/fixtures/syscalls.c, one process, ${workloadS} s (getppid, read /dev/zero, write /dev/null, fstat); the daemon running with metrics only (off) or metrics and ftrace with its defaults (on: default events incl. raw_syscalls, maxEventRate ${DEFAULT_FTRACE_MAX_EVENT_RATE}), started afresh each run, alternating`;
    rows.push({ section: SECTION, case: 'syscall workload, ftrace recorder off', subject: 'flightbox daemon', value: offMed, unit: 'ops/s', runs: off.length, note: workNote });
    rows.push({
      section: SECTION, case: 'syscall workload, ftrace recorder on', subject: 'flightbox daemon', value: onMed, unit: 'ops/s', runs: on.length,
      ratio: ratio(onMed, offMed),
      note: `ratio to off; the overhead guard had paused the system-call events at the end of ${paused} of ${on.length} runs${onTracing ? '' : '; WARNING: the ftrace instance was not there in some runs'}`,
    });
    // Overhead from the run-by-run pairs, so that a drift of the machine cancels out.
    const overheadOf = (xs: readonly number[]): number[] =>
      xs.map((v, i) => (off[i] !== undefined ? (1 - v / off[i]!) * 100 : null)).filter((x): x is number => x !== null);
    const pairs = overheadOf(on);
    const overhead = median(pairs);
    rows.push({
      section: SECTION, case: 'ftrace recorder overhead on the syscall workload', subject: 'flightbox daemon', value: overhead, unit: '%', runs: pairs.length,
      target: 'aim ≤ 10 %', met: overhead === null ? null : overhead <= 10,
      note: 'median over runs of 1 − on/off (each run: off, on, on without the guard, on without raw_syscalls)',
    });
    const unguardedMed = median(unguarded);
    rows.push({
      section: SECTION, case: 'syscall workload, ftrace recorder on without the overhead guard', subject: 'flightbox daemon', value: unguardedMed, unit: 'ops/s', runs: unguarded.length,
      ratio: ratio(unguardedMed, offMed),
      note: `ratio to off; maxEventRate null: every system call recorded all along: overhead ${median(overheadOf(unguarded))?.toFixed(1) ?? 'n/a'} % (median of 1 − on/off per run)`,
    });
    const noSysMed = median(noSys);
    const noSysPairs = overheadOf(noSys);
    rows.push({
      section: SECTION, case: 'syscall workload, ftrace recorder on without raw_syscalls', subject: 'flightbox daemon', value: noSysMed, unit: 'ops/s', runs: noSys.length,
      ratio: ratio(noSysMed, offMed),
      note: `ratio to off; the recorder's default events but raw_syscalls/sys_enter and sys_exit: overhead ${median(noSysPairs)?.toFixed(1) ?? 'n/a'} % (median of 1 − on/off per run); what the full recorder costs beyond that is the two events every system call fires`,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
};
