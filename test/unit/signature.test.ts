import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseEuStack, parseGdbBacktrace, type Frame, type ThreadTrace } from '../../handler/backtrace.js';
import { SIGNATURE_FRAMES, crashSignature, crashingThread } from '../../handler/signature.js';
import { EU_STACK_ABORT, EU_STACK_ABORT_NO_DEBUGINFO, GDB_ABORT_NO_DEBUGINFO } from './backtrace-samples.js';

let addr = 0x55dc48484000;
function frames(...fns: (string | null)[]): Frame[] {
  return fns.map((fn, n) => ({ n, addr: `0x${(addr += 0x40).toString(16)}`, fn, module: 'prog', source: null }));
}
function thread(tid: number, ...fns: (string | null)[]): ThreadTrace {
  return { tid, frames: frames(...fns) };
}

describe('crashSignature: frames', () => {
  it.each<[string, (string | null)[], string]>([
    ['plain frames: the top three', ['crash_here', 'caller', 'main', '__libc_start_main'], 'crash_here|caller|main'],
    ['abort/raise noise skipped at the top', ['__pthread_kill_implementation', '__pthread_kill_internal', '__GI_raise', '__GI_abort', 'worker_abort', 'worker', 'start_thread', 'clone3'], 'worker_abort|worker|start_thread'],
    ['raise + abort', ['raise', 'abort', 'f', 'g', 'h'], 'f|g|h'],
    ['gsignal/pthread_kill', ['pthread_kill', 'gsignal', 'abort', 'f'], 'f'],
    ['assert failure', ['__pthread_kill_implementation', 'raise', 'abort', '__assert_fail_base', '__assert_fail', 'check', 'main'], 'check|main'],
    ['stack protector', ['__GI_raise', '__GI_abort', '__libc_message_impl', '__fortify_fail', '__stack_chk_fail', 'victim', 'main'], 'victim|main'],
    ['malloc corruption', ['raise', 'abort', '__libc_message', 'malloc_printerr', 'free_bad', 'main'], 'free_bad|main'],
    ['noise below a real frame is kept', ['f', 'abort', 'g', 'h'], 'f|abort|g'],
    ['unknown functions are ??', [null, null, 'main'], '??|??|main'],
    ['unknown frame after noise', ['raise', null, 'main'], '??|main'],
    ['fewer than three frames', ['only'], 'only'],
    ['no frames', [], '-'],
    ['only noise', ['raise', 'abort'], '-'],
    ['noise with C++-style argument list', ['raise(int)', 'abort()', 'f(int)', 'g'], 'f(int)|g'],
    ['versioned dynamic symbols (no libc debug info) are noise too, named without the version',
      ['pthread_kill@@GLIBC_2.34', 'raise', 'abort', 'worker', 'start_thread@GLIBC_PRIVATE', '__libc_start_main@@GLIBC_2.34'], 'worker|start_thread|__libc_start_main'],
    ['an @ inside a C++ name is not a version', ['operator@x(int)', 'main'], 'operator@x(int)|main'],
    ['C++ names are kept whole', ['int ns::Widget::spin<int>(int, std::string const&)', 'crash_here', 'worker', 'start_thread'], 'int ns::Widget::spin<int>(int, std::string const&)|crash_here|worker'],
  ])('%s', (_what, fns, expectedFrames) => {
    const s = crashSignature('/usr/bin/prog', 'prog', 'SIGSEGV', thread(1, ...fns));
    expect(s.text).toBe(`prog SIGSEGV ${expectedFrames}`);
  });

  it('takes SIGNATURE_FRAMES (3) names', () => {
    expect(SIGNATURE_FRAMES).toBe(3);
    const s = crashSignature('/bin/x', null, 'SIGABRT', thread(1, 'a', 'b', 'c', 'd', 'e'));
    expect(s.text.split(' ')[2]!.split('|')).toHaveLength(3);
  });

  it('a missing thread gives "-"', () => {
    expect(crashSignature('/bin/x', 'x', 'SIGBUS', undefined).text).toBe('x SIGBUS -');
  });

  it('contains no addresses', () => {
    const s = crashSignature('/usr/bin/prog', 'prog', 'SIGSEGV', thread(1, 'a', null, 'c'));
    expect(s.text).not.toMatch(/0x[0-9a-f]/);
  });
});

