// Mail, against a real SMTP server (smtp-server in this process on 127.0.0.1, port 0) read
// back with mailparser: crash mail with a verifiable archive, an outage that loses and
// duplicates nothing, a wrong password, header injection through a process name, a crash
// storm, a sender killed mid-send, the CLI (`flightbox mail`, `flightbox outbox`).
// Crash bundles come from the real handler fed gcore cores (no core_pattern change).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync,
  utimesSync, writeFileSync, lstatSync,
} from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig, type Config } from '../../lib/config.js';
import { createLogger } from '../../lib/log.js';
import { crashMailRequests, manualMailRequest, queueMail, ruleMailRequest } from '../../notify/outbox.js';
import { OutboxSender, type Delivery } from '../../notify/sender.js';
import { exportBundle } from '../../store/archive.js';
import { makeBundleId } from '../../store/bundle-id.js';
import type { OutboxRequest, OutboxRow } from '../../store/index-db.js';
import { MANIFEST_VERSION, hostInfo, readManifest, type Manifest } from '../../store/manifest.js';
import { Store } from '../../store/store.js';
import { CLI, buildCrasher, makeTempStore, runCli, waitFor, type TempStore } from '../helpers.js';
import {
  collectOutput, gcore, kernelArgs, runHandler, sha256, startProcess, stopAll, stopProcess, trackChild, untrackChild, type ChildRun,
} from './procs.js';

const HOUR = 3_600_000;

// ---------------------------------------------------------------------------------------
// A real SMTP server in this process.

interface Received {
  raw: Buffer;
  rcpt: string[];
  from: string | null;
  user: string | undefined;
  secure: boolean;
}

interface SmtpOptions {
  port?: number;
  /** require AUTH with these credentials */
  auth?: { user: string; pass: string };
  /** answer every connection with 421 */
  refuse?: boolean;
  /** take the message, then never answer the end of DATA */
  stall?: boolean;
  /** STARTTLS with this key and certificate */
  tls?: { key: Buffer; cert: Buffer };
}

class TestSmtp {
  readonly messages: Received[] = [];
  port = 0;
  stall: boolean;
  readonly #server: SMTPServer;

