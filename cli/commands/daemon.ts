// flightbox daemon: the service in the foreground (systemd runs it the same way).
import { resolve } from 'node:path';
import { runDaemon } from '../../daemon/daemon.js';
import { invocation } from '../args.js';
import { loadCliConfig } from '../context.js';

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<{ install: boolean }>(args);
  const { config, path, explicit } = loadCliConfig(opts);
  const stop = new Promise<string>((res) => {
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, () => res(sig));
  });
  await runDaemon({ config, configPath: explicit ? resolve(path) : null, install: opts.install, stop });
  return 0;
}
