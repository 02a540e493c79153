// PID reuse: by the time the handler reads /proc/<pid>, the pid may belong to another
// process (with core_pipe_limit 0 the kernel does not wait for the handler). The handler is
// driven directly, as the kernel drives it, with arguments naming a pid that now belongs to
// an impostor: a process started after the handler (no %F), or a %F pidfd of another
// process. The impostor's /proc data (its exe, command line, environment, which may
// belong to another user) must not be attributed to the crash.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HANDLER, IS_ROOT, readJson, waitUntil } from '../helpers.js';
import { collectOutput, compileWaiter, kernelArgs, runHandler, startProcess, stopAll, stopProcess, type ChildRun, type LiveProcess } from '../system/procs.js';
import { bundleDirs, compileFixture, secStore, type Manifest, type SecStore } from './sec-helpers.js';

const IMPOSTOR_COMM = 'fbx-impostor';
const IMPOSTOR_SECRET = 'IMPOSTOR_SECRET=hunter2';

describe.skipIf(!IS_ROOT)('a reused pid is not attributed to the crash', () => {
  let work: string;
  let waiter: string;
  let pidfdExec: string;
  let junkCore: string;
  let s: SecStore | undefined;

  beforeAll(() => {
    work = mkdtempSync('/tmp/fbx-sec-bin-');
    waiter = compileWaiter(work);
    pidfdExec = compileFixture('sec-pidfd-exec', work);
    junkCore = join(work, 'core');
    writeFileSync(junkCore, Buffer.alloc(4096, 0x5a));
  });
  afterEach(() => {
    stopAll();
    s?.cleanup();
    s = undefined;
  });
  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  function store(): SecStore {
    s = secStore({ backtrace: ['tool: none'] });
    return s;
  }

  function impostor(): Promise<LiveProcess> {
    return startProcess(waiter, [IMPOSTOR_COMM], IMPOSTOR_COMM, { env: { [IMPOSTOR_SECRET.split('=')[0]!]: 'hunter2' } });
  }

  /** The handler with a pidfd of `pidfdOf` as fd 3 and %F = 3, the core on stdin. */
  function runHandlerWithPidfd(configPath: string, pidfdOf: number, args: string[]): Promise<ChildRun> {
    const fd = openSync(junkCore, 'r');
    try {
      return collectOutput(spawn(pidfdExec, [String(pidfdOf), process.execPath, HANDLER, '--config', configPath, '--', ...args, '3'], { stdio: [fd, 'ignore', 'pipe'] }));
    } finally {
      closeSync(fd);
    }
  }

  function onlyManifest(st: SecStore): { m: Manifest; dir: string } {
    const dirs = bundleDirs(st.root);
    expect(dirs).toHaveLength(1);
    return { m: readJson<Manifest>(join(dirs[0]!, 'manifest.json')), dir: dirs[0]! };
  }

  /** Nothing of the impostor's /proc in the manifest or the bundle's files. */
  function expectNothingOfImpostor(m: Manifest, dir: string, imp: LiveProcess): void {
    expect(m.process.exe).not.toBe(waiter);
    expect(m.process.comm).not.toBe(IMPOSTOR_COMM);
    expect(m.process.cmdline ?? []).not.toContain(IMPOSTOR_COMM);
    const procDir = join(dir, 'proc');
    if (existsSync(procDir)) {
      for (const f of readdirSync(procDir)) {
        const text = readFileSync(join(procDir, f), 'latin1');
        expect(text, `proc/${f}`).not.toContain(IMPOSTOR_SECRET);
        expect(text, `proc/${f}`).not.toContain(IMPOSTOR_COMM);
        expect(text, `proc/${f}`).not.toMatch(new RegExp(`^Pid:\\s+${imp.pid}$`, 'm'));
      }
    }
  }

  // Without %F, the handler's own start is the reference: the kernel starts the handler while
  // the crashed process still holds its pid, so a process at that pid that started after the
  // handler is an impostor. Real pid reuse: the handler is stopped (SIGSTOP) as soon as it is
  // spawned, long before node has started and read /proc; meanwhile the pid it was given is
  // handed to a new process through /proc/sys/kernel/ns_last_pid; then it goes on (SIGCONT).
  async function reusedPidRun(): Promise<{ st: SecStore; imp: LiveProcess; run: ChildRun }> {
    const st = (s = secStore({ backtrace: ['tool: none'] }));
    const last = Number(readFileSync('/proc/sys/kernel/ns_last_pid', 'utf8'));
    // A free pid well ahead of the counter, below pid_max: near the top (a machine that has
    // run many processes) the counter wraps, and so does this pick (ns_last_pid refuses a
    // value past pid_max).
    const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
    const ahead = (p: number): number => (p < pidMax - 1 ? p : 1000 + (p % (pidMax - 2000)));
    let pid = ahead(last + 3000);
    while (existsSync(`/proc/${pid}`)) pid = ahead(pid + 1);
    const fd = openSync(junkCore, 'r');
    let handler: ChildProcess;
    try {
      handler = spawn(process.execPath, [HANDLER, '--config', st.configPath, '--', ...kernelArgs({ pid })], { stdio: [fd, 'ignore', 'ignore'] });
    } finally {
      closeSync(fd);
    }
    const run = collectOutput(handler);
    let imp: LiveProcess | null = null;
    try {
      expect(handler.kill('SIGSTOP')).toBe(true);
      await waitUntil(() => /^State:\s+T/m.test(readFileSync(`/proc/${handler.pid}/status`, 'utf8')), 'the handler stopped', 10_000);
      // Start times are in clock ticks (10 ms): the impostor starts at least a tick later.
      await new Promise((r) => setTimeout(r, 50));
      for (let attempt = 0; attempt < 20 && !imp; attempt++) {
        writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
        const p = await impostor();
        if (p.pid === pid) imp = p;
        else stopProcess(p); // another fork took it first: try again
      }
      expect(imp, `a process at pid ${pid}`).not.toBeNull();
    } catch (err) {
      // Its fake crash is not to be recorded once the test has failed: with its store and
      // config removed by the cleanup, it would record it in the default store.
      handler.kill('SIGKILL');
      throw err;
    } finally {
      handler.kill('SIGCONT');
    }
    const r = await run;
    expect(r.code).toBe(0);
    return { st, imp: imp!, run: r };
  }

  it('pid reused after the handler started (no %F): flagged procVerified false, with a warning', async () => {
    const { st, imp } = await reusedPidRun();
    const { m } = onlyManifest(st);
    expect(m.process.pid).toBe(imp.pid);
    expect(m.process.procVerified).toBe(false);
    expect(m.warnings.some((w) => /started after this handler.*reused/.test(w)), m.warnings.join('\n')).toBe(true);
  });

  it('pid reused after the handler started (no %F): none of its /proc data is kept', async () => {
    const { st, imp } = await reusedPidRun();
    const { m, dir } = onlyManifest(st);
    expect(m.process.comm).toBeNull();
    expectNothingOfImpostor(m, dir, imp);
  });

  it('%F is a pidfd of another process than %P: flagged procVerified false, with a warning', async () => {
    const st = store();
    const crashed = await startProcess(waiter, ['fbx-crashed'], 'fbx-crashed');
    const imp = await impostor();
    const r = await runHandlerWithPidfd(st.configPath, crashed.pid, kernelArgs({ pid: imp.pid }));
    expect(r.code, r.stderr).toBe(0);
    const { m } = onlyManifest(st);
    expect(m.process.procVerified).toBe(false);
    expect(m.warnings.some((w) => w.includes(`refers to pid ${crashed.pid}, not ${imp.pid}`))).toBe(true);
  });

  it('%F is a pidfd of another process than %P: none of the impostor\'s /proc data is kept', async () => {
    const st = store();
    const crashed = await startProcess(waiter, ['fbx-crashed'], 'fbx-crashed');
    const imp = await impostor();
    const r = await runHandlerWithPidfd(st.configPath, crashed.pid, kernelArgs({ pid: imp.pid }));
    expect(r.code, r.stderr).toBe(0);
    const { m, dir } = onlyManifest(st);
    expectNothingOfImpostor(m, dir, imp);
  });

  it('%F is a pidfd of the process %P names (the control case): verified, its data kept', async () => {
    const st = store();
    const crashed = await startProcess(waiter, ['fbx-crashed'], 'fbx-crashed');
    const r = await runHandlerWithPidfd(st.configPath, crashed.pid, kernelArgs({ pid: crashed.pid }));
    expect(r.code, r.stderr).toBe(0);
    const { m } = onlyManifest(st);
    expect(m.process.procVerified).toBe(true);
    expect(m.process.comm).toBe('fbx-crashed');
    expect(m.process.exe).toBe(waiter);
    expect(m.warnings.some((w) => /pidfd|another process/.test(w))).toBe(false);
  });
});
