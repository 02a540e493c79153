// Read what /proc knows about the crashed process, while it still exists: the kernel keeps
// /proc/<pid> only until the core has been read from our stdin, so this runs first.
// Every value here is chosen by a possibly hostile process; nothing is followed or executed:
// links are read with readlink, never opened through.
import { closeSync, openSync, readSync, readdirSync, readlinkSync, constants } from 'node:fs';
import { messageOf } from '../lib/errors.js';

export const MAX_PROC_FILE_BYTES = 16 * 1024 * 1024;
export const MAX_FDS_LISTED = 4096;
/**
 * The files of /proc/<pid> kept in a bundle, stat first (the pid check compares it with a
 * second read at the end); environ only when capture.environ. The launcher copies the same.
 */
export const PROC_FILES = ['stat', 'status', 'cmdline', 'comm', 'cgroup', 'maps', 'limits', 'mountinfo', 'auxv', 'io', 'sched', 'oom_score', 'loginuid', 'sessionid', 'coredump_filter'] as const;

export interface ProcMeta {
  comm: string | null;
  exe: string | null;
  cmdline: string[] | null;
  cwd: string | null;
  root: string | null;
  ppid: number | null;
  /** pid as the process sees it in its own pid namespace (last NSpid entry) */
  pidInNamespace: number | null;
  /** pid path through nested namespaces, outermost first */
  nsPids: number[] | null;
  uids: number[] | null;
  gids: number[] | null;
  threads: number | null;
  startTimeTicks: number | null;
  cgroup: string | null;
  unit: string | null;
  namespaces: Record<string, string>;
  /** true when any of pid/mnt/user/net/uts/ipc differs from the handler's own */
  inContainer: boolean | null;
  fdCount: number | null;
}

export interface ProcFile {
  name: string;
  data: Buffer;
  mode: number;
}

export interface ProcState {
  meta: ProcMeta;
  files: ProcFile[];
  warnings: string[];
  /** false when /proc/<pid> was gone or belonged to another process by the end of the read */
  verified: boolean;
  /**
   * The executable, opened through /proc/<pid>/exe while the process lived (null when it
   * could not be, or the process was not the crashed one). The caller closes it.
   */
  exeFd: number | null;
}

export interface ReadProcOptions {
  procRoot?: string;
  environ?: boolean;
  /** pidfd from %F, to prove the /proc entry read is the crashed process and not a reused pid */
  pidfd?: number | null;
  /**
   * The handler's own start time (clock ticks since boot, /proc/self/stat). The kernel starts
   * the handler while the crashed process still holds its pid, so a process at that pid that
   * started later is an impostor (the pid was reused). Default: read from /proc/self/stat.
   */
  handlerStartTicks?: number | null;
}

/** Read up to `max` bytes of a /proc file; null when it cannot be read. */
export function readBounded(path: string, max = MAX_PROC_FILE_BYTES): Buffer | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(65536, max - total));
      if (buf.length === 0) break;
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
      total += n;
    }
    return Buffer.concat(chunks, total);
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

function link(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

function field(status: string, name: string): string | null {
  const m = new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status);
  return m?.[1] ?? null;
}

function numbers(s: string | null): number[] | null {
  if (s === null) return null;
  const out = s.trim().split(/\s+/).filter(Boolean).map(Number);
  return out.every(Number.isSafeInteger) ? out : null;
}

/** The systemd unit (or scope/slice leaf) a cgroup v2 path belongs to, if any. */
export function unitFromCgroup(cgroupPath: string | null): string | null {
  if (!cgroupPath) return null;
  const parts = cgroupPath.split('/').filter(Boolean);
  for (let i = parts.length - 1; i >= 0; i--) {
    const p = parts[i]!;
    if (/\.(service|scope)$/.test(p)) return p;
  }
  return null;
}

/** stat field 22 (starttime), robust to a comm containing spaces and parentheses. */
export function startTimeFromStat(stat: string | null): number | null {
  if (!stat) return null;
  const close = stat.lastIndexOf(')');
  if (close < 0) return null;
  const rest = stat.slice(close + 2).split(' ');
  // rest[0] is field 3 (state); starttime is field 22 → rest[19]
  const v = Number(rest[19]);
  return Number.isSafeInteger(v) ? v : null;
}

function pidOfPidfd(fd: number): number | null {
  return pidFromFdinfo(readBounded(`/proc/self/fdinfo/${fd}`, 8192)?.toString() ?? '');
}

/** The `Pid:` line of a pidfd's fdinfo. */
export function pidFromFdinfo(info: string): number | null {
  const m = /^Pid:\s*(-?\d+)/m.exec(info);
  return m ? Number(m[1]) : null;
}

