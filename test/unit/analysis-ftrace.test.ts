// Our ftrace text reader: line formats from tables (the kernel's print formats, trace-cmd's
// plugins and raw fields), the real trimmed snapshots in test/fixtures/analysis, and
// hostile or cut files that must give warnings, not exceptions.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ActivityAccumulator, type TraceEvent } from '../../analysis/activity.js';
import { parseFtraceLine, readFtraceText } from '../../analysis/ftrace-reader.js';
import { syscallArch, syscallName } from '../../analysis/syscall-names.js';
import { MAX_LINE_BYTES } from '../../analysis/text-stream.js';
import { FIXTURES } from '../helpers.js';

const DIR = join(FIXTURES, 'analysis');
const TEXT = join(DIR, 'bundle/recorder/ftrace/trace.txt');
const TEXT_PID = Number(readFileSync(join(DIR, 'bundle/workload.pid'), 'utf8'));
const REPORT = join(DIR, 'trace-cmd-report.txt');
const REPORT_PID = Number(readFileSync(join(DIR, 'trace-cmd-report.pid'), 'utf8'));
const X86 = { arch: 'x86_64' as const, instance: 'fbx-fixtures' };
const tmp = mkdtempSync(join(tmpdir(), 'fbx-analysis-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function event(line: string): TraceEvent {
  const p = parseFtraceLine(line, X86);
  if (p.kind !== 'event') throw new Error(`not an event: ${JSON.stringify(p)}`);
  return p.event;
}

async function analyse(path: string, opts = X86) {
  const acc = new ActivityAccumulator({ toEpochMs: (ts) => ts * 1000 });
  const r = await readFtraceText(path, acc, opts);
  return { read: r, res: acc.finish() };
}

describe('syscall tables', () => {
  it.each([
    ['x86_64', 0, 'read'], ['x86_64', 1, 'write'], ['x86_64', 257, 'openat'], ['x86_64', 437, 'openat2'], ['x86_64', 85, 'creat'],
    ['x86_64', 231, 'exit_group'], ['x86_64', 435, 'clone3'], ['x86_64', 462, 'mseal'], ['x86_64', 9999, 'sys_9999'],
    ['aarch64', 56, 'openat'], ['aarch64', 63, 'read'], ['aarch64', 64, 'write'], ['aarch64', 93, 'exit'], ['aarch64', 221, 'execve'],
    ['aarch64', 79, 'newfstatat'], ['aarch64', 437, 'openat2'], ['aarch64', 2, 'io_submit'],
  ] as const)('%s %d is %s', (arch, nr, name) => {
    expect(syscallName(arch, nr)).toBe(name);
  });

  it.each([['x86_64', 'x86_64'], ['x64', 'x86_64'], ['aarch64', 'aarch64'], ['arm64', 'aarch64'], ['riscv64', null]] as const)('uname %s → %s', (m, a) => {
    expect(syscallArch(m)).toBe(a);
  });
});

describe('ftrace lines', () => {
  it.each([
    {
      name: 'sys_enter, trace file with flags column',
      line: '        workload-51068   [000] ..... 12772.405245: sys_enter: NR 257 (ffffff9c, 7ffd, 241, 1b6, 0, 0)',
      want: { type: 'syscall_entry', ts: 12772.405245, cpu: 0, tid: 51068, comm: 'workload', name: 'openat' },
    },
    {
      name: 'sys_exit, trace-cmd with an instance prefix and padding',
      line: 'fbx-fixtures:         workload-50989 [001] 12770.400364: sys_exit:             NR 1 = 500',
      want: { type: 'syscall_exit', cpu: 1, tid: 50989, name: 'write', ret: 500 },
    },
    {
      name: 'sys_exit with an error',
      line: '   lttng-sessiond-26895 [001] 11125.961420: sys_exit:             NR 3 = -9',
      want: { type: 'syscall_exit', name: 'close', ret: -9 },
    },
    {
      name: 'raw fields (trace-cmd report -R)',
      line: '  node-1 [000] 1.000001: sys_exit:              id=0 ret=4096',
      want: { type: 'syscall_exit', name: 'read', ret: 4096 },
    },
    {
      name: 'sched_switch in the kernel format, names with spaces and colons',
      line: ' memfd:sealed-91-17278   [000] d..2. 12772.405114: sched_switch: prev_comm=memfd:sealed-91 prev_pid=17278 prev_prio=120 prev_state=S ==> next_comm=Consumer manage next_pid=51068 next_prio=120',
      want: { type: 'switch', tid: 17278, comm: 'memfd:sealed-91', prevComm: 'memfd:sealed-91', prevTid: 17278, prevState: 'S', nextComm: 'Consumer manage', nextTid: 51068 },
    },
    {
      name: 'sched_switch in trace-cmd\'s plugin format',
      line: 'fbx-fixtures:  Consumer manage-50947 [001] 12770.401150: sched_switch:         Consumer manage:50947 [120] S ==> workload:50989 [120]',
      want: { type: 'switch', comm: 'Consumer manage', prevComm: 'Consumer manage', prevTid: 50947, nextComm: 'workload', nextTid: 50989 },
    },
    {
      name: 'sched_switch raw (numeric state, no arrow)',
      line: '  a-1 [001] 2.5: sched_switch:          prev_comm=a prev_pid=1 prev_prio=120 prev_state=1 next_comm=swapper/1 next_pid=0 next_prio=120',
      want: { type: 'switch', prevTid: 1, nextTid: 0, nextComm: 'swapper/1' },
    },
    {
      name: 'the TGID column and an unknown task name',
      line: '           <...>-1978  (   1977) [001] ....  100.000001: sys_enter: NR 0 (3, 0, 0, 0, 0, 0)',
      want: { type: 'syscall_entry', tid: 1978, tgid: 1977, comm: null, name: 'read' },
    },
    {
      name: 'fork',
      line: '            node-51039   [001] ..... 12772.404877: sched_process_fork: comm=node pid=51039 child_comm=node child_pid=51068',
      want: { type: 'fork', parentTid: 51039, childTid: 51068, childComm: 'node' },
    },
    {
      name: 'exec: the new name is the base name, cut to 15 bytes',
      line: '  node-7 [000] ..... 1.0: sched_process_exec: filename=/opt/a very long program name pid=7 old_pid=7',
      want: { type: 'exec', filename: '/opt/a very long program name', newComm: 'a very long pro' },
    },
    {
      name: 'exit',
      line: '  grep-26897 [001] 11126.034415: sched_process_exit:   comm=grep pid=26897 prio=120 group_dead=true',
      want: { type: 'exit', exitTid: 26897, exitComm: 'grep' },
    },
    {
      name: 'signal_generate',
      line: '              sh-51069   [000] d..1. 12772.417884: signal_generate: sig=11 errno=0 code=0 comm=sh pid=51070 grp=1 res=0',
      want: { type: 'signal', tid: 51069, sig: 11, targetTid: 51070, targetComm: 'sh' },
    },
    {
      name: 'another event',
      line: '  kworker/0:1-12 [000] ..... 5.0: workqueue_execute_start: work struct 0000',
      want: { type: 'other', name: 'workqueue_execute_start', userspace: false },
    },
  ])('$name', ({ line, want }) => {
    expect(event(line)).toMatchObject(want);
  });

  it.each([
    ['CPU:1 [LOST 34260 EVENTS]', { kind: 'lost', cpu: 1, count: 34260 }],
    ['fbx-fixtures: CPU:0 [257777 EVENTS DROPPED]', { kind: 'lost', cpu: 0, count: 257777 }],
    ['CPU:3 [LOST EVENTS]', { kind: 'lost', cpu: 3, count: null }],
    ['# tracer: nop', { kind: 'skip' }],
    ['##### CPU 1 buffer started ####', { kind: 'skip' }],
    ['cpus=2', { kind: 'skip' }],
    ['', { kind: 'skip' }],
    ['garbage that is not a trace line', { kind: 'bad' }],
    ['  node-1 [000] 1.0: sys_enter: NR', { kind: 'bad' }],
    ['  node-1 [000] 1.0: sched_switch: prev_comm=x', { kind: 'bad' }],
    ['  node-1 [000] 1.0: sys_exit: NR 1 = 99999999999999999999', { kind: 'event' }],
  ] as const)('%j is %j', (line, want) => {
    expect(parseFtraceLine(line, X86)).toMatchObject(want);
  });

  it('keeps a hostile name to a bounded length', () => {
    const long = 'x'.repeat(500);
    const e = event(`  a-1 [000] 1.0: signal_generate: sig=9 errno=0 code=0 comm=${long} pid=2 grp=1 res=0`);
    expect(e.type === 'signal' && e.targetComm.length).toBe(64);
  });
});

/**
 * What a file says about one task, counted the simplest way (one regex per line, like
 * grep): the oracle the reader is checked against, and the workload's own lower bounds.
 */
function countByHand(path: string, pid: number) {
  const mine = new RegExp(`-${pid} +(?:\\(\\s*\\d+\\) +)?\\[\\d+\\]`);
  const ts = (l: string) => Number(/\s(\d+\.\d+):\s/.exec(l)![1]);
  let syscalls = 0; let opens = 0; let written = 0; let read = 0; let cpu = 0; let since: number | null = null;
  for (const l of readFileSync(path, 'utf8').split('\n')) {
    if (/ sched_switch: /.test(l)) {
      if (new RegExp(`(?:next_pid=|==> [^\\n]*:)${pid}\\b`).test(l)) since = ts(l);
      else if (new RegExp(`(?:prev_pid=${pid}\\b|sched_switch: +[^\\n]*:${pid} \\[)`).test(l) && since !== null) {
        cpu += ts(l) - since;
        since = null;
      }
      continue;
    }
    if (!mine.test(l)) continue;
    const enter = / sys_enter: +NR (\d+) /.exec(l);
    if (enter) {
      syscalls++;
      if (['2', '85', '257', '437'].includes(enter[1]!)) opens++;
    }
    const exit = / sys_exit: +NR (\d+) = (\d+)$/.exec(l);
    if (exit && exit[1] === '1') written += Number(exit[2]);
    if (exit && (exit[1] === '0' || exit[1] === '17')) read += Number(exit[2]);
  }
  return { syscalls, opens, bytesWritten: written, bytesRead: read, cpuMs: cpu * 1000 };
}

describe('the real snapshots', () => {
  it('finds the workload in the ftrace text snapshot with the numbers the file holds', async () => {
    const { read, res } = await analyse(TEXT, { arch: 'x86_64', instance: 'fbx-fixtures-text' });
    expect(read.warnings).toEqual([]);
    const w = res.processes.find((p) => p.pid === TEXT_PID);
    expect(w).toBeDefined();
    const want = countByHand(TEXT, TEXT_PID);
    expect(w).toMatchObject({ comm: 'workload', syscalls: want.syscalls, opens: want.opens, bytesWritten: want.bytesWritten, bytesRead: want.bytesRead });
    expect(w!.cpuMs).toBeCloseTo(want.cpuMs, 3);
    // The workload's own lower bounds: 5 files and data opened, 100 writes of 500 bytes read back.
    expect(w!.opens).toBeGreaterThanOrEqual(6);
    expect(w!.bytesWritten).toBeGreaterThanOrEqual(50_000);
    expect(w!.bytesRead).toBeGreaterThanOrEqual(50_000);
    expect(w!.cpuMs).toBeGreaterThan(0);
    expect(w!.topSyscalls.map((s) => s.name)).toEqual(expect.arrayContaining(['write', 'read']));
    expect(res.signals.some((s) => s.sig === 11 && s.name === 'SIGSEGV')).toBe(true);
    expect(res.seconds.length).toBeGreaterThan(0);
  });

  it('reads trace-cmd report text (plugins, instance prefixes, dropped-event notes)', async () => {
    const { read, res } = await analyse(REPORT);
    expect(read.warnings).toEqual([]);
    const w = res.processes.find((p) => p.pid === REPORT_PID);
    const want = countByHand(REPORT, REPORT_PID);
    expect(w).toMatchObject({ comm: 'workload', syscalls: want.syscalls, opens: want.opens, bytesWritten: want.bytesWritten, bytesRead: want.bytesRead });
    expect(w!.cpuMs).toBeCloseTo(want.cpuMs, 3);
    expect(w!.opens).toBeGreaterThanOrEqual(6);
    expect(w!.bytesWritten).toBeGreaterThanOrEqual(50_000);
    expect(w!.cpuMs).toBeGreaterThan(0);
    expect(res.eventsLost).toBeGreaterThan(0);
  });
});

describe('hostile and cut files', () => {
  const write = (name: string, data: string | Buffer) => {
    const p = join(tmp, name);
    writeFileSync(p, data);
    return p;
  };

  it('a file cut in the middle of a line: the rest is read, the cut is reported', async () => {
    const text = readFileSync(TEXT, 'utf8');
    const p = write('cut.txt', text.slice(0, Math.floor(text.length / 2) + 7));
    const { read, res } = await analyse(p);
    expect(read.warnings.join(' ')).toMatch(/ends in the middle of a line/);
    expect(res.processes.find((x) => x.pid === TEXT_PID)!.syscalls).toBeGreaterThan(10);
  });

  it('binary garbage: warnings, no events, no exception', async () => {
    const bytes = Buffer.alloc(300_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + 13) % 256;
    const { read, res } = await analyse(write('garbage.bin', bytes));
    expect(res.eventsRead).toBe(0);
    expect(read.warnings.join(' ')).toMatch(/not understood|no trace events/);
  });

  it('a line of megabytes without a newline is skipped, and the lines after it are read', async () => {
    const good = '        workload-5   [000] ..... 10.000001: sys_enter: NR 0 (0, 0, 0, 0, 0, 0)\n';
    const p = write('long.txt', `${good}${'A'.repeat(MAX_LINE_BYTES * 40)}\n${good}`);
    const { read, res } = await analyse(p);
    expect(read.warnings.join(' ')).toMatch(/1 line longer than/);
    expect(res.processes.find((x) => x.pid === 5)!.syscalls).toBe(2);
  });

  it('NUL bytes, escapes and absurd numbers in a line are data, not trouble', async () => {
    const p = write('odd.txt', [
      '  \u0000\u001b[31mevil-9   [000] ..... 10.0: sys_enter: NR 0 (0)',
      '  evil-9   [000] ..... 999999999999.0: sys_enter: NR 0 (0)',
      '  evil-9   [99999] ..... 10.5: sys_exit: NR 0 = 123456789012345678',
      '  evil-9   [000] ..... 10.6: signal_generate: sig=999 errno=0 code=0 comm=x pid=10 grp=1 res=0',
    ].join('\n'));
    const { res } = await analyse(p);
    const evil = res.processes.find((x) => x.pid === 9)!;
    expect(evil.comm).toContain('evil');
    expect(evil.bytesRead).toBe(0); // an unsafe integer is not a byte count
    expect(res.warnings.join(' ')).toMatch(/impossible timestamp/);
  });

  it('a missing file, a directory and a FIFO are warnings', async () => {
    expect((await analyse(join(tmp, 'nope.txt'))).read.warnings.join(' ')).toMatch(/cannot open/);
    expect((await analyse(tmp)).read.warnings.join(' ')).toMatch(/not a regular file/);
    const fifo = join(tmp, 'fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    // Opened without blocking, refused as not a file: no writer ever needed.
    expect((await analyse(fifo)).read.warnings.join(' ')).toMatch(/not a regular file/);
  });
});
