// Mail rendering from tables: subject templates, header sanitizing of hostile fields, the
// body with and without a stack trace and flight-recorder metrics, digests; and the pure
// helpers around them (mail config validation, retry backoff, the delivery-error table).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_MAIL_RULE_SUBJECT, DEFAULT_MAIL_SUBJECT, defaultConfig, loadConfig } from '../../lib/config.js';
import { MAX_MAIL_RETRY_BACKOFF_MS, crashMailRequests, makeMessageId, manualMailRequest, ruleMailRequest, retryDelayMs } from '../../notify/outbox.js';
import {
  MAX_BODY_FRAMES, MAX_DIGEST_ITEMS, MAX_SUBJECT_CHARS, digestSubject, headerSafe, renderBody, renderDigest, renderSubject, subjectFields,
  type BodyInput, type SubjectFields,
} from '../../notify/render.js';
import { MailError, describeMailError } from '../../notify/transport.js';
import type { DigestItem } from '../../store/index-db.js';
import type { Manifest } from '../../store/manifest.js';

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200b-\u200f]/;

function manifest(over: Partial<Manifest> = {}): Manifest {
  return {
    version: 1,
    id: '20261126T065442-3040-fc7ab4',
    kind: 'crash',
    time: '2026-11-26T06:54:42.000Z',
    timeMs: Date.parse('2026-11-26T06:54:42.000Z'),
    capturedAt: '2026-11-26T06:54:42.100Z',
    host: { hostname: 'web1', bootId: 'b0075', kernel: '6.1.0-test', machineId: null },
    process: {
      pid: 3040, pidInNamespace: 3040, tid: 3040, tidInNamespace: 3040, ppid: 1, uid: 33, gid: 33, signal: 11, signalName: 'SIGSEGV',
      comm: 'nginx', exe: '/usr/sbin/nginx', cmdline: ['/usr/sbin/nginx', '-g', 'daemon off;'], cwd: '/', root: '/', cgroup: '/system.slice/nginx.service',
      unit: 'nginx.service', namespaces: {}, inContainer: false, hostnameInNamespace: 'web1', dumpable: 1, rlimitCore: null, threads: 1,
      fdCount: 5, startTimeTicks: 1, procVerified: true,
    },
    core: { stored: true, file: 'core.zst', compression: 'zstd', size: 3_000_000, storedSize: 300_000, truncated: false, reason: null, limitBytes: null, sparseBytes: 0, elf: true },
    backtrace: {
      tool: 'eu-stack', file: 'backtrace.txt', crashingTid: 3040, threads: 1,
      frames: [
        { fn: 'ngx_http_parse', module: '/usr/sbin/nginx', addr: '0x55d1', source: 'src/http/ngx_http_parse.c:42' },
        { fn: 'ngx_http_process', module: '/usr/sbin/nginx', addr: '0x55d2', source: null },
        { fn: null, module: null, addr: '0x7f00', source: null },
      ],
    },
    signature: { text: 'nginx!SIGSEGV!ngx_http_parse!ngx_http_process', hash: '0123456789abcdef0123456789abcdef' },
    modules: [],
    rule: null,
    warnings: [],
    timings: {},
    files: [{ path: 'core.zst', size: 300_000, sha256: 'x', mode: '600' }],
    handler: { version: '0.1.0', pid: 1 },
    ...over,
  };
}

function body(over: Partial<BodyInput> = {}): BodyInput {
  const m = over.manifest ?? manifest();
  return {
    kind: 'crash', manifest: m, rule: null, reason: null, location: `web1:/var/lib/flightbox/bundles/2026-11-26/${m.id}`,
    cmdline: m.process?.cmdline ?? null, metricsSummary: null, attachment: { kind: 'full', filename: `${m.id}.tar.gz`, bytes: 123_456 },
    redact: true, maxAttachmentBytes: 10_000_000, version: '0.1.0', ...over,
  };
}

