// install/uninstall against the real /proc/sys/kernel: the previous values come back
// exactly, the sysctl.d drop-in is written and restored, a pattern over the kernel's
// 127-byte limit is refused, and the daemon installs only for as long as it runs.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI, IS_ROOT, makeTempStore, runCli, waitFor, type TempStore } from '../helpers.js';
import { CORE_PATTERN, CORE_PIPE_LIMIT, restoreKernelState, saveKernelState, type KernelState } from './kernel.js';

const read = (p: string) => readFileSync(p, 'utf8').replace(/\n$/, '');

describe.skipIf(!IS_ROOT)('flightbox install / uninstall', () => {
  let saved: KernelState;
  let store: TempStore;
  beforeEach(() => {
    saved = saveKernelState();
    store = makeTempStore();
  });
  afterEach(() => {
    try {
      restoreKernelState(saved);
    } finally {
      store.cleanup();
    }
  });

  it('restores a previous pattern and pipe limit exactly, and the drop-in that was there', () => {
    // A previous setup like systemd's: a pipe pattern with a limit of 16 and a drop-in of its own.
    const previous = '|/bin/false %P %u %g %s %t 9223372036854775808 %h';
    writeFileSync(CORE_PATTERN, `${previous}\n`);
    writeFileSync(CORE_PIPE_LIMIT, '16\n');
    const dropIn = join(store.dir, '60-flightbox.conf');
    writeFileSync(dropIn, 'kernel.core_pattern = |/bin/false\n');

    const i = runCli(['--config', store.configPath, 'install']);
    expect(i.code, i.stderr).toBe(0);
    const pattern = read(CORE_PATTERN);
    expect(pattern).toBe(`|${store.root}/core-handler %P %i %I %u %g %s %t %c %h %d %F`);
    expect(read(CORE_PIPE_LIMIT)).toBe('0');
    expect(readFileSync(dropIn, 'utf8')).toContain(`kernel.core_pattern = ${pattern}`);
    expect(readFileSync(dropIn, 'utf8')).toContain('kernel.core_pipe_limit = 0');
    const launcher = readFileSync(join(store.root, 'core-handler'), 'utf8');
    expect(launcher).toContain(`--config '${store.configPath}'`);
    expect(launcher).toContain(`'${process.execPath}'`);

    // Installing twice must not make our own pattern the one to restore.
    expect(runCli(['--config', store.configPath, 'install']).code).toBe(0);
    const s = runCli(['--config', store.configPath, 'status', '--json']);
    expect(s.code).toBe(0);
    expect(JSON.parse(s.stdout).handler.active).toBe(true);

    const u = runCli(['--config', store.configPath, 'uninstall']);
    expect(u.code, u.stderr).toBe(0);
    expect(read(CORE_PATTERN)).toBe(previous);
    expect(read(CORE_PIPE_LIMIT)).toBe('16');
    expect(readFileSync(dropIn, 'utf8')).toBe('kernel.core_pattern = |/bin/false\n');
    expect(existsSync(join(store.root, 'core-handler'))).toBe(false);
    const s2 = runCli(['--config', store.configPath, 'status']);
    expect(s2.code).toBe(3);
    expect(s2.stdout).toMatch(/not installed/);
  });

  it('removes a drop-in it created, and --no-persist writes none', () => {
    const dropIn = join(store.dir, '60-flightbox.conf');
    expect(runCli(['--config', store.configPath, 'install']).code).toBe(0);
    expect(existsSync(dropIn)).toBe(true);
    expect(runCli(['--config', store.configPath, 'uninstall']).code).toBe(0);
    expect(existsSync(dropIn)).toBe(false);
    expect(read(CORE_PATTERN)).toBe(saved.corePattern);

    expect(runCli(['--config', store.configPath, 'install', '--no-persist']).code).toBe(0);
    expect(existsSync(dropIn)).toBe(false);
    expect(runCli(['--config', store.configPath, 'uninstall']).code).toBe(0);
  });

  it('refuses a launcher path that would make the pattern longer than 127 bytes', () => {
    const long = `/${'x'.repeat(120)}/core-handler`;
    writeFileSync(store.configPath, `${readFileSync(store.configPath, 'utf8')}  launcher: ${long}\n`);
    const before = read(CORE_PATTERN);
    const r = runCli(['--config', store.configPath, 'install']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^flightbox: the core_pattern would be \d+ bytes, over the kernel's limit of 127/);
    expect(r.stderr).toMatch(/install\.launcher/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(read(CORE_PATTERN)).toBe(before);
  });

  it('status names the core pipe as installed, and says when the config asks for another size', () => {
    const cfg = ['--config', store.configPath];
    const status = (): string => runCli([...cfg, 'status']).stdout;
    const setPipe = (v: string): void => {
      const text = readFileSync(store.configPath, 'utf8').replace(/^  pipeBuffer: .*\n/m, '');
      writeFileSync(store.configPath, text.replace(/^core:\n/m, `core:\n  pipeBuffer: ${v}\n`));
    };
    const launcher = join(store.root, 'core-handler');
    expect(runCli([...cfg, 'install', '--no-persist']).code).toBe(0);
    expect(status()).toMatch(/^Core pipe: +16 MiB for cores longer than 8\.0 MiB$/m);
    expect(readFileSync(launcher, 'utf8')).toMatch(/fcntl\(STDIN, 1031, \$n\)/);
    setPipe('4MiB');
    expect(status()).toMatch(/^Core pipe: +16 MiB for cores longer than 8\.0 MiB; the config now says 4\.0 MiB: run flightbox install again$/m);
    expect(runCli([...cfg, 'install', '--no-persist']).code).toBe(0);
    expect(status()).toMatch(/^Core pipe: +4\.0 MiB for cores longer than 8\.0 MiB$/m);
    expect(readFileSync(launcher, 'utf8')).toContain('$n = 4194304;');
    setPipe('null');
    expect(runCli([...cfg, 'install', '--no-persist']).code).toBe(0);
    expect(status()).toMatch(/^Core pipe: +64 KiB, the kernel's \(core\.pipeBuffer: null\)$/m);
    expect(readFileSync(launcher, 'utf8')).not.toContain('pipe()');
    expect(runCli([...cfg, 'uninstall']).code).toBe(0);
  });

  it('does not clobber a pattern someone else set after install', () => {
    expect(runCli(['--config', store.configPath, 'install']).code).toBe(0);
    writeFileSync(CORE_PATTERN, 'core.%p\n');
    const u = runCli(['--config', store.configPath, 'uninstall']);
    expect(u.code).toBe(0);
    expect(u.stderr).toMatch(/changed by someone else/);
    expect(read(CORE_PATTERN)).toBe('core.%p');
  });

  it('the daemon installs the handler while it runs and restores the pattern on SIGTERM', async () => {
    const child = spawn(process.execPath, [CLI, '--config', store.configPath, 'daemon'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    try {
      await waitFor('the daemon to install the handler', () => {
        if (child.exitCode !== null) throw new Error(`the daemon exited early (${child.exitCode}): ${err}`);
        return read(CORE_PATTERN).startsWith(`|${store.root}/core-handler`);
      }, 20_000);
      // Still running a while later: a service does not exit by itself.
      await new Promise((r) => setTimeout(r, 500));
      expect(child.exitCode).toBeNull();
      expect(existsSync(join(store.dir, '60-flightbox.conf'))).toBe(false); // temporary: not persisted
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(read(CORE_PATTERN)).toBe(saved.corePattern);
      expect(err).toMatch(/Restored core_pattern/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('install and uninstall refuse to run as a non-root user with one sentence', () => {
    const r = runCli(['--config', store.configPath, 'install'], { uid: 65534, gid: 65534 });
    expect(r.code).toBe(77);
    expect(r.stderr.trim()).toMatch(/^flightbox: flightbox install needs root/);
  });
});
