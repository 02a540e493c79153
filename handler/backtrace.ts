// Stack traces and build-ids from a core file, by elfutils' eu-stack (fast, one pass for
// both) or gdb (fallback). Runs after the crashed process has been released; bounded by a
// timeout and an output cap. Never runs anything the crashed process names: the exe is
// passed to the tool as a file to read, and gdb is told not to auto-load scripts.
import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';
import { readNoFollow } from '../lib/safe-fs.js';
import { LAUNCHER_TRACE } from './run-dir.js';
import { launcherStatus } from './launcher-status.js';
import type { ChildProcess } from 'node:child_process';
import type { BacktraceTool } from '../lib/config.js';
import { SEARCH_PATH, findProgram } from '../lib/programs.js';
import { builtin } from '../lib/builtin.js';

export const MAX_BACKTRACE_OUTPUT_BYTES = 8 * 1024 * 1024;
export const MAX_FRAMES_PER_THREAD = 64;

export interface Frame {
  n: number;
  addr: string | null;
  fn: string | null;
  module: string | null;
  source: string | null;
}
export interface ThreadTrace {
  tid: number;
  frames: Frame[];
}
export interface ModuleInfo {
  start: string;
  end: string;
  name: string;
  buildId: string | null;
  file: string | null;
}
export interface Backtrace {
  tool: 'eu-stack' | 'gdb' | null;
  text: string;
  threads: ThreadTrace[];
  modules: ModuleInfo[];
  warnings: string[];
}

const FRAME_EU = /^#(\d+)\s+0x([0-9a-f]+)(?:\s+(.*))?$/;

/**
 * Parse `eu-stack -l -m -s -i` output. Module and function names come from the crashed
 * process (its link_map, its binaries' symbol tables) and may hold " - ", newlines and
 * text shaped like frames or thread headers. So the grammar is checked strictly: a frame's
 * module must be a name from the module table, frame numbers run from 0 without gaps, thread
 * ids are unique (and at most `maxThreads`), and no line is out of place. Output that breaks
 * any of these is ambiguous: no frames are trusted, and `ambiguous` says why.
 */
export function parseEuStack(text: string, opts: { maxThreads?: number | null } = {}): { threads: ThreadTrace[]; modules: ModuleInfo[]; ambiguous: string | null } {
  const threads: ThreadTrace[] = [];
  const modules: ModuleInfo[] = [];
  let current: ThreadTrace | null = null;
  let mod: ModuleInfo | null = null;
  let modLine = 0;
  let nextFrame = 0;
  let headers = 0;
  const tids = new Set<number>();
  const refuse = (why: string) => ({ threads: [], modules, ambiguous: why });
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (/^PID \d+ - core(?: module memory map)?$/.test(line)) {
      if (++headers > 2 || current) return refuse('a second process header');
      continue;
    }
    const tid = /^TID (\d+):$/.exec(line);
    if (tid) {
      const n = Number(tid[1]);
      if (tids.has(n)) return refuse(`thread ${n} appears twice`);
      tids.add(n);
      if (opts.maxThreads && tids.size > opts.maxThreads) return refuse(`more threads than the process had (${opts.maxThreads})`);
      current = { tid: n, frames: [] };
      threads.push(current);
      mod = null;
      nextFrame = 0;
      continue;
    }
    if (!current) {
      const m = /^0x([0-9a-f]+)-0x([0-9a-f]+)\s+(.+)$/.exec(line);
      if (m) {
        mod = { start: `0x${m[1]}`, end: `0x${m[2]}`, name: m[3]!, buildId: null, file: null };
        modules.push(mod);
        modLine = 0;
        continue;
      }
      if (mod && line.startsWith('  ')) {
        modLine++;
        const v = line.trim();
        if (modLine === 1) mod.buildId = /^\[([0-9a-f]+)\]$/.exec(v)?.[1] ?? null;
        else if (modLine === 2) mod.file = v === '-' ? null : v;
        continue;
      }
      return refuse('a line out of place in the module table');
    }
    const f = FRAME_EU.exec(line);
    if (f) {
      if (Number(f[1]) !== nextFrame) return refuse(`frame #${f[1]} where #${nextFrame} was due`);
      nextFrame++;
      const split = splitFrameRest(f[3] ?? '', modules);
      if (!split) return refuse('a frame whose module is not in the module table');
      if (current.frames.length < MAX_FRAMES_PER_THREAD) {
        current.frames.push({ n: Number(f[1]), addr: `0x${f[2]}`, fn: split.fn && split.fn !== '??' ? split.fn : null, module: split.module, source: null });
      }
      continue;
    }
    if (/^ {4}\S/.test(line)) {
      const last = current.frames.at(-1);
      if (last && last.source === null) last.source = line.trim();
      continue;
    }
    return refuse('a line out of place among the frames');
  }
  return { threads, modules, ambiguous: null };
}

