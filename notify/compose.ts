// One outbox row → one message: reads the event's manifest and flight-recorder summary,
// exports the bundle as a tar.gz within mail.maxAttachment (without the core if need be,
// or not at all), renders subject and body, and names the temporary files to remove.
import { closeSync, constants, fstatSync, lstatSync, mkdtempSync, openSync, readSync, readdirSync, rmSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../lib/config.js';
import { FlightboxError, messageOf } from '../lib/errors.js';
import { redactCmdline } from '../lib/redact.js';
import { ensureSecureDir } from '../lib/safe-fs.js';
import { formatSize } from '../lib/units.js';
import { VERSION } from '../lib/version.js';
import type { OutboxRow } from '../store/index-db.js';
import { readManifest, type Manifest } from '../store/manifest.js';
import type { Store } from '../store/store.js';
import { fromAddress } from './outbox.js';
import { digestSubject, renderBody, renderDigest, renderSubject, subjectFields, type AttachmentNote } from './render.js';
import { MailError, type OutgoingMail } from './transport.js';

export const METRICS_SUMMARY_PATH = 'recorder/metrics/summary.txt';
export const MAX_METRICS_SUMMARY_BYTES = 16 * 1024;
/** Temporary archives go here, inside the root-only store (they hold cores). */
export const MAIL_WORK_DIR = 'work';
/** A snapshot taken without a rule (SIGUSR1, flightbox snapshot), mailed by hand. */
export const SNAPSHOT_SUBJECT = '[flightbox] {host}: snapshot {id} ({reason})';

export interface ComposeOptions {
  hostname?: string;
  /** the storm window, for the digest's wording */
  windowMs: number;
}

export interface Composed {
  mail: OutgoingMail;
  /** remove the temporary archive; safe to call twice */
  cleanup(): void;
}

/**
 * Temporary directories of senders that died mid-send (their archives may hold cores).
 * Only those older than `olderThanMs`: a live sender's directory is younger than its lease.
 */
export function sweepMailWork(storeRoot: string, olderThanMs: number, now = Date.now()): number {
  const dir = join(storeRoot, MAIL_WORK_DIR);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  let n = 0;
  for (const name of names) {
    if (!name.startsWith('mail-')) continue;
    const p = join(dir, name);
    try {
      const st = lstatSync(p);
      if (st.isDirectory() && now - st.mtimeMs > olderThanMs) {
        rmSync(p, { recursive: true, force: true });
        n++;
      }
    } catch {
      // gone already
    }
  }
  return n;
}

/** A small regular file of the bundle, without following symlinks; null when absent or odd. */
function readBundleText(bundleDir: string, rel: string, max: number): string | null {
  let fd: number;
  try {
    fd = openSync(join(bundleDir, rel), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    if (!fstatSync(fd).isFile()) return null;
    const buf = Buffer.alloc(max);
    let n = 0;
    for (let r = 1; r > 0 && n < max; n += r) r = readSync(fd, buf, n, max - n, null);
    return buf.subarray(0, n).toString('utf8');
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

/**
 * The archive that fits: the whole bundle, else the bundle without the core, else nothing.
 * A core alone over the limit is never exported (it may be gigabytes), and neither is
 * anything when the limit is 0.
 */
async function attachmentFor(bundleDir: string, m: Manifest, workDir: string, config: Config): Promise<{ note: AttachmentNote; path: string | null }> {
  const max = config.mail.maxAttachmentBytes;
  if (max === 0) return { note: { kind: 'none', why: 'mail.maxAttachment is 0' }, path: null };
  const { exportBundle } = await import('../store/archive.js');
  const redact = config.mail.redact;
  const coreFile = m.core?.stored ? m.core.file : null;
  const coreBytes = coreFile ? m.files.find((f) => f.path === coreFile)?.size ?? 0 : 0;
  let fullBytes: number | null = null;
  if (coreBytes <= max) {
    const path = join(workDir, `${m.id}.tar.gz`);
    const r = await exportBundle(bundleDir, path, { format: 'tar.gz', noCore: false, redact });
    if (r.bytes <= max) return { note: { kind: 'full', filename: `${m.id}.tar.gz`, bytes: r.bytes }, path };
    fullBytes = r.bytes;
    rmSync(path, { force: true });
  }
  if (!coreFile) {
    return { note: { kind: 'none', why: `the bundle is ${fullBytes === null ? 'too big' : formatSize(fullBytes)} as a tar.gz, over mail.maxAttachment (${formatSize(max)})` }, path: null };
  }
  const path = join(workDir, `${m.id}-nocore.tar.gz`);
  const r = await exportBundle(bundleDir, path, { format: 'tar.gz', noCore: true, redact });
  if (r.bytes <= max) return { note: { kind: 'no-core', filename: `${m.id}-nocore.tar.gz`, bytes: r.bytes, fullBytes }, path };
  rmSync(path, { force: true });
  return { note: { kind: 'none', why: `even without the core the bundle is ${formatSize(r.bytes)} as a tar.gz, over mail.maxAttachment (${formatSize(max)})` }, path: null };
}

/** Build the message for a claimed row. Throws MailError (BUNDLE_GONE is permanent). */
export async function composeMail(store: Store, config: Config, row: OutboxRow, opts: ComposeOptions): Promise<Composed> {
  const host = opts.hostname ?? osHostname();
  const to = JSON.parse(row.recipients) as string[];
  const headers: Record<string, string> = {
    // RFC 3834: machine-generated; vacation responders and the like stay quiet.
    'Auto-Submitted': 'auto-generated',
    'X-Flightbox-Kind': row.kind,
  };
  if (row.rule) headers['X-Flightbox-Rule'] = row.rule.replace(/[^A-Za-z0-9_.-]/g, '?');

  if (row.kind === 'digest') {
    const items = store.index().digestItems(row.id);
    const input = {
      host, group: row.storm_group ?? '?', windowStart: row.window_start ?? row.created_at, windowMs: opts.windowMs,
      maxPerHour: config.mail.maxPerHour, items, version: VERSION,
    };
    return {
      mail: { from: fromAddress(config, host), to, subject: digestSubject(input), text: renderDigest(input), messageId: row.message_id, headers, attachments: [] },
      cleanup: () => {},
    };
  }

  const eventId = row.event_id ?? '';
  headers['X-Flightbox-Event'] = eventId.replace(/[^A-Za-z0-9T-]/g, '?');
  const bundleDir = store.bundleDir(eventId);
  let m: Manifest;
  try {
    m = readManifest(bundleDir);
  } catch (err) {
    throw new MailError('BUNDLE_GONE', `the bundle of ${eventId} cannot be read (${messageOf(err)})`, { permanent: true, cause: err });
  }
  const workRoot = join(store.root, MAIL_WORK_DIR);
  let workDir: string | null = null;
  const cleanup = () => {
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    workDir = null;
  };
  try {
    ensureSecureDir(workRoot, 0o700);
    workDir = mkdtempSync(join(workRoot, 'mail-'));
    let attachment: { note: AttachmentNote; path: string | null };
    try {
      attachment = await attachmentFor(bundleDir, m, workDir, config);
    } catch (err) {
      // A damaged bundle still deserves its mail: say why nothing is attached.
      if (!(err instanceof FlightboxError && err.code === 'STORE_CORRUPT')) throw err;
      attachment = { note: { kind: 'none', why: `the bundle could not be archived (${messageOf(err)})` }, path: null };
    }
    const cmdline = m.process?.cmdline ? (config.mail.redact ? redactCmdline(m.process.cmdline) : m.process.cmdline) : null;
    const kind = row.kind === 'rule' ? 'rule' : row.kind === 'manual' ? 'manual' : 'crash';
    const fields = subjectFields(m, { rule: row.rule, reason: row.reason });
    const template = row.kind === 'rule' || (m.kind === 'snapshot' && m.rule) ? config.mail.ruleSubject
      : m.kind === 'crash' ? config.mail.subject : SNAPSHOT_SUBJECT;
    const text = renderBody({
      kind, manifest: m, rule: row.rule, reason: row.reason ?? m.reason ?? null,
      location: `${host}:${bundleDir}`, cmdline,
      metricsSummary: readBundleText(bundleDir, METRICS_SUMMARY_PATH, MAX_METRICS_SUMMARY_BYTES),
      attachment: attachment.note, redact: config.mail.redact, maxAttachmentBytes: config.mail.maxAttachmentBytes, version: VERSION,
    });
    return {
      mail: {
        from: fromAddress(config, host),
        to,
        subject: renderSubject(template, fields),
        text,
        messageId: row.message_id,
        headers,
        attachments: attachment.path ? [{ filename: attachment.note.kind === 'none' ? '' : attachment.note.filename, path: attachment.path, contentType: 'application/gzip' }] : [],
      },
      cleanup,
    };
  } catch (err) {
    cleanup();
    if (err instanceof MailError) throw err;
    throw new MailError('COMPOSE', `could not prepare the mail about ${eventId}: ${messageOf(err)}`, { cause: err });
  }
}