  constructor(opts: SmtpOptions) {
    this.stall = opts.stall ?? false;
    const disabled = [...(opts.tls ? [] : ['STARTTLS']), ...(opts.auth ? [] : ['AUTH'])];
    this.#server = new SMTPServer({
      secure: false,
      ...(opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : {}),
      disabledCommands: disabled,
      authOptional: !opts.auth,
      allowInsecureAuth: true,
      logger: false,
      closeTimeout: 200,
      onAuth: (auth, _session, cb) => {
        if (opts.auth && auth.username === opts.auth.user && auth.password === opts.auth.pass) return cb(null, { user: auth.username });
        cb(Object.assign(new Error('Invalid username or password'), { responseCode: 535 }));
      },
      onConnect: (_session, cb) => {
        if (opts.refuse) return cb(Object.assign(new Error('Service not available, closing channel'), { responseCode: 421 }));
        cb();
      },
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          this.messages.push({
            raw: Buffer.concat(chunks),
            rcpt: session.envelope.rcptTo.map((a) => a.address),
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
            user: session.user as string | undefined,
            secure: session.secure,
          });
          if (this.stall) return; // never answer: the client waits
          cb();
        });
      },
    });
    this.#server.on('error', () => {});
    this.port = opts.port ?? 0;
  }

  static async start(opts: SmtpOptions = {}): Promise<TestSmtp> {
    const s = new TestSmtp(opts);
    await new Promise<void>((resolve, reject) => {
      s.#server.server.once('error', reject);
      s.#server.listen(s.port, '127.0.0.1', () => resolve());
    });
    s.port = (s.#server.server.address() as AddressInfo).port;
    servers.add(s);
    return s;
  }

  async close(): Promise<void> {
    servers.delete(this);
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async parsed(): Promise<ParsedMail[]> {
    return Promise.all(this.messages.map((m) => simpleParser(m.raw)));
  }
}

const servers = new Set<TestSmtp>();

/** A port nothing listens on (for now). */
async function freePort(): Promise<number> {
  const s = await TestSmtp.start();
  const port = s.port;
  await s.close();
  return port;
}

// ---------------------------------------------------------------------------------------
// Stores, configs, events.

let work: string;
let waiter: string;

function mailYaml(port: number, lines: string[] = [], transport: string[] = []): string {
  return [
    'mail:',
    '  transport:',
    '    host: 127.0.0.1',
    `    port: ${port}`,
    '    timeout: 5s',
    ...transport,
    '  from: flightbox@test.example',
    '  to: [ops@example.com]',
    ...lines,
    '',
  ].join('\n');
}

interface Env {
  s: TempStore;
  config: Config;
  store: Store;
  clock: { t: number };
  sender: OutboxSender;
}

const envs: Env[] = [];

function loadOk(path: string): Config {
  const r = loadConfig(path, { explicit: true });
  expect(r.errors).toEqual([]);
  return r.config;
}

/** A temp store with a mail config, the Store open in this process and a sender on a movable clock. */
function newEnv(yaml: string, senderOpts: { now?: () => number } = {}): Env {
  const s = makeTempStore(yaml);
  const config = loadOk(s.configPath);
  const store = new Store(config.store.root, { create: true, busyTimeoutMs: config.store.busyTimeoutMs });
  // A minute ahead of real time: mail queued by the test (at real time) is due at once, and
  // every later move of the clock is exact.
  const clock = { t: Date.now() + 60_000 };
  const sender = new OutboxSender(store, config, createLogger({ file: store.logFile, component: 'test' }), { now: senderOpts.now ?? (() => clock.t) });
  const env = { s, config, store, clock, sender };
  envs.push(env);
  return env;
}

function rows(env: Env): OutboxRow[] {
  return env.store.index().listOutbox({ all: true });
}

/** A crash bundle made here (no core), with a metrics summary and secrets in proc/, indexed with its mail. */
function fakeCrash(store: Store, i: number, mail: (m: Manifest) => OutboxRequest[] = () => []): Manifest {
  const { staging, m } = stageFake(store, i);
  const r = store.finishBundle(staging, m, { mail: mail(m) });
  expect(r.indexed).toBe(true);
  return m;
}

/** A staging directory and manifest for fakeCrash, not yet finished. */
function stageFake(store: Store, i: number): { staging: string; m: Manifest } {
  const t = Date.now();
  const id = makeBundleId(new Date(t), 20_000 + i);
  const staging = store.createStaging(id);
  mkdirSync(join(staging, 'recorder', 'metrics'), { recursive: true, mode: 0o700 });
  writeFileSync(join(staging, 'recorder', 'metrics', 'summary.txt'), `flightbox metrics: 10 samples over 9 s (1 s interval)\nload 1 min   0.50 (event ${i})\n`, { mode: 0o640 });
  mkdirSync(join(staging, 'proc'), { mode: 0o700 });
  writeFileSync(join(staging, 'proc', 'environ'), 'AWS_SECRET_ACCESS_KEY=hunter2\0', { mode: 0o600 });
  writeFileSync(join(staging, 'proc', 'cmdline'), '/usr/bin/storm\0--password\0hunter2\0', { mode: 0o640 });
  const m: Manifest = {
    version: MANIFEST_VERSION, id, kind: 'crash', time: new Date(t).toISOString(), timeMs: t, capturedAt: new Date(t).toISOString(),
    host: hostInfo(),
    process: {
      pid: 20_000 + i, pidInNamespace: 20_000 + i, tid: 20_000 + i, tidInNamespace: null, ppid: 1, uid: 0, gid: 0, signal: 11, signalName: 'SIGSEGV',
      comm: 'storm', exe: '/usr/bin/storm', cmdline: ['/usr/bin/storm', '--password', 'hunter2'], cwd: '/', root: '/', cgroup: null, unit: null,
      namespaces: {}, inContainer: false, hostnameInNamespace: null, dumpable: 1, rlimitCore: null, threads: 1, fdCount: 3, startTimeTicks: 1, procVerified: true,
    },
    core: null, backtrace: null, signature: { text: 'storm!SIGSEGV!main', hash: 'ab'.repeat(32) }, modules: [], rule: null,
    warnings: [], timings: {}, files: [], handler: { version: 'test', pid: process.pid },
  };
  return { staging, m };
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// ---------------------------------------------------------------------------------------
// Real crashes: the handler fed a gcore core of a live process.

/** Crash `bin` (named `comm`) through the handler; returns the event's manifest. */
async function realCrash(s: TempStore, bin: string, comm: string): Promise<Manifest> {
  const p = await startProcess(bin, [comm], comm);
  const core = gcore(p.pid, join(work, 'core'));
  let code: number | null;
  try {
    ({ code } = await runHandler(s.configPath, kernelArgs({ pid: p.pid, host: 'fbx-host' }), core));
  } finally {
    stopProcess(p);
    rmSync(core, { force: true });
  }
  expect(code).toBe(0);
  const store = new Store(s.root, { create: false, busyTimeoutMs: 10_000 });
  try {
    const ev = store.index().list({ pid: p.pid, limit: 1, reverse: true })[0];
    expect(ev).toBeDefined();
    return readManifest(store.bundleDir(ev!.id));
  } finally {
    store.close();
  }
}

// ---------------------------------------------------------------------------------------
// The CLI, asynchronously: the SMTP server it talks to runs in this process.

/** The CLI (tracked until it closes, so that afterEach kills it), its output collected. */
function runCliAsync(args: string[], opts: { onSpawn?: (c: ChildProcess) => void } = {}): Promise<ChildRun> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(child);
  child.on('close', () => untrackChild(child));
  opts.onSpawn?.(child);
  return collectOutput(child);
}

/** Extract a .tar.gz; returns the directory. */
function untar(buf: Buffer): string {
  const dir = mkdtempSync(join(work, 'x-'));
  const f = join(dir, 'a.tar.gz');
  writeFileSync(f, buf);
  const r = spawnSync('tar', ['-xzf', f, '-C', dir], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  rmSync(f);
  return dir;
}

function filesUnder(dir: string, prefix = ''): string[] {
  return readdirSync(dir).sort().flatMap((n) => {
    const rel = prefix ? `${prefix}/${n}` : n;
    return lstatSync(join(dir, n)).isDirectory() ? filesUnder(join(dir, n), rel) : [rel];
  });
}

/** The archive's own manifest lists exactly its files, with their sha256. */
function verifyArchive(buf: Buffer, id: string): { manifest: Manifest & { exported?: { redact: boolean; noCore: boolean } }; files: string[] } {
  const dir = untar(buf);
  expect(readdirSync(dir)).toEqual([id]);
  const top = join(dir, id);
  const m = JSON.parse(readFileSync(join(top, 'manifest.json'), 'utf8')) as Manifest & { exported?: { redact: boolean; noCore: boolean } };
  const files = filesUnder(top).filter((f) => f !== 'manifest.json');
  expect(m.files.map((f) => f.path).sort()).toEqual(files);
  for (const f of m.files) expect(sha256(readFileSync(join(top, f.path))), f.path).toBe(f.sha256);
  rmSync(dir, { recursive: true, force: true });
  return { manifest: m, files };
}

/** Headers as mailparser parsed them; and the raw header block's lines. */
function headerLines(raw: Buffer): string[] {
  const text = raw.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  return text.slice(0, end).split('\r\n');
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'fbx-mail-'));
  waiter = buildCrasher('waiter');
});