const FIELDS: SubjectFields = {
  host: 'web1', exe: '/usr/sbin/nginx', comm: 'nginx', pid: '3040', uid: '33', signal: 'SIGSEGV', id: 'ID', signature: '0123456789ab',
  time: '2026-11-26T06:54:42.000Z', kind: 'crash', rule: '?', reason: '?',
};

describe('renderSubject', () => {
  it.each([
    ['the default crash template', DEFAULT_MAIL_SUBJECT, {}, '[flightbox] web1: /usr/sbin/nginx crashed (SIGSEGV)'],
    ['the default rule template', DEFAULT_MAIL_RULE_SUBJECT, { rule: 'mysqld-rss', reason: 'process.rss 3 GiB above 2 GiB' },
      '[flightbox] web1: rule mysqld-rss fired: process.rss 3 GiB above 2 GiB'],
    ['every field', '{host} {exe} {comm} {pid} {uid} {signal} {id} {signature} {time} {kind}', {},
      'web1 /usr/sbin/nginx nginx 3040 33 SIGSEGV ID 0123456789ab 2026-11-26T06:54:42.000Z crash'],
    ['an unknown field stays as written', 'x {nope} {host}', {}, 'x {nope} web1'],
    ['no fields at all', 'crash!', {}, 'crash!'],
    ['repeated spaces are folded', '{host}   {comm}', {}, 'web1 nginx'],
    ['CR/LF and a Bcc header in exe become visible escapes', '{exe} crashed', { exe: '/tmp/x\r\nBcc: x@evil.example' },
      '/tmp/x\\x0d\\x0aBcc: x@evil.example crashed'],
    ['a bare LF in comm', '[{comm}]', { comm: 'a\nTo: y@evil' }, '[a\\x0aTo: y@evil]'],
    ['NUL, ESC and DEL', '{comm}', { comm: 'a\0b\x1b[31mc\x7f' }, 'a\\x00b\\x1b[31mc\\x7f'],
    ['a C1 control (CSI)', '{comm}', { comm: 'a\u009bb' }, 'a\\x9bb'],
    ['unicode line separators and bidi overrides', '{reason}', { reason: 'a\u2028b\u202ec' }, 'a\\u{2028}b\\u{202e}c'],
    ['non-ASCII text is kept (nodemailer encodes it)', '{comm} ✓', { comm: 'café' }, 'café ✓'],
    ['a long exe keeps its end', '{exe}', { exe: `/${'d/'.repeat(100)}prog` }, `…${`/${'d/'.repeat(100)}prog`.slice(-99)}`],
  ] as [string, string, Partial<SubjectFields>, string][])('%s', (_name, template, over, expected) => {
    const s = renderSubject(template, { ...FIELDS, ...over });
    expect(s).toBe(expected);
    expect(s).not.toMatch(CONTROL);
  });

  it('a subject never exceeds MAX_SUBJECT_CHARS, whatever the fields', () => {
    const s = renderSubject('{exe}{comm}{reason}{rule}{host}', { ...FIELDS, exe: 'e'.repeat(500), comm: 'c'.repeat(500), reason: 'r\n'.repeat(500) });
    expect([...s].length).toBeLessThanOrEqual(MAX_SUBJECT_CHARS);
    expect(s).not.toMatch(CONTROL);
  });
});

describe('headerSafe', () => {
  it.each([
    ['plain', 'nginx', 'nginx'],
    ['CRLF', 'a\r\nb', 'a\\x0d\\x0ab'],
    ['tab', 'a\tb', 'a\\x09b'],
    ['backslash is escaped too (escapes stay unambiguous)', 'a\\x0d', 'a\\\\x0d'],
    ['zero-width space', 'a\u200bb', 'a\\u{200b}b'],
    ['a lone surrogate', 'a\ud800b', 'a\\u{d800}b'],
  ])('%s', (_n, input, expected) => {
    expect(headerSafe(input)).toBe(expected);
  });

  it('cuts at max characters keeping the end', () => {
    expect(headerSafe('abcdefghij', 5)).toBe('…ghij');
  });
});

