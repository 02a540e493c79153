// The LTTng snapshot (CTF) read through babeltrace2's text output: we do not decode CTF
// ourselves. Kernel events (sched_switch, syscall_entry_*/syscall_exit_*, fork, exec,
// exit, signal_generate) where lttng-modules recorded them; user-space tracepoints are
// counted per process. Lines are parsed with a small reader of babeltrace2's
// "{ name = value, ... }" scopes; anything else is counted, not guessed at.
import { findProgram } from '../lib/programs.js';
import type { ReaderSink, TraceEvent } from './activity.js';
import { commFromFilename } from './ftrace-reader.js';
import { streamCommandLines, type Pace, type StreamOutcome } from './text-stream.js';

export const BABELTRACE_MISSING = 'babeltrace2 is not installed (apt-get install babeltrace2): the LTTng snapshot cannot be read';
const MAX_COMM_CHARS = 64;
const MAX_SCOPES = 8;
const MAX_FIELDS = 256;

/** `babeltrace2 …` arguments for the text we parse: epoch seconds, no deltas. */
export function babeltraceArgs(ctfDir: string): string[] {
  return ['--clock-seconds', '--no-delta', ctfDir];
}

// "[1795686865.823889974] host event:name: { cpu_id = 0 }, { … }, { … }"; the host is absent
// when the trace has none.
const LINE_RE = /^\[(\d{1,12}(?:\.\d{1,9})?)\] (?:(\S{1,255}) )?([A-Za-z0-9_:.-]{1,255}): (.*)$/;

type Scope = Map<string, string>;

/**
 * The top-level `{ … }` groups of a babeltrace2 line, each as name → value text (strings
 * unquoted and unescaped; nested structures, arrays and enums kept as their text).
 * Bounded: at most MAX_SCOPES groups of MAX_FIELDS fields; null when it does not parse.
 */
export function parseScopes(text: string): Scope[] | null {
  const scopes: Scope[] = [];
  let i = 0;
  const n = text.length;
  const ws = () => { while (i < n && (text[i] === ' ' || text[i] === '\t')) i++; };
  while (i < n) {
    ws();
    if (i >= n) break;
    if (text[i] === ',') { i++; continue; }
    if (text[i] !== '{' || scopes.length >= MAX_SCOPES) return null;
    i++;
    const scope: Scope = new Map();
    for (;;) {
      ws();
      if (i >= n) return null;
      if (text[i] === '}') { i++; break; }
      if (text[i] === ',') { i++; continue; }
      const keyStart = i;
      while (i < n && /[A-Za-z0-9_.:[\]]/.test(text[i]!)) i++;
      const key = text.slice(keyStart, i);
      ws();
      if (key === '' || text.slice(i, i + 1) !== '=') return null;
      i++;
      ws();
      const v = readValue(text, i);
      if (v === null) return null;
      i = v.end;
      if (scope.size < MAX_FIELDS) scope.set(key, v.value);
    }
    scopes.push(scope);
  }
  return scopes;
}