describe('crashSignature: name', () => {
  it.each<[string | null, string | null, string]>([
    ['/usr/bin/prog', 'prog', 'prog'],
    ['/usr/local/bin/server', 'srv-worker', 'server'],
    ['/usr/bin/prog (deleted)', 'prog', 'prog'],
    ['/opt/app/bin/app.v2 (deleted)', 'app', 'app.v2'],
    ['prog', 'x', 'prog'],
    [null, 'kworker', 'kworker'],
    ['', 'fromcomm', 'fromcomm'],
    ['/', 'rootcomm', 'rootcomm'],
    [null, null, '?'],
    [null, '', '?'],
  ])('exe %j, comm %j → %j', (exe, comm, name) => {
    const s = crashSignature(exe, comm, 'SIGSEGV', thread(1, 'f'));
    expect(s.text).toBe(`${name} SIGSEGV f`);
  });

  it('only a trailing " (deleted)" is stripped', () => {
    const s = crashSignature('/tmp/a (deleted) b', null, 'SIGSEGV', thread(1, 'f'));
    expect(s.text).toBe('a (deleted) b SIGSEGV f');
  });
});

describe('crashSignature: hash', () => {
  it('is 16 lowercase hex digits', () => {
    expect(crashSignature('/bin/x', null, 'SIGSEGV', thread(1, 'f')).hash).toMatch(/^[0-9a-f]{16}$/);
  });

  it('is stable: same input, same hash', () => {
    const a = crashSignature('/bin/x', 'x', 'SIGSEGV', thread(1, 'f', 'g', 'h'));
    const b = crashSignature('/bin/x', 'x', 'SIGSEGV', thread(1, 'f', 'g', 'h'));
    expect(b).toEqual(a);
  });

  it('is the first 16 hex digits of sha256(text)', () => {
    const s = crashSignature('/usr/bin/prog', null, 'SIGSEGV', thread(1, 'crash_here', 'caller', 'main'));
    expect(s.text).toBe('prog SIGSEGV crash_here|caller|main');
    // printf '%s' 'prog SIGSEGV crash_here|caller|main' | sha256sum | cut -c1-16
    expect(s.hash).toBe('c45fd54cc73f96ad');
    expect(s.hash).toBe(createHash('sha256').update(s.text).digest('hex').slice(0, 16));
  });

  it('survives ASLR and other threads: addresses, tid, modules and sources do not matter', () => {
    const t1: ThreadTrace = { tid: 10, frames: [{ n: 0, addr: '0x1000', fn: 'f', module: 'a', source: 'a.c:1' }, { n: 1, addr: '0x2000', fn: 'g', module: 'a', source: null }] };
    const t2: ThreadTrace = { tid: 99, frames: [{ n: 0, addr: '0x7fff1000', fn: 'f', module: 'b', source: 'b.c:9' }, { n: 1, addr: '0x7fff2000', fn: 'g', module: null, source: 'x' }] };
    expect(crashSignature('/bin/x', null, 'SIGSEGV', t1).hash).toBe(crashSignature('/bin/x', null, 'SIGSEGV', t2).hash);
  });

  it('the same crash from a deleted (upgraded) binary groups with the original', () => {
    const a = crashSignature('/usr/bin/prog', null, 'SIGSEGV', thread(1, 'f'));
    const b = crashSignature('/usr/bin/prog (deleted)', null, 'SIGSEGV', thread(1, 'f'));
    expect(b.hash).toBe(a.hash);
  });

  it.each<[string, Parameters<typeof crashSignature>]>([
    ['different top frame', ['/bin/x', null, 'SIGSEGV', thread(1, 'other', 'g', 'h')]],
    ['different third frame', ['/bin/x', null, 'SIGSEGV', thread(1, 'f', 'g', 'other')]],
    ['different signal', ['/bin/x', null, 'SIGBUS', thread(1, 'f', 'g', 'h')]],
    ['different executable', ['/bin/y', null, 'SIGSEGV', thread(1, 'f', 'g', 'h')]],
    ['unknown frame instead of a name', ['/bin/x', null, 'SIGSEGV', thread(1, null, 'g', 'h')]],
  ])('differs for a %s', (_what, args) => {
    const base = crashSignature('/bin/x', null, 'SIGSEGV', thread(1, 'f', 'g', 'h'));
    expect(crashSignature(...args).hash).not.toBe(base.hash);
  });

  it('frames below the third do not change the hash', () => {
    const a = crashSignature('/bin/x', null, 'SIGSEGV', thread(1, 'f', 'g', 'h', 'i'));
    const b = crashSignature('/bin/x', null, 'SIGSEGV', thread(1, 'f', 'g', 'h', 'zzz', 'more'));
    expect(b.hash).toBe(a.hash);
  });

  it('noise at the top does not change the hash', () => {
    const a = crashSignature('/bin/x', null, 'SIGABRT', thread(1, 'f', 'g', 'h'));
    const b = crashSignature('/bin/x', null, 'SIGABRT', thread(1, '__pthread_kill_implementation', 'raise', 'abort', 'f', 'g', 'h'));
    expect(b.hash).toBe(a.hash);
  });
});

