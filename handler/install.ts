// Installing the handler in the kernel: a short launcher script (the kernel truncates
// core_pattern at 127 bytes and runs the helper with an almost empty environment, so the
// node binary, the handler and the config path are baked into the launcher), the pattern
// itself, kernel.core_pipe_limit, and an optional sysctl.d drop-in for reboots.
// The previous values are saved in the store and restored exactly by uninstall.
//
// core_pipe_limit is set to 0 on purpose. With a limit N > 0 the kernel waits for each
// handler to exit (keeping /proc/<pid> alive longer) but silently skips every crash beyond
// the Nth concurrent one ("over core_pipe_limit, skipping core dump"). With 0 it never
// skips; /proc/<pid> then stays readable only until the core has been read from stdin,
// which is why the handler reads /proc first.
import { existsSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freezeFifoPath, type Config } from '../lib/config.js';
import { FlightboxError, errnoCode, messageOf } from '../lib/errors.js';
import { checkSecureDir, ensureSecureDir, readSmallNoFollow, writeFileAtomic } from '../lib/safe-fs.js';
import { SEARCH_PATH, findProgram } from '../lib/programs.js';
import { formatSize } from '../lib/units.js';
import { EU_STACK_MODULE_FLAGS, MAX_BACKTRACE_OUTPUT_BYTES, euStackBudgetMs, euStackFrameFlags } from './backtrace.js';
import { CORE_PATTERN_SPECIFIERS } from './core-args.js';
import { MAX_FDS_LISTED, PROC_FILES } from './proc-reader.js';
import { CORE_PREFIX_BYTES, CORE_WHOLE_BYTES, DRAIN_LOCKS, LAUNCHER_EARLY, LAUNCHER_EXE_FD, LAUNCHER_PIPE_FILE, LAUNCHER_FROZE_FILE, LAUNCHER_TRACE, LAUNCHER_ZSTD, OVERFLOW_FILE_MAX_BYTES, SPOOL_DAEMON_FILE, launcherZstdDir, launcherZstdFile, overflowDir, spoolCrashes, traceMode } from './run-dir.js';
import { HANDLERS_DIR } from '../store/handler-slots.js';

export const CORE_PATTERN_MAX_BYTES = 127;
export const INSTALL_STATE_FILE = 'install-state.json';
export const LAUNCHER_NAME = 'core-handler';

export interface KernelPaths {
  corePattern: string;
  corePipeLimit: string;
}
export const KERNEL_PATHS: KernelPaths = {
  corePattern: '/proc/sys/kernel/core_pattern',
  corePipeLimit: '/proc/sys/kernel/core_pipe_limit',
};

export interface InstallState {
  version: 1;
  installedAt: string;
  pattern: string;
  launcher: string;
  configPath: string | null;
  persistent: boolean;
  previous: { corePattern: string; corePipeLimit: string };
  dropIn: { path: string; previousContent: string | null } | null;
  /**
   * The size the launcher makes the pipe of a core longer than its prefix; null: left at the
   * kernel's (why: corePipeWhy). Absent in states written before it existed.
   */
  corePipeBytes?: number | null;
  corePipeWhy?: 'config' | 'no-perl';
}