/**
 * Where the state of a process is read from: its live /proc directory (liveProcSource), or
 * a copy the launcher made of it during a crash storm (handler/overflow.ts). The checks and
 * the parsing below are the same for both.
 */
export interface ProcSource {
  /** The directory named in warnings. */
  readonly label: string;
  /** A file of the process's /proc directory ('status', 'fdinfo/3'); null when unreadable. */
  read(name: string, max?: number): Buffer | null;
  /** A link of it ('exe', 'cwd', 'ns/pid', 'fd/3'); null when unreadable. */
  link(name: string): string | null;
  /** Its open file descriptors, by number (throws when they cannot be listed). */
  fds(): string[];
  /** stat, read again once everything else was read. */
  statAfter(): string | null;
  /** Which pid the kernel's pidfd (%F) names: before reading, and again after. */
  pidfdPid(when: 'before' | 'after'): number | null;
  /** The reading handler's own start time (clock ticks since boot). */
  handlerStartTicks(): number | null;
  /** The reading handler's own namespace link ('pid', 'mnt', ...). */
  ownNamespace(ns: string): string | null;
  /** The executable, opened while the process lived; null when not possible. */
  openExe(): number | null;
}

/** The live /proc/<pid>, read now. */
export function liveProcSource(pid: number, opts: ReadProcOptions = {}): ProcSource {
  const dir = `${opts.procRoot ?? '/proc'}/${pid}`;
  const pidfd = opts.pidfd ?? null;
  return {
    label: dir,
    read: (name, max) => readBounded(`${dir}/${name}`, max),
    link: (name) => link(`${dir}/${name}`),
    fds: () => readdirSync(`${dir}/fd`),
    statAfter: () => readBounded(`${dir}/stat`)?.toString('utf8') ?? null,
    pidfdPid: () => (pidfd === null ? null : pidOfPidfd(pidfd)),
    handlerStartTicks: () => (opts.handlerStartTicks !== undefined ? opts.handlerStartTicks : startTimeFromStat(readBounded('/proc/self/stat')?.toString() ?? null)),
    ownNamespace: (ns) => link(`/proc/self/ns/${ns}`),
    openExe: () => {
      // execve only runs regular files, so this never blocks
      try {
        return openSync(`${dir}/exe`, constants.O_RDONLY | constants.O_NONBLOCK);
      } catch {
        return null; // gone, or a kernel thread
      }
    },
  };
}

/** Nothing of a process that is not the crashed one: only the warnings saying why. */
function impostor(warnings: string[]): ProcState {
  const meta: ProcMeta = {
    comm: null, exe: null, cmdline: null, cwd: null, root: null, ppid: null, pidInNamespace: null, nsPids: null,
    uids: null, gids: null, threads: null, startTimeTicks: null, cgroup: null, unit: null, namespaces: {}, inContainer: null, fdCount: null,
  };
  return { meta, files: [], warnings, verified: false, exeFd: null };
}

export function readProcState(pid: number, opts: ReadProcOptions = {}): ProcState {
  return readProcStateFrom(pid, liveProcSource(pid, opts), { environ: opts.environ, checkPidfd: opts.pidfd !== null && opts.pidfd !== undefined, pidfd: opts.pidfd ?? null });
}

