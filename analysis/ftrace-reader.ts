// Our own reader of ftrace text: the `trace` file the recorder copies (trace.txt) and the
// text `trace-cmd report` makes of trace.dat. It understands the events the recorder
// enables (sched_switch, fork/exec/exit, signal_generate, raw_syscalls sys_enter/sys_exit)
// in the kernel's print format, trace-cmd's plugin format and its raw (-R) format; any
// other line is counted, not guessed at. System-call numbers are named from a table of
// the architecture the trace was recorded on.
import { findProgram } from '../lib/programs.js';
import type { ReaderSink, TraceEvent } from './activity.js';
import { syscallName, type SyscallArch } from './syscall-names.js';
import { streamCommandLines, streamFileLines, type Pace, type StreamOutcome } from './text-stream.js';

/** Longest name kept from a trace (the kernel's own are at most 15 bytes). */
const MAX_COMM_CHARS = 64;
/** Unparsed lines quoted in the warning. */
const MAX_QUOTED_CHARS = 120;

export interface FtraceReaderOptions {
  arch: SyscallArch;
  /**
   * The tracefs instance: `trace-cmd report` of an instance's buffer puts "NAME: " before
   * (most of) its lines.
   */
  instance?: string | null;
}

// "  comm-1234  (  1234) [001] d..2. 1214.042848: event: body"; the TGID column (option
// record-tgid) and the flags column are optional. The comm may hold spaces and dashes: the
// last "-digits" before the CPU column ends it.
const LINE_RE = /^\s*(.*?)-(\d{1,10})\s+(?:\(\s*(\d{1,10}|-+)\)\s+)?\[(\d{1,5})\]\s+(?:[^\s:]{1,8}\s+)?(\d{1,12}\.\d{1,9}):\s+([A-Za-z0-9_]{1,64}):\s*(.*)$/;
// "CPU:1 [LOST 34260 EVENTS]" (trace file), "CPU:1 [34260 EVENTS DROPPED]" (trace-cmd)
const LOST_RE = /^\s*CPU:\s*(\d{1,5}) \[(?:LOST (?:(\d{1,15}) )?EVENTS|(\d{1,15}) EVENTS DROPPED)\]/;

const SWITCH_FMT_RE = /^prev_comm=(.*?) prev_pid=(\d{1,10}) prev_prio=(-?\d+) prev_state=(\S*)(?: ==>)? next_comm=(.*?) next_pid=(\d{1,10}) next_prio=(-?\d+)/;
const SWITCH_PLUGIN_RE = /^(.*?):(\d{1,10}) \[(-?\d+)\] (\S+) ==> (.*?):(\d{1,10}) \[(-?\d+)\]/;
const SYS_ENTER_RE = /^(?:NR (-?\d{1,10}) \((.*)\)|id=(-?\d{1,10}) args=(.*))\s*$/;
const SYS_EXIT_RE = /^(?:NR (-?\d{1,10}) = (-?\d{1,20})|id=(-?\d{1,10}) ret=(-?\d{1,20}))/;
const FORK_RE = /^comm=(.*?) pid=(\d{1,10}) child_comm=(.*?) child_pid=(\d{1,10})/;
const EXEC_RE = /^filename=(.*) pid=(\d{1,10}) old_pid=(\d{1,10})\s*$/;
const EXIT_RE = /^comm=(.*?) pid=(\d{1,10})(?: |$)/;
const SIGNAL_RE = /^sig=(\d{1,3}) errno=(-?\d+) code=(-?\d+) comm=(.*?) pid=(\d{1,10})(?: |$)/;

const comm = (s: string): string => s.slice(0, MAX_COMM_CHARS);

/** What the kernel names a process after exec: the file's base name, cut to 15 bytes. */
export function commFromFilename(filename: string): string {
  const base = filename.slice(filename.lastIndexOf('/') + 1);
  const b = Buffer.from(base, 'utf8');
  return b.length <= 15 ? base : b.subarray(0, 15).toString('utf8').replace(/\uFFFD+$/, '');
}