describe('subjectFields', () => {
  it('a crash: every field from the manifest', () => {
    expect(subjectFields(manifest())).toEqual({
      host: 'web1', exe: '/usr/sbin/nginx', comm: 'nginx', pid: '3040', uid: '33', signal: 'SIGSEGV', id: '20261126T065442-3040-fc7ab4',
      signature: '0123456789ab', time: '2026-11-26T06:54:42.000Z', kind: 'crash', rule: '?', reason: '?',
    });
  });

  it.each([
    ['a snapshot: no process fields, rule and reason', manifest({ kind: 'snapshot', process: null, core: null, backtrace: null, signature: null, rule: 'load', reason: 'load1 9 above 8' }),
      { exe: '?', comm: '?', pid: '?', signal: '?', signature: '?', rule: 'load', reason: 'load1 9 above 8', kind: 'snapshot' }],
    ['no exe: the comm in parentheses', manifest({ process: { ...manifest().process!, exe: null } }), { exe: '(nginx)' }],
    ['no exe and no comm', manifest({ process: { ...manifest().process!, exe: null, comm: null } }), { exe: '?', comm: '?' }],
  ] as [string, Manifest, Partial<SubjectFields>][])('%s', (_n, m, expected) => {
    expect(subjectFields(m)).toMatchObject(expected);
  });

  it('a rule mail about a crash names the rule and reason it was given', () => {
    expect(subjectFields(manifest(), { rule: 'nginx-crash', reason: 'crash of /usr/sbin/nginx' })).toMatchObject({ rule: 'nginx-crash', reason: 'crash of /usr/sbin/nginx' });
  });
});

const SUMMARY = [
  'flightbox metrics: 600 samples over 10 min (1 s interval)',
  'from 2026-11-26T06:44:42.000Z to 2026-11-26T06:54:42.000Z',
  '',
  '                          min      avg      max     last',
  'load 1 min               0.10     0.50     3.20     3.20',
  '',
  'top processes by CPU (last sample):',
  '       pid    cpu %        rss  comm',
  '      3040     99.0    1.2 GiB  "nginx"',
].join('\n');

