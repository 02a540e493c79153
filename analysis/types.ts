// What `flightbox top` (and the web page) learn from one bundle: per-process activity from
// the trace snapshot (ftrace or LTTng) and the metrics timeline before the event.

/** One process over a span of the trace. */
export interface ProcessActivity {
  pid: number;
  /** the last command name the trace gave it */
  comm: string;
  /** CPU time from sched_switch: time between being switched in and out */
  cpuMs: number;
  syscalls: number;
  /** most frequent syscalls, by count, at most 5 */
  topSyscalls: { name: string; count: number }[];
  /** open/openat/openat2/creat calls */
  opens: number;
  /** sums of successful return values of read-family / write-family syscalls */
  bytesRead: number;
  bytesWritten: number;
  /** every trace event it emitted (LTTng user-space events included) */
  events?: number;
  /** LTTng user-space tracepoints it hit most, by count, at most 5 */
  topEvents?: { name: string; count: number }[];
  /** signals generated for it (signal_generate), by count */
  signals?: { sig: number; name: string; count: number }[];
  /** threads seen, when the trace tells threads of one process apart (LTTng, ftrace with TGIDs) */
  threads?: number;
  /** the trace saw it exit */
  exited?: boolean;
}

/** A signal the trace saw generated. */
export interface SignalRecord {
  /** ms since the epoch */
  t: number;
  sig: number;
  name: string;
  /** the target */
  pid: number;
  comm: string;
  /** who sent it (the task that was running), null when unknown */
  fromPid: number | null;
  fromComm: string | null;
}

/** One sample of the metrics recorder, reduced to what a timeline shows. */
export interface MetricsPoint {
  /** milliseconds since the epoch */
  t: number;
  cpuPercent: number | null;
  memAvailableBytes: number | null;
  swapUsedBytes: number | null;
  load1: number | null;
  /** PSI "some avg10" in %, when the kernel has PSI */
  psiCpu: number | null;
  psiMemory: number | null;
  psiIo: number | null;
}

export interface TopReport {
  id: string;
  /** which trace the process table came from; null when the bundle has no trace */
  source: 'ftrace' | 'lttng' | null;
  /** the trace's first and last event, ms since the epoch (null without a trace) */
  span: { startMs: number; endMs: number } | null;
  /** whole span, sorted by cpuMs descending */
  processes: ProcessActivity[];
  /** the span cut into 1-second steps, each with its own table (for stepping through) */
  seconds: { startMs: number; processes: ProcessActivity[] }[];
  /** the metrics recorder's samples before the event, oldest first ([] without metrics) */
  metrics: MetricsPoint[];
  /** what could not be read, one sentence each */
  warnings: string[];
  /** the event itself, from the manifest */
  event?: { kind: 'crash' | 'snapshot'; timeMs: number; pid: number | null; comm: string | null; signal: number | null; signalName: string | null; reason: string | null };
  /** the snapshot file the process table was read from, relative to the bundle */
  traceFile?: string;
  /** trace events read, and events the kernel reported lost (overwritten or dropped) */
  eventsRead?: number;
  eventsLost?: number;
  /** the architecture whose table named the system calls */
  arch?: string;
  /** signals the trace saw, oldest first (at most 200, the newest) */
  signals?: SignalRecord[];
}