export interface InstallOptions {
  /** The config file the handler must read; null = its default path. */
  configPath: string | null;
  /** Also write the sysctl.d drop-in (survives reboots). */
  persist: boolean;
  kernel?: KernelPaths;
  nodePath?: string;
  handlerPath?: string;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The handler bundle `npm run build` makes (scripts/bundle-handler.mjs). */
export const HANDLER_BUNDLE_NAME = 'flightbox-handler.cjs';

/**
 * The handler the launcher runs: the one-file bundle, which holds a crashed process ~40 ms
 * less than the same code loaded module by module; main.js (the same code, unbundled) when
 * the tree was compiled without the bundle step.
 */
export function defaultHandlerPath(): string {
  const dir = dirname(fileURLToPath(import.meta.url));
  const bundle = resolve(dir, HANDLER_BUNDLE_NAME);
  return existsSync(bundle) ? bundle : resolve(dir, 'main.js');
}

export function launcherPath(cfg: Config): string {
  return cfg.install.launcher ?? join(cfg.store.root, LAUNCHER_NAME);
}

export function patternFor(launcher: string): string {
  return `|${launcher} ${CORE_PATTERN_SPECIFIERS.join(' ')}`;
}

/** What the launcher needs to record crashes itself (handler/overflow.ts). */
export interface OverflowParams {
  storeRoot: string;
  /** null: no crash-storm path (every crash is captured, core included) */
  maxConcurrent: number | null;
  environ: boolean;
  /** core.honourRlimit: a crash with RLIMIT_CORE 0 keeps no core, so none is read */
  honourRlimit: boolean;
  /** eu-stack started by the launcher on a core it read whole; null: node runs it */
  trace: LauncherTrace | null;
  /** the core's pipe enlarged by the launcher once the core is longer than its prefix; null: left at the kernel's size */
  pipe: LauncherPipe | null;
  /** zstd started by the launcher on a core it read whole; null: node compresses every core */
  zstd: LauncherZstd | null;
  /** the daemon's freeze FIFO (daemon/freeze-fifo.ts), which the launcher writes its crash's line to */
  freezeFifo: string;
}

/** The zstd (absolute path) the launcher compresses a core it read whole with, and the level (core.level). */
export interface LauncherZstd {
  zstd: string;
  level: number;
}

/** perl (absolute path) sets the pipe's size (F_SETPIPE_SZ): no shell or coreutils program can. */
export interface LauncherPipe {
  perl: string;
  bytes: number;
}

/** The programs the launcher's eu-stack is run with (absolute paths), and its time budget in seconds. */
export interface LauncherTrace {
  env: string;
  timeout: string;
  euStack: string;
  seconds: number;
  /** backtrace.source: source lines and inlined frames */
  source: boolean;
}

export function overflowParams(cfg: Config): OverflowParams {
  return {
    storeRoot: cfg.store.root, maxConcurrent: cfg.core.maxConcurrent, environ: cfg.capture.environ, honourRlimit: cfg.core.honourRlimit,
    trace: launcherTrace(cfg),
    pipe: launcherPipe(cfg),
    zstd: launcherZstd(cfg),
    freezeFifo: freezeFifoPath(cfg),
  };
}

function launcherZstd(cfg: Config): LauncherZstd | null {
  const zstd = cfg.core.compress === 'zstd' ? findProgram('zstd') : null;
  return zstd ? { zstd, level: cfg.core.level } : null;
}

function launcherPipe(cfg: Config): LauncherPipe | null {
  const perl = cfg.core.pipeBufferBytes === null ? null : findProgram('perl');
  return perl ? { perl, bytes: cfg.core.pipeBufferBytes! } : null;
}

/** F_SETPIPE_SZ and F_GETPIPE_SZ (linux/fcntl.h: F_LINUX_SPECIFIC_BASE + 7 and + 8, on every architecture). */
const F_SETPIPE_SZ = 1031;
const F_GETPIPE_SZ = 1032;

/**
 * The launcher's pipe(): the kernel's pipe of a core longer than the prefix (its stdin) made
 * \`bytes\` big, or as big as the kernel allows (halving until it takes it: the ring's array
 * may not be allocatable at once). Root may exceed fs.pipe-max-size. The size it got goes to
 * "pipe" for the manifest. perl runs a fixed program on its stdin only; nothing from the
 * crashed process reaches its command line, and its environment is the kernel's.
 */
function pipeFunction(p: LauncherPipe): string[] {
  return [
    '# a core longer than the prefix: its pipe made bigger, so that the kernel goes on writing',
    '# while node starts and while the core is written to disk (handler/install.ts pipeFunction)',
    'pipe() {',
    `  ${shellQuote(p.perl)} -e 'for ($n = ${p.bytes}; $n >= 65536; $n >>= 1) { last if fcntl(STDIN, ${F_SETPIPE_SZ}, $n) } print fcntl(STDIN, ${F_GETPIPE_SZ}, 0) + 0, "\\n"' >"$d/${LAUNCHER_PIPE_FILE}" 2>/dev/null`,
    '}',
  ];
}

/** When the stack trace would be eu-stack's and env, timeout and eu-stack are all there. */
function launcherTrace(cfg: Config): LauncherTrace | null {
  const tool = cfg.backtrace.tool;
  if (tool !== 'auto' && tool !== 'eu-stack') return null;
  const env = findProgram('env');
  const timeout = findProgram('timeout');
  const euStack = findProgram('eu-stack');
  if (!env || !timeout || !euStack) return null;
  return { env, timeout, euStack, seconds: Math.ceil(euStackBudgetMs(tool, cfg.backtrace.timeoutMs) / 1000), source: cfg.backtrace.source };
}

/**
 * The launcher's trace(): eu-stack's two runs on a core the launcher read whole (the module
 * run in the background of the frame run), in the background, so that they run while node
 * starts; node waits for the frame run's exit status (handler/backtrace.ts launcherRun). The
 * same program, options, environment, time budget (timeout -s KILL) and output cap
 * (RLIMIT_FSIZE, SIGXFSZ ignored) as node's own runs; the executable through the fd the
 * launcher opened. `started` holds the mode (traceMode), for node to check against its config.
 * The status file appears whole (renamed) once both are done.
 * Run with the entry as its working directory (release()), and every path relative to it:
 * the entry may be renamed while eu-stack runs (offered to the daemon, handoff()).
 */
function traceFunction(t: LauncherTrace): string[] {
  const q = shellQuote;
  const f = LAUNCHER_TRACE;
  return [
    '# the stack trace of a core read whole, taken while node starts (handler/backtrace.ts)',
    'trace() {',
    '  x=',
    `  [ -f "$d/exefd" ] && x=/proc/self/fd/${LAUNCHER_EXE_FD}`,
    `  { printf '%s\\n' ${traceMode(t.source)} >${f.started}; } 2>/dev/null || return 0`,
    '  (',
    "    trap '' XFSZ",
    `    ulimit -S -f ${Math.ceil(MAX_BACKTRACE_OUTPUT_BYTES / 512) + 16}`,
    `    eu() { ${q(t.env)} -i PATH=${SEARCH_PATH.join(':')} LC_ALL=C HOME=/nonexistent ${q(t.timeout)} -s KILL ${t.seconds} ${q(t.euStack)} --core=core \${x:+-e "$x"} "$@" </dev/null; }`,
    `    eu ${EU_STACK_MODULE_FLAGS.join(' ')} >${f.modules} 2>/dev/null &`,
    `    eu ${euStackFrameFlags(t.source).join(' ')} >${f.out} 2>${f.err}`,
    '    s=$?',
    '    wait',
    `    printf '%s\\n' $s >${f.status}.tmp && mv -f ${f.status}.tmp ${f.status}`,
    '  ) >/dev/null 2>&1 &',
    '}',
  ];
}

/**
 * Free space the launcher wants on its tmpfs before it reads a core on past its first part:
 * the rest of the core (at most CORE_WHOLE_BYTES), and as much again for other crashes being
 * captured, twice over. A dd that fills tmpfs loses what it read from the pipe; below this
 * node reads the rest. (The compressed copy goes to the store's disk: launcherZstdFile.)
 */
export const LAUNCHER_ROOM_BYTES = 4 * CORE_WHOLE_BYTES;

/**
 * The launcher's squeeze(): zstd on a core the launcher read whole, in the background, so that
 * the core is compressed while node starts (node then takes the result into the bundle,
 * handler/capture.ts). Single-threaded (--single-thread: compression and I/O in one thread,
 * small buffers), not with a worker per CPU as node compresses longer cores: on a core of up
 * to 32 MiB, zstd's multi-threaded mode copies the input into fresh job buffers (16 MiB of
 * random bytes here: 9,000 page faults and 96 ms of CPU against 1,300 and 38 ms; text 116 ms
 * against 78), which a crash pays for in CPU taken from eu-stack and node, and in memory,
 * once per concurrent crash; its only gain, two jobs of a compressible core of 8 MiB and more
 * compressed side by side when a CPU is free, did not make up for it.
 * Its output goes beside the store's staging directories (launcherZstdFile: on the store's
 * filesystem, root's alone), so that the bundle links it instead of copying it; a full disk
 * fails zstd, and node compresses. The core comes on stdin; `z` says at which level, for node
 * to check against its config. The status file appears whole (renamed) once zstd is done;
 * anything but 0 and node compresses itself. Like trace(), run in the entry, with paths
 * relative to it (the output's path is made from the entry's name before it can change).
 * Started before trace(): with the stack trace from symbol tables (a few ms), the compression
 * is what a bundle waits for last, and it keeps its priority.
 */
function squeezeFunction(z: LauncherZstd, storeRoot: string): string[] {
  const f = LAUNCHER_ZSTD;
  return [
    '# the core read whole, compressed while node starts (handler/capture.ts)',
    'squeeze() {',
    `  { printf '%s\\n' ${z.level} >${f.started}; } 2>/dev/null || return 0`,
    `  zo=${shellQuote(launcherZstdFile(storeRoot, ''))}"\${d##*/}"`,
    '  (',
    '    s=1',
    '    # only into the store\'s own staging directory (root\'s, no link, nor the store\'s root),',
    '    # and only as a new file (noclobber): never through a link planted there',
    `    if ${[storeRoot, launcherZstdDir(storeRoot)].map((p) => `[ -d ${shellQuote(p)} ] && [ ! -L ${shellQuote(p)} ] && [ -O ${shellQuote(p)} ]`).join(' && ')}; then`,
    '      set -C',
    `      ${shellQuote(z.zstd)} -q -${z.level} --single-thread -c <core >"$zo" 2>${f.err}`,
    '      s=$?',
    '    fi',
    `    printf '%s\\n' $s >${f.status}.tmp && mv -f ${f.status}.tmp ${f.status}`,
    '  ) >/dev/null 2>&1 &',
    '}',
  ];
}

/**
 * The launcher's daemon(): the running daemon that takes crashes (daemon/crash-taker.ts), its pid
 * and start time into dp and ds, read from the spool (root's own, like the rest of it) and
 * checked against /proc; fails when there is none, or it is gone.
 */
function daemonFunction(): string[] {
  return [
    '# the daemon that takes crashes read whole (daemon/crash-taker.ts): dp ds; fails when none lives',
    'daemon() {',
    '  dp= ds=',
    `  read -r dp ds 2>/dev/null <"$in/${SPOOL_DAEMON_FILE}" || return 1`,
    '  start "$dp"',
    '  [ -n "$st" ] && [ "$st" = "$ds" ]',
    '}',
  ];
}

/**
 * The launcher's handoff(): a crash it read whole (released, eu-stack started) is offered to
 * the running daemon instead of starting node. The entry is renamed offer.<entry>@<daemon>
 * (handler/run-dir.ts SPOOL_OFFER_RE) and its name written on the daemon's FIFO, which also
 * freezes the recorders for it; the daemon claims it by renaming it and makes the bundle with a
 * warm node (no 45-90 ms start, index open). The FIFO refuses the line (no daemon reading it,
 * stopping, full): the launcher renames it back and node records the crash as before; the daemon
 * got there first (its sweep of its offers): nothing left to do. The daemon's own crash is
 * never offered to it.
 */
function handoffFunction(): string[] {
  return [
    '# the crash read whole, offered to the running daemon instead of starting node (daemon/crash-taker.ts)',
    'handoff() {',
    `  daemon && [ "$1" != "$dp" ] && [ -f "$d/${LAUNCHER_TRACE.started}" ] || return 0`,
    '  fifook || return 0',
    '  e=${d##*/}',
    '  o="$in/offer.$e@$dp-$ds"',
    '  mv -T "$d" "$o" 2>/dev/null || return 0',
    '  if tell take "$e"; then',
    '    # this launcher no longer stores a core: the offer counts for it now',
    '    [ -n "$max" ] && rm -f "$in/handlers/$$-$self"',
    '    exit 0',
    '  fi',
    '  mv -T "$o" "$d" 2>/dev/null || exit 0',
    '}',
  ];
}

/**
 * The launcher's early() and hand(): node started beside the launcher's copies, so that its own
 * start (40-80 ms: node, the handler's code, the config, node:crypto, SQLite) is not added
 * after them. It is started right after the entry is made, with the core's pipe as its stdin
 * (for a core the launcher does not read whole; /dev/null for a crash whose core is not read:
 * a reader of the pipe left open would hold the process) but nothing else, and it waits in
 * handler/main.ts (--early) for LAUNCHER_EARLY.go: the launcher writes dd's exit status there
 * once the crash is in the entry, where it would have exec'd node with it. The launcher then
 * waits for that node: its pid stays the entry's writer (drainers leave the entry alone) and
 * the owner of its handler slot, and node opens the executable through its fd 9. That node
 * writes LAUNCHER_EARLY.taken before anything else; without it (it died first, or could not
 * write) the launcher records the crash with a node of its own, as before. Anything else that
 * ends the capture (tmpfs full, the crash handed to the daemon) kills it unused.
 * Not started while other handlers store cores (core.maxConcurrent's count: in a storm the
 * CPUs are busy and its start would only slow the launchers holding crashed processes; the
 * bench's storm was released after 2.7-2.9 s with it, 2.3 s before), nor when a daemon takes crashes (it
 * makes the bundle with a warm node), nor when
 * the kernel waits for every reader of the core's pipe before it releases the process
 * (core_pipe_limit other than 0, which install never sets): node holds the pipe from its start.
 */
function earlyFunctions(nodeCommand: string): string[] {
  const e = LAUNCHER_EARLY;
  return [
    '# node started beside the copies, waiting for "$d/go" (handler/install.ts earlyFunctions)',
    '# ($1 = pipe: with the core\'s pipe as its stdin, else /dev/null: a crash whose core is not read)',
    'early() {',
    '  ep=',
    '  # not while other crashes are being recorded (a storm): the CPUs are taken, and their',
    '  # launchers hold crashed processes',
    '  [ "$live" = 0 ] || return 0',
    '  daemon && return 0',
    '  if [ "$1" = pipe ]; then',
    '    cpl=',
    '    read -r cpl 2>/dev/null </proc/sys/kernel/core_pipe_limit',
    '    [ "$cpl" = 0 ] || return 0',
    '    # (the pipe by hand: sh gives a background command /dev/null for its stdin)',
    `    { ${nodeCommand} --early "$d" 0<&8 8<&- >/dev/null 2>&1 & } 8<&0`,
    '  else',
    `    ${nodeCommand} --early "$d" </dev/null >/dev/null 2>&1 &`,
    '  fi',
    '  ep=$!',
    '}',
    '# that node, killed unused',
    'unearly() {',
    '  [ -n "$ep" ] && kill -9 "$ep" 2>/dev/null',
    '  ep=',
    '  return 0',
    '}',
    '# the crash to that node, with dd\'s status $1; returns when it never took it',
    'hand() {',
    '  [ -n "$ep" ] || return 0',
    `  { printf '%s\\n' "$1" >"$d/${e.go}"; } 2>/dev/null || { unearly; return 0; }`,
    '  wait "$ep"',
    '  ep=',
    `  [ -d "$d" ] && [ ! -e "$d/${e.taken}" ] || exit 0`,
    '}',
  ];
}

/**
 * The launcher, in POSIX sh. It records the crash itself before node starts: the kernel
 * holds the crashed process until its core has been read, and node takes 40-50 ms to start.
 * It copies /proc/<pid> (one cp of the files, one find of the links, each copy capped at
 * 4 MiB by RLIMIT_FSIZE with SIGXFSZ ignored) into a root-only directory on tmpfs
 * (handler/run-dir.ts overflowDir), then the first CORE_PREFIX_BYTES of the core (one dd),
 * and, once it has made the pipe bigger, the rest up to CORE_WHOLE_BYTES (a second dd).
 * A core that ended there is read whole: the process is released, eu-stack and zstd start on
 * the copy in the background, and node makes the bundle from it (--spooled; or the running
 * daemon, handoffFunction; or, without a daemon, the node started beside these copies,
 * earlyFunctions); a longer core keeps the pipe open for node, which goes on reading it where
 * the launcher stopped. With core.maxConcurrent set it first counts the live handlers
 * storing cores (<spool>/handlers/<pid>-<start time>, store/handler-slots.ts) with shell
 * builtins; at the cap it records the crash without its core and leaves it to a drainer
 * (handler/overflow.ts) instead of starting node at all.
 *
 * The kernel's arguments are only used once checked to be digits (%P, %s, %t, %F) or written
 * out verbatim (all of them, each ended by NUL); what is read from the crashed process only
 * ever goes through cp, find and dd into files named here. Anything unexpected (no spool
 * directory, or one that is not root's; arguments that are not digits) and
 * node does it all, as it always could. A crash with RLIMIT_CORE 0 (when core.honourRlimit)
 * keeps no core: the launcher copies /proc and releases the process without reading any.
 */
export function launcherScript(nodePath: string, handlerPath: string, configPath: string | null, params: OverflowParams | null = null): string {
  const config = configPath ? ` --config ${shellQuote(configPath)}` : '';
  const head = [
    '#!/bin/sh',
    '# flightbox core_pattern launcher, written by `flightbox install`; removed by `flightbox uninstall`.',
  ];
  const nodeCommand = `${shellQuote(nodePath)} ${shellQuote(handlerPath)}${config}`;
  const node = `exec ${nodeCommand}`;
  if (!params) return [...head, `${node} -- "$@"`, ''].join('\n');
  const files = [...PROC_FILES, ...(params.environ ? ['environ'] : [])].map((f) => `"$p/${f}"`).join(' ');
  const storm = params.maxConcurrent !== null;
  return [
    ...head,
    '# It records the crash before node starts (handler/install.ts launcherScript): /proc and the',
    '# first part of the core go to a root-only directory on tmpfs, then node takes over.',
    `root=${shellQuote(params.storeRoot)}`,
    `in=${shellQuote(overflowDir(params.storeRoot))}`,
    `max=${params.maxConcurrent ?? ''}`,
    `honour=${params.honourRlimit ? 1 : 0}`,
    `drain() { ${node} --drain "$root"; }`,
    'digits() { case $1 in \'\'|*[!0-9]*) return 1 ;; esac; }',
    '# start time (stat field 22) of pid $1 into st; empty when there is no such process',
    'start() {',
    '  st=',
    '  digits "$1" || return 0',
    '  read -r line 2>/dev/null <"/proc/$1/stat" || return 0',
    '  set -f',
    '  set -- ${line##*")"}',
    '  set +f',
    '  [ $# -ge 20 ] && st=${20}',
    '  return 0',
    '}',
    '# the pid the pidfd $1 names (its fdinfo)',
    'pidfd() {',
    '  while read -r k v; do [ "$k" = Pid: ] && printf \'%s\\n\' "$v"; done 2>/dev/null <"/proc/$$/fdinfo/$1"',
    '  return 0',
    '}',
    '# a new entry for this crash in $d; fails when it cannot be made',
    'entry() {',
    '  start $$',
    '  self=$st',
    '  [ -n "$self" ] || return 1',
    '  umask 077',
    '  d="$in/$7.$1.$$"',
    '  mkdir "$d" 2>/dev/null',
    '}',
    '# /proc/$1 into $d: stat first, stat again last; fails when tmpfs takes nothing (full)',
    'copy() {',
    '  p=/proc/$1',
    '  { printf \'%s %s\\n\' "$$" "$self" >"$d/writer" && printf \'%s\\0\' "$@" >"$d/args"; } 2>/dev/null || return 1',
    '  printf \'%s\\n\' "$live" >"$d/live"',
    '  pfd=${11}',
    '  digits "$pfd" && pidfd "$pfd" >"$d/pidfd"',
    '  trap \'\' XFSZ',
    `  ulimit -S -f ${OVERFLOW_FILE_MAX_BYTES / 512}`,
    '  # each fd\'s fdinfo too, unless there are more fds than the handler lists (MAX_FDS_LISTED)',
    '  set -- "$p"/fd/*',
    '  fdi=',
    `  [ $# -le ${MAX_FDS_LISTED} ] && fdi="$p/fdinfo"`,
    `  cp -r ${files} \${fdi:+"$fdi"} "$d/" 2>/dev/null`,
    '  # The executable, open for node\'s stack-trace tool: its path may name something else, or a',
    '  # FIFO, here (a container). (command: a failed redirection must not end this shell.)',
    `  command exec ${LAUNCHER_EXE_FD}<"$p/exe" 2>/dev/null && printf '${LAUNCHER_EXE_FD}\\n' >"$d/exefd"`,
    '  find "$p/exe" "$p/cwd" "$p/root" "$p/ns" "$p/fd" "/proc/$$/ns" -maxdepth 1 -printf \'%p\\0%l\\0\' >"$d/links" 2>/dev/null',
    '  ulimit -S -f unlimited',
    '  trap - XFSZ',
    '  all=',
    '  while IFS= read -r l || [ -n "$l" ]; do all="$all$l"; done 2>/dev/null <"$p/stat"',
    '  printf \'%s\' "$all" >"$d/stat.after"',
    '  digits "$pfd" && pidfd "$pfd" >"$d/pidfd.after"',
    '  return 0',
    '}',
    '# beyond core.maxConcurrent: no core, no node for this crash (handler/overflow.ts)',
    'overflow() {',
    '  exec 2>/dev/null',
    '  entry "$@" || return 0',
    '  # Once copied, this crash is recorded here: never also by node.',
    '  copy "$@" || { rm -rf "$d"; return 0; }',
    '  : >"$d/complete"',
    '  printf \'<5>flightbox: process %s dumped core (signal %s) during a crash storm: recorded without its core\\n\' "$1" "$6" >/dev/kmsg',
    `  exec 0</dev/null ${LAUNCHER_EXE_FD}<&-`,
    '  # Become a drainer, unless live ones hold both locks (they look again before they exit).',
    `  for l in ${DRAIN_LOCKS.join(' ')}; do`,
    '    set -C',
    '    { printf \'%s %s\\n\' "$$" "$self" >"$in/$l"; } && drain',
    '    set +C',
    '    read -r lp ls <"$in/$l"',
    '    start "$lp"',
    '    [ -n "$st" ] && [ "$st" = "$ls" ] || drain',
    '  done',
    '  exit 0',
    '}',
    ...(params.trace ? traceFunction(params.trace) : []),
    ...(params.pipe ? pipeFunction(params.pipe) : []),
    ...(params.zstd ? squeezeFunction(params.zstd, params.storeRoot) : []),
    '# the daemon\'s recorders frozen for this crash: one line on its FIFO once the core (or its',
    '# first part) is read, never waiting (daemon/freeze-fifo.ts); `frozen` tells node it went',
    `fifo=${shellQuote(params.freezeFifo)}`,
    '# whether the FIFO is there and root\'s (never a file planted in its place)',
    'fifook() { [ -p "$fifo" ] && [ -O "$fifo" ]; }',
    '# one line "$1 $2" on it, never waiting; fails when no one reads it, or it is full or gone',
    `tell() { printf '%s %s\\n' "$1" "$2" | LC_ALL=C dd of="$fifo" oflag=nonblock conv=notrunc,nocreat status=none 2>/dev/null; }`,
    'freeze() {',
    '  fifook || return 0',
    `  tell spool "\${d##*/}" && : >"$d/${LAUNCHER_FROZE_FILE}"`,
    '  return 0',
    '}',
    ...daemonFunction(),
    '# whether the launcher\'s tmpfs has $1 bytes free (stat -f); when it cannot tell, no',
    'roomy() {',
    '  r=$(LC_ALL=C stat -f -c \'%a %S\' "$in" 2>/dev/null) || return 1',
    '  set -f',
    '  set -- "$1" $r',
    '  set +f',
    '  [ $# = 3 ] && digits "$2" && digits "$3" && [ $(($2 * $3)) -ge "$1" ]',
    '}',
    '# the core was read whole: the process goes, and its compression and stack trace start,',
    '# in the entry: their paths must outlive its renaming (handoff)',
    'release() {',
    '  exec 0</dev/null',
    '  : >"$d/released"',
    '  rel=1',
    `  cd "$d" || return 0${params.zstd ? '\n  squeeze' : ''}${params.trace ? '\n  trace' : ''}`,
    '  cd /',
    '}',
    ...(params.trace ? handoffFunction() : []),
    ...earlyFunctions(nodeCommand),
    '# below the cap: /proc and the first part of the core here, the rest by node',
    'capture() {',
    '  rel=',
    '  entry "$@" || return 0',
    '  early pipe',
    '  # tmpfs full: node reads /proc and the core itself, as without the launcher',
    '  { : >"$d/handler"; } 2>/dev/null && copy "$@" || { unearly; rm -rf "$d"; return 0; }',
    `  LC_ALL=C dd bs=${CORE_PREFIX_BYTES} count=1 iflag=fullblock of="$d/core" 2>"$d/dd"`,
    '  rc=$?',
    '  recs=',
    '  read -r recs rest 2>/dev/null <"$d/dd"',
    '  # "1+0 records": the prefix is full and the core may go on: with the pipe made bigger,',
    `  # read on up to ${CORE_WHOLE_BYTES / 1024 / 1024} MiB in all; else (either time) it ended: release it.`,
    '  # (dd failed: node keeps what it wrote and says so; it could not have been written.)',
    '  if [ "$rc" = 0 ]; then',
    '    case $recs in',
    `      1+*)${params.pipe ? ' pipe' : ''}`,
    '        # only with room on tmpfs: a dd that fills it loses what it read (node reads on instead)',
    `        if roomy ${LAUNCHER_ROOM_BYTES}; then`,
    `          LC_ALL=C dd bs=${CORE_WHOLE_BYTES - CORE_PREFIX_BYTES} count=1 iflag=fullblock oflag=append conv=notrunc of="$d/core" 2>"$d/dd"`,
    '          rc=$?',
    '          recs=',
    '          read -r recs rest 2>/dev/null <"$d/dd"',
    '          [ "$rc" = 0 ] && case $recs in 1+*) ;; *) release ;; esac',
    '        fi ;;',
    '      *) release ;;',
    '    esac',
    '  fi',
    ...(params.trace ? ['  [ -n "$rel" ] && [ -z "$ep" ] && handoff "$@"'] : []),
    '  freeze',
    '  hand "$rc"',
    `  ${node} --spooled "$d" "$rc"`,
    '}',
    '# RLIMIT_CORE 0 (ulimit -c 0) and core.honourRlimit: no core is kept, so none is read',
    'nocore() {',
    '  entry "$@" || return 0',
    '  early',
    '  { : >"$d/handler"; } 2>/dev/null && copy "$@" || { unearly; rm -rf "$d"; return 0; }',
    '  exec 0</dev/null',
    '  : >"$d/released"',
    '  freeze',
    '  hand 0',
    `  ${node} --spooled "$d" 0`,
    '}',
    'if digits "$1" && digits "$6" && digits "$7" && [ -d "$in" ] && [ ! -L "$in" ] && [ -O "$in" ]; then',
    '  live=0',
    '  [ "$8" = 0 ] && [ "$honour" = 1 ] && nocore "$@"',
    ...(storm ? [
      '  for e in "$in"/handlers/*; do',
      '    n=${e##*/}',
      '    case $n in *[!0-9-]*|-*|*-|*-*-*) continue ;; *-*) ;; *) continue ;; esac',
      '    start "${n%-*}"',
      '    [ -n "$st" ] && [ "$st" = "${n#*-}" ] && live=$((live + 1))',
      '  done',
      '  # crashes handed to the running daemon and not yet bundles count as handlers storing cores',
      '  daemon && for e in "$in"/*@"$dp-$ds"; do [ -e "$e" ] && live=$((live + 1)); done',
      '  [ "$live" -ge "$max" ] && overflow "$@"',
      '  # Counted by the next launchers at once, not only once node has started (the same pid',
      '  # and start time after exec: the handler takes the entry as its own, store/handler-slots.ts).',
      '  start $$',
      '  if [ -n "$st" ] && [ -d "$in/handlers" ] && [ ! -L "$in/handlers" ]; then',
      '    set -C',
      '    { : >"$in/handlers/$$-$st"; } 2>/dev/null',
      '    set +C',
      '  fi',
    ] : []),
    '  capture "$@"',
    'fi',
    '# (its directory missing after a reboot: node makes it for the next crash)',
    'export FLIGHTBOX_SPOOL="$in"',
    `${node} -- "$@"`,
    '',
  ].join('\n');
}

/** What `flightbox status` says of the core pipe: as installed, and whether the config now asks for something else. */
export function corePipeLine(cfg: Config, state: InstallState | null): string | null {
  if (!state || state.corePipeBytes === undefined) return null;
  const now = state.corePipeBytes !== null
    ? `${formatSize(state.corePipeBytes)} for cores longer than ${formatSize(CORE_PREFIX_BYTES)}`
    : `64 KiB, the kernel's (${state.corePipeWhy === 'no-perl' ? 'perl was not found at install' : 'core.pipeBuffer: null'})`;
  const wanted = cfg.core.pipeBufferBytes;
  const stale = state.corePipeWhy !== 'no-perl' && wanted !== state.corePipeBytes;
  return stale ? `${now}; the config now says ${wanted === null ? 'null' : formatSize(wanted)}: run flightbox install again` : now;
}

/** The launcher's directory, for `flightbox status`. */
export interface OverflowStatus {
  dir: string;
  /** missing: the next crash's handler (or install) makes it */
  state: 'ready' | 'missing' | 'unsafe';
  /** crashes spooled by launchers, not yet bundles (being recorded, or waiting for a drainer) */
  waiting: number;
  /** entries a drainer could not read, kept as failed.<name> */
  failed: number;
  detail?: string;
}

export function overflowStatus(cfg: Config): OverflowStatus {
  const dir = overflowDir(cfg.store.root);
  try {
    checkSecureDir(dir);
  } catch (err) {
    return errnoCode(err) === 'ENOENT'
      ? { dir, state: 'missing', waiting: 0, failed: 0 }
      : { dir, state: 'unsafe', waiting: 0, failed: 0, detail: messageOf(err) };
  }
  return { dir, state: 'ready', ...spoolCrashes(readdirSync(dir)) };
}

function readKernel(path: string): string {
  return readFileSync(path, 'utf8').replace(/\n$/, '');
}

function writeKernel(path: string, value: string): void {
  writeFileSync(path, `${value}\n`);
}

function statePath(cfg: Config): string {
  return join(cfg.store.root, INSTALL_STATE_FILE);
}

export function readInstallState(cfg: Config): InstallState | null {
  try {
    return JSON.parse(readSmallNoFollow(statePath(cfg), 1 << 20)) as InstallState;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw new FlightboxError('STORE_CORRUPT', `cannot read ${statePath(cfg)}: ${messageOf(err)}`);
  }
}

export function installHandler(cfg: Config, opts: InstallOptions): { state: InstallState; alreadyInstalled: boolean } {
  const kernel = opts.kernel ?? KERNEL_PATHS;
  const launcher = launcherPath(cfg);
  const pattern = patternFor(launcher);
  if (Buffer.byteLength(pattern) > CORE_PATTERN_MAX_BYTES) {
    throw new FlightboxError(
      'INSTALL_FAILED',
      `the core_pattern would be ${Buffer.byteLength(pattern)} bytes, over the kernel's limit of ${CORE_PATTERN_MAX_BYTES}: ` +
        `set install.launcher to a shorter path than ${JSON.stringify(launcher)}`,
    );
  }
  ensureSecureDir(cfg.store.root, 0o700);
  ensureSecureDir(dirname(launcher), 0o755);
  const current = readKernel(kernel.corePattern);
  const existing = readInstallState(cfg);
  const alreadyInstalled = existing !== null && current === existing.pattern;

  const overflow = overflowParams(cfg);
  ensureSecureDir(overflowDir(cfg.store.root), 0o700);
  ensureSecureDir(join(overflowDir(cfg.store.root), HANDLERS_DIR), 0o700);
  writeFileAtomic(dirname(launcher), basename(launcher), launcherScript(opts.nodePath ?? process.execPath, opts.handlerPath ?? defaultHandlerPath(), opts.configPath, overflow), 0o700);

  // Keep the values from before the first install: re-installing must not make our own
  // pattern the one to "restore".
  const previous = alreadyInstalled && existing
    ? existing.previous
    : { corePattern: current, corePipeLimit: readKernel(kernel.corePipeLimit) };
  let dropIn: InstallState['dropIn'] = alreadyInstalled && existing ? existing.dropIn : null;
  const persistent = opts.persist && cfg.install.sysctlDropIn !== null;
  if (persistent && cfg.install.sysctlDropIn && !dropIn) {
    const path = cfg.install.sysctlDropIn;
    let previousContent: string | null = null;
    try {
      previousContent = readFileSync(path, 'utf8');
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    dropIn = { path, previousContent };
  }
  const state: InstallState = {
    version: 1,
    installedAt: new Date().toISOString(),
    pattern,
    launcher,
    configPath: opts.configPath,
    persistent,
    previous,
    dropIn,
    corePipeBytes: overflow.pipe?.bytes ?? null,
    ...(overflow.pipe ? {} : { corePipeWhy: cfg.core.pipeBufferBytes === null ? 'config' as const : 'no-perl' as const }),
  };
  // State first: if anything below fails, uninstall still knows what to restore.
  writeFileAtomic(cfg.store.root, INSTALL_STATE_FILE, `${JSON.stringify(state, null, 2)}\n`, 0o600);

  if (readKernel(kernel.corePipeLimit) !== '0') writeKernel(kernel.corePipeLimit, '0');
  writeKernel(kernel.corePattern, pattern);
  const readBack = readKernel(kernel.corePattern);
  if (readBack !== pattern) {
    writeKernel(kernel.corePattern, previous.corePattern);
    throw new FlightboxError('INSTALL_FAILED', `the kernel kept ${JSON.stringify(readBack)} instead of ${JSON.stringify(pattern)}; restored the previous pattern`);
  }
  if (persistent && dropIn) {
    writeFileAtomic(dirname(dropIn.path), basename(dropIn.path), [
      '# Written by `flightbox install`; `flightbox uninstall` restores what was here before.',
      `kernel.core_pattern = ${pattern}`,
      'kernel.core_pipe_limit = 0',
      '',
    ].join('\n'), 0o644);
  }
  return { state, alreadyInstalled };
}

export interface UninstallResult {
  installed: boolean;
  restoredPattern: string | null;
  warnings: string[];
}

export function uninstallHandler(cfg: Config, opts: { kernel?: KernelPaths } = {}): UninstallResult {
  const kernel = opts.kernel ?? KERNEL_PATHS;
  const state = readInstallState(cfg);
  const warnings: string[] = [];
  if (!state) return { installed: false, restoredPattern: null, warnings };
  let restoredPattern: string | null = null;
  const current = readKernel(kernel.corePattern);
  if (current === state.pattern) {
    writeKernel(kernel.corePattern, state.previous.corePattern);
    restoredPattern = state.previous.corePattern;
    if (readKernel(kernel.corePipeLimit) !== state.previous.corePipeLimit) writeKernel(kernel.corePipeLimit, state.previous.corePipeLimit);
  } else {
    warnings.push(`core_pattern was changed by someone else since install (now ${JSON.stringify(current)}); left as it is`);
  }
  if (state.dropIn) {
    if (state.dropIn.previousContent === null) {
      try {
        unlinkSync(state.dropIn.path);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    } else {
      writeFileAtomic(dirname(state.dropIn.path), basename(state.dropIn.path), state.dropIn.previousContent, 0o644);
    }
  }
  try {
    unlinkSync(state.launcher);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') warnings.push(`could not remove ${state.launcher}: ${messageOf(err)}`);
  }
  // The crash-storm directory on tmpfs, unless crashes still wait in it (a drainer or the
  // daemon records them) or it is not ours; its locks and handler registry go with it.
  const spool = overflowDir(cfg.store.root);
  try {
    checkSecureDir(spool);
    const c = spoolCrashes(readdirSync(spool));
    const left = c.waiting + c.failed;
    if (left > 0) warnings.push(`${spool} still holds ${left} crash${left === 1 ? '' : 'es'} of a storm, left there for a drainer or the daemon (flightbox status)`);
    else rmSync(spool, { recursive: true, force: true });
  } catch {
    // none, or someone else's: nothing of ours to remove
  }
  unlinkSync(statePath(cfg));
  return { installed: true, restoredPattern, warnings };
}

export function handlerStatus(cfg: Config, kernel: KernelPaths = KERNEL_PATHS): {
  installed: boolean;
  active: boolean;
  corePattern: string;
  corePipeLimit: string;
  state: InstallState | null;
} {
  const state = readInstallState(cfg);
  const corePattern = readKernel(kernel.corePattern);
  return {
    installed: state !== null,
    active: state !== null && corePattern === state.pattern && existsSync(state.launcher),
    corePattern,
    corePipeLimit: readKernel(kernel.corePipeLimit),
    state,
  };
}