describe('renderBody', () => {
  it.each([
    ['with a stack trace and metrics', body({ metricsSummary: SUMMARY }), [
      'A process crashed on web1: /usr/sbin/nginx, signal 11 (SIGSEGV).',
      '  event      20261126T065442-3040-fc7ab4',
      '  executable /usr/sbin/nginx',
      '  process    "nginx", pid 3040, uid 33, gid 33',
      '  command    /usr/sbin/nginx -g daemon off;',
      '  signature  0123456789abcdef nginx!SIGSEGV!ngx_http_parse!ngx_http_process',
      '  core       2.9 MiB (zstd, 293 KiB stored)',
      'Stack trace of the crashing thread (thread 3040), eu-stack:',
      '  #0  0x55d1 ngx_http_parse in /usr/sbin/nginx at src/http/ngx_http_parse.c:42',
      '  #1  0x55d2 ngx_http_process in /usr/sbin/nginx',
      '  #2  0x7f00 ??',
      'Before the crash, the flight recorder saw:',
      '  load 1 min               0.10     0.50     3.20     3.20',
      '        3040     99.0    1.2 GiB  "nginx"',
      'Attached: 20261126T065442-3040-fc7ab4.tar.gz (121 KiB), the whole bundle, without environ and with secrets in command lines masked.',
      'On web1: flightbox info 20261126T065442-3040-fc7ab4; flightbox debug 20261126T065442-3040-fc7ab4',
    ], ['No stack trace', 'No metrics']],
    ['without a stack trace or metrics', body({ manifest: manifest({ backtrace: null }) }), [
      'No stack trace was taken (see the warnings).',
      'No metrics from the flight recorder are in this bundle.',
    ], ['Stack trace of', 'flight recorder saw']],
    ['a backtrace with no frames', body({ manifest: manifest({ backtrace: { tool: 'gdb', file: 'backtrace.txt', crashingTid: null, frames: [], threads: 0 } }) }),
      ['No stack trace was taken'], ['#0']],
    ['only the top frames', body({ manifest: manifest({ backtrace: { ...manifest().backtrace!, frames: Array.from({ length: 30 }, (_, i) => ({ fn: `f${i}`, module: null, addr: null, source: null })) } }) }),
      [`  #${MAX_BODY_FRAMES - 1}`.padEnd(6) + `f${MAX_BODY_FRAMES - 1}`, `... ${30 - MAX_BODY_FRAMES} more frame(s) in backtrace.txt`], [`f${MAX_BODY_FRAMES}\n`]],
    ['the archive without its core', body({ attachment: { kind: 'no-core', filename: 'x-nocore.tar.gz', bytes: 2048, fullBytes: 50_000_000 } }), [
      'Attached: x-nocore.tar.gz (2.0 KiB), the bundle without the core dump, without environ and with secrets in command lines masked:',
      'with the core it is 48 MiB, over mail.maxAttachment (9.5 MiB).',
      'The full bundle is on web1:/var/lib/flightbox/bundles/2026-11-26/20261126T065442-3040-fc7ab4',
    ], ['the whole bundle']],
    ['no archive at all', body({ attachment: { kind: 'none', why: 'even without the core the bundle is 12 MiB as a tar.gz, over mail.maxAttachment (9.5 MiB)' } }), [
      'Nothing is attached: even without the core the bundle is 12 MiB as a tar.gz, over mail.maxAttachment (9.5 MiB).',
      'The bundle is on web1:/var/lib/flightbox/bundles/2026-11-26/20261126T065442-3040-fc7ab4',
    ], ['Attached:']],
    ['not redacted', body({ redact: false }), ['the whole bundle.'], ['without environ']],
    ['a rule mail about a snapshot', body({
      kind: 'rule', rule: 'load', reason: 'load1 9.1 above 8 for 1m',
      manifest: manifest({ kind: 'snapshot', process: null, core: null, backtrace: null, signature: null, rule: 'load', reason: 'load1 9.1 above 8 for 1m', labels: { pid: '77' } }),
      metricsSummary: SUMMARY,
    }), [
      'Rule load fired on web1: load1 9.1 above 8 for 1m.',
      '  rule       load',
      '  label      pid=77',
      'The flight recorder saw:',
    ], ['Stack trace', 'executable', 'flightbox debug', 'reason     ']],
    ['warnings are listed', body({ manifest: manifest({ warnings: ['no flight-recorder snapshot: the flightbox daemon is not running'] }) }),
      ['Warnings (1):', '  - no flight-recorder snapshot: the flightbox daemon is not running'], []],
  ] as [string, BodyInput, string[], string[]][])('%s', (_n, input, has, hasNot) => {
    const text = renderBody(input);
    const lines = text.split('\n');
    for (const h of has) expect(text, h).toContain(h);
    for (const h of hasNot) expect(text, h).not.toContain(h);
    for (const l of lines) expect(l).not.toMatch(CONTROL);
    expect(text.endsWith('\n')).toBe(true);
  });

  it('hostile exe, comm, cmdline, reason and labels cannot add lines to the body', () => {
    const evil = 'x\r\nBcc: x@evil.example\r\n\r\nforged';
    const m = manifest({
      process: { ...manifest().process!, exe: `/tmp/${evil}`, comm: evil.slice(0, 15), cmdline: [`/tmp/${evil}`, evil] },
      backtrace: { ...manifest().backtrace!, frames: [{ fn: evil, module: evil, addr: null, source: evil }] },
      signature: { text: evil, hash: 'ab' },
      warnings: [evil],
      labels: { [evil]: evil },
      reason: evil,
    });
    const text = renderBody(body({ manifest: m, cmdline: m.process!.cmdline, metricsSummary: `top: ${evil}` }));
    for (const l of text.split('\n')) {
      expect(l).not.toMatch(CONTROL);
      expect(l.startsWith('Bcc:')).toBe(false);
      expect(l.startsWith('forged')).toBe(false);
    }
    expect(text).toContain('x\\x0d\\x0aBcc: x@evil.example\\x0d\\x0a\\x0d\\x0aforged');
  });
});