describe('crashingThread', () => {
  const threads = [thread(100, 'main'), thread(101, 'worker'), thread(102, 'crash')];

  it.each<[number | null, number | undefined]>([
    [102, 102],
    [101, 101],
    [100, 100],
    [999, 100],
    [null, 100],
  ])('tid %j → thread %j', (tid, expected) => {
    expect(crashingThread(threads, tid)?.tid).toBe(expected);
  });

  it('returns undefined when there are no threads', () => {
    expect(crashingThread([], 5)).toBeUndefined();
    expect(crashingThread([], null)).toBeUndefined();
  });

  it('returns the thread object itself', () => {
    expect(crashingThread(threads, 101)).toBe(threads[1]);
  });
});

describe('crashSignature on real stack traces', () => {
  const EXE = '/tmp/fbxgen/tabort';

  it('an abort with libc debug info points at the caller of abort()', () => {
    const t = crashingThread(parseEuStack(EU_STACK_ABORT).threads, 6115);
    expect(crashSignature(EXE, 'tabort', 'SIGABRT', t).text).toBe('tabort SIGABRT flightbox_worker_abort|worker|start_thread');
  });

  // Hosts without libc debug symbols (the usual production case) show libc's internal
  // __pthread_kill_implementation as an unnamed frame above raise/abort. The signature
  // must still name where the program aborted, or every abort of an executable lands in
  // one group ("?? |raise|abort").
  it('an abort without libc debug info (eu-stack) still points at the caller of abort()', () => {
    const t = crashingThread(parseEuStack(EU_STACK_ABORT_NO_DEBUGINFO).threads, 6115);
    expect(crashSignature(EXE, 'tabort', 'SIGABRT', t).text).toMatch(/^tabort SIGABRT flightbox_worker_abort\|worker(\||$)/);
  });

  it('an abort without libc debug info (gdb) still points at the caller of abort()', () => {
    const t = crashingThread(parseGdbBacktrace(GDB_ABORT_NO_DEBUGINFO), 6115);
    expect(crashSignature(EXE, 'tabort', 'SIGABRT', t).text).toMatch(/^tabort SIGABRT flightbox_worker_abort\|worker(\||$)/);
  });

  it('two different abort sites without libc debug info get different signatures', () => {
    const t = crashingThread(parseEuStack(EU_STACK_ABORT_NO_DEBUGINFO).threads, 6115)!;
    const other: ThreadTrace = {
      tid: t.tid,
      frames: t.frames.map((f) => (f.fn === 'flightbox_worker_abort' ? { ...f, fn: 'some_other_check' } : f.fn === 'worker' ? { ...f, fn: 'other_worker' } : f)),
    };
    expect(crashSignature(EXE, 'tabort', 'SIGABRT', other).hash).not.toBe(crashSignature(EXE, 'tabort', 'SIGABRT', t).hash);
  });
});
