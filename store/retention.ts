// Retention: which events the store lets go, and the vacuum that deletes them. The plan is
// pure (events + filesystem + limits → ids in deletion order); deleting goes through
// Store.removeBundle, which keeps the index and the disk consistent across a crash.
import { statfsSync } from 'node:fs';
import {
  DEFAULT_RETENTION_CAP_BYTES, DEFAULT_RETENTION_KEEP_FREE_PERCENT, DEFAULT_RETENTION_MAX_USE_PERCENT,
  type Config, type SizeLimit,
} from '../lib/config.js';
import type { Store } from './store.js';

/** Why an event goes, in the order the plan applies them. */
export const VACUUM_REASONS = ['maxAge', 'maxPerExe', 'maxUse', 'keepFree'] as const;
export type VacuumReason = (typeof VACUUM_REASONS)[number];

/** Snapshots have no executable: they share one group, as one more "executable". */
export const SNAPSHOT_GROUP = 'snapshots';
/** Crashes whose executable could not be read share one group too. */
export const UNKNOWN_EXE_GROUP = '(unknown executable)';

export interface VacuumEvent {
  id: string;
  time: number;
  exe: string | null;
  /** 'crash' without exe goes to UNKNOWN_EXE_GROUP; anything else without exe is a snapshot */
  kind?: 'crash' | 'snapshot';
  size: number;
  pinned: boolean;
}

export interface VacuumLimits {
  /** bundles together at most this many bytes; null: no limit */
  maxUseBytes: number | null;
  /** at least this many bytes free on the store's filesystem; null: no limit */
  keepFreeBytes: number | null;
  maxAgeMs: number | null;
  maxPerExe: number | null;
}

export interface PlannedDeletion {
  id: string;
  group: string;
  time: number;
  size: number;
  reason: VacuumReason;
}

export interface VacuumPlan {
  deletions: PlannedDeletion[];
  limits: VacuumLimits;
  usedBefore: number;
  usedAfter: number;
  freeBefore: number;
  /** assuming each deletion frees its bundle's size */
  freeAfter: number;
  /** size limits still not met when only pinned (or kept) events are left */
  unsatisfied: ('maxUse' | 'keepFree')[];
}

export function groupOf(e: Pick<VacuumEvent, 'exe' | 'kind'>): string {
  if (e.exe !== null) return e.exe;
  return e.kind === 'crash' ? UNKNOWN_EXE_GROUP : SNAPSHOT_GROUP;
}

/** A configured size (or the default share of the filesystem, capped) in bytes. */
export function resolveSizeLimit(limit: SizeLimit | null, defaultPercent: number, fsSizeBytes: number): number {
  if (limit === null) return Math.min(Math.floor((fsSizeBytes * defaultPercent) / 100), DEFAULT_RETENTION_CAP_BYTES);
  if ('bytes' in limit) return limit.bytes;
  return Math.floor((fsSizeBytes * limit.percent) / 100);
}

export function limitsFromConfig(r: Config['retention'], fsSizeBytes: number): VacuumLimits {
  return {
    maxUseBytes: resolveSizeLimit(r.maxUse, DEFAULT_RETENTION_MAX_USE_PERCENT, fsSizeBytes),
    keepFreeBytes: resolveSizeLimit(r.keepFree, DEFAULT_RETENTION_KEEP_FREE_PERCENT, fsSizeBytes),
    maxAgeMs: r.maxAgeMs,
    maxPerExe: r.maxPerExe,
  };
}

/**
 * What to delete, in order:
 *   1. every event older than maxAge, oldest first;
 *   2. per group, the oldest beyond maxPerExe (pinned events count toward the limit, as
 *      they are kept, but are never deleted: a group may stay over it);
 *   3. while the bundles use more than maxUse or the filesystem has less than keepFree
 *      free: the oldest event of the group with the most deletable events (ties: the group
 *      whose oldest deletable event is older, then by name). As systemd-coredump's vacuum:
 *      a crash loop cannot push out the only core of a rare crash.
 * Pinned events and those in `keep` (the crash just recorded) are never deleted.
 */
