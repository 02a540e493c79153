// flightbox uninstall: restore core_pattern, core_pipe_limit and the sysctl.d drop-in.
import { uninstallHandler } from '../../handler/install.js';
import { invocation } from '../args.js';
import { loadCliConfig } from '../context.js';
import { requireRoot } from './install.js';

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<object>(args);
  requireRoot('flightbox uninstall');
  const { config } = loadCliConfig(opts);
  const r = uninstallHandler(config);
  for (const w of r.warnings) process.stderr.write(`flightbox: ${w}\n`);
  if (!r.installed) process.stdout.write(`flightbox is not installed for the store ${config.store.root}; nothing to do.\n`);
  else if (r.restoredPattern !== null) process.stdout.write(`Uninstalled; core_pattern restored to ${JSON.stringify(r.restoredPattern)}.\n`);
  else process.stdout.write('Uninstalled.\n');
  return 0;
}
