#!/usr/bin/env node
// Entry point the kernel runs through core_pattern (via the launcher that install writes):
//   main.js [--config FILE] -- %P %i %I %u %g %s %t %c %h %d %F
// No stdout or stderr exists here; everything goes to /dev/kmsg and the store's log.
// A broken config falls back to the defaults: a crash must still be recorded.
import { DEFAULT_CONFIG_PATH, formatConfigIssue, loadConfig } from '../lib/config.js';
import { messageOf } from '../lib/errors.js';
import { kmsg } from '../lib/log.js';
import { captureCrash } from './capture.js';

async function main(argv: string[]): Promise<number> {
  process.umask(0o077);
  let configPath: string | null = null;
  let i = 0;
  if (argv[i] === '--config') {
    configPath = argv[i + 1] ?? null;
    i += 2;
  }
  if (argv[i] === '--') i++;
  const kernelArgs = argv.slice(i);

  // Every valid option is honoured and each broken one falls back to its default (an
  // unparseable file means all defaults), so a typo cannot move crashes to another store.
  const loaded = configPath ? loadConfig(configPath, { explicit: true }) : loadConfig(DEFAULT_CONFIG_PATH, { explicit: false });
  const config = loaded.config;
  const configWarnings = loaded.errors.map((e) => `config option ignored, using its default: ${formatConfigIssue(e)}`);
  if (configWarnings.length > 0) kmsg(`configuration is broken, capturing with the defaults: ${configWarnings[0]}`, 4);

  try {
    await captureCrash(kernelArgs, { config, configWarnings });
    return 0;
  } catch (err) {
    kmsg(`failed to capture a crash: ${messageOf(err)}`, 3);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    kmsg(`handler failed: ${messageOf(err)}`, 3);
    process.exit(1);
  },
);
