// The per-process accumulator, from events built in code: CPU time from context switches
// (split over seconds), syscalls and bytes, threads joining their process, names, and the
// bounds that keep a hostile trace from costing memory or time.
import { describe, expect, it } from 'vitest';
import { ActivityAccumulator, MAX_PROCESSES, MAX_SECONDS, type TraceEvent } from '../../analysis/activity.js';

const BASE_S = 1000; // trace-clock seconds of the first event
const acc = () => new ActivityAccumulator({ toEpochMs: (ts) => ts * 1000 });

function sw(ts: number, cpu: number, prevTid: number, prevComm: string, nextTid: number, nextComm: string): TraceEvent {
  return { type: 'switch', ts, cpu, tid: prevTid, tgid: null, comm: prevComm, prevTid, prevComm, prevState: 'S', nextTid, nextComm };
}
function enter(ts: number, cpu: number, tid: number, name: string, tgid: number | null = null): TraceEvent {
  return { type: 'syscall_entry', ts, cpu, tid, tgid, comm: null, name, args: '' };
}
function exit(ts: number, cpu: number, tid: number, name: string, ret: number, tgid: number | null = null): TraceEvent {
  return { type: 'syscall_exit', ts, cpu, tid, tgid, comm: null, name, ret };
}

describe('ActivityAccumulator', () => {
  it('credits CPU time between being switched in and out, split over the seconds it spans', () => {
    const a = acc();
    a.event(sw(BASE_S + 0.0, 0, 0, 'swapper/0', 100, 'busy'));
    a.event(sw(BASE_S + 1.5, 0, 100, 'busy', 200, 'other'));
    a.event(sw(BASE_S + 1.75, 0, 200, 'other', 0, 'swapper/0'));
    const r = a.finish();
    const busy = r.processes.find((p) => p.pid === 100)!;
    const other = r.processes.find((p) => p.pid === 200)!;
    expect(busy.cpuMs).toBeCloseTo(1500, 3);
    expect(other.cpuMs).toBeCloseTo(250, 3);
    expect(r.processes.map((p) => p.pid)).toEqual([100, 200]); // busiest first, idle left out
    expect(r.seconds.map((s) => s.startMs)).toEqual([BASE_S * 1000, BASE_S * 1000 + 1000]);
    expect(r.seconds[0]!.processes.find((p) => p.pid === 100)!.cpuMs).toBeCloseTo(1000, 3);
    expect(r.seconds[1]!.processes.find((p) => p.pid === 100)!.cpuMs).toBeCloseTo(500, 3);
    expect(r.span).toEqual({ startMs: BASE_S * 1000, endMs: BASE_S * 1000 + 1750 });
  });

  it('counts syscalls, opens and bytes of successful reads and writes only', () => {
    const a = acc();
    const t = BASE_S;
    for (const [i, name, ret] of [[0, 'openat', 3], [1, 'read', 4096], [2, 'read', -11], [3, 'write', 100], [4, 'pwrite64', 50], [5, 'creat', -13], [6, 'openat2', 4]] as const) {
      a.event(enter(t + i / 100, 1, 42, name));
      a.event(exit(t + i / 100 + 0.001, 1, 42, name, ret));
    }
    const p = a.finish().processes.find((x) => x.pid === 42)!;
    expect(p).toMatchObject({ syscalls: 7, opens: 3, bytesRead: 4096, bytesWritten: 150 });
    expect(p.topSyscalls[0]).toEqual({ name: 'read', count: 2 });
    expect(p.topSyscalls.length).toBeLessThanOrEqual(5);
  });

  it('gives nobody the gap when events were lost, and nobody CPU time on a CPU that never switched', () => {
    const a = acc();
    a.event(sw(BASE_S, 0, 0, 'swapper/0', 7, 'seven'));
    a.lost(0, 1000);
    a.event(sw(BASE_S + 2, 0, 9, 'nine', 0, 'swapper/0')); // who ran in between is unknown
    a.event(enter(BASE_S + 2.5, 1, 11, 'read')); // CPU 1: no sched_switch at all
    const r = a.finish();
    expect(r.processes.find((p) => p.pid === 7)?.cpuMs ?? 0).toBe(0);
    expect(r.processes.find((p) => p.pid === 9)?.cpuMs ?? 0).toBe(0);
    expect(r.processes.find((p) => p.pid === 11)!.cpuMs).toBe(0);
    expect(r.eventsLost).toBe(1000);
    expect(r.warnings.join(' ')).toMatch(/1000 events lost/);
  });

  it('joins threads to their process when the trace gives thread group ids', () => {
    const a = acc();
    a.event(sw(BASE_S, 0, 0, 'swapper/0', 501, 'worker'));
    a.event(enter(BASE_S + 0.1, 0, 501, 'futex', 500)); // thread 501 of process 500
    a.event(enter(BASE_S + 0.2, 1, 500, 'read', 500));
    a.event({ type: 'other', ts: BASE_S + 0.25, cpu: 1, tid: 500, tgid: 500, comm: 'server', name: 'app:tick', userspace: true });
    a.event(sw(BASE_S + 0.3, 0, 501, 'worker', 0, 'swapper/0'));
    const r = a.finish();
    expect(r.processes.map((p) => p.pid)).toEqual([500]);
    expect(r.processes[0]).toMatchObject({ comm: 'server', syscalls: 2, threads: 2, topEvents: [{ name: 'app:tick', count: 1 }] });
    expect(r.processes[0]!.cpuMs).toBeCloseTo(300, 3);
  });

  it('names a process by the kernel\'s fields, an exec, and not by a stale task column', () => {
    const a = acc();
    a.event({ ...enter(BASE_S, 0, 77, 'execve'), comm: 'bash' });
    a.event({ type: 'exec', ts: BASE_S + 0.01, cpu: 0, tid: 77, tgid: null, comm: 'bash', filename: '/usr/bin/ls', newComm: 'ls' });
    a.event({ ...enter(BASE_S + 0.02, 0, 77, 'read'), comm: 'bash' }); // saved_cmdlines still says bash
    const r = a.finish();
    expect(r.processes[0]).toMatchObject({ pid: 77, comm: 'ls' });
  });

  it('records signals with the target and the sender', () => {
    const a = acc();
    a.event({ type: 'signal', ts: BASE_S, cpu: 0, tid: 10, tgid: null, comm: 'killer', sig: 11, targetTid: 20, targetComm: 'victim' });
    const r = a.finish();
    expect(r.signals).toEqual([{ t: BASE_S * 1000, sig: 11, name: 'SIGSEGV', pid: 20, comm: 'victim', fromPid: 10, fromComm: 'killer' }]);
    expect(r.processes.find((p) => p.pid === 20)!.signals).toEqual([{ sig: 11, name: 'SIGSEGV', count: 1 }]);
  });

  it(`tracks at most ${MAX_PROCESSES} processes and says how many events it left out`, () => {
    const a = acc();
    for (let pid = 1; pid <= MAX_PROCESSES + 500; pid++) a.event(enter(BASE_S + pid / 1e6, 0, pid, 'getpid'));
    const r = a.finish();
    expect(r.processes.length).toBe(MAX_PROCESSES);
    expect(r.warnings.join(' ')).toMatch(/500 events of the others were not counted/);
  });

  it(`keeps the newest ${MAX_SECONDS} seconds of a long trace, and a gap of years costs nothing`, () => {
    const a = acc();
    a.event(sw(BASE_S, 0, 0, 'swapper/0', 5, 'sleeper'));
    // the same task switched out 30 years later: one huge interval
    const t0 = performance.now();
    a.event(sw(BASE_S + 30 * 365 * 86400, 0, 5, 'sleeper', 0, 'swapper/0'));
    const r = a.finish();
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(r.seconds.length).toBeLessThanOrEqual(MAX_SECONDS);
    expect(r.warnings.join(' ')).toMatch(/only its last 900 seconds/);
  });

  it('ignores impossible timestamps and says so', () => {
    const a = acc();
    a.event(enter(Number.NaN, 0, 1, 'read'));
    a.event(enter(1e15, 0, 1, 'read'));
    a.event(enter(-1, 0, 1, 'read'));
    const r = a.finish();
    expect(r.eventsRead).toBe(0);
    expect(r.processes).toEqual([]);
    expect(r.warnings.join(' ')).toMatch(/3 events with an impossible timestamp/);
  });
});