export function planVacuum(input: {
  events: readonly VacuumEvent[];
  fs: { sizeBytes: number; freeBytes: number };
  limits: VacuumLimits;
  now: number;
  keep?: ReadonlySet<string>;
}): VacuumPlan {
  const { limits, now } = input;
  const keep = input.keep ?? new Set<string>();
  const events = [...input.events].sort((a, b) => a.time - b.time || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const deletable = (e: VacuumEvent) => !e.pinned && !keep.has(e.id);
  const gone = new Set<string>();
  const deletions: PlannedDeletion[] = [];
  const remove = (e: VacuumEvent, reason: VacuumReason) => {
    gone.add(e.id);
    deletions.push({ id: e.id, group: groupOf(e), time: e.time, size: e.size, reason });
  };

  if (limits.maxAgeMs !== null) {
    for (const e of events) if (now - e.time > limits.maxAgeMs && deletable(e)) remove(e, 'maxAge');
  }

  // Groups of what is left, oldest first.
  const groups = new Map<string, VacuumEvent[]>();
  for (const e of events) {
    if (gone.has(e.id)) continue;
    const g = groupOf(e);
    let list = groups.get(g);
    if (!list) groups.set(g, (list = []));
    list.push(e);
  }

  if (limits.maxPerExe !== null) {
    for (const list of groups.values()) {
      let count = list.length;
      for (const e of list) {
        if (count <= limits.maxPerExe) break;
        if (!deletable(e)) continue;
        remove(e, 'maxPerExe');
        count--;
      }
    }
  }

  const usedBefore = events.reduce((a, e) => a + e.size, 0);
  let used = usedBefore - deletions.reduce((a, d) => a + d.size, 0);
  let free = input.fs.freeBytes + (usedBefore - used);
  const overUse = () => limits.maxUseBytes !== null && used > limits.maxUseBytes;
  const underFree = () => limits.keepFreeBytes !== null && free < limits.keepFreeBytes;
  // Per group, the deletable events left, oldest first.
  const queues = new Map<string, VacuumEvent[]>();
  for (const [g, list] of groups) {
    const q = list.filter((e) => !gone.has(e.id) && deletable(e));
    if (q.length > 0) queues.set(g, q);
  }
  const unsatisfied: VacuumPlan['unsatisfied'] = [];
  while (overUse() || underFree()) {
    let best: [string, VacuumEvent[]] | undefined;
    for (const entry of queues) {
      if (!best || isWorse(entry, best)) best = entry;
    }
    if (!best) {
      if (overUse()) unsatisfied.push('maxUse');
      if (underFree()) unsatisfied.push('keepFree');
      break;
    }
    const [g, q] = best;
    const e = q.shift()!;
    if (q.length === 0) queues.delete(g);
    remove(e, overUse() ? 'maxUse' : 'keepFree');
    used -= e.size;
    free += e.size;
  }
  return { deletions, limits, usedBefore, usedAfter: used, freeBefore: input.fs.freeBytes, freeAfter: free, unsatisfied };
}

/** Whether group `a` should lose an event before group `b`. */
function isWorse(a: [string, VacuumEvent[]], b: [string, VacuumEvent[]]): boolean {
  if (a[1].length !== b[1].length) return a[1].length > b[1].length;
  const ta = a[1][0]!.time;
  const tb = b[1][0]!.time;
  if (ta !== tb) return ta < tb;
  return a[0] < b[0];
}

export interface VacuumResult {
  plan: VacuumPlan;
  dryRun: boolean;
  /** deleted (or, dry, would be) */
  deleted: PlannedDeletion[];
  /** pinned between the plan and the deletion: kept */
  skipped: string[];
  /** trash left by an interrupted deletion, finished now */
  swept: string[];
}

/** The store's filesystem: total and available (to us, root) bytes. */
export function filesystemOf(root: string): { sizeBytes: number; freeBytes: number } {
  const s = statfsSync(root);
  return { sizeBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize };
}

/**
 * Apply retention to a store. Synchronous: the daemon runs it in its housekeeping and after
 * each crash notice, never the crash handler (its time holds the crashed process's slot and
 * the kernel's pipe; a vacuum can wait a minute).
 */
export function vacuum(store: Store, cfg: Config, opts: { dryRun?: boolean; keep?: ReadonlySet<string>; now?: number } = {}): VacuumResult {
  const dryRun = opts.dryRun ?? false;
  const swept = dryRun ? [] : store.sweepTrash();
  const index = store.index();
  const events: VacuumEvent[] = index.retentionRows().map((r) => ({
    id: r.id, time: r.time, exe: r.exe, kind: r.kind, size: r.size, pinned: r.pinned === 1,
  }));
  const fs = filesystemOf(store.root);
  const plan = planVacuum({
    events, fs, limits: limitsFromConfig(cfg.retention, fs.sizeBytes), now: opts.now ?? Date.now(), keep: opts.keep,
  });
  if (dryRun) return { plan, dryRun, deleted: plan.deletions, skipped: [], swept };
  const deleted: PlannedDeletion[] = [];
  const skipped: string[] = [];
  for (const d of plan.deletions) {
    const r = store.removeBundle(d.id, { why: `retention: ${d.reason}` });
    if (r === 'pinned') skipped.push(d.id);
    else deleted.push(d);
  }
  return { plan, dryRun, deleted, skipped, swept };
}
