// Stack traces and build-ids from a core file, by elfutils' eu-stack (fast, one pass for
// both) or gdb (fallback). Runs after the crashed process has been released; bounded by a
// timeout and an output cap. Never runs anything the crashed process names: the exe is
// passed to the tool as a file to read, and gdb is told not to auto-load scripts.
import { accessSync, constants } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { BacktraceTool } from '../lib/config.js';
import { SEARCH_PATH, findProgram } from '../lib/programs.js';

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

const FRAME_EU = /^#(\d+)\s+0x([0-9a-f]+)(?:\s+(?!-\s)(.*?))?(?:\s+-\s+(\S+))?\s*$/;

export function parseEuStack(text: string): { threads: ThreadTrace[]; modules: ModuleInfo[] } {
  const threads: ThreadTrace[] = [];
  const modules: ModuleInfo[] = [];
  let current: ThreadTrace | null = null;
  let mod: ModuleInfo | null = null;
  let modLine = 0;
  for (const line of text.split('\n')) {
    const tid = /^TID (\d+):$/.exec(line);
    if (tid) {
      current = { tid: Number(tid[1]), frames: [] };
      threads.push(current);
      mod = null;
      continue;
    }
    const m = /^0x([0-9a-f]+)-0x([0-9a-f]+)\s+(.+)$/.exec(line);
    if (m && !current) {
      mod = { start: `0x${m[1]}`, end: `0x${m[2]}`, name: m[3]!, buildId: null, file: null };
      modules.push(mod);
      modLine = 0;
      continue;
    }
    if (mod && !current && line.startsWith('  ')) {
      modLine++;
      const v = line.trim();
      if (modLine === 1) mod.buildId = /^\[([0-9a-f]+)\]$/.exec(v)?.[1] ?? null;
      else if (modLine === 2) mod.file = v === '-' ? null : v;
      continue;
    }
    if (!current) continue;
    const f = FRAME_EU.exec(line);
    if (f) {
      if (current.frames.length < MAX_FRAMES_PER_THREAD) {
        current.frames.push({ n: Number(f[1]), addr: `0x${f[2]}`, fn: f[3] && f[3] !== '??' ? f[3] : null, module: f[4] ?? null, source: null });
      }
      continue;
    }
    const last = current.frames.at(-1);
    if (last && /^\s{4}\S/.test(line) && last.source === null) last.source = line.trim();
  }
  return { threads, modules };
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

function run(file: string, args: string[], timeoutMs: number): { out: string; err: string; status: number | null; error?: string } {
  const r = spawnSync(file, args, {
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    maxBuffer: MAX_BACKTRACE_OUTPUT_BYTES,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: SEARCH_PATH.join(':'), LC_ALL: 'C', HOME: '/nonexistent' },
    cwd: '/',
  });
  const error = r.error ? (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT' ? `timed out after ${timeoutMs} ms` : r.error.message : undefined;
  return { out: r.stdout ?? '', err: r.stderr ?? '', status: r.status, error };
}

export function takeBacktrace(corePath: string, exe: string | null, opts: { tool: BacktraceTool; timeoutMs: number }): Backtrace {
  const warnings: string[] = [];
  const empty: Backtrace = { tool: null, text: '', threads: [], modules: [], warnings };
  if (opts.tool === 'none') return empty;
  // Only pass the executable when it is a real path in our mount namespace; the core's
  // own file notes are enough for eu-stack and gdb otherwise.
  let exeArg: string | null = null;
  if (exe && exe.startsWith('/') && !exe.endsWith(' (deleted)')) {
    try {
      accessSync(exe, constants.R_OK);
      exeArg = exe;
    } catch {
      warnings.push(`executable ${JSON.stringify(exe)} is not readable here; symbols come from the core's file notes only`);
    }
  }
  const deadline = Date.now() + opts.timeoutMs;
  if (opts.tool === 'auto' || opts.tool === 'eu-stack') {
    const eu = findProgram('eu-stack');
    if (!eu) warnings.push('eu-stack not found (install elfutils), ignoring');
    else {
      const args = [`--core=${corePath}`, ...(exeArg ? ['-e', exeArg] : []), '-l', '-m', '-s', '-i', '-n', String(MAX_FRAMES_PER_THREAD)];
      const r = run(eu, args, Math.max(1000, deadline - Date.now()));
      const parsed = parseEuStack(r.out);
      if (parsed.threads.some((t) => t.frames.length > 0)) {
        if (r.error) warnings.push(`eu-stack: ${r.error}; the stack trace may be incomplete`);
        return { tool: 'eu-stack', text: r.out, threads: parsed.threads, modules: parsed.modules, warnings };
      }
      warnings.push(`eu-stack found no frames (${r.error ?? `exit ${r.status}`}: ${r.err.trim().split('\n')[0] ?? ''})`);
    }
  }
  if (opts.tool === 'auto' || opts.tool === 'gdb') {
    const gdb = findProgram('gdb');
    if (!gdb) warnings.push('gdb not found, ignoring');
    else {
      const args = ['-batch', '-nx', '-nh', '-iex', 'set auto-load off', '-iex', 'set debuginfod enabled off',
        '-ex', 'set pagination off', '-ex', 'info sharedlibrary', '-ex', 'thread apply all bt 64',
        ...(exeArg ? [exeArg] : []), '-c', corePath];
      const r = run(gdb, args, Math.max(1000, deadline - Date.now()));
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
