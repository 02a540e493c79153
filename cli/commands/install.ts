// flightbox install: pipe every core dump to flightbox, now and after reboots.
import { resolve } from 'node:path';
import { FlightboxError } from '../../lib/errors.js';
import { installHandler } from '../../handler/install.js';
import { invocation } from '../args.js';
import { loadCliConfig } from '../context.js';

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new FlightboxError('PERMISSION', `${what} needs root (it writes /proc/sys/kernel/core_pattern)`);
}

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<{ persist: boolean }>(args);
  requireRoot('flightbox install');
  const { config, path, explicit } = loadCliConfig(opts);
  const { state, alreadyInstalled } = installHandler(config, { configPath: explicit ? resolve(path) : null, persist: opts.persist });
  process.stdout.write(
    `${alreadyInstalled ? 'Reinstalled' : 'Installed'} the crash handler: core_pattern is now ${state.pattern}\n` +
      `Crashes are stored in ${config.store.root}.\n` +
      (state.dropIn && state.persistent ? `Persisted in ${state.dropIn.path}.\n` : 'Not persisted: a reboot restores the previous pattern.\n') +
      `"flightbox uninstall" restores ${JSON.stringify(state.previous.corePattern)}.\n` +
      (state.corePipeWhy === 'no-perl' ? 'perl was not found: the pipe of a big core stays at the kernel\'s 64 KiB, which holds a crashed process longer (core.pipeBuffer).\n' : ''),
  );
  return 0;
}
