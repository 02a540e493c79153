// Section 5: trigger latency through the real daemon with the metrics recorder: a matching
// line appended to a log file → its snapshot in the index; a process's RSS crossing a
// threshold → its snapshot in the index (thresholds are sampled every second). Beside them,
// a snapshot requested on the control socket of the same daemon, as the reference.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { THRESHOLD_SAMPLE_INTERVAL_MS } from '../daemon/trigger-runner.js';
import { makeBenchStore, median, ratio, registerCleanup, sleep, type BenchOptions, type Row, type Section } from './lib.js';
import { IndexWatch, startBenchDaemon, timedSnapshot, type BenchDaemon } from './snapshots.js';

const SECTION = '5 triggers';
const LOG_TARGET_MS = 500;
const THRESHOLD_TARGET_MS = THRESHOLD_SAMPLE_INTERVAL_MS + 500;
const SPACING_MS = 1500;
const MIB = 1024 * 1024;
/** What the memory hog allocates at once; the threshold sits at 90 % of the way up. */
const HOG_BYTES = 256 * MIB;
const RECORDERS = 'recorders:\n  metrics: { interval: 1s, window: 10m }\n  ftrace: { enabled: false }\n  lttng: { enabled: false }\n';

/** Wall-clock milliseconds, sub-millisecond, comparable across processes. */
const wallNow = (): number => performance.timeOrigin + performance.now();

/** SQL that returns 1 once `rule` has more than `n` events. */
const MORE_THAN = 'SELECT CASE WHEN count(*) > ? THEN 1 END FROM events WHERE rule = ?';

function ruleCount(watch: IndexWatch, rule: string): number {
  return (watch.get('SELECT count(*) FROM events WHERE rule = ?', rule) as number | undefined) ?? 0;
}

/**
 * A Node process that fills HOG_BYTES at once on 'g' and frees them on 'f', printing the
 * wall-clock times around the fill ("grown START END") and "freed".
 */
const HOG_SCRIPT = `
let block = null;
process.stdin.on('data', (d) => {
  for (const c of d.toString()) {
    if (c === 'g' && block === null) {
      const t0 = performance.timeOrigin + performance.now();
      block = Buffer.alloc(${HOG_BYTES}, 1);
      process.stdout.write('grown ' + t0 + ' ' + (performance.timeOrigin + performance.now()) + '\\n');
    } else if (c === 'f' && block !== null) {
      block = null;
      globalThis.gc();
      process.stdout.write('freed\\n');
    } else if (c === 'q') process.exit(0);
  }
});
process.stdout.write('ready\\n');
`;

interface Hog {
  child: ChildProcess;
  said: () => string;
  rssBytes: () => number;
}