/**
 * "FN - MODULE" or "- MODULE", where MODULE must be a name from the module table, or an
 * absolute path ending in one (eu-stack names the executable by the core's path of it when
 * not given it with -e, and lists it by its base name); the longest wins, and the frame's
 * module is the table's name.
 */
function splitFrameRest(rest: string, modules: readonly ModuleInfo[]): { fn: string | null; module: string | null } | null {
  const r = rest.trimEnd();
  // eu-stack names a symbol only inside a module: an address outside them all has neither.
  if (r === '' || r === '??') return { fn: null, module: null };
  // The path eu-stack may print for the executable: after the last " - /" (or a leading "- /").
  const at = r.lastIndexOf(' - /');
  const path = at >= 0 ? r.slice(at + 3) : r.startsWith('- /') ? r.slice(2) : null;
  let best: { shown: string; name: string } | null = null;
  for (const m of modules) {
    const shown = r === `- ${m.name}` || r.endsWith(` - ${m.name}`) ? m.name : path?.endsWith(`/${m.name}`) ? path : null;
    if (shown !== null && (best === null || shown.length > best.shown.length)) best = { shown, name: m.name };
  }
  if (best === null) return null;
  const fn = r.slice(0, r.length - best.shown.length - 2).trim();
  return { fn: fn === '' || fn === '-' ? null : fn, module: best.name };
}

/**
 * Split a gdb frame line "#N  [0xADDR in ]NAME (ARGS)[ at FILE:LINE| from LIB]" where NAME
 * may itself hold spaces and parentheses (C++: "std::function<void ()>::operator()() const").
 */
export function parseGdbFrame(line: string): Frame | null {
  const head = /^#(\d+)\s+(?:(0x[0-9a-f]+) in )?(.*)$/.exec(line);
  if (!head) return null;
  let rest = head[3]!.trimEnd();
  let source: string | null = null;
  let module: string | null = null;
  const at = / at (\S+:\d+)$/.exec(rest);
  const from = / from (\S+)$/.exec(rest);
  if (at) { source = at[1]!; rest = rest.slice(0, at.index); }
  else if (from) { module = from[1]!; rest = rest.slice(0, from.index); }
  // The argument list is the last balanced "( ... )" group at the end.
  let fn = rest;
  if (rest.endsWith(')')) {
    let depth = 0;
    for (let i = rest.length - 1; i >= 0; i--) {
      const ch = rest[i];
      if (ch === ')') depth++;
      else if (ch === '(' && --depth === 0) {
        if (i > 0 && rest[i - 1] === ' ') fn = rest.slice(0, i - 1);
        break;
      }
    }
  }
  fn = fn.trim();
  return { n: Number(head[1]), addr: head[2] ?? null, fn: fn === '' || fn === '??' ? null : fn, module, source };
}

export function parseGdbBacktrace(text: string): ThreadTrace[] {
  const threads: ThreadTrace[] = [];
  let current: ThreadTrace | null = null;
  for (const line of text.split('\n')) {
    const t = /^Thread \d+ \(.*?(?:LWP|process) (\d+)\)/.exec(line);
    if (t) {
      current = { tid: Number(t[1]), frames: [] };
      threads.push(current);
      continue;
    }
    if (!current) continue;
    const f = parseGdbFrame(line);
    if (f && current.frames.length < MAX_FRAMES_PER_THREAD) current.frames.push(f);
  }
  return threads;
}

