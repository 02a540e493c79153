// The crash signature used for grouping: executable name, signal, and the names of the top
// meaningful frames of the crashing thread, without addresses (so it survives ASLR and
// rebuilds that do not change the code path). Pure.
import { createHash } from 'node:crypto';
import type { ThreadTrace } from './backtrace.js';

export const SIGNATURE_FRAMES = 3;
/** How deep the abort path is looked for. */
const NOISE_SCAN_FRAMES = 10;

/** Frames that say how a process died, not where: skipped from the top. */
const NOISE = new Set([
  'raise', '__GI_raise', 'gsignal', 'abort', '__GI_abort', 'pthread_kill', '__pthread_kill_implementation',
  '__pthread_kill_internal', '__GI___pthread_kill', '__pthread_kill', '__assert_fail_base', '__assert_fail',
  '__GI___assert_fail', '__libc_message', '__libc_message_impl', '__fortify_fail', '__chk_fail', '__stack_chk_fail',
  'malloc_printerr', '__restore_rt',
]);

export interface Signature {
  /** "sleep SIGABRT clock_nanosleep|__nanosleep|main" */
  text: string;
  /** 16 hex digits of sha256(text) */
  hash: string;
}

/**
 * A function name without its symbol version ("pthread_kill@@GLIBC_2.34", as a dynamic symbol
 * table names it when no debug info is installed): the same function in every libc build.
 */
function bareName(fn: string): string {
  return fn.replace(/@@?[A-Za-z_][\w.]*$/, '');
}

export function crashingThread(threads: readonly ThreadTrace[], tid: number | null): ThreadTrace | undefined {
  return threads.find((t) => t.tid === tid) ?? threads[0];
}

export function crashSignature(exe: string | null, comm: string | null, signalName: string, thread: ThreadTrace | undefined): Signature {
  const name = (exe ? exe.replace(/ \(deleted\)$/, '').split('/').pop() : null) || comm || '?';
  const frames = thread?.frames ?? [];
  // Start below the abort path: the last noise frame among the top ones, provided every
  // frame above it is noise or unnamed (libc without symbols shows "??" above raise()).
  let start = 0;
  for (let i = 0; i < Math.min(frames.length, NOISE_SCAN_FRAMES); i++) {
    const fn = frames[i]!.fn;
    if (fn !== null && NOISE.has(bareName(fn).replace(/\(.*$/, ''))) start = i + 1;
    else if (fn !== null) break;
  }
  const fns = frames.slice(start, start + SIGNATURE_FRAMES).map((f) => (f.fn === null ? '??' : bareName(f.fn)));
  const text = `${name} ${signalName} ${fns.length ? fns.join('|') : '-'}`;
  return { text, hash: createHash('sha256').update(text).digest('hex').slice(0, 16) };
}