describe('digests', () => {
  const item = (i: number, over: Partial<DigestItem> = {}): DigestItem => ({
    id: i, event_id: `20261126T0654${String(i % 60).padStart(2, '0')}-${1000 + i}-abcdef`, kind: 'crash', rule: null, reason: null,
    created_at: 1_700_000_000_000 + i, time: 1_700_000_000_000 + i, exe: '/usr/bin/storm', comm: 'storm', pid: 1000 + i, signal_name: 'SIGSEGV',
    signature_text: 'storm!SIGSEGV!main', event_reason: null, ...over,
  });

  it('lists every event, one line each', () => {
    const items = [item(1), item(2, { exe: null, comm: 'a\nb' }), item(3, { time: null, exe: null, comm: null, pid: null, signal_name: null, signature_text: null })];
    const text = renderDigest({ host: 'web1', group: 'crash', windowStart: 1_700_000_000_000, windowMs: 3_600_000, maxPerHour: 10, items, version: '0.1.0' });
    expect(text).toContain('3 events of crashes on web1 were not mailed one by one:');
    expect(text).toContain('mail.maxPerHour allows 10 mails per 60 min');
    expect(text).toContain(`  ${new Date(1_700_000_000_001).toISOString()}  ${items[0]!.event_id}  /usr/bin/storm, pid 1001, SIGSEGV, storm!SIGSEGV!main`);
    expect(text).toContain('(a\\x0ab), pid 1002');
    expect(text).toContain('(no longer in the index)');
    for (const l of text.split('\n')) expect(l).not.toMatch(CONTROL);
  });

  it(`lists at most ${MAX_DIGEST_ITEMS} events and counts the rest`, () => {
    const items = Array.from({ length: MAX_DIGEST_ITEMS + 7 }, (_, i) => item(i));
    const text = renderDigest({ host: 'web1', group: 'rule:load', windowStart: 0, windowMs: 3_600_000, maxPerHour: 1, items, version: '0.1.0' });
    expect(text).toContain(`${MAX_DIGEST_ITEMS + 7} events of rule load on web1`);
    expect(text).toContain('... and 7 more');
    expect(text.split('\n').filter((l) => l.startsWith('  19') || l.startsWith('  20')).length).toBe(MAX_DIGEST_ITEMS);
  });

  it.each([
    ['crash', 3, '[flightbox] web1: 3 more crashes not mailed one by one'],
    ['crash', 1, '[flightbox] web1: 1 more crash not mailed one by one'],
    ['rule:api-errors', 2, '[flightbox] web1: 2 more events of rule api-errors not mailed one by one'],
  ])('subject for group %s', (group, n, expected) => {
    expect(digestSubject({ host: 'web1', group, items: Array.from({ length: n }, (_, i) => item(i)) })).toBe(expected);
  });
});

