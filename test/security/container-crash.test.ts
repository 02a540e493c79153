// A crash inside new pid, mount and UTS namespaces (unshare --pid --mount --uts --fork
// --mount-proc), with private tmpfs mounts over the crasher's cwd and over /tmp, through the
// real kernel. The handler records the host pid, the pid in the namespace and the container
// flag; it writes nothing inside the container, never opens paths through
// /proc/<pid>/root or /proc/<pid>/cwd (FIFOs planted there would block it), and never takes
// a path the container names to mean the same file on the host.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { IS_ROOT, runCli, waitFor } from '../helpers.js';
import {
  RAW_CONTROL, handlersDone, installHandler, killHandlers, manifestOf, secStore, treeState, waitEvent,
  type SecStore, useSecCrasher,
} from './sec-helpers.js';

/** A hostname the crashed process chose (%h): escapes, spaces and shell syntax, no newline (the kernel stops there). */
const HOSTILE_HOSTNAME = 'ctr \x1b[31m;$(id)`x`';

// Runs as pid 1 of the new namespaces. The cwd gets its own tmpfs (over a host directory of
// the same path, which the container no longer sees), then /tmp gets one too; the crasher
// lives only in the container's /tmp, next to FIFOs named like its debug files, and the
// container's /etc/os-release is a FIFO. Between steps it waits for the test on stdin.
const CONTAINER_SCRIPT = `
set -e
exec 9<"$BIN"
mount -t tmpfs -o size=8m,mode=0755 fbx-sec-cwd "$CWD"
cd "$CWD"
echo inside > note.txt
mkdir sub
echo x > sub/file
mkfifo cwd-fifo
mount -t tmpfs -o size=32m,mode=1777 fbx-sec-tmp /tmp
mkdir -p "$CTR/bin/.debug"
cat <&9 > "$CTR/bin/sec-crasher"
exec 9<&-
chmod 755 "$CTR/bin/sec-crasher"
mkfifo "$CTR/bin/sec-crasher.debug" "$CTR/bin/.debug/sec-crasher.debug" "$CTR/bin/sec-crasher-gdb.py" /tmp/os-release
mount --bind /tmp/os-release /etc/os-release
printf '%s' "$HOSTILE" > /proc/sys/kernel/hostname
echo ready
read go
SEC_FIFO=cwd-fifo SEC_PRINT_PID=1 SEC_WAIT_STDIN=1 "$CTR/bin/sec-crasher" || echo "crashed $?"
read done
`;

