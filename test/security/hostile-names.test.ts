// Names chosen by a crashed process (comm, argv, the executable's path) reach the handler
// through the real kernel. None may become a path, an unescaped log line (store log,
// kernel log), a terminal line of the CLI, or a command: shell syntax in them is never run,
// control characters never reach a line raw, and a huge command line stays bounded in logs.
import { copyFileSync, existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT, runCli } from '../helpers.js';
import {
  ID_RE, ISO_LINE, RAW_CONTROL, compileFixture, exitWithin, flightboxKmsg, handlersDone, installHandler, kmsgMark, manifestOf,
  mkdirMode, secStore, startCrash, waitEvent, type SecStore,
} from './sec-helpers.js';

/** A kernel log record shows raw control bytes as \xNN; an escaped backslash shows as \x5c. */
const KMSG_RAW_CONTROL = /\\x(?!5c)[0-9a-f]{2}/;
const MAX_LOG_LINE_CHARS = 8192;
const MAX_KMSG_LINE_CHARS = 1024;

describe.skipIf(!IS_ROOT)('hostile names from the crashed process', () => {
  let work: string;
  let crasher: string;
  let s: SecStore;
  let kernel: { restore(): void } | undefined;
  /** Files a shell would create if it ever ran one of the names. */
  const markers: string[] = [];

  function marker(): string {
    const m = `fbx-sec-mark-${randomBytes(6).toString('hex')}`;
    markers.push(join('/tmp', m), join('/', m));
    return m;
  }

  beforeAll(() => {
    work = mkdtempSync('/tmp/fbx-sec-bin-');
    crasher = compileFixture('sec-crasher', work);
    s = secStore();
    kernel = installHandler(s);
  });
  afterAll(() => {
    try {
      kernel?.restore();
    } finally {
      s.cleanup();
      rmSync(work, { recursive: true, force: true });
      for (const m of markers) rmSync(m, { force: true });
    }
  });

  /** Crash, wait for the event, and check every place a name could leak into. */
  async function crashAndCheck(file: string, args: string[], opts: { argv0?: string; comm?: string }) {
    const mark = kmsgMark();
    const c = startCrash(file, args, { argv0: opts.argv0, env: opts.comm === undefined ? {} : { SEC_COMM: opts.comm } });
    const exit = await exitWithin(c.exited, 5000, 'the crashed process exiting');
    expect(exit.signal).toBe('SIGSEGV');
    const e = await waitEvent(s, c.pid);
    expect(await handlersDone(s.configPath, 20_000)).toBe(true);
    const m = manifestOf(s, e);

    // Ids and paths are the handler's own, whatever the names.
    expect(e.id).toMatch(ID_RE);
    expect(e.bundle).toBe(`bundles/${e.id.slice(0, 4)}-${e.id.slice(4, 6)}-${e.id.slice(6, 8)}/${e.id}`);
    const walk = (d: string): string[] => readdirSync(d).flatMap((n) => {
      const p = join(d, n);
      return lstatSync(p).isDirectory() ? [relative(s.root, p), ...walk(p)] : [relative(s.root, p)];
    });
    for (const rel of walk(s.root)) expect(rel).toMatch(/^[A-Za-z0-9._/-]+$/);

    // The store log: one timestamped line per entry, no raw control character, bounded.
    const log = readFileSync(join(s.root, 'flightbox.log'), 'utf8');
    for (const l of log.split('\n').slice(0, -1)) {
      expect(l).toMatch(ISO_LINE);
      expect(l).not.toMatch(RAW_CONTROL);
      expect(l.length).toBeLessThanOrEqual(MAX_LOG_LINE_CHARS);
    }

    // The kernel log: the crash is announced, escaped and bounded.
    const kl = flightboxKmsg(mark);
    expect(kl.some((l) => l.raw.startsWith(`flightbox: process ${c.pid} (`))).toBe(true);
    for (const l of kl) {
      expect(l.raw).not.toMatch(KMSG_RAW_CONTROL);
      expect(l.raw.length).toBeLessThanOrEqual(MAX_KMSG_LINE_CHARS);
    }

    // The CLI: no raw escape or control character on a terminal, one line per event.
    const list = runCli(['--config', s.configPath, 'list']);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).not.toMatch(RAW_CONTROL);
    expect(list.stdout.trimEnd().split('\n')).toHaveLength(1 + runCli(['--config', s.configPath, 'list', '--json']).stdout.split('"id":').length - 1);
    const info = runCli(['--config', s.configPath, 'info', e.id]);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).not.toMatch(RAW_CONTROL);
    // Every line of the header is "Label: value": nothing injected a line of its own.
    const header = info.stdout.split('\n\n')[0]!.split('\n');
    for (const l of header) expect(l).toMatch(/^ *(?:[A-Z][A-Za-z_ -]*:(?: |$)| {10,}\S)/);

    // Nothing a name spelled was ever run.
    for (const mk of markers) expect(existsSync(mk), mk).toBe(false);
    return { c, e, m, info: info.stdout, list: list.stdout };
  }

  it("comm with '/', '..', a newline, ANSI and OSC escapes: kept as data, escaped in logs and output", async () => {
    const comm = '../\x1b[2J\n/\x1b]0;x\x07';
    expect(Buffer.byteLength(comm)).toBeLessThanOrEqual(15);
    const { e, m, info } = await crashAndCheck(crasher, [], { comm });
    expect(m.process.comm).toBe(comm);
    expect(e.comm).toBe(comm);
    expect(info).toMatch(/PID: \d+ \(\.\.\/\\x1b\[2J\\x0a\/\\x1b\]0;x\\x07\)/);
  });

  it('argv with $(…), `…`, "; cmd", newlines, a carriage return and escapes: never run, kept exactly, escaped', async () => {
    const args = [
      `$(touch /tmp/${marker()})`,
      `\`touch /tmp/${marker()}\``,
      `; touch /tmp/${marker()} #`,
      `x\ntouch /tmp/${marker()}`,
      '\r\x1b[2K2026-01-01 forged line',
      '../../../../etc/passwd',
      '\x1b]52;c;cHduZWQ=\x07',
    ];
    const argv0 = `| touch /tmp/${marker()} &&`;
    const { m, info } = await crashAndCheck(crasher, args, { argv0 });
    expect(m.process.cmdline).toEqual([argv0, ...args]);
    const line = info.split('\n').find((l) => l.includes('Command Line:'))!;
    expect(line).toContain('\\x0d\\x1b[2K2026-01-01 forged line');
    expect(line).toContain('x\\x0atouch');
  });

  it('a 100 KiB command line: stored whole, bounded in every log line and in info', async () => {
    const huge = `${'A'.repeat(50 * 1024)}\x1b[31m${'B'.repeat(50 * 1024)}`;
    const { e, m, info } = await crashAndCheck(crasher, [huge, 'tail'], { comm: 'fbx-huge' });
    expect(m.process.cmdline).toEqual([crasher, huge, 'tail']);
    expect(readFileSync(join(s.root, e.bundle, 'proc', 'cmdline'), 'latin1')).toBe(`${crasher}\0${huge}\0tail\0`);
    const line = info.split('\n').find((l) => l.includes('Command Line:'))!;
    expect(line.length).toBeLessThanOrEqual(4096 + 64);
  });

  it('an executable path with spaces, a newline and shell syntax in its file name: kept exactly, never run', async () => {
    const dir = join(s.dir, 'dir with spaces');
    mkdirMode(dir, 0o755);
    // A file name cannot hold '/': printf \057 makes one if a shell ever evaluates it.
    const name = `sec crasher\n$(cd $(printf \\\\057tmp); touch ${marker()}); touch ${marker()} #`;
    const exe = join(dir, name);
    copyFileSync(crasher, exe);
    const { e, m, info, list } = await crashAndCheck(exe, ['arg'], {});
    expect(m.process.exe).toBe(exe);
    expect(e.exe).toBe(exe);
    expect(m.process.cmdline).toEqual([exe, 'arg']);
    expect(info).toContain('sec crasher\\x0a$(cd $(printf ');
    expect(list).toContain('sec crasher\\x0a$(cd');
    expect(m.backtrace?.tool).toBe('eu-stack');
  });

  // The stack-trace tool prints module names as they are: a name with " - " or a newline in
  // it must not turn into function names, nor forge frames that the crash signature (crash
  // grouping, crash rules, mail subjects) is computed from.
  it('an executable file name that forges stack-trace lines (" - ", a newline, "#1 0x… forged_fn"): frames and signature unaffected', async () => {
    const dir = join(s.dir, 'forge');
    mkdirMode(dir, 0o755);
    const exe = join(dir, 'sec x - y\n#1  0x00000000deadbeef forged_fn - libforged.so\nTID 1:\n#0  0x1 forged_thread');
    copyFileSync(crasher, exe);
    const { m } = await crashAndCheck(exe, [], {});
    expect(m.process.exe).toBe(exe);
    const fns = m.backtrace?.frames.map((f) => f.fn) ?? [];
    expect(fns[0]).toBe('sec_crash_here');
    expect(fns[1]).toBe('main');
    expect(JSON.stringify(m.backtrace)).not.toMatch(/forged/);
    expect(m.backtrace?.threads).toBe(1);
    expect(m.signature?.text.split(' SIGSEGV ').at(-1)).toBe('sec_crash_here|main|__libc_start_call_main');
  });
});
