// The cap on handlers storing a core at once, with real processes standing in for handlers
// (their pids and start times are what the registry checks) and a real directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HANDLERS_DIR, acquireHandlerSlot } from '../../store/handler-slots.js';

const children: ChildProcess[] = [];
let dir = '';
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function live(): number {
  const c = spawn('sleep', ['60'], { stdio: 'ignore' });
  children.push(c);
  return c.pid!;
}

describe('acquireHandlerSlot', () => {
  it('admits up to the cap, refuses the next, and admits again once one leaves', () => {
    dir = mkdtempSync(join(tmpdir(), 'fbx-slots-'));
    const [a, b, c] = [live(), live(), live()];
    const sa = acquireHandlerSlot(dir, 2, { pid: a });
    const sb = acquireHandlerSlot(dir, 2, { pid: b });
    expect([sa.acquired, sb.acquired]).toEqual([true, true]);
    const sc = acquireHandlerSlot(dir, 2, { pid: c });
    expect(sc).toMatchObject({ acquired: false, live: 3 });
    expect(readdirSync(join(dir, HANDLERS_DIR))).toHaveLength(2); // the refused one withdrew
    sa.release();
    sa.release(); // idempotent
    expect(acquireHandlerSlot(dir, 2, { pid: c }).acquired).toBe(true);
  });

  it('an entry of a dead handler, or of a reused pid, does not count and is removed', async () => {
    dir = mkdtempSync(join(tmpdir(), 'fbx-slots-'));
    const victim = spawn('true', { stdio: 'ignore' });
    const deadPid = victim.pid!;
    await new Promise((r) => victim.on('exit', r));
    const alive = live();
    const d = join(dir, HANDLERS_DIR);
    acquireHandlerSlot(dir, 1, { pid: alive }).release(); // creates the directory
    writeFileSync(join(d, `${deadPid}-1`), ''); // SIGKILLed handler
    writeFileSync(join(d, `${alive}-1`), ''); // a live pid with another start time: reused
    writeFileSync(join(d, 'not-an-entry'), '');
    const s = acquireHandlerSlot(dir, 1, { pid: alive });
    expect(s).toMatchObject({ acquired: true, live: 1 });
    const left = readdirSync(d).sort();
    expect(left).not.toContain(`${deadPid}-1`);
    expect(left).not.toContain(`${alive}-1`);
    expect(left.filter((n) => n.startsWith(`${alive}-`))).toHaveLength(1); // its own, true start time
    expect(left).toContain('not-an-entry'); // not ours to remove
  });

  it('no cap registers nothing and always admits', () => {
    dir = mkdtempSync(join(tmpdir(), 'fbx-slots-'));
    for (let i = 0; i < 5; i++) expect(acquireHandlerSlot(dir, null).acquired).toBe(true);
    expect(() => readdirSync(join(dir, HANDLERS_DIR))).toThrow(/ENOENT/);
  });
});
