// The daemon's freeze FIFO (a real FIFO, written by other processes as crash handlers do)
// and the bookkeeping that pairs each early freeze with its crash's snapshot.
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EarlyFreezes, FreezeFifo, MAX_EARLY_FREEZES, earlyFreezeKey } from '../../daemon/freeze-fifo.js';
import { createLogger } from '../../lib/log.js';

const ID = '20261126T144528-485772-8df201';
const id = (n: number): string => `20261126T144528-${100000 + n}-8df201`;

describe('EarlyFreezes', () => {
  it('a line then its snapshot: the snapshot owns the freeze the line took', () => {
    const e = new EarlyFreezes();
    expect(e.arrive(ID, 0)).toBe(true);
    expect(e.claim(ID, 0)).toBe(true);
    expect(e.size).toBe(0);
  });

  it('a repeated line takes no second freeze', () => {
    const e = new EarlyFreezes();
    expect(e.arrive(ID, 0)).toBe(true);
    expect(e.arrive(ID, 0)).toBe(false);
    expect(e.claim(ID, 0)).toBe(true);
  });

  it('a snapshot without its line freezes for itself, and the line read afterwards takes nothing', () => {
    const e = new EarlyFreezes();
    expect(e.claim(ID, 0)).toBe(false);
    expect(e.arrive(ID, 0)).toBe(false);
    expect(e.size).toBe(0);
    // Another crash is not affected.
    expect(e.arrive(id(1), 0)).toBe(true);
  });

  it('a freeze dropped by an expired lease is not claimed: the snapshot freezes for itself', () => {
    const e = new EarlyFreezes();
    expect(e.arrive(ID, 3)).toBe(true);
    expect(e.claim(ID, 4)).toBe(false);
    expect(e.size).toBe(0);
  });

  it('remembers a bounded number of crashes, the oldest forgotten first', () => {
    const e = new EarlyFreezes();
    for (let i = 0; i < MAX_EARLY_FREEZES + 10; i++) e.arrive(id(i), 0);
    for (let i = 0; i < MAX_EARLY_FREEZES + 10; i++) e.claim(id(100_000 + i), 0);
    expect(e.size).toBe(2 * MAX_EARLY_FREEZES);
    expect(e.claim(id(0), 0)).toBe(false); // forgotten
    expect(e.claim(id(MAX_EARLY_FREEZES + 9), 0)).toBe(true);
  });
});

describe('FreezeFifo', () => {
  let dir: string;
  let path: string;
  let logFile: string;
  let fifo: FreezeFifo | null = null;
  let got: string[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fbx-fifo-'));
    path = join(dir, 'daemon.sock.freeze');
    logFile = join(dir, 'log');
    got = [];
  });
  afterEach(() => {
    fifo?.close();
    fifo = null;
    rmSync(dir, { recursive: true, force: true });
  });

  function open(): FreezeFifo {
    fifo = new FreezeFifo(path, (x) => got.push(x), createLogger({ file: logFile, component: 'test' }));
    fifo.open();
    return fifo;
  }

  /** Write as a crash handler does, from another process: non-blocking, one line. */
  function writeLines(text: string): void {
    const r = spawnSync(process.execPath, ['-e', `
      const fs = require('node:fs');
      const fd = fs.openSync(process.argv[1], fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
      fs.writeSync(fd, process.argv[2]);
      fs.closeSync(fd);`, path, text], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  }

  async function until(n: number): Promise<void> {
    for (let i = 0; i < 300 && got.length < n; i++) await new Promise((r) => setTimeout(r, 10));
  }

  it('is a FIFO only its owner may use, and each line names one crash', async () => {
    open();
    const st = lstatSync(path);
    expect(st.isFIFO()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    writeLines(`freeze ${ID}\n`);
    writeLines(`freeze ${id(1)}\nfreeze ${id(2)}\n`);
    await until(3);
    expect(got).toEqual([ID, id(1), id(2)]);
  });

  it('a line split across writes is read whole; malformed lines are ignored and logged', async () => {
    open();
    writeLines('free');
    writeLines(`ze ${ID}\n`);
    writeLines(`freeze ../../etc\nthaw ${ID}\nfreeze ${ID} extra\n${'x'.repeat(300)}`);
    writeLines(`\nfreeze ${id(7)}\n`);
    await until(2);
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual([ID, id(7)]);
    expect(readFileSync(logFile, 'utf8')).toMatch(/Ignoring a malformed line on the freeze FIFO/);
  });

  it('the launcher\'s line names its entry; other spool lines are ignored', async () => {
    open();
    writeLines('spool 1795738230.4242.4343\nspool ../../etc\nspool 1795738230.1.2/x\nspool 1.2\n');
    writeLines(`freeze ${id(8)}\n`);
    await until(2);
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual([earlyFreezeKey({ entry: '1795738230.4242.4343' }), id(8)]);
    // the key node's snapshot claims it by: the entry, whatever the bundle id
    expect(earlyFreezeKey({ id: id(9), entry: '1795738230.4242.4343' })).toBe(got[0]);
    expect(earlyFreezeKey({ id: id(9) })).toBe(id(9));
  });

  it('replaces whatever was at its path (a stale FIFO, a file, a symlink) and removes its FIFO when closed', () => {
    writeFileSync(join(dir, 'target'), 'keep\n');
    symlinkSync(join(dir, 'target'), path);
    open();
    expect(lstatSync(path).isFIFO()).toBe(true);
    expect(readFileSync(join(dir, 'target'), 'utf8')).toBe('keep\n');
    fifo!.close();
    fifo = null;
    expect(existsSync(path)).toBe(false);
  });
});
