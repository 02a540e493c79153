// hashWhileWritten: the launcher's zstd output hashed while a real process writes it, in
// pieces with pauses, then its status file made as the launcher makes it (written, renamed).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashWhileWritten } from '../../handler/launcher-status.js';

let dir: string;
let file: string;
let status: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fbx-launcher-status-'));
  file = join(dir, '.z-entry');
  status = join(dir, 'z.status');
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A shell writing `script` (with $f the file, $s the status file); resolves when it exits. */
function writer(script: string): Promise<number | null> {
  const child = spawn('/bin/sh', ['-c', `f="$1"; s="$2"; ${script}`, 'sh', file, status], { stdio: 'ignore' });
  return new Promise((r) => child.once('exit', (code) => r(code)));
}

const DONE = (rc: number) => `printf '%s\\n' ${rc} >"$s.tmp" && mv -f "$s.tmp" "$s"`;

describe('hashWhileWritten', () => {
  it('hashes a file while it grows, and to its end once the status says done', async () => {
    const written = writer(`head -c 1048576 /dev/urandom >"$f"; sleep 0.3; head -c 700001 /dev/urandom >>"$f"; sleep 0.3; head -c 3 /dev/urandom >>"$f"; ${DONE(0)}`);
    const w = await hashWhileWritten(file, status, Date.now() + 10_000);
    expect(await written).toBe(0);
    expect(w).not.toBeNull();
    try {
      const data = readFileSync(file);
      expect(data.length).toBe(1_048_576 + 700_001 + 3);
      expect(w!.size).toBe(data.length);
      expect(w!.sha256).toBe(createHash('sha256').update(data).digest('hex'));
      // it read the first piece while the writer was still going (and maybe all of it)
      expect(w!.hashedBefore).toBeGreaterThanOrEqual(1_048_576);
      expect(w!.hashedBefore).toBeLessThanOrEqual(data.length);
    } finally {
      closeSync(w!.fd);
    }
  });

  it('a file written whole before it looks: the same hash, nothing read before', async () => {
    writeFileSync(file, 'x'.repeat(3 * 1024 * 1024 + 5));
    writeFileSync(status, '0\n');
    const w = await hashWhileWritten(file, status, Date.now() + 1000);
    expect(w).not.toBeNull();
    closeSync(w!.fd);
    expect(w!.sha256).toBe(createHash('sha256').update(readFileSync(file)).digest('hex'));
    expect(w!.hashedBefore).toBe(0);
  });

  it('an empty output is an empty file\'s hash', async () => {
    const written = writer(`: >"$f"; sleep 0.1; ${DONE(0)}`);
    const w = await hashWhileWritten(file, status, Date.now() + 10_000);
    await written;
    expect(w).not.toBeNull();
    closeSync(w!.fd);
    expect(w!.size).toBe(0);
    expect(w!.sha256).toBe(createHash('sha256').digest('hex'));
  });

  it('a program that failed: null, whatever it wrote', async () => {
    const written = writer(`head -c 200000 /dev/urandom >"$f"; sleep 0.1; ${DONE(1)}`);
    expect(await hashWhileWritten(file, status, Date.now() + 10_000)).toBeNull();
    await written;
  });

  it('a status that is not a number: null', async () => {
    writeFileSync(file, 'data');
    writeFileSync(status, 'zero\n');
    expect(await hashWhileWritten(file, status, Date.now() + 1000)).toBeNull();
  });

  it('no output file though the status says 0: null', async () => {
    writeFileSync(status, '0\n');
    expect(await hashWhileWritten(file, status, Date.now() + 1000)).toBeNull();
  });

  it('no status before the deadline: null, and soon after it', async () => {
    writeFileSync(file, 'partial');
    const t0 = Date.now();
    expect(await hashWhileWritten(file, status, t0 + 150)).toBeNull();
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('a file that shrinks after part of it was read: null', async () => {
    const written = writer(`head -c 2000000 /dev/urandom >"$f"; sleep 0.3; : >"$f"; head -c 10 /dev/urandom >>"$f"; ${DONE(0)}`);
    expect(await hashWhileWritten(file, status, Date.now() + 10_000)).toBeNull();
    await written;
  });

  it('a symlink where the output should be is not followed: null', async () => {
    const target = join(dir, 'elsewhere');
    writeFileSync(target, 'not zstd output');
    symlinkSync(target, file);
    writeFileSync(status, '0\n');
    expect(await hashWhileWritten(file, status, Date.now() + 1000)).toBeNull();
  });
});