afterEach(async () => {
  stopAll();
  for (const e of envs.splice(0)) {
    await e.sender.stop();
    e.store.close();
    e.s.cleanup();
  }
  for (const s of [...servers]) await s.close();
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------

describe('a crash is mailed', () => {
  test('one mail, whose tar.gz extracts to the files the archive manifest lists, and a summary body', async () => {
    const smtp = await TestSmtp.start();
    const env = newEnv(mailYaml(smtp.port));
    const m = await realCrash(env.s, waiter, 'fbx-mailme');
    // What the handler does when it finishes a bundle; a no-op if it already queued it.
    const [req] = crashMailRequests(env.config, m);
    queueMail(env.store, req!);
    expect(queueMail(env.store, req!)).toBeNull(); // the same mail twice: queued once
    const queued = rows(env);
    expect(queued).toHaveLength(1);
    expect(queued[0]).toMatchObject({ kind: 'crash', event_id: m.id, status: 'pending', attempts: 0 });

    const d = await env.sender.flush();
    expect(d.map((x) => x.status)).toEqual(['sent']);
    expect(await env.sender.flush()).toEqual([]); // nothing left: not sent twice
    expect(smtp.messages).toHaveLength(1);
    const msg = smtp.messages[0]!;
    expect(msg.rcpt).toEqual(['ops@example.com']);
    expect(msg.from).toBe('flightbox@test.example');

    const [mail] = await smtp.parsed();
    expect(mail!.subject).toBe(`[flightbox] ${m.host.hostname}: ${waiter} crashed (SIGSEGV)`);
    expect(mail!.messageId).toBe(queued[0]!.message_id);
    expect(mail!.headers.get('auto-submitted')).toBe('auto-generated');
    expect(mail!.headers.get('x-flightbox-event')).toBe(m.id);
    const text = mail!.text ?? '';
    expect(text).toContain(`  event      ${m.id}`);
    expect(text).toContain(`  executable ${waiter}`);
    expect(text).toContain('  signal     11 (SIGSEGV)');
    if (m.backtrace && m.backtrace.frames.length > 0) {
      expect(text).toContain('Stack trace of the crashing thread');
      expect(text).toContain(m.backtrace.frames.find((f) => f.fn)?.fn ?? '??');
    }
    expect(text).toContain(`Attached: ${m.id}.tar.gz`);

    expect(mail!.attachments).toHaveLength(1);
    const att = mail!.attachments[0]!;
    expect(att.filename).toBe(`${m.id}.tar.gz`);
    expect(att.contentType).toBe('application/gzip');
    const { manifest, files } = verifyArchive(att.content, m.id);
    expect(manifest.id).toBe(m.id);
    expect(files).toContain(m.core!.file!); // the whole bundle, core included
    expect(files).not.toContain('proc/environ'); // mail.redact (the default) keeps the environment home
    expect(manifest.exported?.redact).toBe(true);
    // The row: sent, with the server's answer; the temporary archive is gone.
    expect(rows(env)[0]).toMatchObject({ status: 'sent', attempts: 1, last_error: null });
    expect(rows(env)[0]!.response).toMatch(/^250/);
    expect(readdirSync(join(env.s.root, 'work'))).toEqual([]);
  });

  test('queued in the same transaction as its event; a locked index spools both, and draining queues the mail once', async () => {
    const smtp = await TestSmtp.start();
    const env = newEnv(mailYaml(smtp.port), {});
    // A real crash bundle (from the handler, in another store) finished here with its mail.
    const src = makeTempStore();
    try {
      const m = await realCrash(src, waiter, 'fbx-tx');
      const srcDir = join(src.root, 'bundles', `${m.id.slice(0, 4)}-${m.id.slice(4, 6)}-${m.id.slice(6, 8)}`, m.id);
      const restage = (): string => {
        const staging = env.store.createStaging(m.id);
        for (const f of m.files) {
          mkdirSync(join(staging, f.path, '..'), { recursive: true, mode: 0o700 });
          copyFileSync(join(srcDir, f.path), join(staging, f.path));
        }
        return staging;
      };
      const mail = crashMailRequests(env.config, m);
      expect(mail).toHaveLength(1);

      // Both or neither: a mail that cannot be queued (its Message-ID is taken) keeps its event out too.
      const other = fakeCrash(env.store, 1, (x) => crashMailRequests(env.config, x));
      const taken = rows(env)[0]!.message_id;
      const bad = stageFake(env.store, 2);
      const ix1 = env.store.finishBundle(bad.staging, bad.m, { mail: [{ ...crashMailRequests(env.config, bad.m)[0]!, messageId: taken }] });
      expect(ix1.indexed).toBe(false);
      expect(ix1.error).toMatch(/UNIQUE constraint failed: outbox\.message_id/);
      expect(env.store.index().get(bad.m.id)).toBeUndefined();
      expect(rows(env)).toHaveLength(1);
      rmSync(join(env.s.root, 'spool', bad.m.id), { force: true });

      // The index locked by another process past the busy timeout: published, spooled with its mail.
      const db = new Database(join(env.s.root, 'index.sqlite'));
      db.exec('BEGIN EXCLUSIVE');
      const lockedStore = new Store(env.s.root, { create: true, busyTimeoutMs: 200 });
      let r: ReturnType<Store['finishBundle']>;
      try {
        r = lockedStore.finishBundle(restage(), structuredClone(m), { mail });
      } finally {
        db.exec('ROLLBACK');
        db.close();
        lockedStore.close();
      }
      expect(r.indexed).toBe(false);
      expect(env.store.index().get(m.id)).toBeUndefined();
      expect(rows(env).filter((x) => x.event_id === m.id)).toEqual([]);
      const marker = join(env.s.root, 'spool', m.id);
      const payload = readFileSync(marker, 'utf8');
      expect(JSON.parse(payload)).toEqual({ mail });

      // The daemon's housekeeping drains the spool: the event and its mail, together.
      expect(env.store.drainSpool()).toBe(1);
      expect(env.store.index().get(m.id)).toMatchObject({ id: m.id, kind: 'crash' });
      expect(rows(env).filter((x) => x.event_id === m.id)).toHaveLength(1);
      // A drain that died before removing the marker runs again: nothing is queued twice.
      writeFileSync(marker, payload);
      expect(env.store.drainSpool()).toBe(1);
      writeFileSync(marker, payload);
      expect(env.store.reindex().broken).toEqual([]);
      expect(existsSync(marker)).toBe(false);
      const mine = rows(env).filter((x) => x.event_id === m.id);
      expect(mine).toHaveLength(1);
      expect(mine[0]!.message_id).toBe(mail[0]!.messageId);

      const d = await env.sender.flush();
      expect(d.map((x) => [x.eventId, x.status]).sort()).toEqual([[m.id, 'sent'], [other.id, 'sent']].sort());
      expect(smtp.messages).toHaveLength(2);
    } finally {
      src.cleanup();
    }
  });

  test('a reindex after a locked index queues the spooled mail (no daemon ever ran)', async () => {
    const smtp = await TestSmtp.start();
    const env = newEnv(mailYaml(smtp.port));
    fakeCrash(env.store, 0);
    const staging = env.store.createStaging(makeBundleId(new Date(), 4242));
    const id = staging.split('/').at(-1)!;
    const m: Manifest = { ...readManifest(env.store.bundleDir(env.store.index().list()[0]!.id)), id, files: [] };
    const db = new Database(join(env.s.root, 'index.sqlite'));
    db.exec('BEGIN EXCLUSIVE');
    const locked = new Store(env.s.root, { create: true, busyTimeoutMs: 200 });
    try {
      expect(locked.finishBundle(staging, m, { mail: crashMailRequests(env.config, m) }).indexed).toBe(false);
    } finally {
      db.exec('ROLLBACK');
      db.close();
      locked.close();
    }
    const r = runCli(['--config', env.s.configPath, 'reindex']);
    expect(r.code, r.stderr).toBe(0);
    expect(rows(env).map((x) => [x.event_id, x.status])).toEqual([[id, 'pending']]);
    expect((await env.sender.flush()).map((x) => x.status)).toEqual(['sent']);
  });

  test('attachments by size: the whole bundle, then without the core, then none; the body says where the bundle is', async () => {
    const smtp = await TestSmtp.start();
    const base = newEnv(mailYaml(smtp.port));
    const m = await realCrash(base.s, waiter, 'fbx-sizes');
    const dir = base.store.bundleDir(m.id);
    const probe = join(work, 'probe');
    mkdirSync(probe, { recursive: true });
    const full = (await exportBundle(dir, join(probe, 'full.tar.gz'), { format: 'tar.gz', noCore: false, redact: true })).bytes;
    const noCore = (await exportBundle(dir, join(probe, 'nocore.tar.gz'), { format: 'tar.gz', noCore: true, redact: true })).bytes;
    // Two exports of one bundle differ by a few bytes (the manifest notes when it was exported).
    const slack = 1024;
    expect(noCore + 2 * slack).toBeLessThan(full);

    const cases: [number, string, RegExp][] = [
      [full + slack, `${m.id}.tar.gz`, /Attached: .*the whole bundle/],
      [noCore + slack, `${m.id}-nocore.tar.gz`, new RegExp(`without the core dump[\\s\\S]*The full bundle is on ${escapeRe(`${hostname()}:${dir}`)}`)],
      [noCore - slack, '', new RegExp(`Nothing is attached: even without the core[\\s\\S]*The bundle is on ${escapeRe(`${hostname()}:${dir}`)}`)],
    ];
    for (const [limit] of cases) {
      const c = { ...base.config, mail: { ...base.config.mail, maxAttachmentBytes: limit } };
      const sender = new OutboxSender(base.store, c, createLogger({ file: null, component: 'test' }));
      const d = await sender.send(manualMailRequest(m.id, ['dev@example.com']));
      await sender.stop();
      expect(d.status).toBe('sent');
    }
    const mails = await smtp.parsed();
    expect(mails).toHaveLength(3);
    cases.forEach(([limit, filename, body], i) => {
      const mail = mails[i]!;
      expect(mail.text ?? '', `limit ${limit}`).toMatch(body);
      if (filename === '') {
        expect(mail.attachments).toEqual([]);
      } else {
        expect(mail.attachments.map((a) => a.filename)).toEqual([filename]);
        expect(mail.attachments[0]!.size).toBeLessThanOrEqual(limit);
        const { manifest, files } = verifyArchive(mail.attachments[0]!.content, m.id);
        expect(files.includes(m.core!.file!)).toBe(filename.endsWith(`${m.id}.tar.gz`));
        if (filename.includes('nocore')) expect(manifest.core?.stored).toBe(false);
      }
    });
  });
});

describe('delivery survives an SMTP outage', () => {
  test('server down, then refusing, then up: each queued mail is delivered exactly once', async () => {
    const port = await freePort();
    const env = newEnv(mailYaml(port, ['  retry: { attempts: 5, backoff: 30s }']));
    const events = [0, 1, 2].map((i) => fakeCrash(env.store, i, (m) => crashMailRequests(env.config, m)));
    const ids = rows(env).map((r) => r.message_id);
    expect(ids).toHaveLength(3);

    // 1. Nothing listens.
    let d = await env.sender.flush();
    expect(d.map((x) => x.status)).toEqual(['pending', 'pending', 'pending']);
    for (const x of d) {
      expect(x.error).toMatch(/^(cannot connect to|connection failed to) smtp:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
      expect(x.nextAttemptAt).toBe(env.clock.t + 30_000);
    }
    // Not due yet: nothing is tried.
    expect(await env.sender.flush()).toEqual([]);

    // 2. A server that answers every connection with 421.
    const refusing = await TestSmtp.start({ port, refuse: true });
    env.clock.t += 30_000;
    d = await env.sender.flush();
    expect(d.map((x) => [x.status, x.attempts])).toEqual([['pending', 2], ['pending', 2], ['pending', 2]]);
    for (const x of d) expect(x.error).toMatch(/421/);
    expect(d[0]!.nextAttemptAt).toBe(env.clock.t + 60_000); // doubled
    expect(refusing.messages).toEqual([]);
    await refusing.close();

    // 3. Up again.
    const smtp = await TestSmtp.start({ port });
    env.clock.t += 60_000;
    d = await env.sender.flush();
    expect(d.map((x) => x.status)).toEqual(['sent', 'sent', 'sent']);
    env.clock.t += 10 * HOUR;
    expect(await env.sender.flush()).toEqual([]);
    expect(smtp.messages).toHaveLength(3);
    const got = (await smtp.parsed()).map((p) => p.messageId);
    expect(got.sort()).toEqual([...ids].sort());
    expect(rows(env).map((r) => [r.status, r.attempts, r.last_error])).toEqual([['sent', 3, null], ['sent', 3, null], ['sent', 3, null]]);
    expect(new Set(events.map((e) => e.id))).toEqual(new Set(rows(env).map((r) => r.event_id)));
  });

  test('after the last attempt a mail is marked failed, and stays listed', async () => {
    const port = await freePort();
    const env = newEnv(mailYaml(port, ['  retry: { attempts: 2, backoff: 1s }']));
    fakeCrash(env.store, 0, (m) => crashMailRequests(env.config, m));
    expect((await env.sender.flush()).map((x) => x.status)).toEqual(['pending']);
    env.clock.t += 1000;
    const d = await env.sender.flush();
    expect(d.map((x) => [x.status, x.attempts, x.nextAttemptAt])).toEqual([['failed', 2, null]]);
    env.clock.t += HOUR;
    expect(await env.sender.flush()).toEqual([]);
    const out = runCli(['--config', env.s.configPath, 'outbox']);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/failed +crash .* 2\/2 +gave up +(cannot connect|connection failed)/);
  });

  test('a server that never answers is waited for once per pass, not once per mail', async () => {
    const silent = createServer(() => {}); // accepts, never greets
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const port = (silent.address() as AddressInfo).port;
      const env = newEnv(mailYaml(port).replace('timeout: 5s', 'timeout: 1s'));
      for (const i of [0, 1, 2]) fakeCrash(env.store, i, (m) => crashMailRequests(env.config, m));
      const d = await env.sender.flush();
      expect(d.map((x) => [x.status, x.attempts])).toEqual([['pending', 1]]);
      expect(d[0]!.error).toMatch(/^timed out talking to smtp:\/\/127\.0\.0\.1:\d+: /);
      expect(rows(env).map((r) => r.attempts)).toEqual([1, 0, 0]);
      await env.sender.flush();
      expect(rows(env).map((r) => r.attempts)).toEqual([1, 1, 0]);
    } finally {
      silent.close();
    }
  });

  test('a sender killed mid-send: the mail is sent again once its lease runs out, with the same Message-ID', async () => {
    const smtp = await TestSmtp.start({ stall: true });
    const env = newEnv(mailYaml(smtp.port));
    const m = fakeCrash(env.store, 0);
    let cli: ChildProcess | undefined;
    const run = runCliAsync(['--config', env.s.configPath, 'mail', m.id, '--to', 'dev@example.com'], { onSpawn: (c) => { cli = c; } });
    await waitFor('the message to reach the server', () => smtp.messages.length === 1, 30_000, 20);
    cli!.kill('SIGKILL');
    const r = await run;
    expect(r.signal).toBe('SIGKILL');
    const [row] = rows(env);
    expect(row).toMatchObject({ kind: 'manual', status: 'sending', attempts: 1 });
    expect(row!.lease_until! - Date.now()).toBeGreaterThan(10 * 60_000);

    smtp.stall = false;
    // Within the lease nobody touches it; after it, one more delivery.
    env.clock.t = Date.now() + 60_000;
    expect(await env.sender.flush()).toEqual([]);
    env.clock.t = row!.lease_until! + 1;
    const d = await env.sender.flush();
    expect(d.map((x) => [x.status, x.attempts])).toEqual([['sent', 2]]);
    expect(await env.sender.flush()).toEqual([]);
    const mails = await smtp.parsed();
    expect(mails).toHaveLength(2);
    expect(mails[0]!.messageId).toBe(row!.message_id);
    expect(mails[1]!.messageId).toBe(row!.message_id); // a receiver can drop the duplicate

    // The killed sender's temporary archive is swept when a sender starts, once it is older than a lease.
    const workDir = join(env.s.root, 'work');
    const left = readdirSync(workDir).filter((n) => n.startsWith('mail-'));
    expect(left).toHaveLength(1);
    const old = new Date(Date.now() - 2 * HOUR);
    utimesSync(join(workDir, left[0]!), old, old);
    const daemonSender = new OutboxSender(env.store, env.config, createLogger({ file: null, component: 'test' }));
    daemonSender.start();
    await daemonSender.stop();
    expect(readdirSync(workDir)).toEqual([]);
  });
});

describe('authentication', () => {
  test('a wrong password: a clear error in the outbox; delivered once the config is fixed', async () => {
    const smtp = await TestSmtp.start({ auth: { user: 'flightbox', pass: 'right' } });
    const env = newEnv(mailYaml(smtp.port, [], ['    auth: { user: flightbox, pass: wrong }']));
    const m = fakeCrash(env.store, 0, (x) => crashMailRequests(env.config, x));
    const d = await env.sender.flush();
    expect(d).toHaveLength(1);
    expect(d[0]).toMatchObject({ status: 'pending', attempts: 1 });
    expect(d[0]!.error).toMatch(/^authentication failed at smtp:\/\/127\.0\.0\.1:\d+: 535 .*Invalid username or password/);

    const out = runCli(['--config', env.s.configPath, 'outbox']);
    expect(out.code, out.stderr).toBe(0);
    const lines = out.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID +STATUS +KIND +EVENT +TO +TRIES +NEXT +LAST ERROR$/);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain(m.id);
    expect(lines[1]).toMatch(/pending +crash .* ops@example\.com +1\/8 .*authentication failed at smtp:\/\/127\.0\.0\.1:\d+: 535/);
    const json = JSON.parse(runCli(['--config', env.s.configPath, 'outbox', '--json']).stdout) as Record<string, unknown>[];
    expect(json).toEqual([expect.objectContaining({
      kind: 'crash', status: 'pending', event: m.id, to: ['ops@example.com'], attempts: 1, maxAttempts: 8,
      nextAttempt: new Date(env.clock.t + 30_000).toISOString(), lastError: expect.stringMatching(/authentication failed/),
    })]);
    expect(smtp.messages).toEqual([]);

    // The config is fixed and reloaded (the daemon's SIGHUP): the pending mail is tried at once.
    writeFileSync(env.s.configPath, readFileSync(env.s.configPath, 'utf8').replace('pass: wrong', 'pass: right'));
    env.sender.setConfig(loadOk(env.s.configPath)); // wakes the sender
    await env.sender.flush();
    expect(rows(env).map((x) => [x.status, x.attempts])).toEqual([['sent', 2]]);
    expect(smtp.messages.map((x) => x.user)).toEqual(['flightbox']);
    const after = runCli(['--config', env.s.configPath, 'outbox']);
    expect(after.stdout).toBe('');
    expect(after.stderr).toBe('No mail is waiting or failed.\n');
    const all = runCli(['--config', env.s.configPath, 'outbox', '--all']);
    expect(all.stdout).toMatch(/sent +crash .* 2\/8 +sent \d{4}-\d\d-\d\d/);
  });

  test('STARTTLS with mail.transport.ca: refused without the CA, delivered with it', async () => {
    const dir = mkdtempSync(join(work, 'tls-'));
    const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'ca.pem'),
      '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const smtp = await TestSmtp.start({ tls: { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'ca.pem')) } });
    const env = newEnv(mailYaml(smtp.port, [], ['    requireTLS: true']));
    fakeCrash(env.store, 0, (x) => crashMailRequests(env.config, x));
    const d = await env.sender.flush();
    expect(d[0]).toMatchObject({ status: 'pending' });
    expect(d[0]!.error).toMatch(/self.signed certificate/i);
    env.sender.setConfig(loadOk((() => {
      writeFileSync(env.s.configPath, readFileSync(env.s.configPath, 'utf8').replace('    requireTLS: true', `    requireTLS: true\n    ca: ${join(dir, 'ca.pem')}`));
      return env.s.configPath;
    })()));
    await env.sender.flush();
    expect(rows(env).map((x) => x.status)).toEqual(['sent']);
    expect(smtp.messages.map((x) => x.secure)).toEqual([true]);
  });

  test('sendmail: the message goes to the local program, recipients as arguments', async () => {
    const out = mkdtempSync(join(work, 'sendmail-'));
    const prog = join(out, 'sendmail');
    writeFileSync(prog, `#!/bin/sh\nprintf '%s\\n' "$@" > "${out}/args"\ncat > "${out}/message.eml"\n`);
    chmodSync(prog, 0o755);
    const env = newEnv(`mail:\n  transport: { sendmail: true, path: ${prog} }\n  to: [ops@example.com]\n`);
    const m = fakeCrash(env.store, 0, (x) => crashMailRequests(env.config, x));
    expect((await env.sender.flush()).map((x) => x.status)).toEqual(['sent']);
    expect(readFileSync(join(out, 'args'), 'utf8').split('\n')).toContain('ops@example.com');
    const mail = await simpleParser(readFileSync(join(out, 'message.eml')));
    expect(mail.subject).toBe(`[flightbox] ${hostname()}: /usr/bin/storm crashed (SIGSEGV)`);
    expect(mail.attachments.map((a) => a.filename)).toEqual([`${m.id}.tar.gz`]);
  });
});

