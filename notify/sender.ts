// The outbox sender the daemon runs: every poll (and when woken) it turns ended storm
// windows into digests, claims the mail that is due, and hands each message to the
// transport; a failure is retried with exponential backoff until mail.retry.attempts.
// Delivery is at least once: a row is claimed (leased) before it is sent and marked sent
// after the server took it, so a sender that dies in between leaves a row that is claimed
// again when its lease runs out and sent once more, with the same Message-ID.
import { randomBytes } from 'node:crypto';
import { hostname as osHostname } from 'node:os';
import type { Config } from '../lib/config.js';
import { FlightboxError, messageOf } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Claim, OutboxKind, OutboxRequest, OutboxRow, OutboxStatus } from '../store/index-db.js';
import type { Store } from '../store/store.js';
import { composeMail, sweepMailWork, type Composed } from './compose.js';
import { MAIL_STORM_WINDOW_MS, makeMessageId, retryDelayMs } from './outbox.js';
import { MailError, createMailTransport, describeMailError, type MailErrorCode, type MailTransport } from './transport.js';

/** How often the daemon looks for due mail even when nobody wakes it. */
export const DEFAULT_OUTBOX_POLL_MS = 15_000;
/**
 * A claimed row belongs to its sender this long (or 4 × mail.transport.timeout, if longer:
 * connecting, the greeting and each idle wait may take that long). When it runs out, another
 * sender may send the row again.
 */
export const DEFAULT_OUTBOX_LEASE_MS = 15 * 60_000;

export interface OutboxSenderOptions {
  /** the clock (tests move it past backoffs and storm windows) */
  now?: () => number;
  pollMs?: number;
  leaseMs?: number;
  /** the storm window digests describe; default MAIL_STORM_WINDOW_MS */
  windowMs?: number;
  /** a ready transport instead of one made from config.mail.transport */
  transport?: MailTransport;
  /** host name for From, Message-IDs of digests, the body and EHLO; default os.hostname() */
  hostname?: string;
}

/** What became of one row after an attempt. */
export interface Delivery {
  id: number;
  kind: OutboxKind;
  eventId: string | null;
  /** 'sent'; 'pending' (will be retried at nextAttemptAt); 'failed' (gave up); 'sending' (someone else has it) */
  status: OutboxStatus;
  messageId: string;
  attempts: number;
  error: string | null;
  nextAttemptAt: number | null;
}

function deliveryOf(r: OutboxRow): Delivery {
  return {
    id: r.id, kind: r.kind, eventId: r.event_id, status: r.status, messageId: r.message_id, attempts: r.attempts,
    error: r.status === 'sent' ? null : r.last_error, nextAttemptAt: r.status === 'pending' ? r.next_attempt_at : null,
  };
}

export class OutboxSender {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #pollMs: number;
  readonly #leaseMs: number | null;
  readonly #windowMs: number;
  readonly #host: string;
  readonly #injected: MailTransport | null;
  #config: Config;
  #transport: Promise<MailTransport> | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** passes run one after another; `#queued` coalesces wake-ups that arrive during one */
  #chain: Promise<unknown> = Promise.resolve();
  #queued = false;
  #stopped = false;
  #warnedNoTransport = false;

  constructor(store: Store, config: Config, log: Logger, opts: OutboxSenderOptions = {}) {
    this.#store = store;
    this.#config = config;
    this.#log = log;
    this.#now = opts.now ?? Date.now;
    this.#pollMs = opts.pollMs ?? DEFAULT_OUTBOX_POLL_MS;
    this.#leaseMs = opts.leaseMs ?? null;
    this.#windowMs = opts.windowMs ?? MAIL_STORM_WINDOW_MS;
    this.#host = opts.hostname ?? osHostname();
    this.#injected = opts.transport ?? null;
  }

