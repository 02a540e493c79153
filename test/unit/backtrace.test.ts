import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_FRAMES_PER_THREAD, composeEuStack, parseEuStack, parseGdbBacktrace, takeBacktrace, type ThreadTrace } from '../../handler/backtrace.js';
import { crashSignature, crashingThread } from '../../handler/signature.js';
import {
  EU_STACK_ABORT,
  EU_STACK_ABORT_NO_DEBUGINFO,
  EU_STACK_CPP_SEGV,
  EU_STACK_CPP_THREADS,
  EU_STACK_STRIPPED,
  GDB_ABORT_LIVE,
  GDB_ABORT_NO_DEBUGINFO,
  GDB_CPP_SEGV,
  GDB_CPP_THREADS,
  GDB_SEGV_LIVE,
  GDB_STRIPPED,
} from './backtrace-samples.js';

const fnsOf = (t: ThreadTrace | undefined) => t?.frames.map((f) => f.fn) ?? [];
const byTid = (threads: ThreadTrace[], tid: number) => threads.find((t) => t.tid === tid);

describe('parseEuStack: module map (-l)', () => {
  const { modules } = parseEuStack(EU_STACK_CPP_THREADS);

  it('reads every module with its range, build-id and file', () => {
    expect(modules.map((m) => m.name)).toEqual([
      'linux-vdso.so.1', 'ld-linux-x86-64.so.2', 'libm.so.6', 'libc.so.6', 'libgcc_s.so.1', 'libstdc++.so.6', 'prog',
    ]);
    expect(modules[3]).toEqual({
      start: '0x00007f482941e000',
      end: '0x00007f48295fff50',
      name: 'libc.so.6',
      buildId: '93ac61ec5a8eb1396f9fbd350e3169a558528a40',
      file: '/lib/x86_64-linux-gnu/libc.so.6',
    });
  });

  it('"-" as the file is null (the vDSO has no file)', () => {
    expect(modules[0]).toMatchObject({ name: 'linux-vdso.so.1', buildId: 'e025128345ce65b719dab776555f2b64ee0204a1', file: null });
  });

  it('the third line (separate debug file) does not replace the main file', () => {
    expect(modules[1]!.file).toBe('/lib64/ld-linux-x86-64.so.2');
    expect(modules.every((m) => !m.file?.includes('/usr/lib/debug/'))).toBe(true);
  });

  it('modules without a debug-file line are read too', () => {
    expect(modules.find((m) => m.name === 'libgcc_s.so.1')).toMatchObject({
      buildId: '6f03384c2e3c38887dd3ba5a24b2e18c17e2f0e0',
      file: '/lib/x86_64-linux-gnu/libgcc_s.so.1',
    });
    expect(modules.find((m) => m.name === 'prog')).toMatchObject({ start: '0x000056485523c000', file: 'prog' });
  });

  it('a module line without a build-id gives buildId null', () => {
    const text = 'PID 1 - core module memory map\n0x1000-0x2000 weird.so\n  -\n  /lib/weird.so\nPID 1 - core\nTID 1:\n#0  0x0000000000001010 f - weird.so\n';
    const r = parseEuStack(text);
    expect(r.modules).toEqual([{ start: '0x1000', end: '0x2000', name: 'weird.so', buildId: null, file: '/lib/weird.so' }]);
    expect(r.threads[0]!.frames[0]).toMatchObject({ fn: 'f', module: 'weird.so' });
  });
});