describe('hostile process names', () => {
  test('CR/LF and "Bcc:" in the executable and comm: no header is injected', async () => {
    const smtp = await TestSmtp.start();
    const env = newEnv(mailYaml(smtp.port, ["  subject: '[fbx] {comm} / {exe} crashed ({signal})'"]));
    const evilDir = mkdtempSync(join(work, 'evil-'));
    const evilExe = join(evilDir, 'x\r\nBcc: x@evil.example\r\nSubject: pwned');
    copyFileSync(waiter, evilExe);
    chmodSync(evilExe, 0o755);
    const evilComm = '\r\nBcc: e@evil'; // 13 bytes: fits TASK_COMM_LEN
    const m = await realCrash(env.s, evilExe, evilComm);
    expect(m.process?.exe).toBe(evilExe);
    expect(m.process?.comm).toBe(evilComm);
    queueMail(env.store, crashMailRequests(env.config, m)[0]!);
    // A rule's mail about the same crash, with a hostile reason (a matched log line, say).
    queueMail(env.store, ruleMailRequest(env.config, { rule: 'evil', eventId: m.id, reason: 'r\r\nBcc: r@evil.example', to: ['dev@example.com'] })!);
    const d = await env.sender.flush();
    expect(d.map((x) => x.status)).toEqual(['sent', 'sent']);

    expect(smtp.messages.map((x) => x.rcpt)).toEqual([['ops@example.com'], ['dev@example.com']]);
    const mails = await smtp.parsed();
    for (const [i, mail] of mails.entries()) {
      expect(mail.bcc).toBeUndefined();
      expect(mail.headers.has('bcc')).toBe(false);
      expect([...mail.headers.keys()].filter((k) => k === 'subject')).toHaveLength(1);
      for (const l of headerLines(smtp.messages[i]!.raw)) expect(l).not.toMatch(/^(bcc|subject: pwned)/i);
      expect(mail.subject).not.toMatch(/[\r\n]/);
      expect(mail.text ?? '').not.toMatch(/^Bcc:/m);
    }
    expect(mails[0]!.subject).toBe(`[fbx] \\x0d\\x0aBcc: e@evil / ${evilDir}/x\\x0d\\x0aBcc: x@evil.example\\x0d\\x0aSubject: pwned crashed (SIGSEGV)`);
    expect(mails[1]!.subject).toBe(`[flightbox] ${m.host.hostname}: rule evil fired: r\\x0d\\x0aBcc: r@evil.example`);
    expect(mails[0]!.text).toContain(`  executable ${evilDir}/x\\x0d\\x0aBcc: x@evil.example\\x0d\\x0aSubject: pwned`);
  });
});