export type ParsedLine = { kind: 'event'; event: TraceEvent } | { kind: 'lost'; cpu: number; count: number | null } | { kind: 'skip' } | { kind: 'bad' };

/** One line of ftrace text. Pure. */
export function parseFtraceLine(raw: string, opts: FtraceReaderOptions): ParsedLine {
  let line = raw;
  if (opts.instance && line.startsWith(`${opts.instance}: `)) line = line.slice(opts.instance.length + 2);
  if (line === '' || line.startsWith('#') || /^\s*$/.test(line) || /^cpus=\d+$/.test(line)) return { kind: 'skip' };
  const m = LINE_RE.exec(line);
  if (!m) {
    const lost = LOST_RE.exec(line);
    if (lost) {
      const n = lost[2] ?? lost[3];
      return { kind: 'lost', cpu: Number(lost[1]), count: n === undefined ? null : Number(n) };
    }
    return { kind: 'bad' };
  }
  const taskComm = m[1] ?? '';
  const tgidText = m[3];
  const event = parseBody(m[6] ?? '', m[7] ?? '', {
    ts: Number(m[5]),
    cpu: Number(m[4]),
    tid: Number(m[2]),
    tgid: tgidText !== undefined && tgidText.charCodeAt(0) !== 45 /* - */ ? Number(tgidText) : null,
    comm: taskComm === '<...>' || taskComm === '' ? null : comm(taskComm),
  }, opts.arch);
  return event === null ? { kind: 'bad' } : { kind: 'event', event };
}

type Base = { ts: number; cpu: number; tid: number; tgid: number | null; comm: string | null };

// Events are built as literals with every field spelled out (no spread): this runs for
// every line of a trace, and a literal of one fixed shape is several times faster.

function parseBody(name: string, body: string, b: Base, arch: SyscallArch): TraceEvent | null {
  switch (name) {
    case 'sched_switch': {
      const f = SWITCH_FMT_RE.exec(body) ?? SWITCH_PLUGIN_RE.exec(body);
      if (!f) return null;
      return {
        ts: b.ts, cpu: b.cpu, tid: b.tid, tgid: b.tgid, comm: b.comm, type: 'switch', prevComm: comm(f[1] ?? ''), prevTid: Number(f[2]), prevState: (f[4] ?? '').slice(0, 8),
        nextComm: comm(f[5] ?? ''), nextTid: Number(f[6]),
      };
    }
    case 'sys_enter': {
      const f = SYS_ENTER_RE.exec(body);
      if (!f) return null;
      return { ts: b.ts, cpu: b.cpu, tid: b.tid, tgid: b.tgid, comm: b.comm, type: 'syscall_entry', name: syscallName(arch, Number(f[1] ?? f[3])), args: (f[2] ?? f[4] ?? '').slice(0, 256) };
    }
    case 'sys_exit': {
      const f = SYS_EXIT_RE.exec(body);
      if (!f) return null;
      const ret = Number(f[2] ?? f[4]);
      return { ts: b.ts, cpu: b.cpu, tid: b.tid, tgid: b.tgid, comm: b.comm, type: 'syscall_exit', name: syscallName(arch, Number(f[1] ?? f[3])), ret: Number.isSafeInteger(ret) ? ret : null };
    }
    case 'sched_process_fork': {
      const f = FORK_RE.exec(body);
      if (!f) return null;
      return { ts: b.ts, cpu: b.cpu, tid: b.tid, tgid: b.tgid, comm: b.comm, type: 'fork', parentComm: comm(f[1] ?? ''), parentTid: Number(f[2]), childComm: comm(f[3] ?? ''), childTid: Number(f[4]) };
    }
    case 'sched_process_exec': {
      const f = EXEC_RE.exec(body);
      if (!f) return null;
      const filename = (f[1] ?? '').slice(0, 4096);
      return { ts: b.ts, cpu: b.cpu, tid: b.tid, tgid: b.tgid, comm: b.comm, type: 'exec', filename, newComm: commFromFilename(filename) };
    }
    case 'sched_process_exit': {
      const f = EXIT_RE.exec(body);
      if (!f) return null;
      return { ts: b.ts, cpu: b.cpu, tid: b.tid, tgid: b.tgid, comm: b.comm, type: 'exit', exitComm: comm(f[1] ?? ''), exitTid: Number(f[2]) };
    }
    case 'signal_generate': {
      const f = SIGNAL_RE.exec(body);
      if (!f) return null;
      return { ts: b.ts, cpu: b.cpu, tid: b.tid, tgid: b.tgid, comm: b.comm, type: 'signal', sig: Number(f[1]), targetComm: comm(f[4] ?? ''), targetTid: Number(f[5]) };
    }
    default:
      return { ts: b.ts, cpu: b.cpu, tid: b.tid, tgid: b.tgid, comm: b.comm, type: 'other', name, userspace: false };
  }
}

