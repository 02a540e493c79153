// flightbox status: is the handler installed, and where do crashes go.
import { handlerStatus } from '../../handler/install.js';
import { invocation } from '../args.js';
import { loadCliConfig } from '../context.js';

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<{ json?: boolean }>(args);
  const { config, path } = loadCliConfig(opts);
  const s = handlerStatus(config);
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ ...s, store: config.store.root, config: config.source ?? path }, null, 2)}\n`);
  } else {
    process.stdout.write([
      `Handler:        ${s.active ? 'installed and active' : s.installed ? 'installed, but core_pattern points elsewhere' : 'not installed'}`,
      `core_pattern:   ${s.corePattern}`,
      `core_pipe_limit: ${s.corePipeLimit}`,
      `Store:          ${config.store.root}`,
      `Config:         ${config.source ?? `${path} (absent: embedded defaults)`}`,
      '',
    ].join('\n'));
  }
  return s.active ? 0 : 3;
}
