// flightbox export: one event's bundle as a .tar.gz or .zip (chosen by the extension),
// optionally without the core and with secrets masked, written atomically.
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { FlightboxError } from '../../lib/errors.js';
import { formatSize } from '../../lib/units.js';
import { archiveFormatFor, exportArchive } from '../../store/archive.js';
import { invocation } from '../args.js';
import { loadCliConfig, openStoreForQuery } from '../context.js';

/** Bundles smaller than this export too fast for a progress bar to be worth drawing. */
export const PROGRESS_MIN_BYTES = 10 * 1024 * 1024;
const PROGRESS_EVERY_MS = 100;
const BAR_WIDTH = 30;

interface ExportOpts {
  output: string;
  core: boolean;
  redact?: boolean;
  force?: boolean;
}

/** A one-line progress bar on a terminal, redrawn at most every PROGRESS_EVERY_MS. */
function progressBar(label: string, out: NodeJS.WriteStream): { update: (done: number, total: number) => void; finish: () => void } {
  let last = 0;
  let drawn = false;
  return {
    update(done, total) {
      const now = Date.now();
      if (total < PROGRESS_MIN_BYTES || (now - last < PROGRESS_EVERY_MS && done < total)) return;
      last = now;
      drawn = true;
      const frac = total > 0 ? Math.min(1, done / total) : 1;
      const fill = Math.round(frac * BAR_WIDTH);
      out.write(`\r${label} [${'#'.repeat(fill)}${'.'.repeat(BAR_WIDTH - fill)}] ${String(Math.floor(frac * 100)).padStart(3)}% ${formatSize(done)} / ${formatSize(total)}\x1b[K`);
    },
    finish() {
      if (drawn) out.write('\r\x1b[K');
    },
  };
}

export async function run(...args: unknown[]): Promise<number> {
  const { positional, opts } = invocation<ExportOpts>(args);
  const format = archiveFormatFor(opts.output);
  if (!format) {
    throw new FlightboxError('USAGE', `cannot tell the archive format from ${JSON.stringify(opts.output)}: name it FILE.tar.gz, FILE.tgz or FILE.zip`);
  }
  if (!opts.force) {
    let exists = true;
    try { lstatSync(opts.output); } catch { exists = false; }
    if (exists) throw new FlightboxError('USAGE', `${opts.output} already exists (use --force to overwrite)`);
  }
  const { config } = loadCliConfig(opts);
  const store = openStoreForQuery(config);
  try {
    const row = store.index().resolve(positional[0]!);
    const bundleDir = join(store.root, row.bundle);
    // Never a bar when stderr is a file or a pipe: logs would fill with carriage returns.
    const bar = process.stderr.isTTY ? progressBar(`Exporting ${row.id}`, process.stderr) : null;
    const noCore = opts.core === false;
    const redact = opts.redact === true;
    let r: { bytes: number; files: string[] };
    try {
      r = await exportArchive(bundleDir, opts.output, { format, noCore, redact, overwrite: opts.force === true, onProgress: bar?.update });
    } finally {
      bar?.finish();
    }
    const notes = [`${r.files.length} files`, formatSize(r.bytes)];
    if (noCore) notes.push('without the core');
    if (redact) notes.push('redacted');
    process.stderr.write(`Wrote ${row.id} to ${opts.output} (${notes.join(', ')})\n`);
    if (redact && !noCore && row.has_core) {
      process.stderr.write('Note: the core holds the process memory as it was (environment and arguments included); --no-core leaves it out.\n');
    }
    return 0;
  } finally {
    store.close();
  }
}