describe('storm control', () => {
  test('200 crashes in a minute: maxPerHour mails, then one digest listing the rest at the end of the window', async () => {
    const smtp = await TestSmtp.start();
    let offset = 0;
    const env = newEnv(mailYaml(smtp.port, ['  maxPerHour: 5']), { now: () => Date.now() + offset });
    const t0 = Date.now();
    const events = Array.from({ length: 200 }, (_, i) => fakeCrash(env.store, i, (m) => crashMailRequests(env.config, m)));
    expect(Date.now() - t0).toBeLessThan(60_000);
    const all = rows(env);
    expect(all.filter((r) => r.status === 'pending').map((r) => r.event_id)).toEqual(events.slice(0, 5).map((e) => e.id));
    expect(all.filter((r) => r.status === 'held')).toHaveLength(195);
    const windowStart = all[0]!.window_start!;
    for (const r of all.filter((x) => x.status === 'held')) expect(r.next_attempt_at).toBe(windowStart + HOUR);

    const held = JSON.parse(runCli(['--config', env.s.configPath, 'outbox', '--json']).stdout) as { status: string }[];
    expect(held.filter((x) => x.status === 'held')).toHaveLength(195);

    let d = await env.sender.flush();
    expect(d.map((x) => x.status)).toEqual(Array(5).fill('sent'));
    expect(smtp.messages).toHaveLength(5);
    expect(await env.sender.flush()).toEqual([]); // the window is not over: no digest yet

    offset = windowStart + HOUR - Date.now() + 1;
    d = await env.sender.flush();
    expect(d.map((x) => [x.kind, x.status])).toEqual([['digest', 'sent']]);
    expect(await env.sender.flush()).toEqual([]);
    expect(smtp.messages).toHaveLength(6);
    const mails = await smtp.parsed();
    const digest = mails[5]!;
    expect(digest.subject).toBe(`[flightbox] ${hostname()}: 195 more crashes not mailed one by one`);
    expect(digest.attachments).toEqual([]);
    const text = digest.text ?? '';
    expect(text).toContain('195 events of crashes');
    for (const e of events.slice(5)) expect(text).toContain(e.id);
    for (const e of events.slice(0, 5)) expect(text).not.toContain(e.id);
    expect(mails.slice(0, 5).map((x) => x.headers.get('x-flightbox-event'))).toEqual(events.slice(0, 5).map((e) => e.id));

    const after = rows(env);
    expect(after.filter((r) => r.status === 'digested')).toHaveLength(195);
    const dig = after.find((r) => r.kind === 'digest')!;
    expect(dig).toMatchObject({ status: 'sent', storm_group: 'crash', window_start: windowStart });
    expect(after.filter((r) => r.digest_id === dig.id)).toHaveLength(195);

    // A new window: the next crash is mailed on its own again.
    const next = fakeCrash(env.store, 999);
    const q = env.store.index().queueMail(crashMailRequests(env.config, next)[0]!, windowStart + HOUR + 2);
    expect(q).toMatchObject({ status: 'pending' });
  });

  test('each rule has its own budget, and crashes theirs', () => {
    const env = newEnv(mailYaml(1025, ['  maxPerHour: 1']));
    const ix = env.store.index();
    const t = 1_800_000_000_000;
    const e = fakeCrash(env.store, 0);
    const status = (r: OutboxRequest | null | undefined, now: number) => ix.queueMail(r!, now)?.status;
    const rule = (name: string, n: number) => ruleMailRequest(env.config, { rule: name, eventId: e.id, reason: null, to: ['a@b.c'], action: n });
    const crash = (n: number) => ({ ...crashMailRequests(env.config, e)[0]!, key: `crash:${n}` });
    expect([status(crash(1), t), status(crash(2), t + 1)]).toEqual(['pending', 'held']);
    expect([status(rule('a', 1), t + 2), status(rule('a', 2), t + 3)]).toEqual(['pending', 'held']);
    expect(status(rule('b', 1), t + 4)).toBe('pending');
    expect(status(manualMailRequest(e.id, ['a@b.c']), t + 5)).toBe('pending'); // asked for by hand: never held
    expect(status(crash(3), t + HOUR)).toBe('pending'); // the crash window ended
  });
});

