// A crash storm through the real kernel: many processes with real memory crash at the same
// instant. With core.maxConcurrent the handlers never store more cores at once than the cap,
// and every crash is still recorded and indexed, the excess without its core.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT, buildCrasher, makeTempStore, readJson, runCli, waitFor, type TempStore } from '../helpers.js';
import { restoreKernelState, saveKernelState, type KernelState } from '../system/kernel.js';

const CAP = 2;
const STORM = 16;

interface Manifest {
  id: string;
  capturedAt: string;
  process: { pid: number; exe: string; signalName: string };
  core: { stored: boolean; reason: string | null };
  timings: Record<string, number>;
  warnings: string[];
}

describe.skipIf(!IS_ROOT)('a crash storm beyond core.maxConcurrent', () => {
  let saved: KernelState;
  let store: TempStore;
  let bin: string;
  const pids: number[] = [];

  beforeAll(async () => {
    saved = saveKernelState();
    store = makeTempStore(`core:\n  maxConcurrent: ${CAP}\n`);
    bin = buildCrasher('fat-segv');
    const r = runCli(['--config', store.configPath, 'install']);
    expect(r.code, r.stderr).toBe(0);
    // Each process fills 48 MiB, then all crash at the same wall-clock instant.
    const at = Date.now() + 1500;
    const exits = [];
    for (let i = 0; i < STORM; i++) {
      const child = spawn('/bin/sh', ['-c', 'ulimit -c unlimited && exec "$0" "$@"', bin, '48', String(at)], { stdio: 'ignore' });
      pids.push(child.pid!);
      exits.push(new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, s) => resolve(s))));
    }
    expect(await Promise.all(exits)).toEqual(Array(STORM).fill('SIGSEGV'));
  });

  afterAll(() => {
    try {
      if (store) runCli(['--config', store.configPath, 'uninstall']);
    } finally {
      restoreKernelState(saved);
      store?.cleanup();
    }
  });

  it('every crash is indexed; the excess without a core, saying why', async () => {
    const rows = await waitFor(`${STORM} crashes indexed`, () => {
      const r = runCli(['--config', store.configPath, 'list', '--json']);
      const all = r.code === 0 ? (JSON.parse(r.stdout) as { id: string; pid: number; bundle: string }[]) : [];
      return all.length >= STORM ? all : undefined;
    }, 120_000, 250);
    expect(rows.map((r) => r.pid).sort()).toEqual([...pids].sort());
    const manifests = rows.map((r) => readJson<Manifest>(join(store.root, r.bundle, 'manifest.json')));
    const kept = manifests.filter((m) => m.core.stored);
    const excess = manifests.filter((m) => m.core.reason === 'concurrency');
    expect(kept.length).toBeGreaterThanOrEqual(1);
    expect(excess.length).toBeGreaterThanOrEqual(1);
    expect(kept.length + excess.length).toBe(STORM);
    for (const m of excess) {
      // Recorded all the same: who crashed, with what, and why the core is missing.
      expect(m.core.stored).toBe(false);
      expect(m.process.exe).toBe(bin);
      expect(m.process.signalName).toBe('SIGSEGV');
      expect(m.warnings.join('\n')).toMatch(/core\.maxConcurrent is 2/);
    }
  });

  it('at no instant did more than the cap store a core', () => {
    const r = runCli(['--config', store.configPath, 'list', '--json']);
    const rows = JSON.parse(r.stdout) as { bundle: string }[];
    // Each storing handler notes when it took and left its slot (ms after its start).
    const spans = rows
      .map((x) => readJson<Manifest>(join(store.root, x.bundle, 'manifest.json')))
      .filter((m) => m.core.stored)
      .map((m) => {
        const t0 = Date.parse(m.capturedAt);
        expect(m.timings.slotFromMs).toBeTypeOf('number');
        expect(m.timings.slotToMs).toBeGreaterThanOrEqual(m.timings.slotFromMs!);
        return [t0 + m.timings.slotFromMs!, t0 + m.timings.slotToMs!] as const;
      });
    const edges = spans.flatMap(([a, b]) => [[a, 1], [b, -1]] as const).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    let now = 0;
    let peak = 0;
    for (const [, d] of edges) peak = Math.max(peak, (now += d));
    expect(peak).toBeGreaterThanOrEqual(1);
    expect(peak).toBeLessThanOrEqual(CAP);
  });
});
