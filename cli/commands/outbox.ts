// flightbox outbox: mail waiting to be sent (pending, being sent, held for a digest) and mail
// that failed, with the last error and the next attempt; --all adds what was sent.
import { escapeControl } from '../../lib/escape.js';
import { outboxJson } from '../../notify/outbox.js';
import type { OutboxRow } from '../../store/index-db.js';
import { invocation } from '../args.js';
import { loadCliConfig, openStoreForQuery } from '../context.js';
import { formatTime, table } from '../format.js';

function when(r: OutboxRow): string {
  switch (r.status) {
    case 'pending': return r.next_attempt_at === null ? '-' : formatTime(r.next_attempt_at);
    case 'held': return r.next_attempt_at === null ? 'in a digest' : `digest ${formatTime(r.next_attempt_at)}`;
    case 'sending': return 'now';
    case 'sent': return r.sent_at === null ? '-' : `sent ${formatTime(r.sent_at)}`;
    case 'digested': return `in digest ${r.digest_id ?? '?'}`;
    case 'failed': return 'gave up';
  }
}

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<{ json?: boolean; all?: boolean }>(args);
  const { config } = loadCliConfig(opts);
  const store = openStoreForQuery(config);
  try {
    const rows = store.index().listOutbox({ all: opts.all === true });
    const max = config.mail.retry.attempts;
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(rows.map((r) => outboxJson(r, max)), null, 2)}\n`);
      return 0;
    }
    if (config.mail.transport === null && rows.some((r) => r.status === 'pending' || r.status === 'held')) {
      process.stderr.write('Note: mail.transport is not configured, so nothing in the outbox is sent.\n');
    }
    if (rows.length === 0) {
      process.stderr.write(opts.all ? 'The outbox is empty.\n' : 'No mail is waiting or failed.\n');
      return 0;
    }
    process.stdout.write(`${table(
      ['ID', 'STATUS', 'KIND', 'EVENT', 'TO', 'TRIES', 'NEXT', 'LAST ERROR'],
      rows.map((r) => [
        String(r.id),
        r.status,
        r.kind === 'rule' && r.rule ? `rule ${r.rule}` : r.kind,
        r.event_id ?? '-',
        (JSON.parse(r.recipients) as string[]).join(','),
        `${r.attempts}/${max}`,
        when(r),
        r.last_error ? escapeControl(r.last_error, 300) : '-',
      ]),
    )}\n`);
    return 0;
  } finally {
    store.close();
  }
}