describe("the daemon's sender loop", () => {
  test('start() delivers what is queued, and what the spool brings later, without being asked; stop() twice is fine', async () => {
    const smtp = await TestSmtp.start();
    const env = newEnv(mailYaml(smtp.port));
    const sender = new OutboxSender(env.store, env.config, createLogger({ file: null, component: 'test' }), { pollMs: 50 });
    fakeCrash(env.store, 0, (m) => crashMailRequests(env.config, m));
    sender.start();
    await waitFor('the first mail', () => smtp.messages.length === 1, 20_000, 20);
    fakeCrash(env.store, 1, (m) => crashMailRequests(env.config, m));
    sender.wake();
    await waitFor('the second mail', () => smtp.messages.length === 2, 20_000, 20);
    await sender.stop();
    await sender.stop();
    expect(rows(env).map((r) => r.status)).toEqual(['sent', 'sent']);
  });
});

describe('the CLI', () => {
  test('flightbox mail ID --to ... delivers now, exit 0', async () => {
    const smtp = await TestSmtp.start();
    const env = newEnv(mailYaml(smtp.port));
    const m = fakeCrash(env.store, 0);
    const r = await runCliAsync(['--config', env.s.configPath, 'mail', m.id.slice(0, 20), '--to', 'a@example.com', 'b@example.com']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Mailed ${m.id} to a@example\\.com, b@example\\.com \\(Message-ID <flightbox\\.${m.id}\\.[0-9a-f]+@[^>]+>\\)\\.\\n$`));
    expect(smtp.messages.map((x) => x.rcpt)).toEqual([['a@example.com', 'b@example.com']]);
    const [mail] = await smtp.parsed();
    expect(mail!.attachments.map((a) => a.filename)).toEqual([`${m.id}.tar.gz`]);
    const { files } = verifyArchive(mail!.attachments[0]!.content, m.id);
    expect(files).toContain('proc/cmdline');
    expect(files).not.toContain('proc/environ');
    expect(mail!.text).toContain('  command    /usr/bin/storm --password ***');
    expect(rows(env)).toEqual([expect.objectContaining({ kind: 'manual', status: 'sent', attempts: 1 })]);
  });

  test('flightbox mail with the server down: one sentence, exit 1, left in the outbox for the daemon', async () => {
    const port = await freePort();
    const env = newEnv(mailYaml(port));
    const m = fakeCrash(env.store, 0);
    const r = await runCliAsync(['--config', env.s.configPath, 'mail', m.id, '--to', 'a@example.com']);
    expect(r.code).toBe(75);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n')).toHaveLength(2);
    expect(r.stderr).toMatch(new RegExp(`^flightbox: could not mail ${m.id}: (cannot connect to|connection failed to) smtp://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.*; it stays in the outbox as mail 1 and the daemon tries again after .* \\(flightbox outbox\\)\\n$`));
    const out = runCli(['--config', env.s.configPath, 'outbox']);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/^1 +pending +manual +\S+ +a@example\.com +1\/8 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ +(cannot connect|connection failed)/m);
    // The daemon's sender delivers it once the server is back.
    const smtp = await TestSmtp.start({ port });
    env.clock.t = Date.now() + 31_000;
    expect((await env.sender.flush()).map((x) => x.status)).toEqual(['sent']);
    expect(smtp.messages).toHaveLength(1);
  });

  test('bad invocations and configs fail with the right status and one sentence', async () => {
    const env = newEnv(mailYaml(1025));
    const m = fakeCrash(env.store, 0);
    const cases: [string[], number, RegExp][] = [
      [['mail', m.id, '--to', 'not-an-address'], 2, /^flightbox: --to: "not-an-address" is not a mail address/],
      [['mail', m.id, '--to', 'a@b.c\r\nBcc: x@evil'], 2, /is not a mail address/],
      [['mail', m.id], 2, /--to/],
      [['mail', '19990101T000000-1-abcdef', '--to', 'a@b.c'], 3, /^flightbox: no event matches "19990101T000000-1-abcdef"\n$/],
    ];
    for (const [args, code, err] of cases) {
      const r = runCli(['--config', env.s.configPath, ...args]);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.stderr).toMatch(err);
      expect(r.stdout).toBe('');
    }
    // No transport: nothing can be mailed.
    const plain = join(env.s.dir, 'plain.yaml');
    writeFileSync(plain, `store:\n  root: ${env.s.root}\n`);
    const r = runCli(['--config', plain, 'mail', m.id, '--to', 'a@b.c']);
    expect(r.code).toBe(78);
    expect(r.stderr).toBe(`flightbox: mail.transport is not configured in ${plain}: nothing can be sent\n`);
    expect(rows(env)).toEqual([]);

    // A broken mail section: file, line and key, for every command.
    const broken = join(env.s.dir, 'broken.yaml');
    writeFileSync(broken, `store:\n  root: ${env.s.root}\nmail:\n  transport:\n    host: 127.0.0.1\n    sendmail: true\n  to: [ops@example.com]\n  subject: '{exe} {secret}'\n  retry: { attempts: 0 }\n`);
    const c = runCli(['--config', broken, 'config']);
    expect(c.code).toBe(78);
    expect(c.stderr).toContain(`mail.transport.sendmail: sendmail cannot be combined with SMTP options (host, port, auth, ...) (${broken}:6)`);
    expect(c.stderr).toContain(`mail.subject: unknown field {secret} in the subject template`);
    expect(c.stderr).toContain(`(${broken}:8)`);
    expect(c.stderr).toContain(`mail.retry.attempts: expected a whole number from 1 to 100, got 0 (${broken}:9)`);
    for (const args of [['outbox'], ['mail', m.id, '--to', 'a@b.c']]) {
      const x = runCli(['--config', broken, ...args]);
      expect(x.code).toBe(78);
      expect(x.stderr).toMatch(new RegExp(`^flightbox: mail\\.transport\\.sendmail: .*\\(${broken}:6\\) \\(and 2 more problems\\)\\n$`));
    }
    const defaults = runCli(['config', '--defaults']);
    expect(defaults.stdout).toContain('\nmail:\n  transport: null');
  });

  test('flightbox outbox on an empty outbox, and --all --json', () => {
    const env = newEnv(mailYaml(1025));
    const r = runCli(['--config', env.s.configPath, 'outbox']);
    expect(r).toEqual({ code: 0, stdout: '', stderr: 'No mail is waiting or failed.\n' });
    const j = runCli(['--config', env.s.configPath, 'outbox', '--all', '--json']);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toEqual([]);
  });
});
