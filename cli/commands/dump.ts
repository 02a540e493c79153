// flightbox dump: the core of an event, decompressed, to a file or a pipe.
import { closeSync, constants, fstatSync, openSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { FlightboxError, errnoCode } from '../../lib/errors.js';
import { decompressTo } from '../../store/compress.js';
import { readManifest } from '../../store/manifest.js';
import { invocation, pickEvent, type FilterOptions } from '../args.js';
import { loadCliConfig, openStoreForQuery } from '../context.js';

export async function run(...args: unknown[]): Promise<number> {
  const { positional, opts } = invocation<FilterOptions & { output: string; force?: boolean }>(args);
  const { config } = loadCliConfig(opts);
  const store = openStoreForQuery(config, { userView: true });
  try {
    const row = pickEvent(store, positional[0], opts);
    const dir = join(store.root, row.bundle);
    const m = readManifest(dir);
    if (!m.core?.stored || !m.core.file) {
      throw new FlightboxError('NOT_FOUND', `event ${m.id} has no stored core (${m.core?.reason ?? 'not a crash'})`);
    }
    const corePath = join(dir, m.core.file);
    if (opts.output === '-') {
      if (process.stdout.isTTY) throw new FlightboxError('USAGE', 'refusing to write a core dump to a terminal; use -o FILE or a pipe');
      await decompressTo(corePath, 1);
      return 0;
    }
    let fd: number;
    try {
      const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | (opts.force ? constants.O_TRUNC : constants.O_EXCL);
      fd = openSync(opts.output, flags, 0o600);
    } catch (err) {
      if (errnoCode(err) === 'EEXIST') throw new FlightboxError('USAGE', `${opts.output} already exists (use --force to overwrite)`);
      throw new FlightboxError('USAGE', `cannot write ${opts.output}: ${(err as Error).message}`);
    }
    try {
      // our own new (or truncated) file: runs of zeros stay holes
      await decompressTo(corePath, fd, { sparse: true });
    } catch (err) {
      closeSync(fd);
      try { unlinkSync(opts.output); } catch { /* ignore */ }
      throw err;
    }
    const size = fstatSync(fd).size;
    closeSync(fd);
    process.stderr.write(`Wrote the core of ${m.id} (${size} bytes${m.core.truncated ? ', truncated' : ''}) to ${opts.output}\n`);
    return 0;
  } finally {
    store.close();
  }
}