describe('parseEuStack: threads and frames', () => {
  it('reads each TID section in order', () => {
    const { threads } = parseEuStack(EU_STACK_CPP_THREADS);
    expect(threads.map((t) => t.tid)).toEqual([5027, 5029]);
    expect(threads.map((t) => t.frames.length)).toEqual([5, 6]);
  });

  it('parses number, address, function, module and the indented source line', () => {
    const main = parseEuStack(EU_STACK_CPP_THREADS).threads[0]!;
    expect(main.frames[0]).toEqual({
      n: 0, addr: '0x00007f48294f1df2', fn: '__libc_pause', module: 'libc.so.6', source: '../sysdeps/unix/sysv/linux/pause.c:29:10',
    });
    expect(main.frames[1]).toEqual({ n: 1, addr: '0x000056485523d322', fn: 'main', module: 'prog', source: '/tmp/fbxgen/prog.cpp:14:17' });
    // _start has no source line: it must not take the next thread's anything
    expect(main.frames[4]).toEqual({ n: 4, addr: '0x000056485523d181', fn: '_start', module: 'prog', source: null });
  });

  it('keeps a C++ name with spaces and parentheses whole', () => {
    const worker = parseEuStack(EU_STACK_CPP_THREADS).threads[1]!;
    expect(worker.frames[1]).toEqual({
      n: 1,
      addr: '0x000056485523d47c',
      fn: 'int ns::Widget::spin<int>(int, std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> > const&)',
      module: 'prog',
      source: '/tmp/fbxgen/prog.cpp:6:103',
    });
    expect(fnsOf(worker)).toEqual([
      '__libc_pause', worker.frames[1]!.fn, 'crash_here', 'worker', 'start_thread', '__clone3',
    ]);
  });

  it('C++ lambdas, operators and templates (std::function call chain)', () => {
    const { threads } = parseEuStack(EU_STACK_CPP_SEGV);
    expect(threads).toHaveLength(1);
    expect(fnsOf(threads[0])).toEqual([
      'crash_here(std::vector<int, std::allocator<int> >&)',
      'main::{lambda()#1}::operator()() const',
      '__invoke_impl<void, main()::<lambda()>&>',
      '__invoke_r<void, main()::<lambda()>&>',
      '_M_invoke',
      'std::function<void ()>::operator()() const',
      'main',
      '__libc_start_call_main',
      '__libc_start_main_impl',
      '_start',
    ]);
    expect(threads[0]!.frames.every((f, i) => f.n === i)).toBe(true);
    expect(threads[0]!.frames[5]).toMatchObject({ module: 'cpp2', source: '/usr/include/c++/12/bits/std_function.h:591:9' });
  });

  it('frames with no function name ("#2  0x... - mysleep") have fn null and keep the module', () => {
    const { threads } = parseEuStack(EU_STACK_STRIPPED);
    expect(threads).toHaveLength(1);
    const f = threads[0]!.frames;
    expect(f).toHaveLength(7);
    expect(f[1]).toEqual({ n: 1, addr: '0x000055a7efef0142', fn: null, module: 'mysleep', source: null });
    expect(f[2]).toEqual({ n: 2, addr: '0x000055a7efef014d', fn: null, module: 'mysleep', source: null });
    expect(f[6]).toEqual({ n: 6, addr: '0x000055a7efef0071', fn: null, module: 'mysleep', source: null });
    expect(fnsOf(threads[0])).toEqual(['__libc_pause', null, null, null, '__libc_start_call_main', '__libc_start_main_impl', null]);
  });

  it('a multi-threaded abort: every thread, the aborting one with raise/abort frames', () => {
    const { threads, modules } = parseEuStack(EU_STACK_ABORT);
    expect(threads.map((t) => t.tid)).toEqual([6115, 6109, 6112, 6113, 6114]);
    expect(fnsOf(byTid(threads, 6115))).toEqual([
      '__pthread_kill_implementation', '__GI_raise', '__GI_abort', 'flightbox_worker_abort', 'worker', 'start_thread', '__clone3',
    ]);
    expect(byTid(threads, 6115)!.frames[3]!.source).toBe('/work/main/test/fixtures/threads-abort.c:6:63');
    expect(modules.map((m) => m.name)).toEqual(['linux-vdso.so.1', 'ld-linux-x86-64.so.2', 'libc.so.6', 'tabort']);
  });

  it('without libc debug info: unnamed libc frames are null, named ones come from the symbol table', () => {
    const { threads } = parseEuStack(EU_STACK_ABORT_NO_DEBUGINFO);
    expect(fnsOf(byTid(threads, 6115))).toEqual([null, 'raise', 'abort', 'flightbox_worker_abort', 'worker', null, null]);
    expect(byTid(threads, 6115)!.frames[0]).toEqual({ n: 0, addr: '0x00007ffff7e5feec', fn: null, module: 'libc.so.6', source: null });
  });

  // A module table as eu-stack prints it before the threads: frame modules must be from it.
  const TABLE = 'PID 1 - core module memory map\n0x1000-0x2000 a.out\n  [abcd]\n  /bin/a.out\nPID 1 - core\n';

  it('a frame line without a symbol or module (an address outside every module)', () => {
    const r = parseEuStack('TID 7:\n#0  0x0000000000000000\n#1  0x0000000000401234 ??\n');
    expect(r.ambiguous).toBeNull();
    expect(r.threads[0]!.frames).toEqual([
      { n: 0, addr: '0x0000000000000000', fn: null, module: null, source: null },
      { n: 1, addr: '0x0000000000401234', fn: null, module: null, source: null },
    ]);
  });

  it('only the first indented line after a frame is its source', () => {
    const r = parseEuStack(`${TABLE}TID 7:\n#0  0x0000000000401000 f - a.out\n    a.c:1:2\n    extra line\n#1  0x0000000000401010 g - a.out\n`);
    expect(r.threads[0]!.frames.map((f) => f.source)).toEqual(['a.c:1:2', null]);
  });

  it(`caps each thread at MAX_FRAMES_PER_THREAD (${MAX_FRAMES_PER_THREAD}) frames`, () => {
    const lines = [TABLE, 'TID 1:'];
    for (let i = 0; i < 200; i++) lines.push(`#${i}  0x${(0x1000 + i).toString(16).padStart(16, '0')} recurse - a.out`, '    r.c:3:1');
    lines.push('TID 2:', '#0  0x0000000000401000 other - a.out');
    const { threads } = parseEuStack(lines.join('\n'));
    expect(threads[0]!.frames).toHaveLength(MAX_FRAMES_PER_THREAD);
    expect(threads[0]!.frames.at(-1)!.n).toBe(MAX_FRAMES_PER_THREAD - 1);
    expect(threads[1]!.frames).toHaveLength(1);
  });

  it('a module name holding " - " and spaces is matched whole from the module table', () => {
    const r = parseEuStack('PID 1 - core module memory map\n0x1000-0x2000 sec x - y\nPID 1 - core\nTID 1:\n#0  0x0000000000001010 crash_here - sec x - y\n');
    expect(r.ambiguous).toBeNull();
    expect(r.threads[0]!.frames[0]).toMatchObject({ fn: 'crash_here', module: 'sec x - y' });
  });

  // Names from the crashed process forging trace lines: nothing of such output is trusted.
  it.each([
    ['a frame whose module is not in the table', `${TABLE}TID 1:\n#0  0x0000000000001010 f - forged.so\n`],
    ['a frame number out of sequence (a forged frame before the real one)', `${TABLE}TID 1:\n#0  0x1010 f - a.out\n#1  0x1020 forged_fn - a.out\n#1  0x1030 g - a.out\n`],
    ['a thread header twice', `${TABLE}TID 1:\n#0  0x1010 f - a.out\nTID 1:\n#0  0x1010 f - a.out\n`],
    ['a stray line among the frames', `${TABLE}TID 1:\n#0  0x1010 f - a.out\nforged text\n`],
    ['a frame before any thread header', '#0  0x0000000000401000 stray - a.out\nTID 3:\n'],
    ['a line out of place in the module table', 'PID 1 - core module memory map\n0x1000-0x2000 a.out\n#1 0x1 forged - a.out\n'],
  ])('%s: ambiguous, no threads', (_what, text) => {
    const r = parseEuStack(text);
    expect(r.ambiguous).toMatch(/\S/);
    expect(r.threads).toEqual([]);
  });

  it('more threads than the process had: ambiguous', () => {
    const text = `${TABLE}TID 1:\n#0  0x1010 f - a.out\nTID 2:\n#0  0x1010 f - a.out\n`;
    expect(parseEuStack(text, { maxThreads: 2 }).ambiguous).toBeNull();
    expect(parseEuStack(text, { maxThreads: 1 }).ambiguous).toMatch(/more threads/);
  });

  it.each([
    ['empty output', ''],
    ['only an error message', 'eu-stack: dwfl_core_file_report: No such file or directory\n'],
    ['only the module map', 'PID 1 - core module memory map\n0x1000-0x2000 a.out\n  [abcd]\n  /bin/a.out\n'],
  ])('%s gives no threads', (_what, text) => {
    expect(parseEuStack(text).threads).toEqual([]);
  });

});

