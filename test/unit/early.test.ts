// The node the launcher starts beside its copies (handler/early.ts): waiting for the launcher's
// word in a real directory (inotify), a real process standing in for the launcher, and the
// executable opened through a real process's fd 9.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { markTaken, parentLauncher, parseGo, waitForGo, type Launcher } from '../../handler/early.js';
import { launcherExe as openLauncherExe } from '../../handler/overflow.js';
import { LAUNCHER_EARLY, LAUNCHER_EXE_FD } from '../../handler/run-dir.js';
import { processStartTime } from '../../store/handler-slots.js';
import { waitFor } from '../helpers.js';

const dirs: string[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function entryDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'fbx-early-'));
  dirs.push(d);
  return d;
}

/** A live process standing in for the launcher; with `exe`, it holds that file open on fd 9 as the launcher does. */
async function fakeLauncher(exe?: string): Promise<{ child: ChildProcess; launcher: Launcher }> {
  const script = exe ? 'exec 9<"$1"; exec sleep 60' : 'exec sleep 60';
  const child = spawn('/bin/sh', ['-c', script, 'sh', exe ?? ''], { stdio: 'ignore' });
  children.push(child);
  const launcher = await waitFor('the stand-in launcher', () => {
    const start = processStartTime(child.pid!);
    if (start === null) return undefined;
    if (!exe) return { pid: child.pid!, start };
    // exec'd into sleep: its fd 9 is in place
    let fd: number | null = null;
    try {
      fd = openSync(`/proc/${child.pid}/fd/${LAUNCHER_EXE_FD}`, 'r');
      return fstatSync(fd).isFile() && processStartTime(child.pid!) === start && readFileSync(`/proc/${child.pid}/comm`, 'utf8') === 'sleep\n' ? { pid: child.pid!, start } : undefined;
    } catch {
      return undefined;
    } finally {
      if (fd !== null) closeSync(fd);
    }
  }, 5000, 5);
  return { child, launcher };
}

describe('parseGo', () => {
  it('takes only a whole word: one to three digits and a newline', () => {
    expect(parseGo('0\n')).toBe(0);
    expect(parseGo('1\n')).toBe(1);
    expect(parseGo('255\n')).toBe(255);
    for (const bad of [null, '', '0', '1', '\n', '1234\n', '-1\n', '1 \n', 'x\n', '0\n0\n']) expect(parseGo(bad)).toBeNull();
  });
});

describe('waitForGo', () => {
  it('resolves with the status once the word is whole: the file created empty first, written after', async () => {
    const dir = entryDir();
    const { launcher } = await fakeLauncher();
    const t0 = Date.now();
    const waiting = waitForGo(dir, launcher, { lifeCheckMs: 10_000 });
    let settled: number | null | undefined;
    void waiting.then((v) => { settled = v; });
    await new Promise((r) => setTimeout(r, 50));
    writeFileSync(join(dir, 'other'), 'x'); // other files of the entry do not end the wait
    writeFileSync(join(dir, LAUNCHER_EARLY.go), ''); // created, not yet written (as printf's open and write)
    await new Promise((r) => setTimeout(r, 50));
    expect(settled).toBeUndefined();
    writeFileSync(join(dir, LAUNCHER_EARLY.go), '2\n');
    expect(await waiting).toBe(2);
    // by inotify, not by the life check (10 s here)
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('a word already there is taken at once', async () => {
    const dir = entryDir();
    const { launcher } = await fakeLauncher();
    writeFileSync(join(dir, LAUNCHER_EARLY.go), '0\n');
    expect(await waitForGo(dir, launcher, { lifeCheckMs: 10_000 })).toBe(0);
  });

  it('null once the launcher dies before its word', async () => {
    const dir = entryDir();
    const { child, launcher } = await fakeLauncher();
    const waiting = waitForGo(dir, launcher, { lifeCheckMs: 20 });
    child.kill('SIGKILL');
    expect(await waiting).toBeNull();
  });

  it('null when the pid is another process now (another start time)', async () => {
    const dir = entryDir();
    const { launcher } = await fakeLauncher();
    expect(await waitForGo(dir, { pid: launcher.pid, start: launcher.start + 1 }, { lifeCheckMs: 20 })).toBeNull();
  });

  it('null once the entry is removed', async () => {
    const dir = entryDir();
    const { launcher } = await fakeLauncher();
    const waiting = waitForGo(dir, launcher, { lifeCheckMs: 20 });
    rmSync(dir, { recursive: true });
    expect(await waiting).toBeNull();
  });

  it('a word that is not one (a symlink to a file with a status in it) is not taken', async () => {
    const dir = entryDir();
    const { child, launcher } = await fakeLauncher();
    const elsewhere = join(entryDir(), 'planted');
    writeFileSync(elsewhere, '0\n');
    symlinkSync(elsewhere, join(dir, LAUNCHER_EARLY.go));
    const waiting = waitForGo(dir, launcher, { lifeCheckMs: 20 });
    await new Promise((r) => setTimeout(r, 150));
    child.kill('SIGKILL');
    expect(await waiting).toBeNull();
  });
});

describe('markTaken', () => {
  it('writes the mark once; a second (or a planted one) is refused', () => {
    const dir = entryDir();
    expect(markTaken(dir)).toBe(true);
    expect(statSync(join(dir, LAUNCHER_EARLY.taken)).size).toBe(0);
    expect(markTaken(dir)).toBe(false);
    expect(markTaken(join(dir, 'missing'))).toBe(false);
  });
});

describe('launcherExe, through the launcher\'s /proc', () => {
  it('the file the launcher holds on its fd 9, when the entry says it has one', async () => {
    const dir = entryDir();
    const exe = join(dir, 'the-exe');
    writeFileSync(exe, 'ELF-ish');
    const { launcher } = await fakeLauncher(exe);
    expect(openLauncherExe(dir, launcher)).toBeNull(); // no exefd in the entry
    writeFileSync(join(dir, 'exefd'), '8\n');
    expect(openLauncherExe(dir, launcher)).toBeNull(); // not the launcher's fd
    writeFileSync(join(dir, 'exefd'), `${LAUNCHER_EXE_FD}\n`);
    const fd = openLauncherExe(dir, launcher);
    expect(fd).not.toBeNull();
    try {
      expect(fstatSync(fd!).ino).toBe(statSync(exe).ino);
    } finally {
      closeSync(fd!);
    }
    // another process under that pid (another start time): nothing
    expect(openLauncherExe(dir, { pid: launcher.pid, start: launcher.start + 1 })).toBeNull();
  });

  it('nothing when the launcher holds no file there, or is gone', async () => {
    const dir = entryDir();
    writeFileSync(join(dir, 'exefd'), `${LAUNCHER_EXE_FD}\n`);
    const { child, launcher } = await fakeLauncher();
    expect(openLauncherExe(dir, launcher)).toBeNull();
    child.kill('SIGKILL');
    await waitFor('the stand-in to die', () => processStartTime(launcher.pid) !== launcher.start, 5000, 5);
    expect(openLauncherExe(dir, launcher)).toBeNull();
  });
});

describe('parentLauncher', () => {
  it('is this process\'s parent, with its start time', () => {
    const p = parentLauncher();
    expect(p).toEqual({ pid: process.ppid, start: processStartTime(process.ppid) });
  });
});
