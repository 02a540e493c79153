import { describe, expect, it } from 'vitest';
import {
  CORE_PATTERN_SPECIFIERS,
  CoreArgsError,
  parseCoreArgs,
  parseSignal,
  signalName,
} from '../../handler/core-args.js';

// %P %i %I %u %g %s %t %c %h %d %F
const FULL = ['4242', '17', '4243', '1000', '1001', '11', '1764139812', '18446744073709551615', 'web-01', '1', '7'];

function withArg(index: number, value: string | undefined): string[] {
  const a = [...FULL];
  if (value === undefined) a.length = index;
  else a[index] = value;
  return a;
}

describe('CORE_PATTERN_SPECIFIERS', () => {
  it('lists the eleven specifiers in the order parseCoreArgs reads them', () => {
    expect(CORE_PATTERN_SPECIFIERS).toEqual(['%P', '%i', '%I', '%u', '%g', '%s', '%t', '%c', '%h', '%d', '%F']);
  });
});

describe('parseCoreArgs: valid input', () => {
  it('parses a full argument vector', () => {
    expect(parseCoreArgs(FULL)).toEqual({
      pid: 4242,
      tidInNamespace: 17,
      tid: 4243,
      uid: 1000,
      gid: 1001,
      signal: 11,
      time: 1764139812,
      rlimitCore: null,
      hostname: 'web-01',
      dumpable: 1,
      pidfd: 7,
    });
  });

  it.each([
    ['RLIM_INFINITY (2^64-1)', '18446744073709551615', null],
    ['0 (ulimit -c 0)', '0', 0],
    ['a finite limit', '1048576', 1048576],
    ['the largest safe integer', String(Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER],
    ['beyond 2^53 (treated as unlimited)', '9007199254740993', null],
    ['empty', '', null],
  ])('%%c %s → rlimitCore %s', (_what, c, expected) => {
    expect(parseCoreArgs(withArg(7, c)).rlimitCore).toBe(expected);
  });

  it('older kernel without %F: pidfd is null when the argument is absent', () => {
    const a = parseCoreArgs(FULL.slice(0, 10));
    expect(a.pidfd).toBeNull();
    expect(a.dumpable).toBe(1);
    expect(a.pid).toBe(4242);
  });

  it('an empty %F (kernel that leaves it blank) gives pidfd null', () => {
    expect(parseCoreArgs(withArg(10, '')).pidfd).toBeNull();
  });

  it('missing optional tail (%t %c %h %d %F absent): defaults', () => {
    const before = Math.floor(Date.now() / 1000);
    const a = parseCoreArgs(FULL.slice(0, 6));
    const after = Math.floor(Date.now() / 1000);
    expect(a.rlimitCore).toBeNull();
    expect(a.hostname).toBeNull();
    expect(a.dumpable).toBeNull();
    expect(a.pidfd).toBeNull();
    expect(a.time).toBeGreaterThanOrEqual(before);
    expect(a.time).toBeLessThanOrEqual(after);
  });

  it('empty %i and %I give null tids', () => {
    const a = parseCoreArgs(['4242', '', '', '0', '0', '6', '1', '0', 'h', '2', '']);
    expect(a.tidInNamespace).toBeNull();
    expect(a.tid).toBeNull();
    expect(a.dumpable).toBe(2);
    expect(a.rlimitCore).toBe(0);
  });

  it('accepts uid/gid 0 and the largest 32-bit ids', () => {
    expect(parseCoreArgs(withArg(3, '0')).uid).toBe(0);
    expect(parseCoreArgs(withArg(4, '4294967295')).gid).toBe(4294967295);
  });

  it.each([1, 6, 11, 31, 34, 64])('accepts signal %i', (sig) => {
    expect(parseCoreArgs(withArg(5, String(sig))).signal).toBe(sig);
  });

  it('keeps a hostile hostname with spaces and newlines as one string', () => {
    const h = 'evil host\nname; rm -rf / \t$(id)';
    expect(parseCoreArgs(withArg(8, h)).hostname).toBe(h);
  });

  it('caps the hostname at 256 characters', () => {
    const h = 'x'.repeat(300);
    const got = parseCoreArgs(withArg(8, h)).hostname;
    expect(got).toBe('x'.repeat(256));
  });

  it('keeps a hostname of exactly 256 characters whole', () => {
    const h = 'ab'.repeat(128);
    expect(parseCoreArgs(withArg(8, h)).hostname).toBe(h);
  });

  it('an empty hostname becomes null', () => {
    expect(parseCoreArgs(withArg(8, '')).hostname).toBeNull();
  });
});

describe('parseCoreArgs: invalid input', () => {
  it.each([
    ['no arguments at all', [], /missing pid/],
    ['non-numeric pid', withArg(0, 'abc'), /pid \(%P\) is not a number/],
    ['negative pid', withArg(0, '-1'), /pid \(%P\) is not a number/],
    ['pid with a sign', withArg(0, '+5'), /not a number/],
    ['pid in hex', withArg(0, '0x10'), /not a number/],
    ['pid with spaces', withArg(0, ' 12'), /not a number/],
    ['pid with a fraction', withArg(0, '1.5'), /not a number/],
    ['pid 0', withArg(0, '0'), /pid \(%P\) must be positive/],
    ['pid beyond 2^53 (20 digits)', withArg(0, '99999999999999999999'), /pid \(%P\) is out of range/],
    ['pid with 21 digits', withArg(0, '123456789012345678901'), /pid \(%P\) is not a number/],
    ['signal 0', withArg(5, '0'), /signal \(%s\) out of range: 0/],
    ['signal 65', withArg(5, '65'), /signal \(%s\) out of range: 65/],
    ['signal missing', FULL.slice(0, 5), /missing signal/],
    ['signal non-numeric', withArg(5, 'SEGV'), /signal \(%s\) is not a number/],
    ['uid missing (empty)', withArg(3, ''), /missing uid/],
    ['gid non-numeric', withArg(4, 'root'), /gid \(%g\) is not a number/],
    ['huge uid', withArg(3, '18446744073709551615'), /uid \(%u\) is out of range/],
    ['non-numeric time', withArg(6, 'yesterday'), /time \(%t\) is not a number/],
    ['non-numeric core limit', withArg(7, 'unlimited'), /core limit \(%c\) is not a number/],
    ['negative core limit', withArg(7, '-1'), /core limit \(%c\) is not a number/],
    ['core limit with 21 digits', withArg(7, '184467440737095516150'), /core limit \(%c\) is not a number/],
    ['non-numeric dumpable', withArg(9, 'yes'), /dumpable \(%d\) is not a number/],
    ['non-numeric pidfd', withArg(10, 'fd'), /pidfd \(%F\) is not a number/],
    ['non-numeric tid', withArg(2, '12a'), /global tid \(%I\) is not a number/],
  ])('%s → CoreArgsError', (_what, argv, message) => {
    expect(() => parseCoreArgs(argv)).toThrow(CoreArgsError);
    expect(() => parseCoreArgs(argv)).toThrow(message);
  });

  it('quotes at most 40 characters of a bad value', () => {
    const bad = `x${'y'.repeat(100)}`;
    let err: unknown;
    try {
      parseCoreArgs(withArg(0, bad));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CoreArgsError);
    const msg = (err as Error).message;
    expect(msg).toContain(JSON.stringify(bad.slice(0, 40)));
    expect(msg).not.toContain(bad.slice(0, 41));
  });

  it('quotes a hostile value as JSON, so control characters do not reach the log raw', () => {
    expect(() => parseCoreArgs(withArg(0, '1\n2'))).toThrow('"1\\n2"');
  });
});

describe('signalName', () => {
  it.each([
    [1, 'SIGHUP'],
    [2, 'SIGINT'],
    [6, 'SIGABRT'],
    [7, 'SIGBUS'],
    [8, 'SIGFPE'],
    [9, 'SIGKILL'],
    [11, 'SIGSEGV'],
    [15, 'SIGTERM'],
    [31, 'SIGSYS'],
    [34, 'SIGRTMIN+0'],
    [35, 'SIGRTMIN+1'],
    [40, 'SIGRTMIN+6'],
    [64, 'SIGRTMIN+30'],
    [32, 'SIG32'],
    [33, 'SIG33'],
    [0, 'SIG0'],
    [65, 'SIG65'],
    [200, 'SIG200'],
  ])('signalName(%i) = %s', (n, name) => {
    expect(signalName(n)).toBe(name);
  });
});

describe('parseSignal', () => {
  it.each([
    ['SIGSEGV', 11],
    ['segv', 11],
    ['Segv', 11],
    ['sigsegv', 11],
    ['SEGV', 11],
    ['11', 11],
    ['6', 6],
    ['SIGABRT', 6],
    ['abrt', 6],
    ['SIGSYS', 31],
    ['kill', 9],
    ['SIGRTMIN+1', 35],
    ['SIGRTMIN+30', 64],
    ['rtmin+2', 36],
  ])('parseSignal(%j) = %i', (s, n) => {
    expect(parseSignal(s)).toBe(n);
  });

  it.each(['', 'SIG', 'bogus', 'SIGBOGUS', 'SEG V', '-11', '11.0', ' 11'])('parseSignal(%j) is undefined', (s) => {
    expect(parseSignal(s)).toBeUndefined();
  });

  it('every named signal 1..31 round-trips through signalName', () => {
    for (let n = 1; n <= 31; n++) expect(parseSignal(signalName(n))).toBe(n);
  });

  it('every signal the kernel can report (1..64) round-trips through signalName', () => {
    // `flightbox list` prints signalName(); `--signal` must accept what list printed.
    const failures: string[] = [];
    for (let n = 1; n <= 64; n++) if (parseSignal(signalName(n)) !== n) failures.push(`${n}=${signalName(n)}`);
    expect(failures).toEqual([]);
  });
});
