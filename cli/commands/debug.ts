// flightbox debug: gdb on the executable and the decompressed core of an event.
// The core is decompressed into a private temporary directory that is removed afterwards.
import { spawn } from 'node:child_process';
import { accessSync, closeSync, constants, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlightboxError } from '../../lib/errors.js';
import { findProgram } from '../../lib/programs.js';
import { decompressTo } from '../../store/compress.js';
import { readManifest } from '../../store/manifest.js';
import { invocation, pickEvent, type FilterOptions } from '../args.js';
import { loadCliConfig, openStoreForQuery } from '../context.js';

export async function run(...args: unknown[]): Promise<number> {
  const { positional, opts } = invocation<FilterOptions & { debugger: string; debuggerArguments?: string }>(args);
  const { config } = loadCliConfig(opts);
  const debuggerPath = opts.debugger.includes('/') ? opts.debugger : findProgram(opts.debugger);
  if (!debuggerPath) throw new FlightboxError('TOOL_MISSING', `${opts.debugger} is not installed (apt-get install gdb)`);
  const store = openStoreForQuery(config, { userView: true });
  let tmp: string | null = null;
  try {
    const row = pickEvent(store, positional[0], opts);
    const dir = join(store.root, row.bundle);
    const m = readManifest(dir);
    if (!m.core?.stored || !m.core.file) {
      throw new FlightboxError('NOT_FOUND', `event ${m.id} has no stored core (${m.core?.reason ?? 'not a crash'})`);
    }
    tmp = mkdtempSync(join(tmpdir(), 'flightbox-debug-'));
    const corePath = join(tmp, 'core');
    const fd = openSync(corePath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      await decompressTo(join(dir, m.core.file), fd, { sparse: true });
    } finally {
      closeSync(fd);
    }
    const exe = m.process?.exe?.replace(/ \(deleted\)$/, '') ?? null;
    let exeArgs: string[] = [];
    if (exe) {
      try {
        accessSync(exe, constants.R_OK);
        exeArgs = [exe];
      } catch {
        process.stderr.write(`flightbox: the executable ${JSON.stringify(exe)} is gone; debugging the core alone\n`);
      }
    }
    const extra = opts.debuggerArguments ? opts.debuggerArguments.split(/\s+/).filter(Boolean) : [];
    const child = spawn(debuggerPath, [...extra, ...exeArgs, '-c', corePath], { stdio: 'inherit' });
    // The debugger owns the terminal; Ctrl-C is for it, not for us.
    const ignore = () => {};
    process.on('SIGINT', ignore);
    const code = await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c, sig) => resolve(c ?? (sig ? 128 + 1 : 1)));
    });
    process.off('SIGINT', ignore);
    return code;
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    store.close();
  }
}
