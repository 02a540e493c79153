// flightbox config: validate the configuration, listing every problem with file, line and
// key (exit 78), or print every option with its default.
import { defaultsYaml, formatConfigIssue, loadConfig, resolveConfigPath } from '../../lib/config.js';
import { ERROR_CODES } from '../../lib/errors.js';
import { invocation } from '../args.js';

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<{ defaults?: boolean }>(args);
  if (opts.defaults) {
    process.stdout.write(defaultsYaml());
    return 0;
  }
  const { path, explicit } = resolveConfigPath(opts.config);
  const { config, errors, warnings } = loadConfig(path, { explicit });
  for (const w of warnings) process.stderr.write(`flightbox: warning: ${formatConfigIssue(w)}\n`);
  if (errors.length > 0) {
    for (const e of errors) process.stderr.write(`flightbox: ${formatConfigIssue(e)}\n`);
    return ERROR_CODES.CONFIG_INVALID.exit;
  }
  process.stdout.write(config.source ? `${config.source}: valid\n` : `${path} is absent: embedded defaults in use\n`);
  return 0;
}
