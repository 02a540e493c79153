// The store on disk: bundles published atomically from a staging area, the SQLite index,
// a spool of published-but-not-yet-indexed bundles, and the log. The only writer under
// the store root. Refuses a root that others could write to.
import { existsSync, lstatSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { applyAcls } from '../lib/acl.js';
import { FlightboxError, errnoCode, messageOf } from '../lib/errors.js';
import { checkSecureDir, ensurePrivateFile, ensureSecureDir, fsyncDir, readSmallNoFollow, syncTree, touchNoFollow, writeFileExclusive } from '../lib/safe-fs.js';
import { bundleDay, isBundleId } from './bundle-id.js';
import { INDEX_FILE, IndexDb, rowFromManifest, type OutboxRequest, type OutboxStatus } from './index-db.js';
import { MANIFEST_NAME, listBundleFiles, readManifest, type KnownHash, type Manifest } from './manifest.js';

export const STAGING_DIR = 'staging';
export const BUNDLES_DIR = 'bundles';
export const SPOOL_DIR = 'spool';
export const LOG_FILE = 'flightbox.log';
/**
 * users/<uid>/<id>: links to the bundles a user may read (their own crashes). The CLI run by
 * that user lists this directory, since the index itself is root's.
 */
export const USERS_DIR = 'users';
/** Parts of a bundle its crashing user never gets: the flight recorder shows the whole system. */
const NOT_FOR_USERS = new Set(['recorder', 'collected']);
/** Bundles being deleted (store/retention.ts): renamed here first, so reindex never sees them. */
export const TRASH_DIR = 'trash';
/**
 * An empty file in a bundle that keeps it from retention (flightbox pin). Not in the
 * manifest (the bundle's content did not change); archives never carry it (export copies
 * the manifest's files only, import refuses the name).
 */
export const PIN_MARKER = '.pinned';
/** A trash entry younger than this may be another process's deletion in progress. */
export const TRASH_STALE_MS = 60 * 1000;
/** A spool marker holds at most a few mail requests (well under a KiB each). */
export const MAX_SPOOL_MARKER_BYTES = 1024 * 1024;
/** A staging directory whose handler is gone and that is older than this is debris. */
export const STAGING_STALE_MS = 10 * 60 * 1000;
/** A staging directory whose owner still seems alive after this long is debris too (pid reuse). */
export const STAGING_OWNER_ALIVE_MAX_MS = 60 * 60 * 1000;

/** What is indexed together with an event, in the same transaction. */
export interface IndexExtras {
  /** mail about the event (notify/outbox.ts builds these); spooled with the event when the index is locked */
  mail?: readonly OutboxRequest[];
}

export interface FinishOptions extends IndexExtras {
  /** the crashing user, to be given read access to their crash (never for setuid or non-dumpable) */
  grantUid?: number | null;
  /** sha256 of files hashed while they were written (the compressed core), by path in the bundle */
  knownHashes?: ReadonlyMap<string, KnownHash>;
  /**
   * false: nothing is fsynced here; the caller syncs the whole filesystem once for many
   * bundles (the crash-storm drainer, handler/overflow.ts) before it deletes their sources.
   */
  sync?: boolean;
  /** The caller has synced the staging directory's files and directories already (syncTreeAtOnce). */
  treeSynced?: boolean;
}

/** A spool marker: empty (an event to index), or JSON naming what else waits with it. */
interface SpoolPayload {
  mail?: OutboxRequest[];
}

export interface StoreOptions {
  /** Create the root and its folders if missing (writers); readers only check. */
  create: boolean;
  busyTimeoutMs: number;
}

function lstatSafeUid(path: string): number | null {
  try {
    return lstatSync(path).uid;
  } catch {
    return null;
  }
}

export class Store {
  readonly root: string;
  readonly #busyTimeoutMs: number;
  #index: IndexDb | null = null;

  constructor(root: string, opts: StoreOptions) {
    this.root = root;
    this.#busyTimeoutMs = opts.busyTimeoutMs;
    if (opts.create) {
      mkdirSync(join(root, '..'), { recursive: true, mode: 0o755 });
      ensureSecureDir(root, 0o700);
      for (const d of [STAGING_DIR, BUNDLES_DIR, SPOOL_DIR]) ensureSecureDir(join(root, d), 0o700);
    } else {
      // lstat, not exists: a symlink planted at the root must be named as such, not followed.
      try {
        lstatSync(root);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') throw new FlightboxError('NOT_FOUND', `the store ${root} does not exist yet (no crash has been recorded, or store.root points elsewhere)`);
        throw err;
      }
      checkSecureDir(root, { allowRootOwner: true });
    }
  }

  get logFile(): string {
    return join(this.root, LOG_FILE);
  }

  index(opts: { readonly?: boolean } = {}): IndexDb {
    if (!this.#index) {
      // SQLite creates its files 0644 (and its -wal/-shm like the main file): the index holds
      // every crash's command line, so it is made 0600 before SQLite sees it. Writers only;
      // a reader that is not the owner could not change it anyway.
      const path = join(this.root, INDEX_FILE);
      if (!opts.readonly && (process.getuid?.() ?? 0) === (lstatSafeUid(this.root) ?? -1)) {
        ensurePrivateFile(path, true);
        for (const suffix of ['-wal', '-shm', '-journal']) ensurePrivateFile(path + suffix, false);
      }
      this.#index = new IndexDb(join(this.root, INDEX_FILE), { busyTimeoutMs: this.#busyTimeoutMs, readonly: opts.readonly });
    }
    return this.#index;
  }

  close(): void {
    this.#index?.close();
    this.#index = null;
  }

  /** A fresh staging directory for one bundle (fails if the name exists: never reuse). */
  createStaging(id: string): string {
    if (!isBundleId(id)) throw new FlightboxError('INTERNAL', `bad bundle id ${JSON.stringify(id)}`);
    const dir = join(this.root, STAGING_DIR, id);
    mkdirSync(dir, { mode: 0o700 });
    checkSecureDir(dir);
    // Who is working on it, so a sweep can tell debris from work in progress.
    writeFileExclusive(dir, '.owner', `${process.pid}\n`, 0o600, { sync: false });
    return dir;
  }

  /** Atomically move a finished staging directory into bundles/<day>/<id>. */
  publish(id: string, stagingDir: string, sync = true): string {
    const dayDir = join(this.root, BUNDLES_DIR, bundleDay(id));
    ensureSecureDir(dayDir, 0o700);
    try {
      unlinkSync(join(stagingDir, '.owner'));
    } catch {
      // already gone
    }
    if (sync) fsyncDir(stagingDir);
    const dest = join(dayDir, id);
    renameSync(stagingDir, dest);
    if (sync) {
      fsyncDir(dayDir);
      fsyncDir(join(this.root, STAGING_DIR));
    }
    return dest;
  }

  /**
   * Complete a bundle: list its files with sizes and sha256, write manifest.json, publish
   * the directory atomically, index it (or spool it). The manifest's `files` is filled here.
   */
  finishBundle(staging: string, manifest: Manifest, extras: FinishOptions = {}): {
    bundleDir: string;
    indexed: boolean;
    error?: string;
    queued?: { id: number; status: OutboxStatus }[];
  } {
    // Files written on the crash handler's hold path were not synced; do it now, once.
    const sync = extras.sync !== false;
    if (sync && !extras.treeSynced) syncTree(staging);
    manifest.files = listBundleFiles(staging, '', extras.knownHashes).filter((f) => f.path !== '.owner');
    if (extras.grantUid !== undefined && extras.grantUid !== null) {
      try {
        this.grantUserAccess(staging, manifest.id, extras.grantUid);
      } catch (err) {
        manifest.warnings.push(`Failed to give uid ${extras.grantUid} read access to this crash, it stays root-only: ${messageOf(err)}`);
      }
    }
    writeFileExclusive(staging, MANIFEST_NAME, `${JSON.stringify(manifest, null, 2)}\n`, 0o640, { sync });
    const bundleDir = this.publish(manifest.id, staging, sync);
    const ix = this.indexBundle(manifest, extras);
    return { bundleDir, ...ix };
  }

  /**
   * Let `uid` read one bundle, still in staging (ACLs move with the directory): traverse
   * rights on the store's shared directories, read rights on the bundle's files except the
   * recorder's, a default entry so the manifest written next inherits them, and a link in
   * users/<uid>/. The directories stay root's and mode 0700: nobody else gains anything.
   */
  grantUserAccess(staging: string, id: string, uid: number): void {
    if (!Number.isInteger(uid) || uid <= 0) throw new FlightboxError('INTERNAL', `bad uid ${uid}`);
    const users = join(this.root, USERS_DIR);
    const mine = join(users, String(uid));
    const day = join(this.root, BUNDLES_DIR, bundleDay(id));
    for (const d of [users, mine, day]) ensureSecureDir(d, 0o700);
    const readable: string[] = [mine, staging];
    const walk = (dir: string, top: boolean): void => {
      for (const name of readdirSync(dir)) {
        if (name.startsWith('.') || (top && NOT_FOR_USERS.has(name))) continue;
        const p = join(dir, name);
        const st = lstatSync(p);
        if (st.isDirectory()) {
          readable.push(p);
          walk(p, false);
        } else if (st.isFile()) readable.push(p);
      }
    };
    walk(staging, true);
    applyAcls([
      { entries: `u:${uid}:x`, paths: [this.root, join(this.root, BUNDLES_DIR), day, users] },
      { entries: `u:${uid}:rX`, paths: readable },
      { entries: `d:u:${uid}:r`, paths: [staging] },
    ]);
    symlinkSync(`../../${this.bundleRel(id)}`, join(mine, id));
  }

  /**
   * For a user who cannot open the index: an in-memory index of the crashes they were given
   * (users/<uid>/), built from the manifests, so every query works unchanged. Only entries
   * whose manifest names this uid count. Throws PERMISSION when there is nothing to read.
   */
  openUserView(uid: number): number {
    let names: string[];
    try {
      names = readdirSync(join(this.root, USERS_DIR, String(uid)));
    } catch {
      throw new FlightboxError('PERMISSION', `cannot open the store ${this.root}: permission denied (only root sees every event; a user sees the crashes of their own processes, and none of uid ${uid} is recorded)`);
    }
    const index = new IndexDb(':memory:', { busyTimeoutMs: this.#busyTimeoutMs });
    const now = Date.now();
    let n = 0;
    for (const id of names.sort()) {
      if (!isBundleId(id)) continue;
      try {
        const m = readManifest(this.bundleDir(id));
        if (m.id !== id || m.process?.uid !== uid) continue;
        index.upsert(rowFromManifest(m, this.bundleRel(id), now));
        n++;
      } catch {
        // deleted since (a dangling link) or unreadable: not theirs to see
      }
    }
    this.#index?.close();
    this.#index = index;
    return n;
  }

  bundleRel(id: string): string {
    return `${BUNDLES_DIR}/${bundleDay(id)}/${id}`;
  }

  bundleDir(id: string): string {
    return join(this.root, this.bundleRel(id));
  }

  /**
   * Index a published bundle, and queue its mail in the same transaction: both or neither.
   * On failure leave a spool marker (holding the mail) so nothing is lost; draining the
   * spool queues that mail exactly once (outbox keys are unique).
   */
  indexBundle(manifest: Manifest, extras: IndexExtras = {}): { indexed: boolean; error?: string; queued?: { id: number; status: OutboxStatus }[] } {
    const mail = extras.mail ?? [];
    try {
      const index = this.index();
      const now = Date.now();
      const row = rowFromManifest(manifest, this.bundleRel(manifest.id), now);
      if (mail.length === 0) {
        index.insert(row);
        return { indexed: true };
      }
      const queued: { id: number; status: OutboxStatus }[] = [];
      index.db.transaction(() => {
        index.insert(row);
        for (const m of mail) {
          const q = index.queueMail(m, now);
          if (q) queued.push(q);
        }
      }).immediate();
      return { indexed: true, queued };
    } catch (err) {
      try {
        this.#writeSpoolMarker(manifest.id, mail.length > 0 ? { mail: [...mail] } : null);
      } catch {
        // Even without the marker, `flightbox reindex` finds the bundle on disk (its mail is lost).
      }
      return { indexed: false, error: messageOf(err) };
    }
  }

  /**
   * An empty marker, or one with a payload, written under a temporary name and renamed so
   * that a concurrent drainSpool never reads half of it (names starting with "." are skipped).
   */
  #writeSpoolMarker(id: string, payload: SpoolPayload | null): void {
    const dir = join(this.root, SPOOL_DIR);
    if (payload === null) {
      touchNoFollow(join(dir, id));
      return;
    }
    const tmp = `.${id}.${process.pid}.tmp`;
    try {
      writeFileExclusive(dir, tmp, JSON.stringify(payload), 0o600);
      renameSync(join(dir, tmp), join(dir, id));
      fsyncDir(dir);
    } catch (err) {
      try { unlinkSync(join(dir, tmp)); } catch { /* never created */ }
      touchNoFollow(join(dir, id)); // at least the event
      throw err;
    }
  }

  /** What a spool marker holds besides the event (nothing for an empty marker). */
  #readSpoolMarker(id: string): SpoolPayload {
    let text: string;
    try {
      text = readSmallNoFollow(join(this.root, SPOOL_DIR, id), MAX_SPOOL_MARKER_BYTES);
    } catch {
      return {};
    }
    if (text.trim() === '') return {};
    try {
      const p = JSON.parse(text) as SpoolPayload;
      return typeof p === 'object' && p !== null && (p.mail === undefined || Array.isArray(p.mail)) ? p : {};
    } catch {
      return {}; // written by rename, so never half a file; anything else is not ours
    }
  }

  /** Index every spooled bundle. Returns how many were indexed. */
  drainSpool(): number {
    const dir = join(this.root, SPOOL_DIR);
    let n = 0;
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return 0;
    }
    for (const id of names) {
      if (!isBundleId(id)) continue;
      try {
        const m = readManifest(this.bundleDir(id));
        const mail = this.#readSpoolMarker(id).mail ?? [];
        const index = this.index();
        const now = Date.now();
        // The event and its mail together; a crash before the unlink below only repeats
        // this, and the outbox's unique keys make the repeat queue nothing.
        index.db.transaction(() => {
          index.upsert(rowFromManifest(m, this.bundleRel(id), now), { pinned: this.isPinnedOnDisk(id) });
          for (const r of mail) index.queueMail(r, now);
        }).immediate();
        n++;
      } catch (err) {
        if (!(err instanceof FlightboxError && err.code === 'STORE_CORRUPT' && !existsSync(this.bundleDir(id)))) throw err;
      }
      unlinkSync(join(dir, id));
    }
    return n;
  }

  /** Every bundle directory on disk: [id, absolute path]. */
  *bundles(): Generator<[string, string]> {
    const base = join(this.root, BUNDLES_DIR);
    let days: string[];
    try {
      days = readdirSync(base).sort();
    } catch {
      return;
    }
    for (const day of days) {
      if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) continue;
      for (const id of readdirSync(join(base, day)).sort()) {
        if (!isBundleId(id) || bundleDay(id) !== day) continue;
        const p = join(base, day, id);
        if (lstatSync(p).isDirectory()) yield [id, p];
      }
    }
  }

  /**
   * Rebuild the index from the bundles on disk: add what is missing, refresh what is there,
   * drop rows whose bundle is gone. Unreadable bundles are reported, not fatal.
   */
  reindex(): { indexed: number; removed: number; broken: { id: string; error: string }[] } {
    const index = this.index();
    const seen = new Set<string>();
    const broken: { id: string; error: string }[] = [];
    let indexed = 0;
    const now = Date.now();
    const batch: { row: ReturnType<typeof rowFromManifest>; pinned: boolean }[] = [];
    const flush = () => {
      index.db.transaction(() => { for (const b of batch) index.upsert(b.row, { pinned: b.pinned }); })();
      indexed += batch.length;
      batch.length = 0;
    };
    for (const [id, dir] of this.bundles()) {
      try {
        const m = readManifest(dir);
        if (m.id !== id) throw new Error(`manifest id ${JSON.stringify(m.id)} does not match its directory`);
        seen.add(id);
        batch.push({ row: rowFromManifest(m, this.bundleRel(id), now), pinned: this.isPinnedOnDisk(id) });
        if (batch.length >= 1000) flush();
      } catch (err) {
        broken.push({ id, error: messageOf(err) });
      }
    }
    flush();
    const removed = index.deleteMissing(seen);
    this.sweepTrash(); // deletions a crash interrupted: their rows went with deleteMissing
    try {
      for (const id of readdirSync(join(this.root, SPOOL_DIR))) {
        // The events are indexed now; mail that waited with them is queued before the marker goes.
        const mail = isBundleId(id) && seen.has(id) ? this.#readSpoolMarker(id).mail ?? [] : [];
        if (mail.length > 0) index.db.transaction(() => { for (const r of mail) index.queueMail(r, now); }).immediate();
        unlinkSync(join(this.root, SPOOL_DIR, id));
      }
    } catch {
      // no spool (or the index is busy: what is left is drained later)
    }
    return { indexed, removed, broken };
  }

  // ---- pins and deletion (store/retention.ts decides what to delete) --------------------

  /** Whether the bundle on disk carries the pin marker (the truth; the index follows it). */
  isPinnedOnDisk(id: string): boolean {
    try {
      return lstatSync(join(this.bundleDir(id), PIN_MARKER)).isFile();
    } catch {
      return false;
    }
  }

  /**
   * Pin or unpin an indexed event. The marker on disk first, then the row: a crash in
   * between leaves the disk saying what was asked, and reindex makes the index agree; the
   * vacuum checks the marker again after taking a bundle away (see removeBundle).
   */
  setPinned(id: string, pinned: boolean): void {
    if (!isBundleId(id)) throw new FlightboxError('INTERNAL', `bad bundle id ${JSON.stringify(id)}`);
    const dir = this.bundleDir(id);
    if (pinned) {
      try {
        writeFileExclusive(dir, PIN_MARKER, '', 0o600);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') throw new FlightboxError('NOT_FOUND', `the bundle of ${id} is gone (run flightbox reindex)`);
        if (errnoCode(err) !== 'EEXIST') throw err;
        if (!lstatSync(join(dir, PIN_MARKER)).isFile()) throw new FlightboxError('STORE_CORRUPT', `${join(dir, PIN_MARKER)} is not a regular file`);
      }
    } else {
      try {
        unlinkSync(join(dir, PIN_MARKER));
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    }
    fsyncDir(dir);
    if (!this.index().setPinned(id, pinned)) throw new FlightboxError('NOT_FOUND', `no event ${id} in the index`);
  }

  /**
   * Delete one event, disk and index together. Order, and what a crash at each step leaves:
   *   1. rename bundles/<day>/<id> to trash/<id> (atomic, same filesystem). This is the
   *      commit point: from here reindex cannot resurrect the event. A crash now leaves a
   *      row whose bundle is gone (readers see "cannot read manifest.json"); sweepTrash
   *      (every vacuum, so daemon housekeeping, and reindex) deletes that row and finishes
   *      the job once the entry is a minute old; reindex drops such a row at once anyway.
   *   2. check the pin marker inside trash/<id>: a pin that raced with the plan wins, the
   *      directory goes back and nothing is deleted.
   *   3. delete the row (and fail its unsent mail) in one transaction.
   *   4. rm -rf trash/<id>. A crash now leaves only trash, swept later.
   * The reverse order (row first) would leave, after a crash, a bundle without a row that
   * reindex would bring back. Returns 'gone' when another process deleted it first.
   */
  removeBundle(id: string, opts: { force?: boolean; why: string }): 'deleted' | 'gone' | 'pinned' {
    if (!isBundleId(id)) throw new FlightboxError('INTERNAL', `bad bundle id ${JSON.stringify(id)}`);
    const trash = join(this.root, TRASH_DIR);
    ensureSecureDir(trash, 0o700);
    const from = this.bundleDir(id);
    const to = join(trash, id);
    for (let attempt = 0; ; attempt++) {
      try {
        renameSync(from, to);
        break;
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'ENOENT') {
          this.index().deleteEvents([id], opts.why); // a row without a bundle: drop it
          return 'gone';
        }
        // Debris of an earlier deletion of this id (the bundle was imported again since).
        if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || attempt > 0) throw err;
        rmSync(to, { recursive: true, force: true });
      }
    }
    fsyncDir(trash);
    fsyncDir(join(from, '..'));
    if (!opts.force && existsSync(join(to, PIN_MARKER))) {
      renameSync(to, from);
      fsyncDir(join(from, '..'));
      return 'pinned';
    }
    this.index().deleteEvents([id], opts.why);
    rmSync(to, { recursive: true, force: true });
    this.#unlinkUserLinks(id);
    return 'deleted';
  }

  /** Remove users/<uid>/<id> links of a deleted bundle (a dangling one is harmless, just untidy). */
  #unlinkUserLinks(id: string): void {
    let uids: string[];
    try {
      uids = readdirSync(join(this.root, USERS_DIR));
    } catch {
      return;
    }
    for (const u of uids) {
      try {
        unlinkSync(join(this.root, USERS_DIR, u, id));
      } catch {
        // not theirs
      }
    }
  }

  /**
   * Finish deletions a crash interrupted: every trash/<id> loses its index row (if still
   * there), then its files. Returns the ids.
   */
  sweepTrash(staleMs = TRASH_STALE_MS, now = Date.now()): string[] {
    const trash = join(this.root, TRASH_DIR);
    let names: string[];
    try {
      names = readdirSync(trash);
    } catch {
      return [];
    }
    // Young entries may belong to a removeBundle running in another process right now,
    // which may still put a pinned bundle back: leave them. rename() updates the ctime.
    const stale = names.filter((n) => {
      try {
        return now - lstatSync(join(trash, n)).ctimeMs >= staleMs;
      } catch {
        return false;
      }
    });
    const ids = stale.filter(isBundleId);
    if (ids.length > 0) this.index().deleteEvents(ids, 'deleted');
    for (const name of stale) rmSync(join(trash, name), { recursive: true, force: true });
    for (const id of ids) this.#unlinkUserLinks(id);
    return ids;
  }

  /**
   * Staging directories left by handlers (or daemons) that died: removed, and their names
   * returned. Only complete bundles are ever published, so this is all that a writer killed
   * mid-write leaves behind.
   */
  sweepStaging(staleMs = STAGING_STALE_MS, now = Date.now()): string[] {
    const base = join(this.root, STAGING_DIR);
    const removed: string[] = [];
    let names: string[];
    try {
      names = readdirSync(base);
    } catch {
      return removed;
    }
    for (const name of names) {
      const dir = join(base, name);
      try {
        const st = lstatSync(dir);
        const age = now - st.mtimeMs;
        const owner = readOwner(dir);
        // A dead owner's work is debris at once. Without an owner file (a handler between
        // mkdir and writing it) wait `staleMs`; a live owner gets an hour, in case its pid
        // was reused by another process.
        if (owner !== null ? processAlive(owner) && age < STAGING_OWNER_ALIVE_MAX_MS : age < staleMs) continue;
        rmSync(dir, { recursive: true, force: true });
        removed.push(name);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    }
    return removed;
  }
}

/** The pid in a staging directory's .owner file, or null. The file is ours and tiny. */
function readOwner(dir: string): number | null {
  try {
    const text = readSmallNoFollow(join(dir, '.owner'), 32);
    const pid = Number(text.trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}

export function storeFromConfig(cfg: { store: { root: string; busyTimeoutMs: number } }, create: boolean): Store {
  return new Store(cfg.store.root, { create, busyTimeoutMs: cfg.store.busyTimeoutMs });
}
