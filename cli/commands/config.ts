// flightbox config: validate the configuration (exit 78 naming file, line and key) or
// print every option with its default.
import { defaultsYaml } from '../../lib/config.js';
import { invocation } from '../args.js';
import { loadCliConfig } from '../context.js';

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<{ defaults?: boolean }>(args);
  if (opts.defaults) {
    process.stdout.write(defaultsYaml());
    return 0;
  }
  const { config, path } = loadCliConfig(opts);
  process.stdout.write(config.source ? `${config.source}: valid\n` : `${path} is absent: embedded defaults in use\n`);
  return 0;
}
