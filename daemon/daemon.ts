// The long-running service. For now: index what the handler could not (spool), sweep
// staging debris, and, as root, keep the crash handler installed for as long as it runs,
// restoring the previous core_pattern on exit. Later stages add recorders and triggers.
import type { Config } from '../lib/config.js';
import { createLogger } from '../lib/log.js';
import { handlerStatus, installHandler, uninstallHandler } from '../handler/install.js';
import { messageOf } from '../lib/errors.js';
import { Store } from '../store/store.js';

export const DAEMON_HOUSEKEEPING_INTERVAL_MS = 60_000;

export interface DaemonOptions {
  config: Config;
  configPath: string | null;
  install: boolean;
  /** Resolves when the daemon should stop (signal handlers are set up by the caller). */
  stop: Promise<string>;
  out?: (line: string) => void;
}

export async function runDaemon(opts: DaemonOptions): Promise<void> {
  const out = opts.out ?? ((l: string) => process.stderr.write(`${l}\n`));
  const cfg = opts.config;
  const store = new Store(cfg.store.root, { create: true, busyTimeoutMs: cfg.store.busyTimeoutMs });
  const log = createLogger({ file: store.logFile, component: 'daemon' });
  const drained = store.drainSpool();
  const swept = store.sweepStaging();
  if (drained > 0) out(`Indexed ${drained} spooled event(s).`);
  if (swept.length > 0) out(`Removed ${swept.length} staging director${swept.length === 1 ? 'y' : 'ies'} left by dead handlers.`);
  log.info({ drained, swept: swept.length }, 'Daemon starting');

  let installedHere = false;
  if (opts.install) {
    if (process.getuid?.() !== 0) {
      out('Not root: the crash handler is not installed (run as root, or use "flightbox install").');
    } else if (handlerStatus(cfg).active) {
      out('The crash handler is already installed; leaving it in place on exit.');
    } else {
      const { state } = installHandler(cfg, { configPath: opts.configPath, persist: false });
      installedHere = true;
      out(`Crash handler installed for as long as this runs: ${state.pattern}`);
    }
  }
  out(`flightbox is running; crashes are stored in ${cfg.store.root}. Stop with Ctrl-C.`);
  // Periodic housekeeping; also what keeps the event loop (and so the service) alive.
  const timer = setInterval(() => {
    try {
      const n = store.drainSpool();
      const swept = store.sweepStaging();
      if (n > 0 || swept.length > 0) log.info({ indexed: n, swept: swept.length }, 'Housekeeping');
    } catch (err) {
      log.warn({}, 'Housekeeping failed, will retry: %s', messageOf(err));
    }
  }, DAEMON_HOUSEKEEPING_INTERVAL_MS);
  const why = await opts.stop;
  clearInterval(timer);
  if (installedHere) {
    const r = uninstallHandler(cfg);
    for (const w of r.warnings) out(w);
    if (r.restoredPattern !== null) out(`Restored core_pattern to ${JSON.stringify(r.restoredPattern)}.`);
  }
  log.info({ reason: why }, 'Daemon stopped');
  store.close();
}