describe('outbox requests', () => {
  const withMail = () => {
    const c = defaultConfig();
    c.mail.transport = { kind: 'sendmail', path: null };
    c.mail.to = ['ops@example.com'];
    return c;
  };

  it.each([
    ['no transport: no crash mail', () => { const c = withMail(); c.mail.transport = null; return c; }, 0],
    ['no recipients: no crash mail', () => { const c = withMail(); c.mail.to = []; return c; }, 0],
    ['transport and recipients: one crash mail', withMail, 1],
  ])('%s', (_n, cfg, n) => {
    expect(crashMailRequests(cfg(), { id: '20261126T065442-3040-fc7ab4', kind: 'crash' })).toHaveLength(n);
  });

  it('a crash mail is keyed by its event and grouped as "crash"; a rule mail by rule and event', () => {
    const [crash] = crashMailRequests(withMail(), { id: 'E1', kind: 'crash' }, { windowMs: 5000, hostname: 'Web_1.Example' });
    expect(crash).toMatchObject({ kind: 'crash', key: 'crash:E1', group: 'crash', maxPerHour: 10, windowMs: 5000, to: ['ops@example.com'] });
    expect(crash!.messageId).toMatch(/^<flightbox\.E1\.[0-9a-f]{16}@web1\.example>$/);
    expect(ruleMailRequest(withMail(), { rule: 'load', eventId: 'E2', reason: 'r', to: ['a@b.c'] })).toMatchObject({ key: 'rule:load:E2', group: 'rule:load' });
    expect(ruleMailRequest(withMail(), { rule: 'load', eventId: 'E2', reason: 'r', to: ['a@b.c'], action: 2 })!.key).toBe('rule:load:E2:2');
    expect(manualMailRequest('E3', ['a@b.c'])).toMatchObject({ kind: 'manual', group: null });
    expect(manualMailRequest('E3', ['a@b.c']).key).not.toBe(manualMailRequest('E3', ['a@b.c']).key);
    expect(makeMessageId('E4', '')).toMatch(/@localhost>$/);
  });

  it.each([
    [1, 30_000, 30_000],
    [2, 30_000, 60_000],
    [3, 30_000, 120_000],
    [8, 30_000, 3_840_000 > MAX_MAIL_RETRY_BACKOFF_MS ? MAX_MAIL_RETRY_BACKOFF_MS : 3_840_000],
    [100, 1000, MAX_MAIL_RETRY_BACKOFF_MS],
    [0, 500, 500],
  ])('retry after failed attempt %i with backoff %i: %i ms', (attempt, backoff, expected) => {
    expect(retryDelayMs(attempt, backoff)).toBe(expected);
  });
});

describe('describeMailError', () => {
  it.each([
    ['wrong password', { code: 'EAUTH', response: '535 5.7.8 Error: authentication failed', responseCode: 535, permanent: true },
      'authentication failed at smtp://mx:587: 535 5.7.8 Error: authentication failed', false],
    ['connection refused', { code: 'ESOCKET', message: 'connect ECONNREFUSED 127.0.0.1:25', originalCode: 'ECONNREFUSED' },
      'connection failed to smtp://mx:587: connect ECONNREFUSED 127.0.0.1:25', false],
    ['recipient refused for good', { code: 'EENVELOPE', response: '550 5.1.1 no such user', responseCode: 550, permanent: true },
      'recipients or sender refused by smtp://mx:587: 550 5.1.1 no such user', true],
    ['recipient refused for now', { code: 'EENVELOPE', response: '451 4.3.0 try later', responseCode: 451, permanent: false },
      'recipients or sender refused by smtp://mx:587: 451 4.3.0 try later', false],
    ['a hostile server answer is escaped', { code: 'EMESSAGE', response: '554 no\r\nX-Evil: 1', permanent: true },
      'message refused by smtp://mx:587: 554 no\\x0d\\x0aX-Evil: 1', true],
    ['something unknown', new Error('boom'), 'delivery failed via smtp://mx:587: boom', false],
    ['ours: the bundle is gone', new MailError('BUNDLE_GONE', 'the bundle of E1 cannot be read'), 'the bundle of E1 cannot be read', true],
  ])('%s', (_n, err, message, permanent) => {
    expect(describeMailError(err, 'smtp://mx:587')).toMatchObject({ message, permanent });
  });
});

