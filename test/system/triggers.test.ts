// Rules through the real daemon with real sources: a process whose RSS crosses a threshold,
// a log file appended, rotated, truncated and written in pieces, the kernel log, signals,
// `flightbox trigger`, a flood against cooldown and maxPerDay, a crash rule's hook.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { IS_ROOT, buildCrasher, makeTempStore, readJson, runCli, sleep, waitFor, type TempStore } from '../helpers.js';
import { noSysctlDropIn, runningDaemon, stopDaemon, type DaemonProc } from './daemon-proc.js';
import { crash, restoreKernelState, saveKernelState, type KernelState } from './kernel.js';

interface EventJson { id: string; kind: string; rule: string | null; reason: string | null; bundle: string; pid: number | null }
interface Manifest { rule: string | null; reason: string; labels?: Record<string, string>; actions?: string[]; files: { path: string }[]; warnings: string[] }

const BASE = 'recorders:\n  metrics: { interval: 200ms, window: 5s }\n  ftrace: { enabled: false }\n';

function setup(rules: string): TempStore {
  const store = makeTempStore(`${BASE}rules:\n${rules}`);
  noSysctlDropIn(store);
  return store;
}

function ruleEvents(store: TempStore, rule: string): EventJson[] {
  const r = runCli(['--config', store.configPath, 'list', '--rule', rule, '--json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as EventJson[]) : [];
}

describe.skipIf(!IS_ROOT)('rules through the daemon', () => {
  let store: TempStore | undefined;
  let daemon: DaemonProc | undefined;
  const children: ChildProcess[] = [];
  const dirs: string[] = [];
  /** A scratch directory removed after the test. */
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'fbx-rules-'));
    dirs.push(d);
    return d;
  };
  afterEach(async () => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    try {
      for (const c of children.splice(0)) c.kill('SIGKILL');
      await stopDaemon(daemon);
    } finally {
      daemon = undefined;
      store?.cleanup();
      store = undefined;
    }
  });

  it('a process whose RSS stays above a threshold fires once per episode; again after it fell and the cooldown passed', async () => {
    const name = `fbxhog${process.pid % 100000}`;
    store = setup([
      '  - name: hog',
      `    when: { threshold: { metric: process.rss, process: { name: ${name} }, above: 100MiB, clear: 50MiB, for: 1s } }`,
      '    do: [snapshot]',
      '    cooldown: 4s',
      '',
    ].join('\n'));
    const bin = join(store.dir, name);
    copyFileSync(buildCrasher('rss-hog'), bin);
    spawnSync('chmod', ['755', bin]);
    const hog = spawn(bin, [], { stdio: ['pipe', 'pipe', 'ignore'] });
    children.push(hog);
    let said = '';
    hog.stdout!.on('data', (d: Buffer) => { said += d.toString(); });
    daemon = await runningDaemon(store, ['--no-install']);
    await sleep(1500);
    expect(ruleEvents(store, 'hog')).toHaveLength(0); // small: no firing

    hog.stdin!.write('g');
    await waitFor('the hog to grow', () => said.includes('grown'));
    const first = await waitFor('the first firing', () => ruleEvents(store!, 'hog')[0], 15_000);
    const t1 = Date.now();
    // The reason says how long it really held (at least the 1 s asked for) and who.
    expect(first.reason).toMatch(/^process\.rss 1\d\d MiB above 100 MiB for \d+s \(pid \d+ /);
    const m = readJson<Manifest>(join(store.root, first.bundle, 'manifest.json'));
    expect(m.labels?.pid).toBe(String(hog.pid));
    expect(m.labels?.comm).toBe(name);
    await sleep(3000); // still above: one firing per episode
    expect(ruleEvents(store, 'hog')).toHaveLength(1);

    hog.stdin!.write('f');
    await waitFor('the hog to shrink', () => said.includes('freed'));
    await sleep(Math.max(1500, 4500 - (Date.now() - t1))); // the episode ends; the cooldown passes
    hog.stdin!.write('g');
    await waitFor('the second firing', () => ruleEvents(store!, 'hog').length === 2, 15_000);
    await sleep(2000);
    expect(ruleEvents(store, 'hog')).toHaveLength(2);
  });

  it('a log file appended, rotated by rename, truncated in place and written in pieces: every matching line fires exactly once', async () => {
    const dir = tmp();
    const log = join(dir, 'app.log');
    writeFileSync(log, 'ERROR 0 old line before the daemon started: never reported\n');
    store = setup([
      '  - name: errors',
      `    when: { log: { path: ${log}, match: 'ERROR (?<n>\\d+)' } }`,
      '    do: [snapshot]',
      '    cooldown: 0s',
      '    maxPerDay: 10000',
      '',
    ].join('\n'));
    daemon = await runningDaemon(store, ['--no-install']);
    let n = 0;
    const line = () => `request failed: ERROR ${++n} at ${Date.now()}\n`;
    for (let i = 0; i < 5; i++) appendFileSync(log, `${line()}ok line\n`);
    await sleep(700);
    // Rotation: rename, the writer appends a last line to the old file, then a new file.
    renameSync(log, `${log}.1`);
    appendFileSync(`${log}.1`, line());
    await sleep(300);
    writeFileSync(log, line());
    for (let i = 0; i < 3; i++) appendFileSync(log, line());
    await sleep(1500);
    // copytruncate: the file is emptied in place and written again.
    truncateSync(log, 0);
    for (let i = 0; i < 3; i++) appendFileSync(log, line());
    await sleep(700);
    // A line written in pieces waits for its newline.
    appendFileSync(log, 'partial ERR');
    await sleep(600);
    appendFileSync(log, `OR ${++n} done\n`);
    const total = n;
    await waitFor(`${total} firings`, () => ruleEvents(store!, 'errors').length >= total, 30_000, 250);
    await sleep(2500); // nothing more may come
    const events = ruleEvents(store, 'errors');
    const numbers = events.map((e) => Number(/ERROR (\d+)/.exec(e.reason ?? '')?.[1])).sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    const m = readJson<Manifest>(join(store.root, events[0]!.bundle, 'manifest.json'));
    expect(m.labels?.n).toBe(/ERROR (\d+)/.exec(m.reason)?.[1]);
  });

  it('cooldown and maxPerDay hold under a flood: 1000 matching lines', async () => {
    const dir = tmp();
    const log = join(dir, 'flood.log');
    writeFileSync(log, '');
    store = setup([
      '  - name: capped',
      `    when: { log: { path: ${log}, match: 'FLOOD' } }`,
      '    do: [snapshot]',
      '    cooldown: 0s',
      '    maxPerDay: 5',
      '  - name: cooled',
      `    when: { log: { path: ${log}, match: 'FLOOD' } }`,
      '    do: [snapshot]',
      '    cooldown: 1h',
      '',
    ].join('\n'));
    daemon = await runningDaemon(store, ['--no-install']);
    appendFileSync(log, Array.from({ length: 1000 }, (_, i) => `FLOOD ${i}\n`).join(''));
    await waitFor('the flood to be read', () => {
      const st = JSON.parse(runCli(['--config', store!.configPath, 'status', '--json']).stdout) as { daemon: { rules: { name: string; fired: number; suppressed: number }[] } };
      const capped = st.daemon.rules.find((r) => r.name === 'capped')!;
      return capped.fired + capped.suppressed === 1000;
    }, 30_000, 250);
    await sleep(1000);
    expect(ruleEvents(store, 'capped')).toHaveLength(5);
    expect(ruleEvents(store, 'cooled')).toHaveLength(1);
    const st = JSON.parse(runCli(['--config', store.configPath, 'status', '--json']).stdout) as { daemon: { rules: { name: string; fired: number; suppressed: number }[] } };
    expect(st.daemon.rules).toEqual(expect.arrayContaining([
      expect.objectContaining({ name: 'capped', fired: 5, suppressed: 995 }),
      expect.objectContaining({ name: 'cooled', fired: 1, suppressed: 999 }),
    ]));
  });

  it('a kernel log line, SIGUSR2 and `flightbox trigger` fire their rules; collect and exec run without a shell', async () => {
    const marker = `fbxkmsg${Math.random().toString(36).slice(2, 8)}`;
    const hookOut = join(tmp(), 'hook.env');
    const hook = join(tmp(), 'hook.sh');
    writeFileSync(hook, `#!/bin/sh\nenv > '${hookOut}'\n`, { mode: 0o755 });
    store = setup([
      '  - name: oom',
      `    when: { kmsg: { match: '${marker}: Killed process (?<pid>\\d+)' } }`,
      `    do: [snapshot, { collect: ['uname -a', 'no-such-program-here'] }, { exec: ${hook} }]`,
      '  - name: usr2',
      '    when: { signal: SIGUSR2 }',
      '    do: [snapshot]',
      '  - name: by-hand',
      '    when: manual',
      '    do: [{ collect: [uptime] }]',
      '',
    ].join('\n'));
    daemon = await runningDaemon(store, ['--no-install']);
    writeFileSync('/dev/kmsg', `<4>${marker}: Killed process 4242 (victim) $(touch /tmp/pwned)\n`);
    const e = await waitFor('the kmsg rule', () => ruleEvents(store!, 'oom')[0], 15_000);
    expect(e.reason).toContain(`${marker}: Killed process 4242`);
    const m = readJson<Manifest>(join(store.root, e.bundle, 'manifest.json'));
    expect(m.labels?.pid).toBe('4242');
    expect(m.files.map((f) => f.path)).toEqual(expect.arrayContaining(['collected/01-uname.txt', 'collected/02-no-such-program-here.txt', 'collected/commands.json']));
    expect(readFileSync(join(store.root, e.bundle, 'collected/01-uname.txt'), 'utf8')).toMatch(/^Linux /);
    expect(m.warnings.join('\n')).toMatch(/no-such-program-here.*not found/);
    await waitFor('the exec hook', () => existsSync(hookOut), 10_000);
    const env = readFileSync(hookOut, 'utf8');
    expect(env).toContain(`FLIGHTBOX_EVENT_ID=${e.id}`);
    expect(env).toContain('FLIGHTBOX_RULE=oom');
    expect(env).toContain('FLIGHTBOX_LABEL_PID=4242');
    expect(env).toContain('$(touch /tmp/pwned)'); // passed as data, never run
    expect(existsSync('/tmp/pwned')).toBe(false);

    daemon.child.kill('SIGUSR2');
    await waitFor('the SIGUSR2 rule', () => ruleEvents(store!, 'usr2').length === 1, 15_000);

    const t = runCli(['--config', store.configPath, 'trigger', 'by-hand']);
    expect(t.code, t.stderr).toBe(0);
    const byHand = ruleEvents(store, 'by-hand');
    expect(byHand.map((x) => x.id)).toEqual([t.stdout.trim()]);
    const again = runCli(['--config', store.configPath, 'trigger', 'by-hand']);
    expect(again.code).toBe(75);
    expect(again.stderr.trim()).toBe('flightbox: rule by-hand is suppressed (cooldown)');
    const unknown = runCli(['--config', store.configPath, 'trigger', 'nope']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/no rule named "nope" \(rules: oom, usr2, by-hand\)/);
  });

  it('a crash rule runs its hook with the crash event', async () => {
    const saved: KernelState = saveKernelState();
    try {
      const hookOut = join(tmp(), 'crash.env');
      const hook = join(tmp(), 'hook.sh');
      writeFileSync(hook, `#!/bin/sh\nenv > '${hookOut}'\n`, { mode: 0o755 });
      store = setup([
        '  - name: segv-crash',
        "    when: { crash: { exe: '*/segv', signal: SIGSEGV } }",
        `    do: [{ exec: ${hook} }]`,
        '',
      ].join('\n'));
      daemon = await runningDaemon(store);
      const c = await crash(buildCrasher('segv'));
      await waitFor('the crash hook', () => existsSync(hookOut) && readFileSync(hookOut, 'utf8').includes('FLIGHTBOX_EVENT_ID'), 30_000);
      const crashes = JSON.parse(runCli(['--config', store.configPath, 'list', '--pid', String(c.pid), '--json']).stdout) as EventJson[];
      expect(crashes).toHaveLength(1);
      expect(readFileSync(hookOut, 'utf8')).toContain(`FLIGHTBOX_EVENT_ID=${crashes[0]!.id}`);
      // A crash rule with only hooks adds no event of its own.
      expect(ruleEvents(store, 'segv-crash')).toHaveLength(0);
    } finally {
      await stopDaemon(daemon);
      restoreKernelState(saved);
    }
  });

  it('refuses to start on a rules file with mistakes, naming file, line and key of each', () => {
    store = setup([
      '  - name: bad one',
      '    when: { threshold: { metric: load9, above: 8 } }',
      '    do: [snapshot]',
      '  - name: ok',
      '    when: { log: { path: relative.log, match: "(" } }',
      '    do: []',
      '',
    ].join('\n'));
    const r = runCli(['--config', store.configPath, 'daemon', '--no-install'], { timeout: 20_000 });
    expect(r.code).toBe(78);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`\\(${store.configPath.replace(/[.]/g, '\\.')}:\\d+\\)`));
    const c = runCli(['--config', store.configPath, 'config']);
    expect(c.code).toBe(78);
    const lines = c.stderr.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(4);
    for (const l of lines) expect(l).toMatch(/^flightbox: rules\[\d+\].* \(.*flightbox\.yaml:\d+\)$/);
    expect(c.stderr).toMatch(/name/);
    expect(c.stderr).toMatch(/load9/);
    expect(c.stderr).toMatch(/relative\.log/);
    expect(readdirSync(store.dir)).not.toContain('store');
  });
});
