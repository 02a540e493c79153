// How a mail leaves the host: a tiny interface (send one message, close), made from
// mail.transport with nodemailer (SMTP or the local sendmail), and one table of delivery
// errors saying what each means and whether trying again can help.
import { readFileSync } from 'node:fs';
import type { MailTransportConfig } from '../lib/config.js';
import { escapeControl } from '../lib/escape.js';
import { messageOf } from '../lib/errors.js';

export interface OutgoingMail {
  from: string;
  to: string[];
  subject: string;
  text: string;
  /** "<...@...>", stable for one outbox row across its retries */
  messageId: string;
  /** extra headers; values are ours (ids, rule names), never hostile text */
  headers: Record<string, string>;
  attachments: { filename: string; path: string; contentType: string }[];
}

export interface MailTransport {
  /** "smtp://mail.example.com:587" or "sendmail": for messages */
  readonly name: string;
  /** Hand one message over; resolves once the server (or sendmail) has accepted it. */
  send(mail: OutgoingMail): Promise<{ messageId: string; response: string | null }>;
  /** Safe to call twice. */
  close(): void;
}

/** Delivery errors: a stable code, what it means, and whether a later attempt can succeed. */
export const MAIL_ERRORS = {
  // Transient: the server or the network may be back later.
  ECONNECTION: { retry: true, what: 'cannot connect to' },
  ETIMEDOUT: { retry: true, what: 'timed out talking to' },
  ESOCKET: { retry: true, what: 'connection failed to' },
  EDNS: { retry: true, what: 'cannot resolve the host of' },
  EPROTOCOL: { retry: true, what: 'unexpected answer from' },
  ESTREAM: { retry: true, what: 'could not stream the message to' },
  // A configuration problem: retried, because a reload with the right settings fixes it.
  EAUTH: { retry: true, what: 'authentication failed at' },
  ENOAUTH: { retry: true, what: 'no credentials (mail.transport.auth) for' },
  ETLS: { retry: true, what: 'TLS failed with' },
  ESENDMAIL: { retry: true, what: 'sendmail failed:' },
  // The server refused the message or its recipients: permanent for 5xx, transient for 4xx.
  EENVELOPE: { retry: true, what: 'recipients or sender refused by' },
  EMESSAGE: { retry: true, what: 'message refused by' },
  // Ours.
  BUNDLE_GONE: { retry: false, what: "the event's bundle is gone:" },
  COMPOSE: { retry: true, what: 'could not prepare the mail:' },
  NO_TRANSPORT: { retry: true, what: 'mail.transport is not configured:' },
  UNKNOWN: { retry: true, what: 'delivery failed via' },
} as const;

export type MailErrorCode = keyof typeof MAIL_ERRORS;

export class MailError extends Error {
  readonly code: MailErrorCode;
  readonly permanent: boolean;
  constructor(code: MailErrorCode, message: string, opts: { permanent?: boolean; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'MailError';
    this.code = code;
    this.permanent = opts.permanent ?? !MAIL_ERRORS[code].retry;
  }
}

interface NodemailerLikeError {
  code?: string;
  response?: string;
  responseCode?: number;
  permanent?: boolean;
  originalCode?: string;
  message?: string;
}

/**
 * One sentence for the outbox and the CLI, and whether retrying can help. The server's
 * answer is quoted (escaped: it is the server's text, not ours).
 */
export function describeMailError(err: unknown, transportName: string): { code: MailErrorCode; message: string; permanent: boolean } {
  if (err instanceof MailError) return { code: err.code, message: err.message, permanent: err.permanent };
  const e = (typeof err === 'object' && err !== null ? err : {}) as NodemailerLikeError;
  const code: MailErrorCode = e.code !== undefined && e.code in MAIL_ERRORS ? (e.code as MailErrorCode) : 'UNKNOWN';
  const detail = escapeControl((e.response ?? (typeof e.message === 'string' ? e.message : messageOf(err))).trim(), 400);
  const why = e.originalCode && !detail.includes(e.originalCode) ? ` (${e.originalCode})` : '';
  // A 5xx answer to the message or its recipients is final; 4xx, 503 and no answer are not.
  // Authentication is the exception: a 535 is fixed by correcting the config.
  const permanent = (code === 'EENVELOPE' || code === 'EMESSAGE') && e.permanent === true;
  return { code, message: `${MAIL_ERRORS[code].what} ${transportName}: ${detail}${why}`, permanent };
}

export interface TransportOptions {
  /** the EHLO name */
  hostname?: string;
}

/** A transport for mail.transport. nodemailer is loaded here, on first use only. */
export async function createMailTransport(cfg: MailTransportConfig, opts: TransportOptions = {}): Promise<MailTransport> {
  const nodemailer = (await import('nodemailer')).default;
  let transporter: ReturnType<typeof nodemailer.createTransport>;
  let name: string;
  if (cfg.kind === 'sendmail') {
    name = cfg.path ? `sendmail (${cfg.path})` : 'sendmail';
    transporter = nodemailer.createTransport({ sendmail: true, newline: 'unix', ...(cfg.path ? { path: cfg.path } : {}) });
  } else {
    const port = cfg.port ?? (cfg.secure ? 465 : 587);
    name = `smtp${cfg.secure ? 's' : ''}://${cfg.host}:${port}`;
    let ca: Buffer | undefined;
    if (cfg.ca) {
      try {
        ca = readFileSync(cfg.ca);
      } catch (err) {
        throw new MailError('ETLS', `cannot read mail.transport.ca ${JSON.stringify(cfg.ca)}: ${messageOf(err)}`);
      }
    }
    transporter = nodemailer.createTransport({
      host: cfg.host,
      port,
      secure: cfg.secure,
      requireTLS: cfg.requireTLS,
      ...(cfg.auth ? { auth: { user: cfg.auth.user, pass: cfg.auth.pass } } : {}),
      ...(ca ? { tls: { ca } } : {}),
      connectionTimeout: cfg.timeoutMs,
      greetingTimeout: cfg.timeoutMs,
      socketTimeout: cfg.timeoutMs,
      dnsTimeout: cfg.timeoutMs,
      ...(opts.hostname ? { name: opts.hostname } : {}),
      // Attachments are files we wrote; nothing is ever fetched from a URL.
      disableUrlAccess: true,
      logger: false,
    });
  }
  let closed = false;
  return {
    name,
    async send(mail) {
      const info = await transporter.sendMail({
        from: mail.from,
        to: mail.to,
        subject: mail.subject,
        text: mail.text,
        messageId: mail.messageId,
        headers: mail.headers,
        attachments: mail.attachments.map((a) => ({ filename: a.filename, path: a.path, contentType: a.contentType })),
      });
      const i = info as { messageId?: string; response?: string | Buffer; rejected?: unknown[] };
      const rejected = Array.isArray(i.rejected) && i.rejected.length > 0 ? ` (refused: ${i.rejected.map(String).join(', ')})` : '';
      const response = typeof i.response === 'string' ? `${i.response}${rejected}` : rejected || null;
      return { messageId: i.messageId ?? mail.messageId, response };
    },
    close() {
      if (closed) return;
      closed = true;
      transporter.close();
    },
  };
}
