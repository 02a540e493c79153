// LogTail against real files in a temp dir, written the way real writers and logrotate do:
// appends through an fd, rename + new file, copytruncate, partial writes, a burst.
import { appendFileSync, chownSync, closeSync, copyFileSync, lchownSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LINE_CUT_MARKER, LogTail, type LogTailOptions } from '../../triggers/log-tail.js';
import type { Logger } from '../../lib/log.js';
import { sleep, waitUntil } from '../helpers.js';

const POLL_MS = 100;
/** Longer than a poll interval plus a chokidar round trip: nothing more may arrive after it. */
const SETTLE_MS = 4 * POLL_MS;

let dir: string;
const tails: LogTail[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fbx-tail-'));
});

afterEach(async () => {
  await Promise.all(tails.splice(0).map((t) => t.close()));
  rmSync(dir, { recursive: true, force: true });
});

/** Handle kinds a tail may hold (fs.watch wraps are unref'd and not listed: see inotify below). */
const WATCHED_KINDS = new Set(['Timeout', 'Immediate', 'FSEventWrap', 'StatWatcher', 'FileHandle']);

function openFdTargets(): string[] {
  const fdDir = `/proc/${process.pid}/fd`;
  return readdirSync(fdDir).flatMap((fd) => {
    try {
      return [readlinkSync(join(fdDir, fd))];
    } catch {
      return [];
    }
  });
}