  /**
   * Deliver due mail now and every poll. Pending mail is made due at once: a (re)start is
   * when a fixed transport config takes effect.
   */
  start(): void {
    if (this.#timer || this.#stopped) return;
    this.#retryNow();
    try {
      const n = sweepMailWork(this.#store.root, this.#lease());
      if (n > 0) this.#log.info({ removed: n }, 'Removed temporary mail archives left by senders that died');
    } catch (err) {
      this.#log.warn({}, 'Could not sweep temporary mail archives, ignoring: %s', messageOf(err));
    }
    this.#timer = setInterval(() => this.wake(), this.#pollMs);
    this.#timer.unref(); // the daemon's own timers keep it alive, not the outbox
    this.wake();
  }

  /** Look for due mail soon (after queueing some). Errors are logged, never thrown. */
  wake(): void {
    if (this.#stopped || this.#queued) return;
    this.#queued = true;
    this.flush().catch((err: unknown) => this.#log.warn({}, 'Outbox pass failed, will retry: %s', messageOf(err)));
  }

  /**
   * One pass, after any running one: make the digests that are due, then send every row that
   * is due. Resolves with what became of each row tried.
   */
  flush(): Promise<Delivery[]> {
    const run = this.#chain.then(() => {
      this.#queued = false;
      return this.#pass();
    });
    this.#chain = run.catch(() => {});
    return run;
  }

  /** Send one row now, whatever its next attempt (a pending or failed row, or an expired lease). */
  async deliver(id: number): Promise<Delivery> {
    const index = this.#store.index();
    const claim = this.#claim();
    const row = index.claimRow(id, this.#now(), claim);
    if (!row) {
      const r = index.outboxRow(id);
      if (!r) throw new FlightboxError('NOT_FOUND', `no mail ${id} in the outbox`);
      return deliveryOf(r);
    }
    return (await this.#send(row, claim.token)).delivery;
  }

  /**
   * Queue a mail already claimed by this sender and send it at once (`flightbox mail`): no
   * other sender can take it in between. A failure leaves it pending for the daemon.
   */
  async send(req: OutboxRequest): Promise<Delivery> {
    this.#requireTransport();
    const index = this.#store.index();
    const claim = this.#claim();
    const q = index.queueMail(req, this.#now(), claim);
    const row = q ? index.outboxRow(q.id) : index.outboxByKey(req.key);
    if (!row) throw new FlightboxError('INTERNAL', `the mail about ${req.eventId} vanished from the outbox`);
    if (row.status !== 'sending' || row.lease_token !== claim.token) return deliveryOf(row);
    return (await this.#send(row, claim.token)).delivery;
  }

  /** A new config (SIGHUP): a changed transport is rebuilt and pending mail tried at once. */
  setConfig(config: Config): void {
    const changed = JSON.stringify(config.mail.transport) !== JSON.stringify(this.#config.mail.transport);
    this.#config = config;
    if (changed) {
      void this.#transport?.then((t) => t.close(), () => {});
      this.#transport = null;
      this.#warnedNoTransport = false;
    }
    this.#retryNow();
    this.wake();
  }

  /** Stop polling, wait for the pass in progress, close the connection. Safe to call twice. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#chain.catch(() => {});
    const t = this.#transport;
    this.#transport = null;
    if (t) await t.then((x) => x.close(), () => {});
  }

  // -------------------------------------------------------------------------------------

  #lease(): number {
    const t = this.#config.mail.transport;
    return this.#leaseMs ?? Math.max(DEFAULT_OUTBOX_LEASE_MS, t?.kind === 'smtp' ? 4 * t.timeoutMs : 0);
  }

  #claim(): Claim {
    return { token: randomBytes(8).toString('hex'), leaseUntil: this.#now() + this.#lease() };
  }

  #retryNow(): void {
    try {
      this.#store.index().retryNow(this.#now());
    } catch (err) {
      this.#log.warn({}, 'Could not reschedule pending mail, ignoring: %s', messageOf(err));
    }
  }

  #hasTransport(): boolean {
    return this.#injected !== null || this.#config.mail.transport !== null;
  }

  #requireTransport(): void {
    if (!this.#hasTransport()) {
      throw new FlightboxError('CONFIG_INVALID', `mail.transport is not configured${this.#config.source ? ` in ${this.#config.source}` : ''}: no mail can be sent`);
    }
  }

  #transportName(): string {
    const t = this.#config.mail.transport;
    if (this.#injected) return this.#injected.name;
    if (!t) return 'no transport';
    return t.kind === 'sendmail' ? 'sendmail' : `smtp${t.secure ? 's' : ''}://${t.host}:${t.port ?? (t.secure ? 465 : 587)}`;
  }

  #getTransport(): Promise<MailTransport> {
    if (this.#injected) return Promise.resolve(this.#injected);
    const cfg = this.#config.mail.transport;
    if (!cfg) return Promise.reject(new MailError('NO_TRANSPORT', 'mail.transport is not configured: nothing can be sent'));
    if (!this.#transport) {
      const p = createMailTransport(cfg, { hostname: this.#host });
      // A transport that could not be made (an unreadable CA file) is made again next time.
      p.catch(() => { if (this.#transport === p) this.#transport = null; });
      this.#transport = p;
    }
    return this.#transport;
  }

  async #pass(): Promise<Delivery[]> {
    if (!this.#hasTransport()) {
      // Nothing is queued without a transport; rows from before it was removed wait for one.
      if (!this.#warnedNoTransport) this.#log.info({}, 'mail.transport is not configured: the outbox is not sent');
      this.#warnedNoTransport = true;
      return [];
    }
    const index = this.#store.index();
    const digests = index.makeDigests(this.#now(), () => makeMessageId(null, this.#host));
    if (digests.length > 0) this.#log.info({ digests: digests.join(',') }, 'Storm control: %d digest(s) queued', digests.length);
    const out: Delivery[] = [];
    // One row at a time, each with a fresh lease: a slow pass never outlives the lease of a
    // row it has not reached yet, and other senders can take what this one has not claimed.
    while (!this.#stopped) {
      const claim = this.#claim();
      const [row] = index.claimDue(this.#now(), { claim, limit: 1, maxAttempts: this.#config.mail.retry.attempts });
      if (!row) break;
      const r = await this.#send(row, claim.token);
      out.push(r.delivery);
      // A server that does not answer is waited for once per pass, not once per row: the
      // rest stay due (unclaimed, their attempts untouched) for the next pass.
      if (r.code === 'ETIMEDOUT') break;
    }
    return out;
  }

  /** Compose and send a row this sender has claimed; record the outcome. Never throws. */
  async #send(row: OutboxRow, token: string): Promise<{ delivery: Delivery; code: MailErrorCode | null }> {
    const index = this.#store.index();
    const to = (JSON.parse(row.recipients) as string[]).join(', ');
    let composed: Composed | null = null;
    let code: MailErrorCode | null = null;
    try {
      const transport = await this.#getTransport();
      composed = await composeMail(this.#store, this.#config, row, { hostname: this.#host, windowMs: this.#windowMs });
      const info = await transport.send(composed.mail);
      index.markSent(row.id, this.#now(), info.response);
      this.#log.info({ outbox: row.id, event: row.event_id ?? '', kind: row.kind, to, messageId: row.message_id }, 'Mail sent via %s', transport.name);
    } catch (err) {
      const e = describeMailError(err, this.#transportName());
      code = e.code;
      const giveUp = e.permanent || row.attempts >= this.#config.mail.retry.attempts;
      const retryAt = giveUp ? null : this.#now() + retryDelayMs(row.attempts, this.#config.mail.retry.backoffMs);
      if (!index.markAttemptFailed(row.id, token, e.message, retryAt)) {
        this.#log.warn({ outbox: row.id }, 'Mail %d: another sender took it over while this one failed: %s', row.id, e.message);
      }
      this.#log.warn(
        { outbox: row.id, event: row.event_id ?? '', attempt: row.attempts, code: e.code },
        giveUp ? 'Mail failed, giving up: %s' : 'Mail failed, will retry: %s', e.message,
      );
    } finally {
      composed?.cleanup();
    }
    const now = index.outboxRow(row.id);
    return { delivery: deliveryOf(now ?? row), code };
  }
}
