// Mail end to end through the daemon: a real crash through the kernel core_pattern is
// queued by the handler and delivered by the daemon's sender; a rule's mail action mails
// its snapshot event. A real SMTP server (smtp-server) runs in the test process.
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { IS_ROOT, buildCrasher, makeTempStore, runCli, waitFor, type TempStore } from '../helpers.js';
import { noSysctlDropIn, startDaemon, stopDaemon, waitRunning, type DaemonProc } from './daemon-proc.js';
import { crash, restoreKernelState, saveKernelState } from './kernel.js';

async function smtp(): Promise<{ port: number; mails: Buffer[]; close: () => Promise<void> }> {
  const mails: Buffer[] = [];
  const server = new SMTPServer({
    secure: false, authOptional: true, disabledCommands: ['STARTTLS'], logger: false,
    onData(stream, _session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (d: Buffer) => chunks.push(d));
      stream.on('end', () => { mails.push(Buffer.concat(chunks)); cb(); });
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.server.address() as { port: number }).port;
  return { port, mails, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe.skipIf(!IS_ROOT)('mail through the daemon', () => {
  let store: TempStore | undefined;
  let daemon: DaemonProc | undefined;
  let server: Awaited<ReturnType<typeof smtp>> | undefined;
  let scratch: string | undefined;
  afterEach(async () => {
    try {
      await stopDaemon(daemon);
      await server?.close();
    } finally {
      store?.cleanup();
      if (scratch) rmSync(scratch, { recursive: true, force: true });
      daemon = undefined;
      server = undefined;
      store = undefined;
    }
  });

  it('a crash and a rule each mail once, with the bundle attached', async () => {
    const saved = saveKernelState();
    try {
      server = await smtp();
      scratch = mkdtempSync(join(tmpdir(), 'fbx-maild-'));
      const log = join(scratch, 'app.log');
      writeFileSync(log, '');
      store = makeTempStore([
        'recorders:',
        '  metrics: { interval: 200ms, window: 5s }',
        '  ftrace: { enabled: false }',
        'mail:',
        `  transport: { host: 127.0.0.1, port: ${server.port} }`,
        '  from: flightbox@test.example',
        '  to: [ops@example.com]',
        'rules:',
        '  - name: api-errors',
        `    when: { log: { path: ${log}, match: 'FATAL (?<code>\\d+)' } }`,
        '    do: [snapshot, { mail: { to: [dev@example.com] } }]',
        '',
      ].join('\n'));
      noSysctlDropIn(store);
      daemon = startDaemon(store);
      await waitRunning(daemon);

      const bin = buildCrasher('segv');
      const c = await crash(bin);
      await waitFor('the crash mail', () => server!.mails.length >= 1, 60_000, 250);
      const crashMail: ParsedMail = await simpleParser(server.mails[0]!);
      expect(crashMail.to && 'text' in crashMail.to ? crashMail.to.text : '').toContain('ops@example.com');
      expect(crashMail.subject).toMatch(new RegExp(`${bin.replace(/[/.]/g, '\\$&')} crashed \\(SIGSEGV\\)`));
      expect(crashMail.text).toContain('flightbox_crash_here');
      const id = (JSON.parse(runCli(['--config', store.configPath, 'list', '--pid', String(c.pid), '--json']).stdout) as { id: string }[])[0]!.id;
      expect(crashMail.attachments.map((a) => a.filename)).toEqual([`${id}.tar.gz`]);

      appendFileSync(log, 'FATAL 503 upstream gone\n');
      await waitFor('the rule mail', () => server!.mails.length >= 2, 30_000, 250);
      const ruleMail = await simpleParser(server.mails[1]!);
      expect(ruleMail.to && 'text' in ruleMail.to ? ruleMail.to.text : '').toContain('dev@example.com');
      expect(ruleMail.subject).toMatch(/rule api-errors fired: FATAL 503 upstream gone/);
      await new Promise((r) => setTimeout(r, 1500));
      expect(server.mails).toHaveLength(2); // each once
      const outbox = JSON.parse(runCli(['--config', store.configPath, 'outbox', '--all', '--json']).stdout) as { status: string }[];
      expect(outbox.map((o) => o.status)).toEqual(['sent', 'sent']);
    } finally {
      await stopDaemon(daemon);
      restoreKernelState(saved);
    }
  });
});
