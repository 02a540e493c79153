// The metric sampler against the real kernel: real children that hold memory, spin,
// run threads and open files, found by a unique comm, a unique argument, a pid file or a
// cgroup of their own. Every child is killed, and every cgroup removed, in a finally.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SYSTEM_METRICS } from '../../lib/rules.js';
import { MetricSampler, type ValueEvent } from '../../triggers/metric-sampler.js';
import { IS_ROOT, killAndWait, sleep, waitFor } from '../helpers.js';
import { msPerSample, threshold } from '../metric-fixtures.js';

const MiB = 2 ** 20;
// six hex digits: "fbx-rss-" + TAG is 14 characters, under TASK_COMM_LEN (15 + NUL)
const TAG = randomBytes(3).toString('hex');

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fbx-sampler-sys-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const byRule = (evs: ValueEvent[], name: string): ValueEvent => {
  const ev = evs.find((e) => e.rule === name);
  if (ev === undefined) throw new Error(`no event for rule ${name}`);
  return ev;
};

/** A node child that prints "ready" once set up, then idles; `argv0` names it (its comm) through a symlink. */
async function nodeChild(code: string, opts: { argv0?: string; args?: string[] } = {}): Promise<ChildProcess> {
  let exe = process.execPath;
  if (opts.argv0 !== undefined) {
    exe = join(dir, opts.argv0);
    if (!existsSync(exe)) symlinkSync(process.execPath, exe);
  }
  const child = spawn(exe, ['-e', `${code}; process.stdout.write('ready\\n'); setInterval(() => {}, 1e6)`, ...(opts.args ?? [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code, sig) => reject(new Error(`child exited early: ${code ?? sig}`)));
  });
  return child;
}

describe('system metrics on the real host', () => {
  it('every system metric has a plausible value (cpu from the second sample on)', async () => {
    const s = new MetricSampler();
    const rules = SYSTEM_METRICS.map((m) => threshold(m, m, null, m === 'disk.free' ? '/' : null));
    const first = s.sample(rules);
    expect(byRule(first, 'cpu').value).toBeNull();
    await sleep(300);
    const evs = s.sample(rules);
    const v = (m: string) => byRule(evs, m).value;
    for (const m of ['cpu', 'memory.available', 'swap.used', 'disk.free']) {
      expect(v(m), m).toBeGreaterThanOrEqual(0);
      expect(v(m), m).toBeLessThanOrEqual(100);
    }
    // disk.free of / on a test box: neither empty nor full
    expect(v('disk.free')).toBeGreaterThan(0);
    expect(v('disk.free')).toBeLessThan(100);
    for (const m of ['load1', 'load5', 'load15']) expect(v(m), m).toBeGreaterThanOrEqual(0);
    expect(v('memory.available')).toBeGreaterThan(0);
    // this process alone holds a dozen file handles
    expect(v('fds')).toBeGreaterThan(10);
    const hasPsi = existsSync('/proc/pressure/memory');
    for (const m of SYSTEM_METRICS.filter((x) => x.startsWith('psi.'))) {
      if (hasPsi) expect(v(m), m).toBeGreaterThanOrEqual(0);
      else expect(v(m), m).toBeNull();
    }
    expect(evs.every((e) => e.t === evs[0]!.t && Object.keys(e.labels).length === 0)).toBe(true);
  });

  it('disk.free of a mount that does not exist has no value', () => {
    const evs = new MetricSampler().sample([threshold('d', 'disk.free', null, join(dir, 'no', 'such', 'mount'))]);
    expect(evs[0]!.value).toBeNull();
  });
});