export function readProcStateFrom(pid: number, src: ProcSource, opts: { environ?: boolean; checkPidfd: boolean; pidfd: number | null }): ProcState {
  const dir = src.label;
  const warnings: string[] = [];
  const files: ProcFile[] = [];
  const text = (name: string): string | null => src.read(name)?.toString('utf8') ?? null;

  // Whose /proc is this? Checked before reading anything: an impostor's exe, command line and
  // environment must not end up in a crash bundle its crashing user may read.
  if (opts.checkPidfd) {
    const p = src.pidfdPid('before');
    if (p !== pid) {
      warnings.push(`pidfd ${opts.pidfd} refers to pid ${p ?? 'unknown'}, not ${pid}; /proc data belongs to another process and is not kept`);
      return impostor(warnings);
    }
  }
  const statBefore = text('stat');
  const handlerStart = src.handlerStartTicks();
  const theirStart = startTimeFromStat(statBefore);
  if (handlerStart !== null && theirStart !== null && theirStart > handlerStart) {
    warnings.push(`pid ${pid} now belongs to a process started after this handler (start time ${theirStart} > ${handlerStart} ticks): the pid was reused, its /proc data is not kept`);
    return impostor(warnings);
  }

  const commRaw = src.read('comm', 4096);
  if (commRaw === null) warnings.push(`Failed to read ${dir}/comm (process gone?), ignoring`);
  const statusText = text('status');
  const cmdlineRaw = src.read('cmdline');
  const cgroupText = text('cgroup');
  const cgroupV2 = cgroupText?.split('\n').find((l) => l.startsWith('0::'))?.slice(3) ?? null;

  const keep = (name: string, data: Buffer | null, mode = 0o640, mandatory = false) => {
    if (data === null) {
      if (mandatory) warnings.push(`Failed to read ${dir}/${name}, ignoring`);
      return;
    }
    files.push({ name, data, mode });
  };
  keep('status', statusText === null ? null : Buffer.from(statusText), 0o640, commRaw !== null);
  keep('stat', statBefore === null ? null : Buffer.from(statBefore));
  keep('cmdline', cmdlineRaw);
  keep('comm', commRaw);
  keep('cgroup', cgroupText === null ? null : Buffer.from(cgroupText));
  for (const name of PROC_FILES.slice(PROC_FILES.indexOf('maps'))) {
    keep(name, src.read(name), 0o640, commRaw !== null && (name === 'maps' || name === 'limits'));
  }
  if (opts.environ !== false) keep('environ', src.read('environ'), 0o600);

  // Open file descriptors: number → target, and each fdinfo (position, flags), as systemd does.
  let fdCount: number | null = null;
  try {
    const fds = src.fds().filter((n) => /^\d+$/.test(n)).sort((a, b) => Number(a) - Number(b));
    fdCount = fds.length;
    const lines: string[] = [];
    for (const fd of fds.slice(0, MAX_FDS_LISTED)) {
      lines.push(`${fd}:${src.link(`fd/${fd}`) ?? '?'}`);
      const info = src.read(`fdinfo/${fd}`, 65536)?.toString() ?? '';
      lines.push(...info.trimEnd().split('\n').filter(Boolean).map((l) => `  ${l}`));
    }
    if (fds.length > MAX_FDS_LISTED) lines.push(`... ${fds.length - MAX_FDS_LISTED} more`);
    files.push({ name: 'fds', data: Buffer.from(`${lines.join('\n')}\n`), mode: 0o640 });
  } catch (err) {
    if (commRaw !== null) warnings.push(`Failed to list ${dir}/fd, ignoring: ${messageOf(err)}`);
  }

  const namespaces: Record<string, string> = {};
  let inContainer: boolean | null = null;
  for (const ns of ['cgroup', 'ipc', 'mnt', 'net', 'pid', 'time', 'user', 'uts']) {
    const theirs = src.link(`ns/${ns}`);
    if (theirs === null) continue;
    namespaces[ns] = theirs;
    const ours = src.ownNamespace(ns);
    if (ours !== null && ['pid', 'mnt', 'user', 'net', 'uts', 'ipc'].includes(ns)) {
      inContainer = (inContainer ?? false) || ours !== theirs;
    }
  }
  if (Object.keys(namespaces).length > 0) {
    files.push({ name: 'ns', data: Buffer.from(`${Object.entries(namespaces).map(([k, v]) => `${k} ${v}`).join('\n')}\n`), mode: 0o640 });
  }

  const nsPids = numbers(statusText === null ? null : field(statusText, 'NSpid'));
  const meta: ProcMeta = {
    comm: commRaw === null ? null : commRaw.toString('utf8').replace(/\n$/, ''),
    exe: src.link('exe'),
    cmdline: cmdlineRaw === null ? null : cmdlineRaw.toString('utf8').replace(/\0$/, '').split('\0'),
    cwd: src.link('cwd'),
    root: src.link('root'),
    ppid: numbers(statusText === null ? null : field(statusText, 'PPid'))?.[0] ?? null,
    pidInNamespace: nsPids?.at(-1) ?? null,
    nsPids,
    uids: numbers(statusText === null ? null : field(statusText, 'Uid')),
    gids: numbers(statusText === null ? null : field(statusText, 'Gid')),
    threads: numbers(statusText === null ? null : field(statusText, 'Threads'))?.[0] ?? null,
    startTimeTicks: startTimeFromStat(statBefore),
    cgroup: cgroupV2,
    unit: unitFromCgroup(cgroupV2),
    namespaces,
    inContainer,
    fdCount,
  };

  // The executable itself, for the stack-trace tool: its path may name something else, or
  // nothing, in our mount namespace.
  const exeFd = src.openExe();

  // Verify at the end that what we read still belongs to the crashed process: same start
  // time, and (where the kernel gave us a pidfd) the pidfd still names this pid.
  let verified = commRaw !== null;
  if (verified) {
    const after = startTimeFromStat(src.statAfter());
    if (after === null || after !== meta.startTimeTicks || (opts.checkPidfd && src.pidfdPid('after') !== pid)) {
      warnings.push(`/proc/${pid} changed while it was read (start time ${meta.startTimeTicks} → ${after}): the pid was reused, its /proc data is not kept`);
      if (exeFd !== null) closeSync(exeFd);
      return impostor(warnings);
    }
  }
  return { meta, files, warnings, verified, exeFd };
}
