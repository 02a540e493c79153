// The long-running service: owns the flight recorders, serves the control socket (freeze
// and snapshot for the crash handler, snapshot and status for the CLI), takes snapshots on
// SIGUSR1, reloads the config on SIGHUP, indexes what the handler could not (spool), and,
// as root, keeps the crash handler installed for as long as it runs.
import { lstatSync, mkdirSync, realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { formatConfigIssue, freezeFifoPath, loadConfig, socketPath, type Config } from '../lib/config.js';
import type { ControlRequest } from '../lib/control-client.js';
import { FlightboxError, messageOf } from '../lib/errors.js';
import { createLogger, type Logger } from '../lib/log.js';
import { VERSION } from '../lib/version.js';
import { handlerStatus, installHandler, uninstallHandler } from '../handler/install.js';
import { drainIncoming, incomingWaiting } from '../handler/overflow.js';
import { isBundleId, makeBundleId } from '../store/bundle-id.js';
import { MANIFEST_VERSION, hostInfo, type Manifest, type RecorderSummary } from '../store/manifest.js';
import { STAGING_DIR, Store } from '../store/store.js';
import type { Firing, Rule } from '../lib/rules.js';
import { readManifest } from '../store/manifest.js';
import { collectInto, eventEnv, runBounded, splitCommand, MAX_EXEC_OUTPUT_BYTES } from './commands.js';
import { ControlServer } from './control-server.js';
import { CrashTaker } from './crash-taker.js';
import { EarlyFreezes, FreezeFifo, earlyFreezeKey } from './freeze-fifo.js';
import { Exporter } from './exporter.js';
import { RecorderSet, type RecorderSnapshot } from './recorder-set.js';
import { TriggerRunner } from './trigger-runner.js';
import { vacuum } from '../store/retention.js';
import { queueMail, ruleMailRequest } from '../notify/outbox.js';
import { OutboxSender } from '../notify/sender.js';
import type { OutboxRequest } from '../store/index-db.js';
import type { EngineState } from '../triggers/engine.js';
import type { RecorderName } from '../recorder/recorder.js';

export const DAEMON_HOUSEKEEPING_INTERVAL_MS = 60_000;
export const RECORDER_HEALTH_INTERVAL_MS = 5_000;
/** Crash-storm spool entries older than this are taken by the daemon's housekeeping. */
export const OVERFLOW_SWEEP_AGE_MS = 30_000;

export interface DaemonOptions {
  config: Config;
  /** the file the config came from, when one was named (carried into the handler's launcher) */
  configPath: string | null;
  install: boolean;
  out?: (line: string) => void;
}

/** Summaries for the manifest, with file paths relative to the bundle. */
export function recorderSummaries(snaps: RecorderSnapshot[]): RecorderSummary[] {
  return snaps.map((s) => ({
    name: s.name,
    ok: s.ok,
    files: s.files.map((f) => `recorder/${s.name}/${f}`),
    warnings: s.warnings,
    from: s.from,
    to: s.to,
  }));
}

export class Daemon {
  #cfg: Config;
  readonly #opts: DaemonOptions;
  readonly #store: Store;
  readonly #log: Logger;
  readonly #out: (line: string) => void;
  #recorders: RecorderSet;
  #triggers: TriggerRunner;
  readonly #sender: OutboxSender;
  readonly #exporter: Exporter;
  #control: ControlServer | null = null;
  #freezeFifo: FreezeFifo | null = null;
  readonly #early = new EarlyFreezes();
  readonly #taker: CrashTaker;
  #timers: NodeJS.Timeout[] = [];
  #installedHere = false;
  #startedAt = Date.now();
  #snapshots = 0;

  constructor(opts: DaemonOptions) {
    this.#opts = opts;
    this.#cfg = opts.config;
    this.#out = opts.out ?? ((l: string) => process.stderr.write(`${l}\n`));
    this.#store = new Store(this.#cfg.store.root, { create: true, busyTimeoutMs: this.#cfg.store.busyTimeoutMs });
    this.#log = createLogger({ file: this.#store.logFile, component: 'daemon' });
    this.#recorders = this.#newRecorderSet(this.#cfg);
    this.#triggers = this.#newTriggerRunner(this.#cfg.rules);
    this.#sender = new OutboxSender(this.#store, this.#cfg, this.#log);
    this.#taker = new CrashTaker({
      storeRoot: this.#cfg.store.root, busyTimeoutMs: this.#cfg.store.busyTimeoutMs, config: () => this.#cfg, log: this.#log,
      drain: () => void this.#drainOverflow(0),
    });
    // Monitoring (Prometheus, Graphite): nothing runs unless configured.
    this.#exporter = new Exporter(this.#cfg, { store: this.#store, log: this.#log, out: this.#out, recorders: () => this.#recorders.status(), startedAt: this.#startedAt });
  }

  #newTriggerRunner(rules: readonly Rule[], state?: EngineState): TriggerRunner {
    return new TriggerRunner(rules, { log: this.#log, fire: (f, rule) => this.#fire(f, rule), state });
  }

  #newRecorderSet(cfg: Config): RecorderSet {
    const workDir = join(cfg.store.root, 'work');
    mkdirSync(workDir, { recursive: true, mode: 0o700 });
    return new RecorderSet(cfg, { log: this.#log, workDir });
  }

  async start(): Promise<void> {
    const drained = this.#store.drainSpool();
    const swept = this.#store.sweepStaging();
    if (drained > 0) this.#out(`Indexed ${drained} spooled event(s).`);
    if (swept.length > 0) this.#out(`Removed ${swept.length} staging director${swept.length === 1 ? 'y' : 'ies'} left by dead handlers.`);
    const overflow = await this.#drainOverflow(0);
    if (overflow > 0) this.#out(`Recorded ${overflow} crash(es) a crash storm's launchers had left.`);
    this.#log.info({ drained, swept: swept.length, version: VERSION }, 'Daemon starting');

    // The socket first: a second daemon must be refused before it touches the recorders.
    this.#control = new ControlServer(socketPath(this.#cfg), (req) => this.#handle(req), this.#log);
    await this.#control.listen();
    const fifo = new FreezeFifo(freezeFifoPath(this.#cfg), (id) => this.#earlyFreeze(id), this.#log, (entry) => this.#taker.take(entry));
    try {
      fifo.open();
      this.#freezeFifo = fifo;
    } catch (err) {
      // Crash handlers then freeze the recorders after the core is read, with a warning.
      this.#log.warn({}, 'Cannot make the freeze FIFO, crash handlers will freeze late: %s', messageOf(err));
      this.#out(`Warning: cannot make the freeze FIFO (${messageOf(err)}); crash bundles will say their recorders were frozen late.`);
    }
    await this.#recorders.start();
    for (const s of this.#recorders.status()) this.#out(`Recorder ${s.name}: ${s.state}${s.detail ? ` (${s.detail})` : ''}`);
    await this.#triggers.start();
    this.#sender.start();
    await this.#exporter.start();
    if (this.#cfg.rules.length > 0) this.#out(`Rules: ${this.#cfg.rules.map((r) => `${r.name} (${r.when.kind})`).join(', ')}`);

    if (this.#opts.install) {
      if (process.getuid?.() !== 0) {
        this.#out('Not root: the crash handler is not installed (run as root, or use "flightbox install").');
      } else if (handlerStatus(this.#cfg).active) {
        this.#out('The crash handler is already installed; leaving it in place on exit.');
      } else {
        const { state } = installHandler(this.#cfg, { configPath: this.#opts.configPath, persist: false });
        this.#installedHere = true;
        this.#out(`Crash handler installed for as long as this runs: ${state.pattern}`);
      }
    }
    // Crashes the launcher reads whole come to this daemon, with the recorders running and
    // the FIFO open (a launcher offers a crash only while both the mark and the FIFO are there).
    if (this.#freezeFifo) {
      if (this.#taker.start()) this.#out('Crashes whose core the launcher reads whole are recorded by this daemon.');
      else if (process.getuid?.() === 0) this.#out(`Crashes are recorded by the handler, not by this daemon (${this.#taker.status().detail ?? 'unknown reason'}).`);
    }
    // Periodic housekeeping and recorder health; these timers also keep the service alive.
    this.#timers.push(setInterval(() => this.#housekeeping(), DAEMON_HOUSEKEEPING_INTERVAL_MS));
    this.#timers.push(setInterval(() => void this.#recorders.checkHealth(), RECORDER_HEALTH_INTERVAL_MS));
    this.#out(`flightbox is running; events are stored in ${this.#cfg.store.root}. Stop with Ctrl-C.`);
  }

  #housekeeping(): void {
    try {
      const n = this.#store.drainSpool();
      const swept = this.#store.sweepStaging();
      if (n > 0) this.#sender.wake(); // spooled events may carry queued mail
      if (n > 0 || swept.length > 0) this.#log.info({ indexed: n, swept: swept.length }, 'Housekeeping');
    } catch (err) {
      this.#log.warn({}, 'Housekeeping failed, will retry: %s', messageOf(err));
    }
    this.#vacuum(); // retention
    this.#taker.sweep(); // offers whose FIFO line never came
    void this.#drainOverflow(OVERFLOW_SWEEP_AGE_MS);
  }

  #drainingOverflow = false;

  /**
   * Crashes a storm's launchers spooled that no drainer took (its node failed, or it was
   * killed): normally the launcher's own drainer makes them into bundles within seconds.
   */
  async #drainOverflow(minAgeMs: number): Promise<number> {
    if (this.#drainingOverflow || !incomingWaiting(this.#cfg.store.root)) return 0;
    this.#drainingOverflow = true;
    try {
      const r = await drainIncoming(this.#cfg, { minAgeMs });
      if (r.bundles > 0 || r.failed > 0) this.#log.info({ bundles: r.bundles, failed: r.failed }, 'Recorded crashes left by crash-storm launchers');
      if (r.bundles > 0) this.#sender.wake();
      return r.bundles;
    } catch (err) {
      this.#log.warn({}, 'Could not record the crashes left by crash-storm launchers, will retry: %s', messageOf(err));
      return 0;
    } finally {
      this.#drainingOverflow = false;
    }
  }

  /**
   * Retention (store/retention.ts), here and after each crash notice; never in the crash
   * handler, whose time is the crashed process's. `keep`: the crash just recorded (its rules
   * and mail still need it), as systemd-coredump spares the core it just wrote.
   */
  #vacuum(keep?: ReadonlySet<string>): void {
    try {
      const r = vacuum(this.#store, this.#cfg, { keep });
      if (r.deleted.length > 0 || r.swept.length > 0) {
        const bytes = r.deleted.reduce((a, d) => a + d.size, 0);
        this.#log.info({ deleted: r.deleted.length, bytes, swept: r.swept.length }, 'Retention deleted %d events: %s', r.deleted.length,
          `${r.deleted.slice(0, 20).map((d) => `${d.id} (${d.reason})`).join(', ')}${r.deleted.length > 20 ? ', …' : ''}`);
      }
      if (r.plan.unsatisfied.length > 0) this.#log.warn({ over: r.plan.unsatisfied.join(',') }, 'Retention: still over the limit, only pinned events are left');
    } catch (err) {
      this.#log.warn({}, 'Retention failed, will retry: %s', messageOf(err));
    }
  }

  async #handle(req: ControlRequest): Promise<Record<string, unknown>> {
    switch (req.op) {
      case 'ping':
        return { version: VERSION, pid: process.pid };
      case 'status':
        return this.status();
      case 'freeze':
        return { frozen: await this.#recorders.freeze() };
      case 'thaw':
        await this.#recorders.thaw();
        return {};
      case 'snapshot': {
        const r = await this.snapshot(req.reason);
        return { id: r.id, bundle: r.bundleDir, warnings: r.warnings };
      }
      case 'trigger': {
        if (!this.#triggers.hasRule(req.rule)) {
          const names = this.#triggers.rules.map((r) => r.name);
          throw new Error(`no rule named ${JSON.stringify(req.rule)} (${names.length ? `rules: ${names.join(', ')}` : 'no rules are configured'})`);
        }
        const r = await this.#triggers.feed({ kind: 'manual', rule: req.rule, t: Date.now() });
        const s = r.suppressed[0];
        if (r.fired.length === 0 && s) throw new Error(`rule ${req.rule} is suppressed (${s.why})`);
        const f = r.fired[0];
        if (f?.error) throw new Error(`rule ${req.rule} fired but its actions failed: ${f.error}`);
        return { id: f?.id ?? null };
      }
      case 'crash': {
        if (!isBundleId(req.id)) throw new Error('bad event id');
        const m = readManifest(this.#store.bundleDir(req.id));
        if (m.kind !== 'crash' || !m.process) throw new Error(`${req.id} is not a crash`);
        void this.#triggers.feed({
          kind: 'crash', t: m.timeMs, id: m.id, exe: m.process.exe, signal: m.process.signal,
          signature: m.signature?.hash ?? null, uid: m.process.uid,
        });
        this.#sender.wake(); // the crash's own mail, queued by the handler
        setImmediate(() => this.#vacuum(new Set([req.id]))); // retention, after the reply
        return {};
      }
      case 'snapshot-into': {
        const dir = this.#checkStagingTarget(req.dir);
        mkdirSync(dir, { mode: 0o700 });
        // With an id (a handler that sent its early freeze on the FIFO) this snapshot owns that
        // freeze, or, when the line never came (or comes later), takes one of its own. Without
        // one (an older handler) the freeze came over the socket and may have timed out.
        const early = req.id === undefined ? undefined : this.#early.claim(earlyFreezeKey(req), this.#recorders.leaseGeneration);
        const frozeHere = early === undefined ? !this.#recorders.frozen : !early;
        if (frozeHere) await this.#recorders.freeze();
        const frozenAt = this.#recorders.frozenAt;
        try {
          const snaps = await this.#recorders.snapshotInto(dir, Date.now() + this.#cfg.daemon.snapshotDeadlineMs);
          return { recorders: recorderSummaries(snaps), frozeHere, early, frozenAt };
        } finally {
          if (req.thaw || frozeHere) await this.#recorders.thaw();
        }
      }
    }
  }

  /**
   * A crash's line on the freeze FIFO: freeze now, for that crash's snapshot to claim, and
   * start taking the snapshot at once, while the handler is still starting and reading the
   * core: its snapshot-into then only links what is (or is being) written.
   */
  #earlyFreeze(key: string): void {
    if (!this.#early.arrive(key, this.#recorders.leaseGeneration)) return;
    // freeze() counts synchronously, before its first await: a snapshot-into read next finds it.
    this.#recorders.freeze()
      .then(() => this.#recorders.prefetch(Date.now() + this.#cfg.daemon.snapshotDeadlineMs))
      .catch((err: unknown) => this.#log.warn({ key }, 'Early freeze failed: %s', messageOf(err)));
  }

  /**
   * A handler names the directory to fill: it must be `recorder` inside one of the store's
   * staging directories, which must be a real directory of ours, and must not exist yet.
   */
  #checkStagingTarget(dir: string): string {
    const stagingRoot = realpathSync(join(this.#cfg.store.root, STAGING_DIR));
    const target = resolve(dir);
    const bundle = dirname(target);
    if (basename(target) !== 'recorder' || dirname(bundle) !== stagingRoot || !isBundleId(basename(bundle))) {
      throw new FlightboxError('USAGE', `refusing to write a snapshot to ${JSON.stringify(dir)}: not a staging directory of this store`);
    }
    const st = lstatSync(bundle);
    if (!st.isDirectory() || st.isSymbolicLink()) throw new FlightboxError('USAGE', `${bundle} is not a directory`);
    return target;
  }

  /** A snapshot event of its own: freeze, snapshot every recorder into a new bundle, thaw, index. */
  snapshot(reason: string): Promise<{ id: string; bundleDir: string; warnings: string[] }> {
    return this.recordEvent({ reason, rule: null, recorders: null });
  }

  /**
   * Record a snapshot event: the recorders' snapshots (all, some, or none: `false`), the output
   * of `collect` commands, a rule's labels and planned actions; published and indexed.
   */
  async recordEvent(opts: {
    reason: string;
    rule: string | null;
    labels?: Record<string, string>;
    recorders: readonly string[] | null | false;
    collect?: { commands: string[]; timeoutMs: number } | null;
    actions?: string[];
    /** a rule's mail actions, queued with the event in one transaction */
    mail?: { to: string[]; action: number }[];
  }): Promise<{ id: string; bundleDir: string; warnings: string[] }> {
    const t0 = Date.now();
    const id = makeBundleId(new Date(t0), 0);
    const staging = this.#store.createStaging(id);
    let snaps: RecorderSnapshot[] = [];
    const warnings: string[] = [];
    if (opts.recorders !== false) {
      await this.#recorders.freeze();
      try {
        const dir = join(staging, 'recorder');
        mkdirSync(dir, { mode: 0o700 });
        snaps = await this.#recorders.snapshotInto(dir, t0 + this.#cfg.daemon.snapshotDeadlineMs, opts.recorders);
      } finally {
        await this.#recorders.thaw();
      }
      warnings.push(...snaps.flatMap((s) => s.warnings));
      if (snaps.length === 0) warnings.push('no recorder is running: the snapshot is empty');
    }
    if (opts.collect && opts.collect.commands.length > 0) {
      const dir = join(staging, 'collected');
      mkdirSync(dir, { mode: 0o700 });
      const c = await collectInto(dir, opts.collect.commands, opts.collect.timeoutMs);
      warnings.push(...c.warnings);
    }
    const manifest: Manifest = {
      version: MANIFEST_VERSION,
      id,
      kind: 'snapshot',
      time: new Date(t0).toISOString(),
      timeMs: t0,
      capturedAt: new Date(t0).toISOString(),
      host: hostInfo(),
      process: null,
      core: null,
      backtrace: null,
      signature: null,
      modules: [],
      rule: opts.rule,
      reason: opts.reason,
      ...(opts.labels && Object.keys(opts.labels).length > 0 ? { labels: opts.labels } : {}),
      ...(opts.actions ? { actions: opts.actions } : {}),
      recorders: recorderSummaries(snaps),
      warnings,
      timings: { totalMs: Date.now() - t0 },
      files: [],
      handler: { version: VERSION, pid: process.pid },
    };
    const mail: OutboxRequest[] = [];
    for (const m of opts.mail ?? []) {
      const req = opts.rule ? ruleMailRequest(this.#cfg, { rule: opts.rule, eventId: id, reason: opts.reason, to: m.to, action: m.action }) : null;
      if (req) mail.push(req);
      else this.#log.warn({ rule: opts.rule ?? '', id }, 'mail action not sent: mail.transport is not configured');
    }
    const r = this.#store.finishBundle(staging, manifest, { mail });
    if (mail.length > 0) this.#sender.wake();
    this.#snapshots++;
    this.#log.info({ id, rule: opts.rule ?? '', reason: opts.reason, ms: Date.now() - t0, warnings: warnings.length }, 'Snapshot taken');
    return { id, bundleDir: r.bundleDir, warnings };
  }

  /**
   * A rule fired. Its event is recorded first (recorder snapshots and collected output in
   * one bundle); then the other actions run in order with the event in their environment.
   * A crash rule without snapshot or collect adds actions to the crash event itself.
   */
  async #fire(f: Firing, rule: Rule): Promise<string | null> {
    const snapshot = rule.do.find((a) => a.kind === 'snapshot');
    const collects = rule.do.flatMap((a) => (a.kind === 'collect' ? [a] : []));
    const describe = rule.do.map((a) => {
      switch (a.kind) {
        case 'snapshot': return a.recorders ? `snapshot ${a.recorders.join(',')}` : 'snapshot';
        case 'collect': return `collect ${a.commands.length} command(s)`;
        case 'exec': return `exec ${a.argv[0]}`;
        case 'mail': return `mail ${a.to.join(',')}`;
        case 'start-recorder': return `start ${a.recorder}`;
        case 'stop-recorder': return `stop ${a.recorder}`;
      }
    });
    const mails = rule.do.flatMap((a, i) => (a.kind === 'mail' ? [{ to: a.to, action: i }] : []));
    let id: string | null = null;
    let bundle = '';
    if (rule.when.kind === 'crash' && !snapshot && collects.length === 0) {
      id = f.labels.id ?? null;
      bundle = id ? this.#store.bundleDir(id) : '';
      // The mail is about the crash itself, which is already indexed.
      for (const m of mails) {
        const req = id ? ruleMailRequest(this.#cfg, { rule: rule.name, eventId: id, reason: f.reason, to: m.to, action: m.action }) : null;
        if (req) queueMail(this.#store, req);
        else this.#log.warn({ rule: rule.name }, 'mail action not sent: mail.transport is not configured');
      }
      if (mails.length > 0) this.#sender.wake();
    } else {
      const r = await this.recordEvent({
        reason: f.reason,
        rule: rule.name,
        labels: f.labels,
        recorders: snapshot && snapshot.kind === 'snapshot' ? snapshot.recorders : false,
        collect: collects.length > 0
          ? { commands: collects.flatMap((c) => c.commands), timeoutMs: Math.max(...collects.map((c) => c.timeoutMs)) }
          : null,
        actions: describe,
        mail: mails,
      });
      id = r.id;
      bundle = r.bundleDir;
    }
    for (const a of rule.do) {
      switch (a.kind) {
        case 'exec': {
          let out = '';
          const r = await runBounded(a.argv, {
            timeoutMs: a.timeoutMs,
            maxBytes: MAX_EXEC_OUTPUT_BYTES,
            env: eventEnv({ id: id ?? '', rule: rule.name, reason: f.reason, bundle, labels: f.labels }),
            sink: (d) => { out += d.toString('utf8'); },
          });
          const level = r.exitCode === 0 ? 'info' : 'warn';
          this.#log[level]({ rule: rule.name, id: id ?? '', exit: r.exitCode ?? r.signal ?? r.error ?? '?', ms: r.durationMs },
            'exec %s: %s', a.argv[0], out.trim().slice(0, 2000));
          break;
        }
        case 'mail':
          break; // queued with the event above; the outbox sender delivers it
        case 'start-recorder':
          this.#log.info({ rule: rule.name }, 'Rule %s: %s', rule.name, await this.#recorders.startRecorder(a.recorder as RecorderName));
          break;
        case 'stop-recorder':
          this.#log.info({ rule: rule.name }, 'Rule %s: %s', rule.name, await this.#recorders.stopRecorder(a.recorder as RecorderName));
          break;
        default:
          break;
      }
    }
    return id;
  }

  handlesSignal(signal: 'SIGUSR1' | 'SIGUSR2'): boolean {
    return this.#triggers.handlesSignal(signal);
  }

  async signal(signal: 'SIGUSR1' | 'SIGUSR2'): Promise<void> {
    await this.#triggers.feed({ kind: 'signal', signal, t: Date.now() });
  }

  status(): Record<string, unknown> {
    return {
      pid: process.pid,
      version: VERSION,
      startedAt: new Date(this.#startedAt).toISOString(),
      frozen: this.#recorders.frozen,
      handlerInstalledHere: this.#installedHere,
      snapshotsTaken: this.#snapshots,
      recorders: this.#recorders.status(),
      rules: this.#triggers.status(),
      crashes: this.#taker.status(),
      config: this.#cfg.source,
    };
  }

  /** SIGHUP: a broken new config is refused and the running one kept. */
  async reload(): Promise<void> {
    const path = this.#cfg.source ?? this.#opts.configPath;
    if (!path) {
      this.#out('Reload: running on embedded defaults, nothing to reload.');
      return;
    }
    const loaded = loadConfig(path, { explicit: true });
    if (loaded.errors.length > 0) {
      const msg = `Reload refused, keeping the running configuration: ${loaded.errors.map(formatConfigIssue).join('; ')}`;
      this.#out(msg);
      this.#log.warn({ file: path }, '%s', msg);
      return;
    }
    const next = loaded.config;
    if (next.store.root !== this.#cfg.store.root || socketPath(next) !== socketPath(this.#cfg)) {
      const msg = 'Reload refused: store.root and daemon.socket take effect only at restart';
      this.#out(msg);
      this.#log.warn({ file: path }, '%s', msg);
      return;
    }
    await this.#triggers.stop();
    await this.#recorders.stop();
    this.#cfg = next;
    this.#recorders = this.#newRecorderSet(next);
    await this.#recorders.start();
    this.#triggers = this.#newTriggerRunner(next.rules, this.#triggers.state);
    this.#sender.setConfig(next);
    await this.#triggers.start();
    await this.#exporter.reconfigure(next);
    this.#out(`Reloaded ${path}.`);
    this.#log.info({ file: path }, 'Configuration reloaded');
  }

  async stop(reason: string): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    // Launchers stop offering crashes; those on hand are recorded while the socket and the
    // recorders still serve their snapshots.
    this.#taker.withdraw();
    this.#freezeFifo?.close();
    this.#freezeFifo = null;
    await this.#taker.stop();
    await this.#control?.close();
    await this.#triggers.stop();
    await this.#sender.stop();
    await this.#recorders.stop();
    await this.#exporter.close();
    if (this.#installedHere) {
      const r = uninstallHandler(this.#cfg);
      for (const w of r.warnings) this.#out(w);
      if (r.restoredPattern !== null) this.#out(`Restored core_pattern to ${JSON.stringify(r.restoredPattern)}.`);
      this.#installedHere = false;
    }
    this.#log.info({ reason }, 'Daemon stopped');
    this.#store.close();
  }
}

/** Run until SIGINT/SIGTERM; SIGUSR1 takes a snapshot, SIGHUP reloads. */
export async function runDaemon(opts: DaemonOptions): Promise<void> {
  const daemon = new Daemon(opts);
  const out = opts.out ?? ((l: string) => process.stderr.write(`${l}\n`));
  let resolveStop: (why: string) => void = () => {};
  const stopped = new Promise<string>((r) => { resolveStop = r; });
  const onTerm = (sig: string) => () => resolveStop(sig);
  // SIGUSR1 takes a snapshot unless rules claim it; SIGUSR2 belongs to rules only.
  const onUsr1 = () => {
    if (daemon.handlesSignal('SIGUSR1')) return void daemon.signal('SIGUSR1');
    daemon.snapshot('SIGUSR1').then(
      (r) => out(`Snapshot ${r.id} taken (SIGUSR1).`),
      (err: unknown) => out(`Snapshot on SIGUSR1 failed: ${messageOf(err)}`),
    );
  };
  const onUsr2 = () => {
    if (!daemon.handlesSignal('SIGUSR2')) out('SIGUSR2: no rule listens for it; ignored.');
    else void daemon.signal('SIGUSR2');
  };
  const onHup = () => { daemon.reload().catch((err: unknown) => out(`Reload failed: ${messageOf(err)}`)); };
  process.on('SIGINT', onTerm('SIGINT'));
  process.on('SIGTERM', onTerm('SIGTERM'));
  process.on('SIGUSR1', onUsr1);
  process.on('SIGUSR2', onUsr2);
  process.on('SIGHUP', onHup);
  try {
    await daemon.start();
  } catch (err) {
    await daemon.stop('failed to start').catch(() => {});
    throw err;
  }
  const why = await stopped;
  out(`Stopping (${why})...`);
  await daemon.stop(why);
  process.off('SIGUSR1', onUsr1);
  process.off('SIGUSR2', onUsr2);
  process.off('SIGHUP', onHup);
}