describe('mail config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fbx-mailcfg-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const load = (text: string) => {
    const p = join(dir, `c${n++}.yaml`);
    writeFileSync(p, text);
    return { p, ...loadConfig(p, { explicit: true }) };
  };

  it('the example from the docs loads', () => {
    const r = load([
      'mail:',
      '  transport: { host: smtp.example.com, port: 587, secure: false, auth: { user: flightbox, pass: secret }, ca: /etc/ssl/ca.pem }',
      '  from: flightbox@myhost',
      '  to: [ops@example.com]',
      '  maxAttachment: 10MB',
      '  maxPerHour: 10',
      '  redact: true',
      "  subject: '[flightbox] {host}: {exe} crashed ({signal})'",
      '  retry: { attempts: 8, backoff: 30s }',
      '',
    ].join('\n'));
    expect(r.errors).toEqual([]);
    expect(r.config.mail).toEqual({
      transport: { kind: 'smtp', host: 'smtp.example.com', port: 587, secure: false, requireTLS: false, auth: { user: 'flightbox', pass: 'secret' }, ca: '/etc/ssl/ca.pem', timeoutMs: 60_000 },
      from: 'flightbox@myhost', to: ['ops@example.com'], maxAttachmentBytes: 10_000_000, maxPerHour: 10, redact: true,
      subject: DEFAULT_MAIL_SUBJECT, ruleSubject: DEFAULT_MAIL_RULE_SUBJECT, retry: { attempts: 8, backoffMs: 30_000 },
    });
  });

  it.each([
    ['sendmail', 'mail:\n  transport: { sendmail: true }\n', { kind: 'sendmail', path: null }],
    ['sendmail with a path', 'mail:\n  transport:\n    sendmail: true\n    path: /usr/lib/sendmail\n', { kind: 'sendmail', path: '/usr/lib/sendmail' }],
    ['SMTP without a host: localhost', 'mail:\n  transport: { port: 25 }\n', { kind: 'smtp', host: 'localhost', port: 25 }],
    ['no transport', 'mail:\n  transport: null\n  to: [a@b.c]\n', null],
    ['sendmail: false alone is no transport', 'mail:\n  transport: { sendmail: false }\n', null],
  ])('%s', (_n, text, transport) => {
    const r = load(text);
    expect(r.errors).toEqual([]);
    if (transport === null) expect(r.config.mail.transport).toBeNull();
    else expect(r.config.mail.transport).toMatchObject(transport);
  });

  it.each([
    ['a bad address in to', 'mail:\n  to: [ops@example.com, "x\\r\\nBcc: y@evil"]\n', 'mail.to', 2, /is not a mail address/],
    ['a bad from', 'mail:\n  from: nobody\n', 'mail.from', 2, /"nobody" is not a mail address/],
    ['an unknown template field', "mail:\n  subject: '{host} {password}'\n", 'mail.subject', 2, /unknown field \{password\}/],
    ['a newline in a template', 'mail:\n  ruleSubject: "a\\nb"\n', 'mail.ruleSubject', 2, /control characters/],
    ['sendmail and a host', 'mail:\n  transport:\n    sendmail: true\n    host: mx\n', 'mail.transport.host', 4, /cannot be combined with sendmail/],
    ['a host, then sendmail', 'mail:\n  transport:\n    host: mx\n    sendmail: true\n', 'mail.transport.sendmail', 4, /sendmail cannot be combined/],
    ['a port out of range', 'mail:\n  transport: { host: mx, port: 70000 }\n', 'mail.transport.port', 2, /1 to 65535/],
    ['auth without pass', 'mail:\n  transport:\n    host: mx\n    auth: { user: me }\n', 'mail.transport.auth', 4, /password/],
    ['a relative CA path', 'mail:\n  transport: { host: mx, ca: ca.pem }\n', 'mail.transport.ca', 2, /absolute path/],
    ['a typo in retry', 'mail:\n  retry:\n    atempts: 3\n', 'mail.retry.atempts', 3, /unknown option/],
    ['a bad size', 'mail:\n  maxAttachment: lots\n', 'mail.maxAttachment', 2, /expected a size/],
    ['a negative maxPerHour', 'mail:\n  maxPerHour: -1\n', 'mail.maxPerHour', 2, /whole number from 0/],
    ['a host with a newline', 'mail:\n  transport: { host: "mx\\nevil" }\n', 'mail.transport.host', 2, /host name/],
  ])('%s: an error naming key and line', (_n, text, key, line, message) => {
    const r = load(text);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ key, line, file: r.p });
    expect(r.errors[0]!.message).toMatch(message);
  });
});
