// flightbox view: an event's raw trace as text. trace-cmd report for trace.dat, babeltrace2
// for the LTTng snapshot, the ftrace text as it is; --raw (or a missing tool for a text we
// can read) prints our own reader's lines instead. Made for pipes: a reader that goes away
// (`| head`) ends it quietly.
import { spawn } from 'node:child_process';
import { accessSync, closeSync, constants, createReadStream, openSync } from 'node:fs';
import { join } from 'node:path';
import { FlightboxError, errnoCode } from '../../lib/errors.js';
import { escapeControl } from '../../lib/escape.js';
import { findProgram } from '../../lib/programs.js';
import { signalName } from '../../lib/signals.js';
import type { ReaderSink, TraceEvent } from '../../analysis/activity.js';
import { invocation, type FilterOptions } from '../args.js';
import { loadCliConfig, pickEventBundle } from '../context.js';

interface ViewOptions extends FilterOptions {
  source?: string;
  raw?: boolean;
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** "06:54:42.123456" local time from ms since the epoch (microseconds kept). */
function wallClock(ms: number): string {
  const d = new Date(Math.floor(ms));
  const us = Math.floor((ms - Math.floor(ms / 1000) * 1000) * 1000);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.${String(us).padStart(6, '0')}`;
}

const who = (comm: string | null, tid: number) => `${escapeControl(comm ?? '<...>', 32)}-${tid}`;

/** One event as our reader understands it: time, CPU, task, then what happened. Pure. */
export function formatTraceEvent(e: TraceEvent, time: string): string {
  let what: string;
  switch (e.type) {
    case 'switch': what = `sched_switch ${who(e.prevComm, e.prevTid)} [${escapeControl(e.prevState, 8)}] ==> ${who(e.nextComm, e.nextTid)}`; break;
    case 'syscall_entry': what = `sys_enter ${escapeControl(e.name, 64)}(${escapeControl(e.args, 256)})`; break;
    case 'syscall_exit': what = `sys_exit ${escapeControl(e.name, 64)} = ${e.ret ?? '?'}`; break;
    case 'fork': what = `fork ${who(e.parentComm, e.parentTid)} → ${who(e.childComm, e.childTid)}`; break;
    case 'exec': what = `exec ${escapeControl(e.filename, 1024)}`; break;
    case 'exit': what = `exit ${who(e.exitComm, e.exitTid)}`; break;
    case 'signal': what = `signal ${signalName(e.sig)} → ${who(e.targetComm, e.targetTid)}`; break;
    case 'other': what = escapeControl(e.name, 128); break;
  }
  const task = e.tgid !== null && e.tgid !== e.tid ? `${who(e.comm, e.tid)} (${e.tgid})` : who(e.comm, e.tid);
  return `${time} [${String(e.cpu).padStart(3, '0')}] ${task} ${what}`;
}

/** Writes to stdout, telling the reader when to wait for the pipe to drain. */
class Out {
  #buf: string[] = [];
  #bytes = 0;
  push(line: string): void {
    this.#buf.push(line);
    this.#bytes += line.length + 1;
    if (this.#bytes >= 64 * 1024) this.flush();
  }
  flush(): boolean {
    if (this.#buf.length === 0) return true;
    const ok = process.stdout.write(`${this.#buf.join('\n')}\n`);
    this.#buf = [];
    this.#bytes = 0;
    return ok;
  }
  /** For the reader's pace option: a promise while the pipe is full. */
  pace = (): Promise<void> | null => (this.flush() ? null : new Promise((r) => process.stdout.once('drain', () => r())));
}

function exists(path: string, mode = constants.R_OK): boolean {
  try {
    accessSync(path, mode);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'EACCES') throw new FlightboxError('PERMISSION', `cannot read ${path}: permission denied (the flight-recorder snapshot is root's only)`);
    return false;
  }
}

