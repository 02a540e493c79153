// The control socket's client, against a real Unix socket served by another process.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { controlRequest } from '../../lib/control-client.js';

// Prints one JSON line per request it reads ({ at, req }); answers it unless told to be silent.
const SERVER = `
const net = require('node:net');
const [sock, mode] = process.argv.slice(1);
net.createServer((c) => {
  let buf = '';
  c.setEncoding('utf8').on('data', (d) => {
    buf += d;
    const nl = buf.indexOf('\\n');
    if (nl < 0) return;
    const req = JSON.parse(buf.slice(0, nl));
    process.stdout.write(JSON.stringify({ at: Date.now(), req }) + '\\n');
    if (mode === 'answer') c.end(JSON.stringify({ ok: true, echo: req.op }) + '\\n');
  });
}).listen(sock, () => process.stdout.write('listening\\n'));
`;

describe('control client', () => {
  let dir: string;
  let server: ChildProcess | null = null;
  let lines: string[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fbx-ctl-'));
    lines = [];
  });
  afterEach(() => {
    server?.kill('SIGKILL');
    server = null;
    rmSync(dir, { recursive: true, force: true });
  });

  async function serve(mode: 'answer' | 'silent'): Promise<string> {
    const sock = join(dir, `${mode}.sock`);
    const child = spawn(process.execPath, ['-e', SERVER, sock, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
    server = child;
    let pending = '';
    await new Promise<void>((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (code) => reject(new Error(`the test server exited (${code})`)));
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        pending += d;
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          if (line === 'listening') resolve();
          else lines.push(line);
        }
      });
    });
    return sock;
  }

  /** The server's record of the requests it read, once it has read `n`. */
  async function received(n: number): Promise<Array<{ at: number; req: { op: string } }>> {
    for (let i = 0; i < 200 && lines.length < n; i++) await new Promise((r) => setTimeout(r, 10));
    return lines.map((l) => JSON.parse(l) as { at: number; req: { op: string } });
  }

  it('one request, one JSON line each way', async () => {
    const sock = await serve('answer');
    expect(await controlRequest(sock, { op: 'freeze', reason: 'crash x' }, 5000)).toEqual({ ok: true, echo: 'freeze' });
    const got = await received(1);
    expect(got.map((g) => g.req)).toEqual([{ op: 'freeze', reason: 'crash x' }]);
  });

  it('no one listening: the daemon is not running, said at once', async () => {
    const sock = join(dir, 'nobody.sock');
    const t0 = Date.now();
    await expect(controlRequest(sock, { op: 'ping' }, 5000)).rejects.toThrow(`the flightbox daemon is not running (no one listens on ${sock})`);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('a server that never answers: the request fails after the timeout', async () => {
    const silent = await serve('silent');
    const t0 = Date.now();
    await expect(controlRequest(silent, { op: 'status' }, 150)).rejects.toThrow(/did not answer status within 150 ms/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect((await received(1))[0]!.req.op).toBe('status');
  });
});