export interface RunResult {
  out: string;
  err: string;
  status: number | null;
  error?: string;
  timedOut: boolean;
}

/**
 * Run a tool with a time limit (SIGKILL) and an output cap, without blocking the event loop:
 * the stack trace runs while the core is being compressed.
 */
export function runTool(file: string, args: string[], timeoutMs: number, fd3: number | null = null): Promise<RunResult> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let error: string | undefined;
    let timedOut = false;
    let done = false;
    let child: ChildProcess;
    const finish = (status: number | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(grace);
      resolve({ out: Buffer.concat(out).toString('utf8'), err: Buffer.concat(err).toString('utf8'), status, error, timedOut });
    };
    let grace: NodeJS.Timeout | undefined;
    const kill = (why: string, isTimeout: boolean): void => {
      if (error === undefined) error = why;
      timedOut ||= isTimeout;
      child.kill('SIGKILL');
      // Whatever inherited its pipes may keep them open: do not wait for it.
      grace = setTimeout(() => { child.stdout?.destroy(); child.stderr?.destroy(); finish(null); }, 1000);
    };
    try {
      child = builtin('node:child_process').spawn(file, args, {
        stdio: fd3 === null ? ['ignore', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe', fd3],
        env: { PATH: SEARCH_PATH.join(':'), LC_ALL: 'C', HOME: '/nonexistent' },
        cwd: '/',
      });
    } catch (e) {
      resolve({ out: '', err: '', status: null, error: (e as Error).message, timedOut: false });
      return;
    }
    const timer = setTimeout(() => kill(`timed out after ${timeoutMs} ms`, true), timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      if (outBytes >= MAX_BACKTRACE_OUTPUT_BYTES) return;
      const keep = d.subarray(0, MAX_BACKTRACE_OUTPUT_BYTES - outBytes);
      out.push(keep);
      outBytes += keep.length;
      if (outBytes >= MAX_BACKTRACE_OUTPUT_BYTES) kill(`output over ${MAX_BACKTRACE_OUTPUT_BYTES} bytes, cut there`, false);
    });
    child.stderr!.on('data', (d: Buffer) => {
      if (errBytes < 65536) { err.push(d); errBytes += d.length; }
    });
    child.on('error', (e) => {
      if (error === undefined) error = e.message;
      finish(null);
    });
    child.on('close', (code) => finish(code));
  });
}

export interface BacktraceOptions {
  tool: BacktraceTool;
  timeoutMs: number;
  /**
   * An fd of the crashed process's executable, opened from /proc/<pid>/exe while it lived:
   * the tool reads it as /proc/self/fd/3. The exe's path names a file in the crashed
   * process's mount namespace, which here may be another file, or a FIFO that never opens.
   */
  exeFd?: number | null;
  /** threads the process had (/proc status): more in the tool's output means forged lines */
  maxThreads?: number | null;
  /** an entry directory whose launcher already started eu-stack on this core (launcherRun) */
  launcherDir?: string | null;
  /** source lines and inlined frames (backtrace.source): needs the debug info's DWARF, slower */
  source?: boolean;
}

/** Share of the time budget eu-stack gets when gdb can follow (gdb gets the rest). */
const EU_STACK_SHARE = 0.6;

/**
 * eu-stack runs twice on a core, side by side. The module run lists the modules (address
 * ranges, build-ids, files) and resolves nothing: with no debug-info path (/dev/null holds no
 * file) it never loads separate debug info, which `-l` would otherwise load and decompress
 * whole (60-100 ms for libc's alone). The frame run unwinds and names functions from symbol
 * tables (a separate debug file's too: cheap, no DWARF); with backtrace.source it also gives
 * source lines and inlined frames, which do need the DWARF.
 */
