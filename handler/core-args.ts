// Parse the arguments the kernel passes through core_pattern. Pure; the order is fixed by
// CORE_PATTERN_SPECIFIERS, which install writes into the pattern.

/** %P global pid, %i tid (its namespace), %I global tid, %u uid, %g gid, %s signal, %t time,
 *  %c RLIMIT_CORE, %h hostname (the crasher's UTS namespace), %d dumpable, %F pidfd (6.16+). */
export const CORE_PATTERN_SPECIFIERS = ['%P', '%i', '%I', '%u', '%g', '%s', '%t', '%c', '%h', '%d', '%F'] as const;

export interface CoreArgs {
  pid: number;
  tidInNamespace: number | null;
  tid: number | null;
  uid: number;
  gid: number;
  signal: number;
  /** seconds since the epoch, from the kernel */
  time: number;
  /** RLIMIT_CORE in bytes; null = unlimited */
  rlimitCore: number | null;
  hostname: string | null;
  dumpable: number | null;
  pidfd: number | null;
}

export class CoreArgsError extends Error {}

const U64_MAX = 18446744073709551615n;

function int(name: string, v: string | undefined, required: boolean): number | null {
  if (v === undefined || v === '') {
    if (required) throw new CoreArgsError(`missing ${name}`);
    return null;
  }
  if (!/^\d{1,20}$/.test(v)) throw new CoreArgsError(`${name} is not a number: ${JSON.stringify(v.slice(0, 40))}`);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new CoreArgsError(`${name} is out of range: ${v}`);
  return n;
}

export function parseCoreArgs(argv: readonly string[]): CoreArgs {
  const [P, i, I, u, g, s, t, c, h, d, F] = argv;
  const pid = int('pid (%P)', P, true)!;
  if (pid <= 0) throw new CoreArgsError(`pid (%P) must be positive, got ${pid}`);
  const signal = int('signal (%s)', s, true)!;
  if (signal <= 0 || signal > 64) throw new CoreArgsError(`signal (%s) out of range: ${signal}`);
  let rlimitCore: number | null = null;
  if (c !== undefined && c !== '') {
    if (!/^\d{1,20}$/.test(c)) throw new CoreArgsError(`core limit (%c) is not a number: ${JSON.stringify(c.slice(0, 40))}`);
    const big = BigInt(c);
    // RLIM_INFINITY arrives as 2^64-1; anything beyond 2^53 is unlimited for our purposes.
    rlimitCore = big >= U64_MAX || big > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(big);
  }
  return {
    pid,
    tidInNamespace: int('tid (%i)', i, false),
    tid: int('global tid (%I)', I, false),
    uid: int('uid (%u)', u, true)!,
    gid: int('gid (%g)', g, true)!,
    signal,
    time: int('time (%t)', t, false) ?? Math.floor(Date.now() / 1000),
    rlimitCore,
    hostname: h === undefined || h === '' ? null : h.slice(0, 256),
    dumpable: int('dumpable (%d)', d, false),
    pidfd: int('pidfd (%F)', F, false),
  };
}

export { SIGNAL_NAMES, parseSignal, signalName } from '../lib/signals.js';