interface Container {
  unshare: ChildProcessWithoutNullStreams;
  out: () => string;
  /** host pid of the namespace's pid 1 (the script) */
  init: number;
  /** the crasher's path inside the container */
  exe: string;
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

describe.skipIf(!IS_ROOT)('a crash inside a pid and mount namespace', () => {
  const crasher = useSecCrasher();
  let s: SecStore | undefined;
  let kernel: { restore(): void } | undefined;
  let ctr: Container | undefined;
  const hostPaths: string[] = [];

  afterEach(async () => {
    try {
      // --kill-child: the namespace's pid 1 and everything in it die with unshare; its mounts go with it.
      if (ctr && ctr.unshare.exitCode === null) {
        const gone = new Promise((r) => ctr!.unshare.once('exit', r));
        ctr.unshare.kill('SIGKILL');
        await gone;
      }
      if (s) await killHandlers(s.configPath);
    } finally {
      ctr = undefined;
      kernel?.restore();
      kernel = undefined;
      s?.cleanup();
      s = undefined;
      for (const p of hostPaths.splice(0)) rmSync(p, { recursive: true, force: true });
    }
  });

  async function startContainer(st: SecStore, ctrDir: string): Promise<Container> {
    const cwd = join(st.dir, 'ctr-cwd');
    const unshare = spawn('unshare', ['--pid', '--mount', '--uts', '--fork', '--mount-proc', '--kill-child', 'sh', '-c', CONTAINER_SCRIPT], {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', BIN: crasher.path, CWD: cwd, CTR: ctrDir, HOSTILE: HOSTILE_HOSTNAME },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    unshare.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    unshare.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
    await waitFor('the container to be ready', () => {
      if (unshare.exitCode !== null) throw new Error(`the container exited: ${out}`);
      return out.includes('ready\n');
    }, 15_000, 20);
    const init = childrenOf(unshare.pid!)[0]!;
    expect(init).toBeGreaterThan(0);
    return { unshare, out: () => out, init, exe: `${ctrDir}/bin/sec-crasher` };
  }

  /** Start the crasher in the container; returns its host pid and its pid in the namespace. */
  async function startCrasher(c: Container): Promise<{ hostPid: number; nsPid: number }> {
    c.unshare.stdin.write('go\n');
    const nsPid = await waitFor('the crasher to print its pid', () => {
      const m = /ready\n(\d+)\n/.exec(c.out());
      return m ? Number(m[1]) : undefined;
    }, 10_000, 20);
    const hostPid = await waitFor('the crasher\'s host pid', () => childrenOf(c.init)[0], 5000, 20);
    // Ground truth from the kernel: NSpid is "host … namespace".
    const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${hostPid}/status`, 'utf8'))![1]!.split(/\s+/).map(Number);
    expect(nspid).toEqual([hostPid, nsPid]);
    return { hostPid, nsPid };
  }

  /** Let the crasher crash; resolves with how long the crashed process was held. */
  async function crashIt(c: Container): Promise<number> {
    const t0 = Date.now();
    c.unshare.stdin.write('crash\n');
    await waitFor('the crasher to be released', () => /crashed 139\n/.test(c.out()), 30_000, 20);
    return Date.now() - t0;
  }

  it('recorded with the host pid, the namespace pid and the container flag; nothing written inside; planted FIFOs never block', async () => {
    s = secStore();
    kernel = installHandler(s);
    const hostCwd = join(s.dir, 'ctr-cwd');
    mkdirSync(hostCwd);
    writeFileSync(join(hostCwd, 'host-side'), 'the host directory under the container tmpfs\n');
    const hostCwdBefore = treeState(hostCwd);
    const ctrDir = `/tmp/fbx-sec-ctr-${randomBytes(6).toString('hex')}`;
    ctr = await startContainer(s, ctrDir);

    const { hostPid, nsPid } = await startCrasher(ctr);
    expect(nsPid).not.toBe(hostPid);
    // The container's cwd and /tmp, seen from the host through the live init (the test may; the handler must not).
    const cwdBefore = treeState(`/proc/${ctr.init}/cwd`);
    const tmpBefore = treeState(`/proc/${ctr.init}/root/tmp`);
    expect(cwdBefore.some((l) => l.startsWith('"cwd-fifo" 10'))).toBe(true);

    const heldMs = await crashIt(ctr);
    expect(heldMs).toBeLessThan(5000);
    const e = await waitEvent(s, hostPid);
    expect(await handlersDone(s.configPath, 20_000), 'the handler is stuck').toBe(true);

    const m = manifestOf(s, e);
    expect(m.process.pid).toBe(hostPid);
    expect(m.process.pidInNamespace).toBe(nsPid);
    expect(m.process.inContainer).toBe(true);
    expect(m.process.exe).toBe(ctr.exe);
    expect(m.process.cwd).toBe(hostCwd);
    expect(m.process.namespaces.pid).not.toBe(spawnSync('readlink', ['/proc/self/ns/pid'], { encoding: 'utf8' }).stdout.trim());
    expect((m.process as { hostnameInNamespace?: string }).hostnameInNamespace).toBe(HOSTILE_HOSTNAME);
    expect(e).toMatchObject({ pid: hostPid, pidInNamespace: nsPid, inContainer: true });
    // A stack trace from the core alone: the executable exists only inside the container.
    expect(m.backtrace?.frames.length).toBeGreaterThan(0);

    // Nothing written inside the container, nor into the host directory its cwd hides.
    expect(treeState(`/proc/${ctr.init}/cwd`)).toEqual(cwdBefore);
    expect(treeState(`/proc/${ctr.init}/root/tmp`)).toEqual(tmpBefore);
    expect(treeState(hostCwd)).toEqual(hostCwdBefore);

    // The CLI shows the namespace pid and the hostname, escaped.
    const info = runCli(['--config', s.configPath, 'info', e.id]);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).not.toMatch(RAW_CONTROL);
    expect(info.stdout).toContain(`PID: ${hostPid} (sec-crasher) [pid ${nsPid} in its namespace]`);
    expect(info.stdout).toContain('Container: yes (hostname ctr \\x1b[31m;$(id)`x`)');
  });

  // The executable's path is the container's: on the host the same string may name a
  // different file, here a FIFO. Passing it to the stack-trace tool makes the tool block on
  // it until the backtrace timeout (and, with a regular file, symbolize with the wrong binary).
  it('the container\'s executable path names a FIFO on the host: the handler does not block on it', async () => {
    s = secStore({ backtrace: ['timeout: 30s'] });
    kernel = installHandler(s);
    mkdirSync(join(s.dir, 'ctr-cwd'));
    const ctrDir = `/tmp/fbx-sec-ctr-${randomBytes(6).toString('hex')}`;
    hostPaths.push(ctrDir);
    mkdirSync(join(ctrDir, 'bin'), { recursive: true });
    spawnSync('mkfifo', [join(ctrDir, 'bin', 'sec-crasher')]);
    ctr = await startContainer(s, ctrDir);
    const { hostPid } = await startCrasher(ctr);
    expect(await crashIt(ctr)).toBeLessThan(5000);
    expect(await handlersDone(s.configPath, 10_000), 'the handler is stuck on the host FIFO').toBe(true);
    const m = manifestOf(s, await waitEvent(s, hostPid));
    expect(m.backtrace?.frames.length).toBeGreaterThan(0);
  });
});