async function startHog(): Promise<Hog> {
  const child = spawn(process.execPath, ['--expose-gc', '-e', HOG_SCRIPT], { stdio: ['pipe', 'pipe', 'ignore'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  const end = Date.now() + 10_000;
  while (!out.includes('ready')) {
    if (Date.now() > end || child.exitCode !== null) throw new Error('the memory hog did not start');
    await sleep(10);
  }
  return {
    child,
    said: () => out,
    rssBytes: () => {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : 0;
    },
  };
}

async function waitSaid(hog: Hog, re: RegExp, from: number, timeoutMs = 30_000): Promise<RegExpExecArray> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const m = re.exec(hog.said().slice(from));
    if (m) return m;
    if (Date.now() > end) throw new Error(`the memory hog did not say ${re.source}`);
    await sleep(2);
  }
}

const spread = (xs: number[]): string => (xs.length ? `min ${Math.min(...xs).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms` : '');

export const run: Section = async (opts: BenchOptions): Promise<Row[]> => {
  const runs = Math.max(1, opts.runs);
  const rows: Row[] = [];
  let refMs: number | null = null;

  // ---- a log line -----------------------------------------------------------------------
  {
    const dir = join(opts.workDir, 'triggers-log');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const logFile = join(dir, 'app.log');
    writeFileSync(logFile, 'starting\n');
    const store = makeBenchStore(dir, {
      extra: `${RECORDERS}rules:\n  - name: bench-log\n    when: { log: { path: ${logFile}, match: 'BENCH-ERROR (?<n>\\d+)' } }\n    do: [snapshot]\n    cooldown: 0s\n    maxPerDay: 10000\n`,
    });
    const watch = new IndexWatch(store.root);
    const ref: number[] = [];
    const lat: number[] = [];
    let error: string | null = null;
    let d: BenchDaemon | null = null;
    opts.log('section 5: log rule');
    try {
      d = await startBenchDaemon(store, { kernel: false, log: opts.log });
      await timedSnapshot(d, watch, 'bench warm-up');
      for (let i = 0; i < runs; i++) {
        await sleep(SPACING_MS);
        ref.push((await timedSnapshot(d, watch, `bench ${i}`)).rowMs);
      }
      for (let i = 0; i < runs + 1; i++) {
        await sleep(SPACING_MS);
        const before = ruleCount(watch, 'bench-log');
        const t0 = performance.now();
        appendFileSync(logFile, `${new Date().toISOString()} worker-3 BENCH-ERROR ${500 + i} upstream timed out\n`);
        const t = await watch.until(MORE_THAN, [before, 'bench-log'], 30_000);
        if (i > 0) lat.push(t - t0); // the first one warms up the rule's path
      }
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    } finally {
      watch.close();
      await d?.stop();
    }
    refMs = median(ref);
    rows.push({
      section: SECTION, case: 'snapshot requested (reference)', subject: 'flightbox, request → indexed', value: refMs, unit: 'ms', runs: ref.length,
      note: error && ref.length === 0 ? `not measured: ${error}` : 'the metrics recorder (1 s, 10 min); the daemon of the log rule',
    });
    const v = median(lat);
    rows.push({
      section: SECTION, case: 'log line written → snapshot indexed', subject: 'flightbox log rule', value: v, unit: 'ms', runs: lat.length,
      ratio: ratio(v, refMs), target: `≤ ${LOG_TARGET_MS} ms`, met: v === null ? null : v <= LOG_TARGET_MS,
      note: error ? `not measured: ${error}` : `one line appended to a followed file (inotify through chokidar, 1 s stat as a safety net), rule with do: [snapshot]; ${spread(lat)}`,
    });
  }

  // ---- a threshold ----------------------------------------------------------------------
  {
    const dir = join(opts.workDir, 'triggers-threshold');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const lat: number[] = [];
    const fills: number[] = [];
    let error: string | null = null;
    let d: BenchDaemon | null = null;
    let hog: Hog | null = null;
    let watch: IndexWatch | null = null;
    const unregister = registerCleanup(() => { hog?.child.kill('SIGKILL'); });
    opts.log('section 5: threshold rule');
    try {
      hog = await startHog();
      const pidFile = join(dir, 'hog.pid');
      writeFileSync(pidFile, `${hog.child.pid}\n`);
      const base = hog.rssBytes();
      // Crossed at 90 % of the fill: the crossing instant is known to a tenth of the fill time.
      const above = Math.round((base + 0.9 * HOG_BYTES) / MIB);
      const clear = Math.round((base + 0.5 * HOG_BYTES) / MIB);
      const store = makeBenchStore(dir, {
        extra: `${RECORDERS}rules:\n  - name: bench-rss\n    when: { threshold: { metric: process.rss, process: { pidFile: ${pidFile} }, above: ${above}MiB, clear: ${clear}MiB } }\n    do: [snapshot]\n    cooldown: 0s\n    maxPerDay: 10000\n`,
      });
      watch = new IndexWatch(store.root);
      d = await startBenchDaemon(store, { kernel: false, log: opts.log });
      await timedSnapshot(d, watch, 'bench warm-up');
      // The wait for the next sample is the bulk of the latency and depends on where between
      // two samples the crossing falls. Crossings are placed at evenly spread offsets after a
      // sample (estimated from the previous firing), so that the median is the median of that
      // wait, not an accident of the loop's rhythm.
      let prevSeen: number | null = null;
      let fillEst = 250;
      for (let i = 0; i < runs + 1; i++) {
        if (prevSeen === null) await sleep(SPACING_MS);
        else {
          const offset = ((i - 0.5) / runs) * THRESHOLD_SAMPLE_INTERVAL_MS;
          let at = prevSeen + offset - 0.9 * fillEst;
          while (at < wallNow() + 200) at += THRESHOLD_SAMPLE_INTERVAL_MS;
          await sleep(at - wallNow());
        }
        const before = ruleCount(watch, 'bench-rss');
        const from = hog.said().length;
        hog.child.stdin!.write('g');
        const m = await waitSaid(hog, /grown ([\d.]+) ([\d.]+)\n/, from);
        const [start, end] = [Number(m[1]), Number(m[2])];
        await watch.until(MORE_THAN, [before, 'bench-rss'], 30_000);
        const seen = wallNow();
        prevSeen = seen;
        if (i > 0) {
          lat.push(seen - (start + 0.9 * (end - start)));
          fills.push(end - start);
        }
        fillEst = end - start;
        const from2 = hog.said().length;
        hog.child.stdin!.write('f');
        await waitSaid(hog, /freed\n/, from2);
        // Two samples below `clear` end the episode before the next crossing.
        await sleep(2 * THRESHOLD_SAMPLE_INTERVAL_MS + 200);
        if (hog.rssBytes() > clear * MIB) throw new Error(`the hog's RSS stayed at ${(hog.rssBytes() / MIB).toFixed(0)} MiB after freeing (clear: ${clear} MiB)`);
      }
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    } finally {
      watch?.close();
      await d?.stop();
      hog?.child.kill('SIGKILL');
      unregister();
    }
    const v = median(lat);
    rows.push({
      section: SECTION, case: 'RSS threshold crossed → snapshot indexed', subject: 'flightbox threshold rule', value: v, unit: 'ms', runs: lat.length,
      ratio: ratio(v, refMs), target: `≤ ${THRESHOLD_TARGET_MS} ms (sample interval ${THRESHOLD_SAMPLE_INTERVAL_MS} ms + 500)`,
      met: v === null ? null : v <= THRESHOLD_TARGET_MS,
      note: error ? `not measured: ${error}` : `process.rss of one process (pidFile), for: 0; sampled every ${THRESHOLD_SAMPLE_INTERVAL_MS} ms, so the wait for the next sample is uniform in [0, ${THRESHOLD_SAMPLE_INTERVAL_MS}] ms; ${spread(lat)}; crossing placed at 90 % of a ${(median(fills) ?? 0).toFixed(0)} ms fill (median), at ${runs} evenly spread offsets after a sample`,
    });
    rows.push({
      section: SECTION, case: 'threshold sample interval', subject: 'flightbox threshold rule', value: THRESHOLD_SAMPLE_INTERVAL_MS, unit: 'ms', runs: 1,
      note: 'THRESHOLD_SAMPLE_INTERVAL_MS (daemon/trigger-runner.ts), not configurable',
    });
  }
  return rows;
};
