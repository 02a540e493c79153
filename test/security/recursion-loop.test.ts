// No crash loop: the handler itself killed with SIGSEGV while it reads a big core gets no
// core and no handler of its own (the kernel runs pipe helpers with RLIMIT_CORE = 1 and
// dumps nothing for them), and the flightbox daemon killed with SIGSEGV is captured once,
// by one handler, and nothing follows. Both through the real kernel core_pattern.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, IS_ROOT, sleep, waitFor } from '../helpers.js';
import { restoreKernelState, saveKernelState } from '../system/kernel.js';
import {
  bundleDirs, exitWithin, flightboxKmsg, handlerPids, installHandler, killHandlers, kmsgMark, listEvents,
  readKmsg, secStore, startCrash, type SecStore, useSecCrasher,
} from './sec-helpers.js';

/** How long to watch for a second handler, a second event, a loop. */
const WATCH_MS = 3000;

/** A process's parent pid, or undefined once it is gone. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/**
 * Handler runs, not processes: a launcher and the node it starts beside its copies (the early
 * node, handler/install.ts earlyFunctions) are one run of the kernel's pipe helper.
 */
function handlerRuns(pids: number[]): number {
  const set = new Set(pids);
  return pids.filter((p) => !set.has(parentOf(p) ?? -1)).length;
}

/** Sample the handler processes of a store until stopped: every pid seen, and the most runs at once. */
function sampleHandlers(configPath: string): { seen: Set<number>; max: () => number; stop: () => Promise<void> } {
  const seen = new Set<number>();
  let max = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const pids = handlerPids(configPath);
      for (const p of pids) seen.add(p);
      max = Math.max(max, handlerRuns(pids));
      await sleep(20);
    }
  })();
  return { seen, max: () => max, stop: async () => { stopped = true; await loop; } };
}

describe.skipIf(!IS_ROOT)('no recursion and no loop', () => {
  const crasher = useSecCrasher();
  let s: SecStore | undefined;
  let restore: (() => void) | undefined;

  afterEach(async () => {
    try {
      if (s) await killHandlers(s.configPath);
    } finally {
      restore?.();
      restore = undefined;
      s?.cleanup();
      s = undefined;
    }
  });

  it('the handler killed with SIGSEGV while it reads a big core: no core of it, no second handler, exactly one run', async () => {
    s = secStore({ core: ['compress: none'], backtrace: ['tool: none'] });
    const k = installHandler(s);
    restore = () => k.restore();
    const mark = kmsgMark();
    const c = startCrash(crasher.path, [], { env: { SEC_COMM: 'fbx-bigcore', SEC_BIG_MB: '1024' } });

    // The handler, caught in the middle of the core.
    const staging = join(s.root, 'staging');
    const handler = await waitFor('the handler to be copying the core', () => {
      // node itself, past the launcher's exec
      const pids = handlerPids(s!.configPath).filter((p) => {
        try {
          return readlinkSync(`/proc/${p}/exe`) === process.execPath;
        } catch {
          return false;
        }
      });
      if (pids.length !== 1) return undefined;
      let dirs: string[] = [];
      try {
        dirs = readdirSync(staging);
      } catch {
        return undefined;
      }
      const copying = dirs.some((d) => {
        try {
          return statSync(join(staging, d, 'core')).size > 0;
        } catch {
          return false;
        }
      });
      return copying ? pids[0] : undefined;
    }, 30_000, 5);
    process.kill(handler, 'SIGSEGV');

    // Its death closes the pipe: the crashed process is released.
    await exitWithin(c.exited, 5000, 'the crashed process exiting after its handler died');
    await waitFor('the killed handler to be gone', () => handlerPids(s!.configPath).length === 0, 5000, 10);
    const after = sampleHandlers(s.configPath);
    await sleep(WATCH_MS);
    await after.stop();
    expect(after.max(), `handlers after the kill: ${[...after.seen].join(' ')}`).toBe(0);

    // Exactly one handler run (the one we killed); the handler's own death made none.
    const announced = flightboxKmsg(mark).filter((l) => /^flightbox: process \d+ /.test(l.raw));
    expect(announced.filter((l) => l.raw.startsWith(`flightbox: process ${c.pid} `))).toHaveLength(1);
    expect(announced.filter((l) => l.raw.startsWith(`flightbox: process ${handler} `))).toHaveLength(0);
    // The kernel says why it made no core of the handler.
    expect(readKmsg().filter((l) => l.seq > mark && l.raw.includes(String(handler)) && /RLIMIT_CORE/.test(l.raw))).toHaveLength(1);
    expect(bundleDirs(s.root).filter((d) => d.includes(`-${handler}-`))).toEqual([]);
    expect(listEvents(s)).toEqual([]);
  });

  it('the daemon killed with SIGSEGV: its own crash captured once, by one handler, and nothing after', async () => {
    s = secStore({ core: ['compress: none'], backtrace: ['tool: none'] });
    const saved = saveKernelState();
    restore = () => restoreKernelState(saved);
    const mark = kmsgMark();
    // The daemon installs the handler itself; prlimit gives it an unlimited core and execs node (same pid).
    const d = spawn('prlimit', ['--core=unlimited', '--', process.execPath, CLI, '--config', s.configPath, 'daemon'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    d.stdout.setEncoding('utf8').on('data', (x: string) => { out += x; });
    d.stderr.setEncoding('utf8').on('data', (x: string) => { out += x; });
    const exited = new Promise<NodeJS.Signals | null>((r) => d.on('exit', (_code, sig) => r(sig)));
    try {
      await waitFor('the daemon to be running', () => {
        if (d.exitCode !== null) throw new Error(`the daemon exited: ${out}`);
        return /flightbox is running/.test(out);
      }, 30_000);
      const pid = d.pid!;
      const handlers = sampleHandlers(s.configPath);
      d.kill('SIGSEGV');
      expect(await exitWithin(exited, 30_000, 'the daemon dying')).toBe('SIGSEGV');

      const e = await waitFor('the daemon\'s crash in the index', () => listEvents(s!, ['--pid', String(pid)])[0], 60_000, 200);
      await waitFor('its handler to finish', () => handlerPids(s!.configPath).length === 0, 30_000, 50);
      await sleep(WATCH_MS);
      await handlers.stop();
      expect(handlerPids(s.configPath)).toEqual([]);
      expect(handlers.max(), 'handler runs at once').toBe(1);
      expect(listEvents(s).map((x) => x.id)).toEqual([e.id]);
      const announced = flightboxKmsg(mark).filter((l) => /^flightbox: process \d+ /.test(l.raw));
      expect(announced.filter((l) => l.raw.startsWith(`flightbox: process ${pid} `))).toHaveLength(1);
      // No handler of this store was itself announced as a crash.
      for (const h of handlers.seen) expect(announced.some((l) => l.raw.startsWith(`flightbox: process ${h} `))).toBe(false);
    } finally {
      if (d.exitCode === null && d.signalCode === null) d.kill('SIGKILL');
    }
  });
});
