// The crash signature used for grouping: executable name, signal, and the names of the top
// meaningful frames of the crashing thread, without addresses (so it survives ASLR and
// rebuilds that do not change the code path). Pure.
import { createHash } from 'node:crypto';
import type { ThreadTrace } from './backtrace.js';

export const SIGNATURE_FRAMES = 3;

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

export function crashingThread(threads: readonly ThreadTrace[], tid: number | null): ThreadTrace | undefined {
  return threads.find((t) => t.tid === tid) ?? threads[0];
}

export function crashSignature(exe: string | null, comm: string | null, signalName: string, thread: ThreadTrace | undefined): Signature {
  const name = (exe ? exe.replace(/ \(deleted\)$/, '').split('/').pop() : null) || comm || '?';
  const fns: string[] = [];
  let skipping = true;
  for (const f of thread?.frames ?? []) {
    const fn = f.fn ?? '??';
    if (skipping && NOISE.has(fn.replace(/\(.*$/, ''))) continue;
    skipping = false;
    fns.push(fn);
    if (fns.length === SIGNATURE_FRAMES) break;
  }
  const text = `${name} ${signalName} ${fns.length ? fns.join('|') : '-'}`;
  return { text, hash: createHash('sha256').update(text).digest('hex').slice(0, 16) };
}