export const EU_STACK_MODULE_FLAGS: readonly string[] = ['-l', '-q', '-n', '1', '--debuginfo-path=/dev/null'];

/** The frame run's options after --core and -e: module names, a frame limit, and with `source` source lines and inlined frames. */
export function euStackFrameFlags(source: boolean): string[] {
  return ['-m', ...(source ? ['-s', '-i'] : []), '-n', String(MAX_FRAMES_PER_THREAD)];
}

/**
 * One eu-stack text from the two runs: the module run's table (up to its frames, without each
 * module's debug-file line, which says nothing when no debug info was looked for), then the
 * frame run's output; parseEuStack reads it as it reads `eu-stack -l -m` in one run.
 */
export function composeEuStack(modulesOut: string, framesOut: string): string {
  const lines = modulesOut.split('\n');
  const table: string[] = [];
  let modLine = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (i > 0 && line.startsWith('PID ')) break;
    if (line.startsWith('  ')) {
      if (++modLine >= 3) continue;
    } else modLine = 0;
    if (line !== '') table.push(line);
  }
  return table.length > 0 ? `${table.join('\n')}\n${framesOut}` : framesOut;
}

/** The time eu-stack is given (ms) with backtrace.tool `tool` and backtrace.timeout `timeoutMs`. */
export function euStackBudgetMs(tool: BacktraceTool, timeoutMs: number): number {
  return tool === 'auto' ? Math.max(1000, timeoutMs * EU_STACK_SHARE) : Math.max(1000, timeoutMs);
}

/** What `timeout -s KILL` exits with when it killed the tool. */
const KILLED_BY_TIMEOUT = 137;
/** How long past its budget the launcher's eu-stack is waited for (it is killed at the budget). */
const LAUNCHER_TRACE_SLACK_MS = 2000;

/**
 * The eu-stack runs the launcher started on a core it read whole, while node was starting
 * (handler/install.ts): waited for until the frame run's exit status is written (the module
 * run has ended by then), then read as runTool would have returned them. One that never
 * finishes counts as timed out.
 */
export async function launcherRun(dir: string, budgetMs: number): Promise<RunResult & { modules: string }> {
  const status = await launcherStatus(join(dir, LAUNCHER_TRACE.status), Date.now() + budgetMs + LAUNCHER_TRACE_SLACK_MS);
  if (status === 'pending') return { out: '', err: '', modules: '', status: null, error: `the launcher's eu-stack did not finish within ${budgetMs} ms`, timedOut: true };
  const read = (name: string, max: number): string => {
    try {
      return readNoFollow(join(dir, name), max).toString('utf8');
    } catch {
      return '';
    }
  };
  const out = read(LAUNCHER_TRACE.out, MAX_BACKTRACE_OUTPUT_BYTES);
  const timedOut = status === KILLED_BY_TIMEOUT;
  const cut = Buffer.byteLength(out) >= MAX_BACKTRACE_OUTPUT_BYTES;
  const error = timedOut ? `timed out after ${budgetMs} ms` : cut ? `output over ${MAX_BACKTRACE_OUTPUT_BYTES} bytes, cut there` : undefined;
  return { out, err: read(LAUNCHER_TRACE.err, 65536), modules: read(LAUNCHER_TRACE.modules, MAX_BACKTRACE_OUTPUT_BYTES), status, timedOut, ...(error ? { error } : {}) };
}

