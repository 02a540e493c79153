// The daemon's crash taker (daemon/crash-taker.ts) when its worker fails: faked workers (a
// thread that exits at its first crash, one that never answers) stand in for a worker that
// crashes or hangs, which the real one cannot be made to do on purpose. The spool, its
// entries and the renames are real.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CrashTaker } from '../../daemon/crash-taker.js';
import { defaultConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/log.js';
import { SPOOL_DAEMON_FILE, overflowDir } from '../../handler/run-dir.js';
import { parsePidStat } from '../../lib/procfs.js';
import { IS_ROOT, waitFor } from '../helpers.js';

const dirs: string[] = [];
const takers: CrashTaker[] = [];
afterEach(async () => {
  for (const t of takers.splice(0)) await t.stop(0);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const own = (): string => `${process.pid}-${parsePidStat(readFileSync('/proc/self/stat', 'utf8'))!.startTime}`;

function setUp(worker: string): { taker: CrashTaker; spool: string; drains: { n: number }; offer: (entry: string) => void } {
  const root = mkdtempSync(join(tmpdir(), 'fbx-taker-'));
  dirs.push(root);
  const spool = overflowDir(root);
  dirs.push(spool);
  const file = join(root, 'worker.mjs');
  writeFileSync(file, worker);
  const cfg = defaultConfig();
  cfg.store.root = root;
  const drains = { n: 0 };
  const taker = new CrashTaker({
    storeRoot: root, busyTimeoutMs: 1000, config: () => cfg, log: createLogger({ file: join(root, 'log'), component: 'daemon' }),
    drain: () => { drains.n++; }, workerFile: file,
  });
  takers.push(taker);
  expect(taker.start()).toBe(true);
  // What the launcher leaves: its entry offered to this "daemon" (an entry's files do not matter here).
  const offer = (entry: string): void => {
    mkdirSync(join(spool, `offer.${entry}@${own()}`), { mode: 0o700 });
    taker.take(entry);
  };
  return { taker, spool, drains, offer };
}

const DIES = `import { parentPort } from 'node:worker_threads';\nparentPort.on('message', () => process.exit(3));\n`;
const HANGS = `import { parentPort } from 'node:worker_threads';\nparentPort.on('message', () => {});\n`;

describe.skipIf(!IS_ROOT)('the crash taker when its worker fails', () => {
  it('a worker that dies gives its crashes back unclaimed, for a drainer; a new worker takes the next', async () => {
    const { taker, spool, drains, offer } = setUp(DIES);
    offer('1.100.200');
    expect(readdirSync(spool)).toContain(`1.100.200@${own()}`);
    await waitFor('the crash given back', () => readdirSync(spool).includes('1.100.200') || undefined, 10_000, 20);
    expect(drains.n).toBe(1);
    expect(taker.status()).toMatchObject({ taking: true, onHand: 0 });
    offer('2.101.201');
    await waitFor('the second given back', () => readdirSync(spool).includes('2.101.201') || undefined, 10_000, 20);
    expect(taker.status().taking).toBe(true);
  });

  it('one that dies three times ends the handoff: the spool\'s mark goes, status says why', async () => {
    const { taker, spool, offer } = setUp(DIES);
    expect(existsSync(join(spool, SPOOL_DAEMON_FILE))).toBe(true);
    for (const [i, entry] of ['1.1.1', '2.2.2', '3.3.3'].entries()) {
      offer(entry);
      await waitFor(`death ${i + 1}`, () => readdirSync(spool).includes(entry) || undefined, 10_000, 20);
    }
    expect(existsSync(join(spool, SPOOL_DAEMON_FILE))).toBe(false);
    expect(taker.status()).toMatchObject({ taking: false });
    expect(taker.status().detail).toMatch(/died 3 times/);
    // an offer whose line comes after that (made just before the mark went) is given back, unclaimed
    mkdirSync(join(spool, `offer.4.4.4@${own()}`), { mode: 0o700 });
    taker.take('4.4.4');
    expect(readdirSync(spool)).toContain('4.4.4');
    expect(readdirSync(spool).some((n) => n.includes('@'))).toBe(false);
  });

  it('stopped with crashes on hand past its wait: they are given back, and offers it never read are taken first', async () => {
    const { taker, spool, offer } = setUp(HANGS);
    offer('1.1.1');
    // an offer whose FIFO line never came (the sweep at stop takes it)
    mkdirSync(join(spool, `offer.2.2.2@${own()}`), { mode: 0o700 });
    expect(taker.status().onHand).toBe(1);
    expect(await taker.stop(200)).toBe(2);
    expect(readdirSync(spool).filter((n) => /^\d/.test(n) || n.startsWith('offer.')).sort()).toEqual(['1.1.1', '2.2.2']);
    expect(existsSync(join(spool, SPOOL_DAEMON_FILE))).toBe(false);
  });

  it('an offer made to another daemon is left alone', () => {
    const { spool, taker } = setUp(HANGS);
    mkdirSync(join(spool, 'offer.5.5.5@1-1'), { mode: 0o700 });
    taker.take('5.5.5');
    taker.sweep();
    expect(readdirSync(spool)).toContain('offer.5.5.5@1-1');
    expect(taker.status().onHand).toBe(0);
  });
});