/** Feeds lines to a sink; counts what it could not read and quotes the first such line. */
export class FtraceLineReader {
  readonly #sink: ReaderSink;
  readonly #opts: FtraceReaderOptions;
  lines = 0;
  events = 0;
  bad = 0;
  #firstBad: string | null = null;

  constructor(sink: ReaderSink, opts: FtraceReaderOptions) {
    this.#sink = sink;
    this.#opts = opts;
  }

  line(text: string): void {
    this.lines++;
    const p = parseFtraceLine(text, this.#opts);
    switch (p.kind) {
      case 'event':
        this.events++;
        this.#sink.event(p.event);
        break;
      case 'lost':
        this.#sink.lost(p.cpu, p.count);
        break;
      case 'bad':
        this.bad++;
        this.#firstBad ??= text.slice(0, MAX_QUOTED_CHARS);
        break;
      case 'skip':
        break;
    }
  }

  warnings(label: string): string[] {
    const out: string[] = [];
    if (this.bad > 0) out.push(`${label}: ${this.bad} line${this.bad === 1 ? '' : 's'} not understood, ignored (the first: ${JSON.stringify(this.#firstBad)})`);
    if (this.lines > 0 && this.events === 0) out.push(`${label}: no trace events found`);
    return out;
  }
}

export interface ReadOutcome extends StreamOutcome {
  events: number;
}

/** Read ftrace text (trace.txt, or a saved `trace-cmd report`) from a file, streaming. */
export async function readFtraceText(path: string, sink: ReaderSink, opts: FtraceReaderOptions & { label?: string; maxBytes?: number; pace?: Pace }): Promise<ReadOutcome> {
  const reader = new FtraceLineReader(sink, opts);
  const label = opts.label ?? path;
  const r = await streamFileLines(path, (l) => reader.line(l), { label, maxBytes: opts.maxBytes, pace: opts.pace });
  return { ...r, warnings: [...r.warnings, ...reader.warnings(label)], events: reader.events };
}

/** `trace-cmd report -N` of a trace.dat (no plugins: the kernel's print formats, as in the trace file). */
export function traceCmdReportArgs(path: string): string[] {
  return ['report', '-N', '-i', path];
}

/** Read a trace.dat through `trace-cmd report`, streaming its output. */
export async function readTraceDat(
  path: string,
  sink: ReaderSink,
  opts: FtraceReaderOptions & { label?: string; traceCmd?: string | null; timeoutMs?: number; pace?: Pace },
): Promise<ReadOutcome> {
  const label = opts.label ?? path;
  const traceCmd = opts.traceCmd === undefined ? findProgram('trace-cmd') : opts.traceCmd;
  if (traceCmd === null) {
    return { warnings: [`${label} needs trace-cmd to be read, and it is not installed (apt-get install trace-cmd)`], bytes: 0, incomplete: true, events: 0 };
  }
  const reader = new FtraceLineReader(sink, opts);
  const r = await streamCommandLines(traceCmd, traceCmdReportArgs(path), (l) => reader.line(l), {
    label: `trace-cmd report of ${label}`, timeoutMs: opts.timeoutMs, pace: opts.pace,
  });
  return { ...r, warnings: [...r.warnings, ...reader.warnings(label)], events: reader.events };
}