describe('per-process metrics of real processes', () => {
  it('process.rss of a child holding 150 MB, found by its comm, its command line and its pid file', async () => {
    const comm = `fbx-rss-${TAG}`;
    const marker = `fbx-marker=${TAG}`;
    const pidFile = join(dir, 'rss.pid');
    let child: ChildProcess | null = null;
    try {
      child = await nodeChild("globalThis.b = Buffer.alloc(150 * 2 ** 20, 1)", { argv0: comm, args: [marker] });
      writeFileSync(pidFile, `${child.pid}\n`);
      const s = new MetricSampler();
      const evs = s.sample([
        threshold('name', 'process.rss', { name: comm }),
        threshold('cmdline', 'process.rss', { cmdline: `${marker}$` }),
        threshold('pidfile', 'process.rss', { pidFile }),
        threshold('nobody', 'process.rss', { name: `fbx-none-${TAG}` }),
      ]);
      for (const rule of ['name', 'cmdline', 'pidfile']) {
        const ev = byRule(evs, rule);
        expect(ev.value, rule).toBeGreaterThan(100 * MiB);
        expect(ev.value, rule).toBeLessThan(1024 * MiB);
        expect(ev.labels, rule).toEqual({ pid: String(child.pid), comm, count: '1' });
      }
      expect(byRule(evs, 'nobody')).toMatchObject({ value: null, labels: {} });
    } finally {
      await killAndWait(child);
    }
    // gone: the same rules find nothing
    const after = new MetricSampler().sample([threshold('name', 'process.rss', { name: comm }), threshold('pf', 'process.rss', { pidFile })]);
    expect(after.map((e) => e.value)).toEqual([null, null]);
  });

  it('process.cpu of a busy-looping child is above 50 % after two samples 1 s apart', async () => {
    const comm = `fbx-cpu-${TAG}`;
    let busy: ChildProcess | null = null;
    let idle: ChildProcess | null = null;
    try {
      busy = await nodeChild('setImmediate(function spin() { const end = Date.now() + 50; while (Date.now() < end); setImmediate(spin); })', { argv0: comm });
      idle = await nodeChild('', { argv0: comm });
      const s = new MetricSampler();
      const rule = threshold('cpu', 'process.cpu', { name: comm });
      // first sight: no baseline, no value, but both processes are there
      expect(s.sample([rule])[0]).toMatchObject({ value: null, labels: { count: '2' } });
      await sleep(1000);
      const ev = s.sample([rule])[0]!;
      expect(ev.value).toBeGreaterThan(50);
      expect(ev.value).toBeLessThan(150);
      expect(ev.labels).toEqual({ pid: String(busy.pid), comm, count: '2' });
    } finally {
      await Promise.all([killAndWait(busy), killAndWait(idle)]);
    }
  });

  it('process.threads of a C program with exactly 8 extra threads', async () => {
    const src = join(dir, 'threads.c');
    const bin = join(dir, `fbx-thr-${TAG}`);
    writeFileSync(src, [
      '#include <pthread.h>',
      '#include <stdio.h>',
      '#include <unistd.h>',
      'static void *idle(void *a) { (void)a; for (;;) pause(); return NULL; }',
      'int main(void) {',
      '  pthread_t t[8];',
      '  for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, idle, NULL);',
      '  printf("ready\\n"); fflush(stdout);',
      '  for (;;) pause();',
      '}',
      '',
    ].join('\n'));
    const cc = spawnSync('gcc', ['-O0', '-pthread', '-o', bin, src], { encoding: 'utf8' });
    expect(cc.status, cc.stderr).toBe(0);
    const child = spawn(bin, [], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.once('data', () => resolve());
        child.once('exit', (code) => reject(new Error(`threads program exited with ${code}`)));
      });
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      expect(status).toMatch(/^Threads:\s+9$/m);
      const ev = new MetricSampler().sample([threshold('thr', 'process.threads', { name: `fbx-thr-${TAG}` })])[0]!;
      expect(ev).toMatchObject({ value: 9, labels: { pid: String(child.pid), comm: `fbx-thr-${TAG}`, count: '1' } });
    } finally {
      await killAndWait(child);
    }
  });

  it('process.fds follows a child that opens 300 more files', async () => {
    const pidFile = join(dir, 'fds.pid');
    let child: ChildProcess | null = null;
    try {
      // opens on a "go" line on stdin, so the count before and after is of the same process
      child = spawn(process.execPath, ['-e', [
        "const fs = require('node:fs');",
        "process.stdin.once('data', () => { for (let i = 0; i < 300; i++) fs.openSync('/dev/null', 'r'); process.stdout.write('opened\\n'); });",
        "process.stdout.write('ready\\n');",
      ].join('\n')], { stdio: ['pipe', 'pipe', 'inherit'] });
      const lines: string[] = [];
      child.stdout!.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
      await waitFor('the child to start', () => lines.includes('ready'), 10_000, 20);
      writeFileSync(pidFile, `${child.pid}\n`);
      const s = new MetricSampler();
      const rule = threshold('fds', 'process.fds', { pidFile });
      const before = s.sample([rule])[0]!;
      expect(before.value).toBeGreaterThan(2);
      expect(before.value).toBeLessThan(200);
      child.stdin!.write('go\n');
      await waitFor('the files to be open', () => lines.includes('opened'), 10_000, 20);
      const after = s.sample([rule])[0]!;
      expect(after.value).toBeGreaterThanOrEqual(before.value! + 300);
      expect(after.value).toBe(readdirSync(`/proc/${child.pid}/fd`).length);
      expect(after.labels).toEqual({ pid: String(child.pid), comm: 'node', count: '1' });
    } finally {
      await killAndWait(child);
    }
  });

  describe.skipIf(!IS_ROOT || cgroup2Mount() === null)('cgroup selector (needs root: creates a cgroup v2 group)', () => {
    it('finds a busy child moved into a cgroup of its own, by that cgroup or a prefix of it', async () => {
      const mount = cgroup2Mount()!;
      const group = `fbx-test-${TAG}`;
      const gdir = join(mount, group);
      const sub = join(gdir, 'sub');
      let busy: ChildProcess | null = null;
      let other: ChildProcess | null = null;
      mkdirSync(sub, { recursive: true });
      try {
        busy = await nodeChild('setImmediate(function spin() { const end = Date.now() + 50; while (Date.now() < end); setImmediate(spin); })');
        other = await nodeChild('globalThis.b = Buffer.alloc(64 * 2 ** 20, 1)');
        writeFileSync(join(sub, 'cgroup.procs'), String(busy.pid));
        writeFileSync(join(gdir, 'cgroup.procs'), String(other.pid));
        // a sibling whose name extends ours must not count: "/fbx-test-x2" is not under "/fbx-test-x"
        const s = new MetricSampler();
        const rules = [
          threshold('group-cpu', 'process.cpu', { cgroup: `/${group}` }),
          threshold('group-rss', 'process.rss', { cgroup: `/${group}` }),
          threshold('sub-rss', 'process.rss', { cgroup: `/${group}/sub` }),
          threshold('prefix-only', 'process.rss', { cgroup: `/${group.slice(0, -1)}` }),
        ];
        s.sample(rules);
        await sleep(1000);
        const evs = s.sample(rules);
        expect(byRule(evs, 'group-cpu')).toMatchObject({ labels: { pid: String(busy.pid), count: '2' } });
        expect(byRule(evs, 'group-cpu').value).toBeGreaterThan(50);
        expect(byRule(evs, 'group-rss')).toMatchObject({ labels: { pid: String(other.pid), count: '2' } });
        expect(byRule(evs, 'group-rss').value).toBeGreaterThan(64 * MiB);
        expect(byRule(evs, 'sub-rss').labels).toEqual({ pid: String(busy.pid), comm: 'node', count: '1' });
        expect(byRule(evs, 'prefix-only')).toMatchObject({ value: null, labels: {} });
      } finally {
        await Promise.all([killAndWait(busy), killAndWait(other)]);
        // a cgroup can be removed only once empty: the kernel may take a moment to reap
        await waitFor('the test cgroups to be removed', () => {
          try {
            if (existsSync(sub)) rmdirSync(sub);
            if (existsSync(gdir)) rmdirSync(gdir);
            return true;
          } catch {
            return false;
          }
        }, 10_000, 50);
      }
    });
  });

  it('costs a few ms per sample with several rules on the real /proc', () => {
    const s = new MetricSampler();
    const rules = [
      threshold('cpu', 'cpu'), threshold('mem', 'memory.available'), threshold('load', 'load1'),
      threshold('rss', 'process.rss', { name: 'node' }),
      threshold('thr', 'process.threads', { name: 'node' }),
      threshold('pcpu', 'process.cpu', { name: 'systemd' }),
    ];
    const ms = msPerSample(s, rules, 50);
    const scan = s.lastScan!;
    console.info(`metric sampler: ${ms.toFixed(2)} ms per sample (${rules.length} rules, ${scan.listed} processes)`);
    // some 10 µs per process for the comm scan on a small VM; generous for a loaded box
    expect(ms).toBeLessThan(Math.max(30, scan.listed * 0.1));
  });
});

/** Where cgroup v2 is mounted with its root at the hierarchy's root (pure v2 or hybrid), or null. */
function cgroup2Mount(): string | null {
  try {
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const [pre, post] = line.split(' - ');
      if (post?.split(' ')[0] !== 'cgroup2') continue;
      const f = pre!.split(' ');
      if (f[3] === '/' && f[4] !== undefined) return f[4];
    }
  } catch {
    // no /proc
  }
  return null;
}
