// flightbox gc: apply retention now (store/retention.ts). Prints what goes, with sizes and
// the limit that made it go, and the totals; --dry-run only says what would.
import { escapeControl } from '../../lib/escape.js';
import { FlightboxError } from '../../lib/errors.js';
import { formatSize } from '../../lib/units.js';
import { vacuum, type PlannedDeletion, type VacuumLimits } from '../../store/retention.js';
import { invocation } from '../args.js';
import { loadCliConfig, openStoreForQuery } from '../context.js';
import { formatTime, table } from '../format.js';

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

function limitsText(l: VacuumLimits): string {
  const parts = [
    `maxUse ${l.maxUseBytes === null ? 'none' : formatSize(l.maxUseBytes)}`,
    `keepFree ${l.keepFreeBytes === null ? 'none' : formatSize(l.keepFreeBytes)}`,
    `maxAge ${l.maxAgeMs === null ? 'none' : `${Math.round(l.maxAgeMs / 3_600_000)}h`}`,
    `maxPerExe ${l.maxPerExe ?? 'none'}`,
  ];
  return parts.join(', ');
}

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<{ dryRun?: boolean; json?: boolean }>(args);
  const dryRun = opts.dryRun === true;
  if (!dryRun && process.getuid?.() !== 0) throw new FlightboxError('PERMISSION', 'flightbox gc needs root (it deletes bundles from the store); --dry-run does not');
  const { config } = loadCliConfig(opts);
  const store = openStoreForQuery(config);
  try {
    const r = vacuum(store, config, { dryRun });
    const total = r.deleted.reduce((a, d) => a + d.size, 0);
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({
        dryRun, limits: r.plan.limits, deleted: r.deleted, skippedPinned: r.skipped, bytes: total,
        usedBefore: r.plan.usedBefore, usedAfter: r.plan.usedAfter, freeBefore: r.plan.freeBefore, freeAfter: r.plan.freeAfter,
        unsatisfied: r.plan.unsatisfied,
      }, null, 2)}\n`);
    } else {
      const row = (d: PlannedDeletion) => [formatTime(d.time), d.id, formatSize(d.size), d.reason, escapeControl(d.group)];
      if (r.deleted.length > 0) process.stdout.write(`${table(['TIME', 'ID', 'SIZE', 'WHY', 'EXE'], r.deleted.map(row))}\n`);
      const verb = dryRun ? 'Would delete' : 'Deleted';
      process.stdout.write(`${verb} ${plural(r.deleted.length, 'event')}, ${formatSize(total)} (limits: ${limitsText(r.plan.limits)}).\n`);
      process.stdout.write(`Bundles: ${formatSize(r.plan.usedBefore)} → ${formatSize(r.plan.usedAfter)}; free on the filesystem: ${formatSize(r.plan.freeBefore)} → about ${formatSize(r.plan.freeAfter)}.\n`);
      for (const id of r.skipped) process.stderr.write(`flightbox: kept ${id}: it was pinned meanwhile.\n`);
      if (r.swept.length > 0) process.stderr.write(`flightbox: finished ${plural(r.swept.length, 'interrupted deletion')}.\n`);
      for (const u of r.plan.unsatisfied) {
        process.stderr.write(`flightbox: still over ${u}: only pinned events are left to delete.\n`);
      }
    }
    return 0;
  } finally {
    store.close();
  }
}