describe('composeEuStack: the module run\'s table, then the frame run', () => {
  const modulesRun = [
    'PID 7 - core module memory map',
    '0x0000555500000000-0x0000555500006000 prog',
    '  [aaaa]',
    '  /usr/bin/prog',
    '  -',
    '0x00007f0000000000-0x00007f00001e0000 libc.so.6',
    '  [bbbb]',
    '  /lib/x86_64-linux-gnu/libc.so.6',
    '  -',
    'PID 7 - core',
    'TID 7:',
    '#0  0x00007f0000001234',
    '',
  ].join('\n');
  const framesRun = 'PID 7 - core\nTID 7:\n#0  0x00007f0000001234 pause - libc.so.6\n#1  0x0000555500001111 main - /usr/bin/prog\n';

  it('keeps the table without its debug-file lines, drops the module run\'s own frames', () => {
    const text = composeEuStack(modulesRun, framesRun);
    expect(text).toBe([
      'PID 7 - core module memory map',
      '0x0000555500000000-0x0000555500006000 prog', '  [aaaa]', '  /usr/bin/prog',
      '0x00007f0000000000-0x00007f00001e0000 libc.so.6', '  [bbbb]', '  /lib/x86_64-linux-gnu/libc.so.6',
      framesRun,
    ].join('\n'));
  });

  it('parses as one run; a frame naming the executable by its path is its module', () => {
    const r = parseEuStack(composeEuStack(modulesRun, framesRun));
    expect(r.ambiguous).toBeNull();
    expect(r.modules.map((m) => [m.name, m.buildId, m.file])).toEqual([['prog', 'aaaa', '/usr/bin/prog'], ['libc.so.6', 'bbbb', '/lib/x86_64-linux-gnu/libc.so.6']]);
    expect(r.threads[0]!.frames.map((f) => [f.fn, f.module])).toEqual([['pause', 'libc.so.6'], ['main', 'prog']]);
  });

  it('the executable by a path whose base name is in the table (no -e, no file found): its module', () => {
    const noFile = modulesRun.replace('  /usr/bin/prog', '  -');
    const r = parseEuStack(composeEuStack(noFile, `${framesRun}#2  0x0000555500001000 - /opt/x/prog\n#3  0x0000555500001001 a - b - /opt/x/prog\n`));
    expect(r.ambiguous).toBeNull();
    expect(r.threads[0]!.frames.map((f) => [f.fn, f.module])).toEqual([['pause', 'libc.so.6'], ['main', 'prog'], [null, 'prog'], ['a - b', 'prog']]);
    // a path that does not end in a table name is no module
    expect(parseEuStack(composeEuStack(noFile, 'PID 7 - core\nTID 7:\n#0  0x01 main - /usr/bin/prog2\n')).ambiguous).toMatch(/not in the module table/);
  });

  it('no table (the module run failed): the frames alone, which then cannot be trusted', () => {
    expect(composeEuStack('', framesRun)).toBe(framesRun);
    expect(parseEuStack(composeEuStack('', framesRun)).ambiguous).toMatch(/not in the module table/);
  });

  it('a table cut short by a line shaped like a process header keeps only what came before it', () => {
    const forged = modulesRun.replace('0x00007f0000000000-0x00007f00001e0000 libc.so.6', 'PID 1 - core\nlibc.so.6');
    const r = parseEuStack(composeEuStack(forged, framesRun));
    expect(r.threads).toEqual([]);
    expect(r.ambiguous).not.toBeNull();
  });
});