/** A helper with its stdout on ours: its own SIGPIPE ends it when our reader goes away. */
function passThrough(program: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ['ignore', 'inherit', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 8192) stderr += b.toString('utf8');
    });
    child.on('error', (err) => reject(new FlightboxError('TOOL_FAILED', `cannot run ${program}: ${err.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0 || signal === 'SIGPIPE') resolve(0);
      else {
        const why = stderr.trim().split('\n').slice(-1)[0]?.slice(0, 300) || 'no message';
        reject(new FlightboxError('TOOL_FAILED', `${program} ${args[0] ?? ''} failed (${code === null ? `signal ${signal}` : `exit status ${code}`}): ${escapeControl(why, 300)}`));
      }
    });
  });
}

/** A file to stdout as it is, minding the pipe. */
async function cat(path: string): Promise<number> {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    for await (const chunk of createReadStream('', { fd, autoClose: false, highWaterMark: 256 * 1024 })) {
      if (!process.stdout.write(chunk as Buffer)) await new Promise((r) => process.stdout.once('drain', r));
    }
  } finally {
    closeSync(fd);
  }
  return 0;
}

export async function run(...args: unknown[]): Promise<number> {
  const { positional, opts } = invocation<ViewOptions>(args);
  process.stdout.on('error', (err) => {
    if (errnoCode(err) === 'EPIPE') process.exit(0);
    throw err;
  });
  if (opts.source !== undefined && opts.source !== 'ftrace' && opts.source !== 'lttng') {
    throw new FlightboxError('USAGE', `--source: expected ftrace or lttng, got ${JSON.stringify(opts.source)}`);
  }
  const { config } = loadCliConfig(opts);
  const { id, dir } = pickEventBundle(config, positional[0], opts);
  const top = await import('../../analysis/top.js');
  const { BUNDLE_FILES } = top;
  exists(join(dir, 'recorder'), constants.R_OK | constants.X_OK);
  const have = top.traceSources(dir);
  const source = (opts.source as 'ftrace' | 'lttng' | undefined) ?? (have.ftrace ? 'ftrace' : have.lttng ? 'lttng' : null);
  if (source === null) throw new FlightboxError('NOT_FOUND', `event ${id} has no trace snapshot (recorder/ftrace or recorder/lttng)`);
  if (source === 'ftrace' && !have.ftrace) throw new FlightboxError('NOT_FOUND', `event ${id} has no ftrace snapshot`);
  if (source === 'lttng' && !have.lttng) throw new FlightboxError('NOT_FOUND', `event ${id} has no LTTng snapshot`);

  if (source === 'lttng') {
    const ctf = join(dir, BUNDLE_FILES.lttngCtf);
    const bt = findProgram('babeltrace2');
    if (bt === null) throw new FlightboxError('TOOL_MISSING', 'babeltrace2 is not installed (apt-get install babeltrace2); it is needed to read the LTTng snapshot');
    if (!opts.raw) return passThrough(bt, [ctf]);
    const { readLttngCtf } = await import('../../analysis/lttng-reader.js');
    return ours((sink, pace) => readLttngCtf(ctf, sink, { label: BUNDLE_FILES.lttngCtf, babeltrace: bt, timeoutMs: Infinity, pace }), (ts) => ts * 1000);
  }

  const meta = top.readFtraceMeta(dir);
  const { readManifest } = await import('../../store/manifest.js');
  let manifest = null;
  try {
    manifest = readManifest(dir);
  } catch {
    // the arch guess below says so
  }
  const { arch } = top.traceArch(manifest, undefined);
  const { readFtraceText, readTraceDat } = await import('../../analysis/ftrace-reader.js');
  const toMs = meta.offsetMs === null ? null : (ts: number) => meta.offsetMs! + ts * 1000;
  if (have.ftrace === 'trace.txt') {
    const path = join(dir, BUNDLE_FILES.ftraceText);
    if (!opts.raw) return cat(path);
    return ours((sink, pace) => readFtraceText(path, sink, { arch, instance: meta.instance, label: BUNDLE_FILES.ftraceText, pace }), toMs);
  }
  const dat = join(dir, BUNDLE_FILES.ftraceDat);
  const traceCmd = findProgram('trace-cmd');
  if (traceCmd === null) throw new FlightboxError('TOOL_MISSING', 'trace-cmd is not installed (apt-get install trace-cmd); it is needed to read trace.dat');
  if (!opts.raw) return passThrough(traceCmd, ['report', '-i', dat]);
  return ours((sink, pace) => readTraceDat(dat, sink, { arch, instance: meta.instance, label: BUNDLE_FILES.ftraceDat, traceCmd, timeoutMs: Infinity, pace }), toMs);
}

/** Our reader's text: one line per event, then its warnings on stderr. */
async function ours(
  read: (sink: ReaderSink, pace: () => Promise<void> | null) => Promise<{ warnings: string[] }>,
  toMs: ((ts: number) => number) | null,
): Promise<number> {
  const out = new Out();
  const sink: ReaderSink = {
    event: (e) => out.push(formatTraceEvent(e, toMs === null ? e.ts.toFixed(6) : wallClock(toMs(e.ts)))),
    lost: (cpu, n) => out.push(`${cpu === null ? '' : `CPU ${cpu}: `}${n === null ? 'events' : `${n} events`} lost`),
  };
  const r = await read(sink, out.pace);
  if (!out.flush()) await new Promise((res) => process.stdout.once('drain', res));
  for (const w of r.warnings) process.stderr.write(`flightbox: warning: ${escapeControl(w, 1000)}\n`);
  return 0;
}
