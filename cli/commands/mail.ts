// flightbox mail ID --to ADDR...: mail an event now. The mail is queued (claimed by this
// process, so the daemon cannot send it too) and delivered at once; when delivery fails it
// stays in the outbox, and the daemon retries it.
import { MAX_MAIL_RECIPIENTS } from '../../lib/config.js';
import { isMailAddress } from '../../lib/mail-address.js';
import { escapeControl } from '../../lib/escape.js';
import { FlightboxError } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { manualMailRequest } from '../../notify/outbox.js';
import { OutboxSender } from '../../notify/sender.js';
import { invocation } from '../args.js';
import { loadCliConfig, openStoreForQuery } from '../context.js';
import { formatTime } from '../format.js';

export async function run(...args: unknown[]): Promise<number> {
  const { positional, opts } = invocation<{ to: string[] }>(args);
  const id = positional[0] ?? '';
  const to = [...new Set(opts.to ?? [])];
  for (const a of to) {
    if (!isMailAddress(a)) {
      throw new FlightboxError('USAGE', `--to: ${JSON.stringify(a)} is not a mail address such as ops@example.com`);
    }
  }
  if (to.length === 0) throw new FlightboxError('USAGE', '--to: at least one recipient is needed');
  if (to.length > MAX_MAIL_RECIPIENTS) throw new FlightboxError('USAGE', `--to: at most ${MAX_MAIL_RECIPIENTS} recipients, got ${to.length}`);
  const { config } = loadCliConfig(opts);
  if (config.mail.transport === null) {
    throw new FlightboxError('CONFIG_INVALID', `mail.transport is not configured${config.source ? ` in ${config.source}` : ' (no config file)'}: nothing can be sent`);
  }
  const store = openStoreForQuery(config);
  const sender = new OutboxSender(store, config, createLogger({ file: store.logFile, component: 'mail' }));
  try {
    const event = store.index().resolve(id);
    const d = await sender.send(manualMailRequest(event.id, to));
    if (d.status === 'sent') {
      process.stdout.write(`Mailed ${event.id} to ${to.join(', ')} (Message-ID ${d.messageId}).\n`);
      return 0;
    }
    const next = d.status === 'pending' && d.nextAttemptAt !== null
      ? `it stays in the outbox as mail ${d.id} and the daemon tries again after ${formatTime(d.nextAttemptAt)}`
      : `it is marked failed in the outbox as mail ${d.id}`;
    throw new FlightboxError('MAIL_FAILED', `could not mail ${event.id}: ${escapeControl(d.error ?? 'unknown error', 600)}; ${next} (flightbox outbox)`);
  } finally {
    await sender.stop();
    store.close();
  }
}