describe('parseGdbBacktrace', () => {
  it('reads "Thread N (Thread 0x... (LWP n)):" headers and ignores the frame printed before them', () => {
    const threads = parseGdbBacktrace(GDB_CPP_THREADS);
    expect(threads.map((t) => t.tid)).toEqual([5029, 5027]);
    expect(threads.map((t) => t.frames.length)).toEqual([6, 2]);
  });

  it('parses "#n  0x... in fn (args) at file:line"', () => {
    const [worker] = parseGdbBacktrace(GDB_CPP_THREADS);
    expect(worker!.frames[2]).toEqual({ n: 2, addr: '0x000056485523d290', fn: 'crash_here', module: null, source: 'prog.cpp:9' });
    expect(worker!.frames[1]).toEqual({ n: 1, addr: '0x000056485523d47c', fn: 'ns::Widget::spin<int>', module: null, source: 'prog.cpp:6' });
    expect(fnsOf(worker)).toEqual(['__libc_pause', 'ns::Widget::spin<int>', 'crash_here', 'worker', 'start_thread', 'clone3']);
  });

  it('parses "#0  fn (args) at file:line" (no address)', () => {
    const threads = parseGdbBacktrace(GDB_ABORT_LIVE);
    expect(threads.map((t) => t.tid)).toEqual([5346, 5345, 5344, 5343, 5336]);
    expect(threads[0]!.frames[0]).toEqual({
      n: 0, addr: null, fn: '__pthread_kill_implementation', module: null, source: './nptl/pthread_kill.c:44',
    });
    expect(fnsOf(threads[0])).toEqual([
      '__pthread_kill_implementation', '__pthread_kill_internal', '__GI_raise', '__GI_abort', 'flightbox_worker_abort', 'worker', 'start_thread', 'clone3',
    ]);
  });

  it('a minimal "#0  fn () at x.c:1"', () => {
    const t = parseGdbBacktrace('Thread 1 (LWP 42):\n#0  fn () at x.c:1\n#1  main () at x.c:9\n');
    expect(t).toEqual([{ tid: 42, frames: [
      { n: 0, addr: null, fn: 'fn', module: null, source: 'x.c:1' },
      { n: 1, addr: null, fn: 'main', module: null, source: 'x.c:9' },
    ] }]);
  });

  it('live-process headers with a thread name ("(LWP n) "segv"")', () => {
    const threads = parseGdbBacktrace(GDB_SEGV_LIVE);
    expect(threads).toHaveLength(1);
    expect(threads[0]!.tid).toBe(5317);
    expect(fnsOf(threads[0])).toEqual(['flightbox_crash_here', 'flightbox_caller', 'main']);
    expect(threads[0]!.frames[0]!.source).toBe('/work/main/test/fixtures/segv.c:4');
  });

  it('"#1  0x... in ?? ()" gives fn null with the address', () => {
    const [t] = parseGdbBacktrace(GDB_STRIPPED);
    expect(t!.tid).toBe(5134);
    expect(t!.frames).toHaveLength(7);
    expect(t!.frames[1]).toEqual({ n: 1, addr: '0x000055a7efef0142', fn: null, module: null, source: null });
    expect(fnsOf(t)).toEqual(['__libc_pause', null, null, null, '__libc_start_call_main', '__libc_start_main_impl', null]);
  });

  it('long argument lists with "=", "<optimized out>" and "@entry" do not confuse the source', () => {
    const [t] = parseGdbBacktrace(GDB_STRIPPED);
    expect(t!.frames[5]).toMatchObject({ fn: '__libc_start_main_impl', source: '../csu/libc-start.c:360', addr: '0x00007ff5c40c9305' });
  });

  it('"in fn () from /lib/..." frames (no debug info) keep the function and the library', () => {
    const threads = parseGdbBacktrace(GDB_ABORT_NO_DEBUGINFO);
    expect(threads.map((t) => t.tid)).toEqual([6114, 6113, 6112, 6109, 6115]);
    const aborting = byTid(threads, 6115)!;
    expect(fnsOf(aborting)).toEqual([null, 'raise', 'abort', 'flightbox_worker_abort', 'worker', null, null]);
    const raise = aborting.frames[1]!;
    expect(raise.addr).toBe('0x00007ffff7e10fb2');
    expect(raise.module ?? raise.source).toBe('/lib/x86_64-linux-gnu/libc.so.6');
    expect(aborting.frames[3]!.source).toBe('/work/main/test/fixtures/threads-abort.c:6');
  });

  it('"Thread 1 (process 42):" headers (no libthread_db)', () => {
    const t = parseGdbBacktrace('Thread 1 (process 42):\n#0  0x0000000000401000 in f () at a.c:1\n');
    expect(t).toEqual([{ tid: 42, frames: [{ n: 0, addr: '0x0000000000401000', fn: 'f', module: null, source: 'a.c:1' }] }]);
  });

  it('ignores "Backtrace stopped" and other non-frame lines', () => {
    const t = parseGdbBacktrace('Thread 2 (Thread 0x7f00 (LWP 9)):\n#0  0x0000000000401000 in f () at a.c:1\nBacktrace stopped: previous frame inner to this frame (corrupt stack?)\n\nwarning: something\n');
    expect(t[0]!.frames).toHaveLength(1);
  });

  it.each(['', 'No stack.\n', '#0  0x0000000000401000 in f () at a.c:1\n'])('no threads from %j', (text) => {
    expect(parseGdbBacktrace(text)).toEqual([]);
  });

  it(`caps each thread at MAX_FRAMES_PER_THREAD (${MAX_FRAMES_PER_THREAD}) frames`, () => {
    const lines = ['Thread 1 (Thread 0x7f00 (LWP 5)):'];
    for (let i = 0; i < 150; i++) lines.push(`#${i}  0x${(0x401000 + i).toString(16)} in recurse (n=${i}) at r.c:3`);
    const [t] = parseGdbBacktrace(lines.join('\n'));
    expect(t!.frames).toHaveLength(MAX_FRAMES_PER_THREAD);
  });

  describe('C++ names with spaces (std::function call chain)', () => {
    const [t] = parseGdbBacktrace(GDB_CPP_SEGV);

    it('keeps every frame', () => {
      expect(t!.tid).toBe(6061);
      expect(t!.frames.map((f) => f.n)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    });

    it('simple names and operator()', () => {
      expect(t!.frames[0]).toEqual({ n: 0, addr: '0x0000555555556345', fn: 'crash_here', module: null, source: 'cpp2.cpp:7' });
      expect(t!.frames[1]).toMatchObject({ fn: 'operator()', source: 'cpp2.cpp:10' });
      expect(t!.frames.at(-1)).toMatchObject({ n: 6, fn: 'main', source: 'cpp2.cpp:12' });
    });

    it('a demangled name containing spaces is kept whole, not cut at the first space', () => {
      const f5 = t!.frames.find((f) => f.n === 5);
      expect(f5).toEqual({
        n: 5,
        addr: '0x0000555555557066',
        fn: 'std::function<void ()>::operator()() const',
        module: null,
        source: '/usr/include/c++/12/bits/std_function.h:591',
      });
    });

    it('template frames with spaces in their argument lists are parsed', () => {
      const f2 = t!.frames.find((f) => f.n === 2);
      const f4 = t!.frames.find((f) => f.n === 4);
      expect(f2?.fn?.startsWith('std::__invoke_impl<void, main()::<lambda()>&>')).toBe(true);
      expect(f2?.source).toBe('/usr/include/c++/12/bits/invoke.h:61');
      expect(f4?.fn?.startsWith('std::_Function_handler<void(), main()::<lambda()> >::_M_invoke')).toBe(true);
      expect(f4?.addr).toBe('0x00005555555566a3');
    });
  });
});

describe('parsers and signature agree on the same crash', () => {
  it('eu-stack and gdb give the same signature for the threads-abort fixture', () => {
    const eu = parseEuStack(EU_STACK_ABORT).threads;
    const euSig = crashSignature('/work/main/test/fixtures/bin/threads-abort', 'threads-abort', 'SIGABRT', crashingThread(eu, 6115));
    expect(euSig.text).toBe('threads-abort SIGABRT flightbox_worker_abort|worker|start_thread');
    const gdbThreads = parseGdbBacktrace(GDB_ABORT_LIVE);
    const gdbSig = crashSignature('/work/main/test/fixtures/bin/threads-abort', 'threads-abort', 'SIGABRT', crashingThread(gdbThreads, 5346));
    expect(gdbSig.text).toBe(euSig.text);
    expect(gdbSig.hash).toBe(euSig.hash);
  });
});

// Regenerates real output: compile, run under gdb until it crashes, write a core with gcore,
// then run eu-stack and gdb on the core exactly as takeBacktrace would.
const haveTools = ['gcc', 'gdb', 'eu-stack'].every((p) => spawnSync('sh', ['-c', `command -v ${p}`]).status === 0);

describe.skipIf(!haveTools)('live: real eu-stack and gdb output from a fresh core', () => {
  /** A fresh core of a program built with -g, checked with both tools; null where ptrace is refused. Its directory is the caller's to remove. */
  function liveCore(): string | null {
    const dir = mkdtempSync(join(tmpdir(), 'fbx-bt-'));
    try {
      const src = join(dir, 'live.c');
      writeFileSync(src, [
        '#include <stdio.h>',
        '__attribute__((noinline)) void live_crash_here(volatile int *p) { *p = 1; }',
        '__attribute__((noinline)) void live_caller(void) { live_crash_here((volatile int *)0); }',
        'int main(void) { live_caller(); return 0; }',
        '',
      ].join('\n'));
      const exe = join(dir, 'live');
      const cc = spawnSync('gcc', ['-g', '-O0', '-o', exe, src], { encoding: 'utf8' });
      expect(cc.status, cc.stderr).toBe(0);
      const core = join(dir, 'live.core');
      const g = spawnSync('gdb', ['-batch', '-nx', '-iex', 'set debuginfod enabled off', '-ex', 'run', '-ex', `gcore ${core}`, exe], {
        encoding: 'utf8', timeout: 60_000, cwd: dir,
      });
      // ptrace not permitted here (e.g. a restricted container): nothing to check.
      if (!existsSync(core) && /ptrace|not permitted/i.test(`${g.stdout}${g.stderr}`)) {
        rmSync(dir, { recursive: true, force: true });
        return null;
      }
      expect(existsSync(core), `gdb did not write a core: ${g.stdout}${g.stderr}`).toBe(true);
      const eu = spawnSync('eu-stack', [`--core=${core}`, '-e', exe, '-l', '-m', '-s', '-i', '-n', '64'], { encoding: 'utf8', timeout: 60_000 });
      const parsed = parseEuStack(eu.stdout);
      expect(parsed.threads).toHaveLength(1);
      expect(fnsOf(parsed.threads[0]).slice(0, 3)).toEqual(['live_crash_here', 'live_caller', 'main']);
      expect(parsed.threads[0]!.frames[0]!.module).toBe('live');
      expect(parsed.threads[0]!.frames[0]!.source).toMatch(/live\.c:2:\d+$/);
      const prog = parsed.modules.find((m) => m.name === 'live');
      expect(prog?.buildId).toMatch(/^[0-9a-f]{40}$/);

      const gd = spawnSync('gdb', ['-batch', '-nx', '-nh', '-iex', 'set auto-load off', '-iex', 'set debuginfod enabled off',
        '-ex', 'set pagination off', '-ex', 'thread apply all bt 64', exe, '-c', core], { encoding: 'utf8', timeout: 60_000 });
      const gthreads = parseGdbBacktrace(gd.stdout);
      expect(gthreads).toHaveLength(1);
      expect(gthreads[0]!.tid).toBe(parsed.threads[0]!.tid);
      expect(fnsOf(gthreads[0]).slice(0, 3)).toEqual(['live_crash_here', 'live_caller', 'main']);
      expect(gthreads[0]!.frames[0]!.source).toMatch(/live\.c:2$/);

      const a = crashSignature(exe, 'live', 'SIGSEGV', crashingThread(parsed.threads, null));
      const b = crashSignature(exe, 'live', 'SIGSEGV', crashingThread(gthreads, null));
      expect(a.text).toBe('live SIGSEGV live_crash_here|live_caller|main');
      expect(b.hash).toBe(a.hash);
      return core;
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  it('both parsers find the crashing frames of a freshly made core', () => {
    const core = liveCore();
    if (core) rmSync(join(core, '..'), { recursive: true, force: true });
  }, 120_000);

  it('takeBacktrace: symbols by default (no DWARF read), source lines with backtrace.source, the same signature', async () => {
    const core = liveCore();
    if (!core) return;
    const exe = join(core, '..', 'live');
    try {
      const plain = await takeBacktrace(core, exe, { tool: 'eu-stack', timeoutMs: 60_000 });
      const source = await takeBacktrace(core, exe, { tool: 'eu-stack', timeoutMs: 60_000, source: true });
      // Without -e (the daemon's and drainers' runs) eu-stack names the executable by its path.
      const noExe = await takeBacktrace(core, null, { tool: 'eu-stack', timeoutMs: 60_000 });
      for (const bt of [plain, source, noExe]) {
        expect(bt.warnings).toEqual([]);
        expect(bt.tool).toBe('eu-stack');
        expect(fnsOf(bt.threads[0]).slice(0, 3)).toEqual(['live_crash_here', 'live_caller', 'main']);
        expect(bt.threads[0]!.frames[0]!.module).toBe('live');
        expect(bt.modules.find((m) => m.name === 'live')?.buildId).toMatch(/^[0-9a-f]{40}$/);
        expect(bt.text).toMatch(/^PID \d+ - core module memory map\n/);
        expect(crashSignature(exe, 'live', 'SIGSEGV', crashingThread(bt.threads, null)).text).toBe('live SIGSEGV live_crash_here|live_caller|main');
      }
      expect(plain.threads[0]!.frames.every((f) => f.source === null)).toBe(true);
      expect(source.threads[0]!.frames[0]!.source).toMatch(/live\.c:2:\d+$/);
    } finally {
      rmSync(join(core, '..'), { recursive: true, force: true });
    }
  }, 120_000);
});