export async function takeBacktrace(corePath: string, exe: string | null, opts: BacktraceOptions): Promise<Backtrace> {
  const warnings: string[] = [];
  const empty: Backtrace = { tool: null, text: '', threads: [], modules: [], warnings };
  if (opts.tool === 'none') return empty;
  const exeFd = opts.exeFd ?? null;
  let exeArg: string | null = exeFd !== null ? '/proc/self/fd/3' : null;
  // Without the fd (the process was gone), the path only when it is a regular file here;
  // the core's own file notes are enough for eu-stack and gdb otherwise.
  if (exeArg === null && exe && exe.startsWith('/') && !exe.endsWith(' (deleted)')) {
    try {
      accessSync(exe, constants.R_OK);
      if (statSync(exe).isFile()) exeArg = exe;
      else warnings.push(`executable ${JSON.stringify(exe)} is not a regular file here; symbols come from the core's file notes only`);
    } catch {
      warnings.push(`executable ${JSON.stringify(exe)} is not readable here; symbols come from the core's file notes only`);
    }
  }
  const started = Date.now();
  const deadline = started + opts.timeoutMs;
  let euTimedOut = false;
  if (opts.tool === 'auto' || opts.tool === 'eu-stack') {
    const eu = findProgram('eu-stack');
    if (!eu) warnings.push('eu-stack not found (install elfutils), ignoring');
    else {
      const args = [`--core=${corePath}`, ...(exeArg ? ['-e', exeArg] : [])];
      // With gdb to fall back on, eu-stack gets part of the budget: a core whose module list
      // names a file that never opens (a FIFO) must leave gdb time of its own.
      const budget = opts.tool === 'auto' ? euStackBudgetMs('auto', opts.timeoutMs) : Math.max(1000, deadline - Date.now());
      // The launcher's runs, when it started them: the same program, arguments and limits.
      const r = opts.launcherDir ? await launcherRun(opts.launcherDir, budget) : await (async () => {
        const [mods, frames] = await Promise.all([
          runTool(eu, [...args, ...EU_STACK_MODULE_FLAGS], budget, exeFd),
          runTool(eu, [...args, ...euStackFrameFlags(opts.source ?? false)], budget, exeFd),
        ]);
        return { ...frames, modules: mods.out };
      })();
      euTimedOut = r.timedOut;
      const text = composeEuStack(r.modules, r.out);
      const parsed = parseEuStack(text, { maxThreads: opts.maxThreads });
      if (parsed.ambiguous) {
        warnings.push(`the stack trace cannot be trusted (${parsed.ambiguous}: a name in the core or its files is shaped like trace lines); no frames kept`);
        return { tool: 'eu-stack', text, threads: [], modules: [], warnings };
      }
      if (parsed.threads.some((t) => t.frames.length > 0)) {
        if (r.error) warnings.push(`eu-stack: ${r.error}; the stack trace may be incomplete`);
        return { tool: 'eu-stack', text, threads: parsed.threads, modules: parsed.modules, warnings };
      }
      warnings.push(`eu-stack found no frames (${r.error ?? `exit ${r.status}`}: ${r.err.trim().split('\n')[0] ?? ''})`);
    }
  }
  if (opts.tool === 'auto' || opts.tool === 'gdb') {
    const gdb = findProgram('gdb');
    if (!gdb) warnings.push('gdb not found, ignoring');
    else {
      // eu-stack hung: most likely on a shared library path that never opens; gdb would hang
      // on the same one, so it does without shared libraries (frames of the executable only).
      const noSolibs = euTimedOut ? ['-iex', 'set auto-solib-add off', '-iex', 'set solib-search-path /nonexistent', '-iex', 'set sysroot /nonexistent'] : [];
      if (euTimedOut) warnings.push('eu-stack timed out; gdb ran without shared libraries');
      const args = ['-batch', '-nx', '-nh', '-iex', 'set auto-load off', '-iex', 'set debuginfod enabled off', ...noSolibs,
        '-ex', 'set pagination off', '-ex', 'info sharedlibrary', '-ex', 'thread apply all bt 64',
        ...(exeArg ? [exeArg] : []), '-c', corePath];
      const r = await runTool(gdb, args, Math.max(1000, deadline - Date.now()), exeFd);
      const threads = parseGdbBacktrace(r.out);
      if (threads.some((t) => t.frames.length > 0)) {
        if (r.error) warnings.push(`gdb: ${r.error}; the stack trace may be incomplete`);
        return { tool: 'gdb', text: r.out, threads, modules: [], warnings };
      }
      warnings.push(`gdb found no frames (${r.error ?? `exit ${r.status}`})`);
    }
  }
  return empty;
}
