// Queueing mail: the outbox requests for a crash (mail.to), a rule's mail action and
// `flightbox mail`, each with a stable Message-ID and a key that makes queueing it twice a
// no-op. Small and free of nodemailer: the crash handler imports this on its way out.
import { randomBytes } from 'node:crypto';
import { hostname as osHostname } from 'node:os';
import type { Config } from '../lib/config.js';
import type { OutboxRequest, OutboxRow, OutboxStatus } from '../store/index-db.js';
import type { Manifest } from '../store/manifest.js';
import type { Store } from '../store/store.js';

/** Storm control counts mail per group in windows of this length (mail.maxPerHour). */
export const MAIL_STORM_WINDOW_MS = 60 * 60 * 1000;
/** The group of every crash mail: one crash storm cannot send more than maxPerHour mails. */
export const CRASH_STORM_GROUP = 'crash';

export interface RequestOptions {
  /** storm window (tests shorten it); default MAIL_STORM_WINDOW_MS */
  windowMs?: number;
  /** the host name for the Message-ID; default os.hostname() */
  hostname?: string;
}

/** Is mail configured at all? Without a transport nothing is queued. */
export function mailEnabled(config: Config): boolean {
  return config.mail.transport !== null;
}

/** A host name fit for the right side of a Message-ID or a From address. */
export function mailDomain(host = osHostname()): string {
  const d = host.toLowerCase().replace(/[^a-z0-9.-]/g, '').replace(/^[.-]+|[.-]+$/g, '');
  return d === '' ? 'localhost' : d.slice(0, 200);
}

/** The From address: mail.from, or flightbox@<hostname>. */
export function fromAddress(config: Config, host?: string): string {
  return config.mail.from ?? `flightbox@${mailDomain(host)}`;
}

/** "<flightbox.ID.RANDOM@host>": made once per outbox row, so a resend carries the same one. */
export function makeMessageId(eventId: string | null, host?: string): string {
  return `<flightbox.${eventId ?? 'digest'}.${randomBytes(8).toString('hex')}@${mailDomain(host)}>`;
}

/** The mail a crash gets: one to mail.to, in the "crash" storm group; none without transport or recipients. */
export function crashMailRequests(config: Config, manifest: Pick<Manifest, 'id' | 'kind'>, opts: RequestOptions = {}): OutboxRequest[] {
  if (!mailEnabled(config) || config.mail.to.length === 0 || manifest.kind !== 'crash') return [];
  return [{
    kind: 'crash',
    eventId: manifest.id,
    rule: null,
    reason: null,
    to: [...config.mail.to],
    key: `crash:${manifest.id}`,
    group: CRASH_STORM_GROUP,
    maxPerHour: config.mail.maxPerHour,
    windowMs: opts.windowMs ?? MAIL_STORM_WINDOW_MS,
    messageId: makeMessageId(manifest.id, opts.hostname),
  }];
}

/**
 * A rule's `{ mail: { to } }` action about event `eventId` (the rule's snapshot, or the
 * crash itself): storm group "rule:NAME". `action` tells two mail actions of one rule apart.
 * Null when no transport is configured.
 */
export function ruleMailRequest(
  config: Config,
  a: { rule: string; eventId: string; reason: string | null; to: readonly string[]; action?: number },
  opts: RequestOptions = {},
): OutboxRequest | null {
  if (!mailEnabled(config) || a.to.length === 0) return null;
  return {
    kind: 'rule',
    eventId: a.eventId,
    rule: a.rule,
    reason: a.reason,
    to: [...a.to],
    key: `rule:${a.rule}:${a.eventId}${a.action ? `:${a.action}` : ''}`,
    group: `rule:${a.rule}`,
    maxPerHour: config.mail.maxPerHour,
    windowMs: opts.windowMs ?? MAIL_STORM_WINDOW_MS,
    messageId: makeMessageId(a.eventId, opts.hostname),
  };
}

/** `flightbox mail ID --to ...`: asked for by a person, so never held by storm control. */
export function manualMailRequest(eventId: string, to: readonly string[], opts: RequestOptions = {}): OutboxRequest {
  return {
    kind: 'manual',
    eventId,
    rule: null,
    reason: null,
    to: [...to],
    key: `manual:${eventId}:${randomBytes(8).toString('hex')}`,
    group: null,
    maxPerHour: 0,
    windowMs: opts.windowMs ?? MAIL_STORM_WINDOW_MS,
    messageId: makeMessageId(eventId, opts.hostname),
  };
}

/**
 * Queue mail about an event that is already indexed (a crash rule's mail on the crash
 * itself). For a new event, pass the requests to store.finishBundle instead: then the event
 * and its mail are indexed in one transaction. Returns null for a duplicate key.
 */
export function queueMail(store: Store, req: OutboxRequest, now = Date.now()): { id: number; status: OutboxStatus } | null {
  return store.index().queueMail(req, now);
}

/** Exponential backoff: backoff, 2×, 4×… after the 1st, 2nd, 3rd failed attempt, at most an hour. */
export const MAX_MAIL_RETRY_BACKOFF_MS = 60 * 60 * 1000;
export function retryDelayMs(failedAttempts: number, backoffMs: number): number {
  return Math.min(MAX_MAIL_RETRY_BACKOFF_MS, backoffMs * 2 ** Math.max(0, Math.min(30, failedAttempts - 1)));
}

/** An outbox row as `flightbox outbox --json` shows it. */
export function outboxJson(r: OutboxRow, maxAttempts: number): Record<string, unknown> {
  const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
  return {
    id: r.id,
    kind: r.kind,
    status: r.status,
    event: r.event_id,
    rule: r.rule,
    to: JSON.parse(r.recipients) as string[],
    attempts: r.attempts,
    maxAttempts,
    created: iso(r.created_at),
    nextAttempt: r.status === 'pending' || r.status === 'held' ? iso(r.next_attempt_at) : null,
    lastAttempt: iso(r.last_attempt_at),
    lastError: r.last_error,
    sent: iso(r.sent_at),
    response: r.response,
    messageId: r.message_id,
    digest: r.digest_id,
    leaseUntil: r.status === 'sending' ? iso(r.lease_until) : null,
  };
}
