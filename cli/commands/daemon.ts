// flightbox daemon: the service in the foreground (systemd runs it the same way).
import { resolve } from 'node:path';
import { runDaemon } from '../../daemon/daemon.js';
import { invocation } from '../args.js';
import { loadCliConfig } from '../context.js';

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<{ install: boolean }>(args);
  const { config, path, explicit } = loadCliConfig(opts);
  await runDaemon({ config, configPath: explicit ? resolve(path) : null, install: opts.install });
  return 0;
}
