// The LTTng reader: babeltrace2's text parsed by us (scopes from tables, kernel events in
// lttng-modules' field names), the real user-space CTF snapshot of the fixtures through the
// real babeltrace2, and CTF that is broken or a babeltrace2 that is missing.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ActivityAccumulator } from '../../analysis/activity.js';
import { BABELTRACE_MISSING, parseBabeltraceLine, parseScopes, readLttngCtf } from '../../analysis/lttng-reader.js';
import { findProgram } from '../../lib/programs.js';
import { FIXTURES } from '../helpers.js';

const CTF = join(FIXTURES, 'analysis/bundle/recorder/lttng/ctf');
const BABELTRACE = findProgram('babeltrace2');
const tmp = mkdtempSync(join(tmpdir(), 'fbx-lttng-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('babeltrace2 scopes', () => {
  it.each([
    ['{ cpu_id = 0 }, { vpid = 29331, vtid = 29336, procname = "tp-app-ust" }, { }', [{ cpu_id: '0' }, { vpid: '29331', vtid: '29336', procname: 'tp-app-ust' }, {}]],
    ['{ s = "a, b } c", t = "q\\"uote\\\\" }', [{ s: 'a, b } c', t: 'q"uote\\' }]],
    ['{ a = { b = 1, c = "}" }, d = -5 }', [{ a: '{ b = 1, c = "}" }', d: '-5' }]],
    ['{ arr = [ [0] = 1, [1] = 2 ], e = ( "RUNNING" : container = 0 ), h = 0x7FC7B04AE000 }', [{ arr: '[ [0] = 1, [1] = 2 ]', e: '( "RUNNING" : container = 0 )', h: '0x7FC7B04AE000' }]],
  ])('%s', (text, want) => {
    expect(parseScopes(text)?.map((m) => Object.fromEntries(m))).toEqual(want);
  });

  it.each(['{ a = "unterminated }', '{ a = 1', 'a = 1', '{ = 1 }', '{ a 1 }', '{ a = { b = 1 }'])('%j does not parse', (text) => {
    expect(parseScopes(text)).toBeNull();
  });

  it('stops at a bounded number of scopes', () => {
    expect(parseScopes(Array.from({ length: 50 }, () => '{ a = 1 }').join(', '))).toBeNull();
  });
});

// lttng-modules' kernel events as babeltrace2 prints them with the recorder's contexts
// (pid, tid, procname). Not recorded here: the kernel of the test machine has no
// lttng-modules, so these follow the field names of lttng-modules' instrumentation.
const KERNEL_LINES = [
  '[1000.100000000] host sched_switch: { cpu_id = 0 }, { pid = 0, tid = 0, procname = "swapper/0" }, { prev_comm = "swapper/0", prev_tid = 0, prev_prio = 20, prev_state = 0, next_comm = "server", next_tid = 301, next_prio = 20 }',
  '[1000.200000000] host syscall_entry_openat: { cpu_id = 0 }, { pid = 300, tid = 301, procname = "server" }, { dfd = -100, filename = "/etc/hosts", flags = 524288, mode = 0 }',
  '[1000.200100000] host syscall_exit_openat: { cpu_id = 0 }, { pid = 300, tid = 301, procname = "server" }, { ret = 3 }',
  '[1000.300000000] host syscall_entry_read: { cpu_id = 0 }, { pid = 300, tid = 301, procname = "server" }, { fd = 3, count = 4096 }',
  '[1000.300100000] host syscall_exit_read: { cpu_id = 0 }, { pid = 300, tid = 301, procname = "server" }, { ret = 120, buf = 140737488346112 }',
  '[1000.350000000] host sched_process_fork: { cpu_id = 0 }, { pid = 300, tid = 301, procname = "server" }, { parent_comm = "server", parent_tid = 301, parent_pid = 300, parent_ns_inum = 4026531836, child_comm = "server", child_tid = 302, child_pid = 300, child_ns_inum = 4026531836 }',
  '[1000.400000000] host signal_generate: { cpu_id = 0 }, { pid = 300, tid = 301, procname = "server" }, { sig = 11, errno = 0, code = -6, comm = "server", pid = 300, group = 0, result = 0 }',
  '[1000.500000000] host sched_switch: { cpu_id = 0 }, { pid = 300, tid = 301, procname = "server" }, { prev_comm = "server", prev_tid = 301, prev_prio = 20, prev_state = 1, next_comm = "server", next_tid = 302, next_prio = 20 }',
  '[1000.600000000] host compat_syscall_entry_write: { cpu_id = 0 }, { pid = 300, tid = 302, procname = "server" }, { fd = 1, count = 10 }',
  '[1000.600100000] host compat_syscall_exit_write: { cpu_id = 0 }, { pid = 300, tid = 302, procname = "server" }, { ret = 10 }',
  '[1000.700000000] sched_switch: { cpu_id = 0 }, { pid = 300, tid = 302, procname = "server" }, { prev_comm = "server", prev_tid = 302, prev_prio = 20, prev_state = 1, next_comm = "swapper/0", next_tid = 0, next_prio = 20 }',
];