/** Inodes watched by this process's inotify instances, from /proc/PID/fdinfo. */
function inotifyWatchedInodes(): number[] {
  const out: number[] = [];
  for (const fd of readdirSync(`/proc/${process.pid}/fdinfo`)) {
    let info: string;
    try {
      info = readFileSync(`/proc/${process.pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    for (const m of info.matchAll(/^inotify wd:\S+ ino:([0-9a-f]+) /gm)) out.push(parseInt(m[1] ?? '', 16));
  }
  return out;
}

interface Logged { level: string; msg: string }

function collectingLogger(into: Logged[]): Logger {
  const push = (level: string) => (_ctx: object, msg: string) => { into.push({ level, msg }); };
  return { debug: push('debug'), info: push('info'), warn: push('warn'), error: push('error') };
}

async function follow(path: string, opts: LogTailOptions = {}) {
  const lines: string[] = [];
  const times: number[] = [];
  const tail = new LogTail(path, (line, t) => { lines.push(line); times.push(t); }, { pollIntervalMs: POLL_MS, ...opts });
  tails.push(tail);
  await tail.start();
  return { tail, lines, times };
}

/** Lines "tag-1" … "tag-n" */
const numbered = (tag: string, from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => `${tag}-${from + i}`);

describe('LogTail', () => {
  it('reports each appended line once, with the time it was read', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, '');
    const { lines, times } = await follow(path, { now: () => 1234 });
    appendFileSync(path, 'a\n');
    await waitUntil(() => lines.length >= 1, 'a');
    appendFileSync(path, 'b\nc\n');
    await waitUntil(() => lines.length >= 3, 'b, c');
    await sleep(SETTLE_MS);
    expect(lines).toEqual(['a', 'b', 'c']);
    expect(times).toEqual([1234, 1234, 1234]);
  });

  it('does not report what the file held at start, but completes a last line in progress', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, 'old-1\nold-2\nhalf');
    const { lines } = await follow(path);
    await sleep(SETTLE_MS);
    expect(lines).toEqual([]);
    appendFileSync(path, ' done\nnew\n');
    await waitUntil(() => lines.length >= 2, 'new lines');
    await sleep(SETTLE_MS);
    expect(lines).toEqual(['half done', 'new']);
  });

  it('is woken by the file watcher, not only by the stat poll', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, '');
    // A poll far longer than the test: only chokidar can bring these lines.
    const { lines } = await follow(path, { pollIntervalMs: 600_000 });
    appendFileSync(path, 'prompt\n');
    await waitUntil(() => lines.length >= 1, 'prompt', 3000);
    renameSync(path, `${path}.1`);
    writeFileSync(path, 'rotated\n');
    await waitUntil(() => lines.length >= 2, 'rotated', 3000);
    appendFileSync(path, 'more\n');
    await waitUntil(() => lines.length >= 3, 'more', 3000);
    expect(lines).toEqual(['prompt', 'rotated', 'more']);
  });

  it('waits for a file that does not exist yet and reads it from its start', async () => {
    const path = join(dir, 'later.log');
    const { lines } = await follow(path);
    await sleep(SETTLE_MS);
    writeFileSync(path, 'first\nsecond\n', { flag: 'wx' });
    appendFileSync(path, 'third\n');
    await waitUntil(() => lines.length >= 3, 'three lines');
    await sleep(SETTLE_MS);
    expect(lines).toEqual(['first', 'second', 'third']);
  });

  it('waits for a directory that does not exist yet', async () => {
    const path = join(dir, 'sub', 'later.log');
    const { lines } = await follow(path);
    mkdirSync(join(dir, 'sub'));
    writeFileSync(path, 'x\n');
    await waitUntil(() => lines.length >= 1, 'x');
    expect(lines).toEqual(['x']);
  });

  it('follows rotation by rename while the writer still appends to the old file', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, 'before\n');
    const { lines } = await follow(path);
    const old = openSync(path, 'a');
    for (const l of numbered('old', 1, 50)) {
      writeSync(old, `${l}\n`);
      if (l.endsWith('0')) await sleep(5);
    }
    await waitUntil(() => lines.length >= 50, 'old-50');
    // logrotate: rename; the writer has not noticed and goes on for a moment.
    renameSync(path, `${path}.1`);
    for (const l of numbered('old', 51, 60)) writeSync(old, `${l}\n`);
    await sleep(2 * POLL_MS);
    // create: the new file appears; the writer still writes a little to the old one
    // (until postrotate's HUP makes it reopen), then only to the new one.
    const neu = openSync(path, 'wx');
    writeSync(neu, 'new-1\n');
    for (const l of numbered('old', 61, 70)) writeSync(old, `${l}\n`);
    await sleep(2 * POLL_MS);
    for (const l of numbered('old', 71, 75)) writeSync(old, `${l}\n`);
    closeSync(old);
    for (const l of numbered('new', 2, 40)) writeSync(neu, `${l}\n`);
    closeSync(neu);
    await waitUntil(() => lines.length >= 75 + 40, 'all lines');
    await sleep(SETTLE_MS);
    expect(lines.filter((l) => l.startsWith('old-'))).toEqual(numbered('old', 1, 75));
    expect(lines.filter((l) => l.startsWith('new-'))).toEqual(numbered('new', 1, 40));
    expect(lines).toHaveLength(115);
  });

  it('follows a rename and a new file that happen between two looks', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, '');
    const { lines } = await follow(path);
    const old = openSync(path, 'a');
    writeSync(old, 'old-1\n');
    await waitUntil(() => lines.length >= 1, 'old-1');
    // All in one tick: no event can be handled in between.
    writeSync(old, 'old-2\n');
    renameSync(path, `${path}.1`);
    writeSync(old, 'old-3\n');
    writeFileSync(path, 'new-1\nnew-2\n');
    writeSync(old, 'old-4\nold-5\n');
    closeSync(old);
    await waitUntil(() => lines.length >= 7, 'all lines');
    await sleep(SETTLE_MS);
    expect(lines.filter((l) => l.startsWith('old-'))).toEqual(numbered('old', 1, 5));
    expect(lines.filter((l) => l.startsWith('new-'))).toEqual(['new-1', 'new-2']);
  });

  it('stops reading a rotated-away file after rotateWaitMs and closes it', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, '');
    const { lines } = await follow(path, { rotateWaitMs: 300 });
    const old = openSync(path, 'a');
    renameSync(path, `${path}.1`);
    writeFileSync(path, '');
    writeSync(old, 'late-1\n');
    await waitUntil(() => lines.length >= 1, 'late-1');
    await sleep(300 + SETTLE_MS);
    writeSync(old, 'too-late\n');
    closeSync(old);
    appendFileSync(path, 'new-1\n');
    await waitUntil(() => lines.length >= 2, 'new-1');
    await sleep(SETTLE_MS);
    expect(lines).toEqual(['late-1', 'new-1']);
  });

  it('follows a file deleted and created again', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, 'old\n');
    const { lines } = await follow(path);
    unlinkSync(path);
    await sleep(2 * POLL_MS);
    writeFileSync(path, 'again-1\n');
    appendFileSync(path, 'again-2\n');
    await waitUntil(() => lines.length >= 2, 'again');
    await sleep(SETTLE_MS);
    expect(lines).toEqual(['again-1', 'again-2']);
  });

  it('follows truncation in place (copytruncate) without repeating a line', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, '');
    const logged: Logged[] = [];
    const { lines } = await follow(path, { log: collectingLogger(logged) });
    const w = openSync(path, 'a'); // O_APPEND, as a writer must for copytruncate
    for (const l of numbered('line', 1, 20)) writeSync(w, `${l}\n`);
    await waitUntil(() => lines.length >= 20, 'line-20');
    copyFileSync(path, `${path}.1`);
    truncateSync(path, 0);
    await sleep(2 * POLL_MS);
    for (const l of numbered('line', 21, 30)) writeSync(w, `${l}\n`);
    closeSync(w);
    await waitUntil(() => lines.length >= 30, 'line-30');
    await sleep(SETTLE_MS);
    expect(lines).toEqual(numbered('line', 1, 30));
    expect(logged.some((l) => l.msg.includes('truncated'))).toBe(true);
  });

  it('notices a truncation refilled past the old offset before it looked', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, '');
    const { lines } = await follow(path);
    appendFileSync(path, 'short-1\nshort-2\n');
    await waitUntil(() => lines.length >= 2, 'short lines');
    // One tick: truncate, then more than the old size, so size alone looks like growth.
    truncateSync(path, 0);
    appendFileSync(path, 'after-truncation-1\nafter-truncation-2\n');
    await waitUntil(() => lines.length >= 4, 'refilled lines');
    await sleep(SETTLE_MS);
    expect(lines).toEqual(['short-1', 'short-2', 'after-truncation-1', 'after-truncation-2']);
  });

  it('drops the NULs a copytruncate leaves before a writer without O_APPEND', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, '');
    const { lines } = await follow(path);
    const w = openSync(path, 'r+'); // no O_APPEND: writes at its own offset
    writeSync(w, 'one\ntwo\n', 0);
    await waitUntil(() => lines.length >= 2, 'one, two');
    truncateSync(path, 0);
    writeSync(w, 'three\n', 8); // leaves 8 NULs (a hole) before it
    closeSync(w);
    await waitUntil(() => lines.length >= 3, 'three');
    await sleep(SETTLE_MS);
    expect(lines).toEqual(['one', 'two', 'three']);
  });

  it('reports a line written in pieces once, when its newline comes', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, '');
    const { lines } = await follow(path);
    appendFileSync(path, 'ERR');
    await sleep(SETTLE_MS);
    expect(lines).toEqual([]);
    appendFileSync(path, 'OR 42\n');
    await waitUntil(() => lines.length >= 1, 'ERROR 42');
    await sleep(SETTLE_MS);
    expect(lines).toEqual(['ERROR 42']);
  });

  it('strips the CR of CRLF and replaces invalid UTF-8', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, '');
    const { lines } = await follow(path);
    appendFileSync(path, 'dos line\r\n');
    appendFileSync(path, Buffer.from([0x62, 0x61, 0x64, 0xff, 0xc3, 0x28, 0x20, 0xc3, 0xa9, 0x0a]));
    appendFileSync(path, '\n');
    await waitUntil(() => lines.length >= 3, 'three lines');
    expect(lines).toEqual(['dos line', 'bad\uFFFD\uFFFD( é', '']);
  });

  it('cuts a line longer than maxLineBytes once, with a marker, and goes on after it', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, '');
    const { lines } = await follow(path, { maxLineBytes: 1000 });
    appendFileSync(path, `${'x'.repeat(5000)}\nnext\n`);
    await waitUntil(() => lines.length >= 2, 'two lines');
    // The same line arriving in pieces: cut as soon as it is too long, the rest skipped.
    appendFileSync(path, 'y'.repeat(700));
    appendFileSync(path, 'y'.repeat(700));
    await waitUntil(() => lines.length >= 3, 'the cut line');
    appendFileSync(path, `${'y'.repeat(3000)}\nafter\n`);
    // Exactly maxLineBytes (with a CRLF) is not cut; a multi-byte character is not split.
    appendFileSync(path, `${'z'.repeat(1000)}\r\na${'é'.repeat(600)}\n`);
    await waitUntil(() => lines.length >= 6, 'six lines');
    await sleep(SETTLE_MS);
    expect(lines).toEqual([
      `${'x'.repeat(1000)}${LINE_CUT_MARKER}`,
      'next',
      `${'y'.repeat(1000)}${LINE_CUT_MARKER}`,
      'after',
      'z'.repeat(1000),
      `a${'é'.repeat(499)}${LINE_CUT_MARKER}`,
    ]);
  });

  it('reports a burst of 100 000 lines exactly once each, in order', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, '');
    const { lines } = await follow(path);
    const n = 100_000;
    const pad = 'p'.repeat(60);
    const w = openSync(path, 'a');
    const t0 = performance.now();
    // Written in 10 chunks of ~0.8 MB, with one crossing a chunk boundary mid-line.
    for (let c = 0; c < 10; c++) {
      let s = '';
      for (let i = c * (n / 10); i < (c + 1) * (n / 10); i++) s += `burst ${i} ${pad}\n`;
      writeSync(w, s);
    }
    closeSync(w);
    await waitUntil(() => lines.length >= n, `${n} lines`, 60_000);
    const ms = performance.now() - t0;
    await sleep(SETTLE_MS);
    expect(lines).toHaveLength(n);
    for (let i = 0; i < n; i++) {
      if (lines[i] !== `burst ${i} ${pad}`) throw new Error(`line ${i} is ${lines[i]}`);
    }
    console.log(`log-tail burst: ${n} lines (${(n * 71 / 1e6).toFixed(1)} MB) in ${ms.toFixed(0)} ms, ${Math.round(n / (ms / 1000))} lines/s`);
    expect(ms).toBeLessThan(20_000);
  });

  it('follows a symlink to a regular file, and refuses one to a FIFO without hanging', async () => {
    const target = join(dir, 'real.log');
    writeFileSync(target, '');
    const link = join(dir, 'link.log');
    symlinkSync(target, link);
    const { lines } = await follow(link);
    appendFileSync(target, 'via link\n');
    await waitUntil(() => lines.length >= 1, 'via link');
    expect(lines).toEqual(['via link']);

    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const fifoLink = join(dir, 'fifo.log');
    symlinkSync(fifo, fifoLink);
    const logged: Logged[] = [];
    const f = await follow(fifoLink, { log: collectingLogger(logged) });
    await sleep(SETTLE_MS);
    expect(f.lines).toEqual([]);
    expect(logged.filter((l) => l.msg.includes('not a regular file'))).toHaveLength(1);
  });

  it.skipIf(process.getuid?.() !== 0)('symlink-to-another-users-file: a link planted by a service is not followed out of its own files', async () => {
    // The service (uid 65534 here) owns its log directory and swaps its log for a link to
    // a root-only file; we read as root, and must not feed that file to rules and mails.
    const secret = join(dir, 'shadow');
    writeFileSync(secret, 'root:secret-hash\n', { mode: 0o600 });
    const path = join(dir, 'app.log');
    symlinkSync(secret, path);
    lchownSync(path, 65534, 65534);
    const logged: Logged[] = [];
    const { lines } = await follow(path, { log: collectingLogger(logged) });
    appendFileSync(secret, 'root:another-hash\n');
    await sleep(SETTLE_MS);
    expect(lines).toEqual([]);
    expect(logged.filter((l) => l.msg.includes('not following'))).toHaveLength(1);

    // A link of the service to the service's own file is followed (it could read it anyway).
    const own = join(dir, 'own.log');
    writeFileSync(own, '');
    chownSync(own, 65534, 65534);
    unlinkSync(path);
    symlinkSync(own, path);
    lchownSync(path, 65534, 65534);
    appendFileSync(own, 'mine\n');
    await waitUntil(() => lines.length >= 1, 'mine');
    expect(lines).toEqual(['mine']);
  });

  it('close() stops every callback, leaves no handle behind and is safe twice', async () => {
    const path = join(dir, 'app.log');
    writeFileSync(path, '');
    const { tail, lines } = await follow(path);
    appendFileSync(path, 'one\n');
    await waitUntil(() => lines.length >= 1, 'one');
    // A rotated-away file held open too.
    renameSync(path, `${path}.1`);
    writeFileSync(path, 'two\n');
    await waitUntil(() => lines.length >= 2, 'two');
    const during = process.getActiveResourcesInfo();
    expect(inotifyWatchedInodes()).toContain(statSync(dir).ino);
    await tail.close();
    await tail.close();
    appendFileSync(path, 'three\n');
    appendFileSync(`${path}.1`, 'four\n');
    await sleep(SETTLE_MS);
    expect(lines).toEqual(['one', 'two']);
    const after = process.getActiveResourcesInfo();
    expect(during.filter((r) => WATCHED_KINDS.has(r)).length).toBeGreaterThan(0);
    expect(after.filter((r) => WATCHED_KINDS.has(r))).toEqual([]);
    // No fd on a file under our temp dir, no inotify watch on the directory or the file.
    expect(openFdTargets().filter((t) => t.startsWith(dir))).toEqual([]);
    expect(inotifyWatchedInodes()).not.toContain(statSync(dir).ino);
    expect(inotifyWatchedInodes()).not.toContain(statSync(path).ino);
  });
});