/** One value starting at `i`: a string, a bracketed/braced/parenthesized group, or a bare word. */
function readValue(text: string, start: number): { value: string; end: number } | null {
  let i = start;
  const n = text.length;
  if (text[i] === '"') {
    let out = '';
    i++;
    while (i < n && text[i] !== '"') {
      if (text[i] === '\\' && i + 1 < n) {
        const c = text[i + 1]!;
        out += c === 'n' ? '\n' : c === 't' ? '\t' : c === 'r' ? '\r' : c;
        i += 2;
      } else out += text[i++];
    }
    if (i >= n) return null;
    return { value: out, end: i + 1 };
  }
  const open = text[i];
  if (open === '{' || open === '[' || open === '(') {
    // Skip to the matching close, minding strings; kept as text.
    let depth = 0;
    for (; i < n; i++) {
      const c = text[i];
      if (c === '"') {
        i++;
        while (i < n && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      } else if (c === '{' || c === '[' || c === '(') depth++;
      else if (c === '}' || c === ']' || c === ')') {
        depth--;
        if (depth === 0) return { value: text.slice(start, i + 1), end: i + 1 };
      }
    }
    return null;
  }
  while (i < n && text[i] !== ',' && text[i] !== '}') i++;
  return { value: text.slice(start, i).trim(), end: i };
}

const int = (v: string | undefined): number | null => {
  if (v === undefined || !/^-?\d{1,20}$/.test(v)) return null;
  const x = Number(v);
  return Number.isSafeInteger(x) ? x : null;
};

export type ParsedBtLine = { kind: 'event'; event: TraceEvent } | { kind: 'bad' };

/** One line of babeltrace2's text. Pure. */
export function parseBabeltraceLine(line: string): ParsedBtLine {
  const m = LINE_RE.exec(line);
  if (!m) return { kind: 'bad' };
  const scopes = parseScopes(m[4] ?? '');
  if (scopes === null || scopes.length === 0) return { kind: 'bad' };
  const payload = scopes[scopes.length - 1]!;
  const ctx = (k: string): string | undefined => {
    for (let s = 0; s < scopes.length - 1; s++) {
      const v = scopes[s]!.get(k);
      if (v !== undefined) return v;
    }
    return undefined;
  };
  const name = m[3] ?? '';
  const userspace = name.includes(':');
  // Kernel contexts are pid (the process), tid and procname; user space has vpid and vtid
  // (ids in the application's pid namespace).
  const tid = int(ctx('tid')) ?? int(ctx('vtid')) ?? int(ctx('pid')) ?? int(ctx('vpid'));
  const tgid = int(ctx('pid')) ?? int(ctx('vpid'));
  const procname = ctx('procname');
  const base = {
    ts: Number(m[1]),
    cpu: int(ctx('cpu_id')) ?? 0,
    tid: tid ?? 0,
    tgid,
    comm: procname === undefined ? null : procname.slice(0, MAX_COMM_CHARS),
  };
  const event = kernelEvent(name, payload, base) ?? { ...base, type: 'other' as const, name: name.slice(0, 128), userspace };
  return { kind: 'event', event };
}

type Base = { ts: number; cpu: number; tid: number; tgid: number | null; comm: string | null };

function kernelEvent(name: string, p: Scope, base: Base): TraceEvent | null {
  const s = (k: string) => (p.get(k) ?? '').slice(0, MAX_COMM_CHARS);
  const sc = /^(?:compat_)?syscall_(entry|exit)_(.+)$/.exec(name);
  if (sc) {
    const call = sc[2] === 'unknown' ? `sys_${p.get('id') ?? '?'}` : sc[2]!;
    if (sc[1] === 'entry') {
      const args = [...p].map(([k, v]) => `${k}=${v}`).join(', ').slice(0, 256);
      return { ...base, type: 'syscall_entry', name: call, args };
    }
    return { ...base, type: 'syscall_exit', name: call, ret: int(p.get('ret')) };
  }
  switch (name) {
    case 'sched_switch': {
      const prev = int(p.get('prev_tid'));
      const next = int(p.get('next_tid'));
      if (prev === null || next === null) return null;
      return { ...base, type: 'switch', prevTid: prev, prevComm: s('prev_comm'), prevState: s('prev_state').slice(0, 8), nextTid: next, nextComm: s('next_comm') };
    }
    case 'sched_process_fork': {
      const child = int(p.get('child_tid'));
      const parent = int(p.get('parent_tid'));
      if (child === null || parent === null) return null;
      const childPid = int(p.get('child_pid'));
      return { ...base, type: 'fork', parentTid: parent, parentComm: s('parent_comm'), childTid: child, childComm: s('child_comm'), ...(childPid === null ? {} : { childTgid: childPid }) };
    }
    case 'sched_process_exec': {
      const filename = (p.get('filename') ?? '').slice(0, 4096);
      return { ...base, type: 'exec', filename, newComm: commFromFilename(filename) };
    }
    case 'sched_process_exit': {
      const t = int(p.get('tid'));
      return t === null ? null : { ...base, type: 'exit', exitTid: t, exitComm: s('comm') };
    }
    case 'signal_generate': {
      const sig = int(p.get('sig'));
      const target = int(p.get('pid'));
      return sig === null || target === null ? null : { ...base, type: 'signal', sig, targetTid: target, targetComm: s('comm') };
    }
    default:
      return null;
  }
}

export interface LttngReadOutcome extends StreamOutcome {
  events: number;
  kernelEvents: number;
}

/** Read a CTF directory through babeltrace2, streaming its output into the sink. */
export async function readLttngCtf(
  ctfDir: string,
  sink: ReaderSink,
  opts: { label?: string; babeltrace?: string | null; timeoutMs?: number; pace?: Pace } = {},
): Promise<LttngReadOutcome> {
  const label = opts.label ?? ctfDir;
  const bt = opts.babeltrace === undefined ? findProgram('babeltrace2') : opts.babeltrace;
  if (bt === null) return { warnings: [BABELTRACE_MISSING], bytes: 0, incomplete: true, events: 0, kernelEvents: 0 };
  let events = 0;
  let kernelEvents = 0;
  let bad = 0;
  let firstBad: string | null = null;
  const r = await streamCommandLines(bt, babeltraceArgs(ctfDir), (line) => {
    if (line === '') return;
    const p = parseBabeltraceLine(line);
    if (p.kind === 'bad') {
      bad++;
      firstBad ??= line.slice(0, 120);
      return;
    }
    events++;
    if (p.event.type !== 'other' || !p.event.name.includes(':')) kernelEvents++;
    sink.event(p.event);
  }, {
    label: `babeltrace2 on ${label}`,
    timeoutMs: opts.timeoutMs,
    pace: opts.pace,
    // "WARNING: Tracer discarded 12 events between [...] and [...] in trace ..."
    onStderrLine: (l) => {
      const d = /discarded (\d{1,15}) events?/i.exec(l);
      if (d) sink.lost(null, Number(d[1]));
    },
  });
  const warnings = [...r.warnings];
  if (bad > 0) warnings.push(`${label}: ${bad} line${bad === 1 ? '' : 's'} of babeltrace2 output not understood, ignored (the first: ${JSON.stringify(firstBad)})`);
  return { ...r, warnings, events, kernelEvents };
}