describe('babeltrace2 lines', () => {
  it('kernel events become switches, syscalls, forks and signals', () => {
    const events = KERNEL_LINES.map((l) => parseBabeltraceLine(l));
    expect(events.every((e) => e.kind === 'event')).toBe(true);
    const ev = events.map((e) => (e.kind === 'event' ? e.event : null));
    expect(ev[0]).toMatchObject({ type: 'switch', ts: 1000.1, prevTid: 0, nextTid: 301, nextComm: 'server' });
    expect(ev[1]).toMatchObject({ type: 'syscall_entry', tid: 301, tgid: 300, comm: 'server', name: 'openat' });
    expect(ev[4]).toMatchObject({ type: 'syscall_exit', name: 'read', ret: 120 });
    expect(ev[5]).toMatchObject({ type: 'fork', childTid: 302, childTgid: 300 });
    expect(ev[6]).toMatchObject({ type: 'signal', sig: 11, targetTid: 300 });
    expect(ev[8]).toMatchObject({ type: 'syscall_entry', name: 'write' });
    expect(ev[10]).toMatchObject({ type: 'switch', prevTid: 302 }); // no hostname
  });

  it('adds up per process: threads join, CPU from switches, bytes from returns', () => {
    const acc = new ActivityAccumulator({ toEpochMs: (ts) => ts * 1000 });
    for (const l of KERNEL_LINES) {
      const p = parseBabeltraceLine(l);
      if (p.kind === 'event') acc.event(p.event);
    }
    const r = acc.finish();
    expect(r.processes.map((p) => p.pid)).toEqual([300]);
    const p = r.processes[0]!;
    // threads 300 (the signal's target), 301 and 302
    expect(p).toMatchObject({ comm: 'server', syscalls: 3, opens: 1, bytesRead: 120, bytesWritten: 10, threads: 3 });
    expect(p.cpuMs).toBeCloseTo(600, 3); // 301 from .1 to .5, 302 from .5 to .7
    expect(p.signals).toEqual([{ sig: 11, name: 'SIGSEGV', count: 1 }]);
  });

  it.each([
    'not a babeltrace line',
    '[1000.1] host event: not scopes',
    '[1000.1] host event: { a = "open',
    `[${'9'.repeat(40)}] host x: { }`,
  ])('%j is not understood', (line) => {
    expect(parseBabeltraceLine(line).kind).toBe('bad');
  });
});

describe('the real LTTng snapshot', () => {
  it('is read through babeltrace2: the app and its tracepoints, no kernel events', async () => {
    expect(BABELTRACE, 'babeltrace2 must be installed (scripts/install-deps.sh)').not.toBeNull();
    const acc = new ActivityAccumulator({ toEpochMs: (ts) => ts * 1000 });
    const r = await readLttngCtf(CTF, acc);
    expect(r.warnings).toEqual([]);
    expect(r.events).toBeGreaterThan(10);
    expect(r.kernelEvents).toBe(0);
    const res = acc.finish();
    const app = res.processes.find((p) => p.comm === 'tp-app');
    expect(app).toBeDefined();
    expect(app!.topEvents).toContainEqual({ name: 'flightbox_test:tick', count: 10 });
    expect(app!.cpuMs).toBe(0);
    // epoch seconds from --clock-seconds: the span is a date near the snapshot's
    expect(res.span!.startMs).toBeGreaterThan(Date.UTC(2020, 0, 1));
  });

  it('a CTF directory with broken metadata is a warning', async () => {
    const broken = join(tmp, 'broken');
    cpSync(CTF, broken, { recursive: true });
    writeFileSync(join(broken, 'ust/uid/0/64-bit/metadata'), 'this is not CTF metadata\n');
    const acc = new ActivityAccumulator({ toEpochMs: (ts) => ts * 1000 });
    const r = await readLttngCtf(broken, acc);
    expect(r.warnings.join(' ')).toMatch(/babeltrace2 on .* failed/);
    expect(r.incomplete).toBe(true);
  });

  it('without babeltrace2 the reader says so', async () => {
    const acc = new ActivityAccumulator({ toEpochMs: (ts) => ts * 1000 });
    const r = await readLttngCtf(CTF, acc, { babeltrace: null });
    expect(r.warnings).toEqual([BABELTRACE_MISSING]);
    const gone = await readLttngCtf(CTF, acc, { babeltrace: join(tmp, 'no-such-babeltrace2') });
    expect(gone.warnings.join(' ')).toMatch(/cannot run/);
  });
});
