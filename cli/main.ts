#!/usr/bin/env node
// The flightbox command. Each verb is loaded only when used; exit statuses are decided
// here and nowhere else (usage 2, not found 3, config 78, internal 1), and only internal
// errors print a stack.
import { Command, CommanderError, Option } from 'commander';
import { ERROR_CODES, FlightboxError, exitStatusFor, messageOf } from '../lib/errors.js';
import { VERSION } from '../lib/version.js';

// Output piped into `head` (or a closed pager) ends the command quietly, as for cat.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const program = new Command();
program
  .name('flightbox')
  .description('Crash dumps and flight-recorder snapshots for Linux hosts.')
  .version(VERSION)
  .option('-c, --config <file>', 'config file (default: $FLIGHTBOX_CONFIG or /etc/flightbox/flightbox.yaml)')
  .exitOverride()
  .configureOutput({ outputError: () => {} });

type Action = (...args: unknown[]) => Promise<number | void>;
function lazy(load: () => Promise<{ run: Action }>): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const mod = await load();
    const code = await mod.run(...args);
    if (typeof code === 'number' && code !== 0) process.exitCode = code;
  };
}

const filters = (cmd: Command) =>
  cmd
    .option('-S, --since <time>', 'only events at or after this time (2026-11-26, "2026-11-26 14:00", 1h, 2d, today)')
    .option('-U, --until <time>', 'only events at or before this time')
    .option('--exe <path|name>', 'executable: a full path, or a base name')
    .option('--comm <name>', 'process name (comm)')
    .option('--pid <pid>', 'process id')
    .option('--uid <uid>', 'user id')
    .option('--signal <sig>', 'signal name or number (SIGSEGV, segv, 11)')
    .option('--signature <hash>', 'crash signature (or a prefix of it)')
    .option('--rule <name>', 'snapshots taken by this rule')
    .option('--kind <kind>', 'crash or snapshot');

filters(program.command('list').alias('ls').description('list recorded events, oldest first'))
  .option('-n, --lines <n>', 'only the newest N events')
  .option('-r, --reverse', 'newest first')
  .option('--json', 'a JSON array of event objects')
  .action(lazy(() => import('./commands/list.js')));

filters(program.command('info').description('everything known about an event, with its stack trace (default: the newest match)'))
  .argument('[id]', 'event id, or a unique prefix of one')
  .option('--json', 'the bundle manifest as JSON')
  .action(lazy(() => import('./commands/info.js')));

filters(program.command('dump').description("write an event's core dump, decompressed (default: the newest match)"))
  .argument('[id]', 'event id, or a unique prefix of one')
  .requiredOption('-o, --output <file>', 'file to write ("-" for standard output when it is not a terminal)')
  .option('-f, --force', 'overwrite the output file if it exists')
  .action(lazy(() => import('./commands/dump.js')));

filters(program.command('debug').description('run gdb on the executable and the core of an event (default: the newest match)'))
  .argument('[id]', 'event id, or a unique prefix of one')
  .option('--debugger <program>', 'debugger to run', 'gdb')
  .option('-A, --debugger-arguments <args>', 'extra arguments for the debugger, split on spaces')
  .action(lazy(() => import('./commands/debug.js')));

program.command('groups').description('crashes grouped by signature: count, first and last seen, executable')
  .option('-S, --since <time>', 'only crashes at or after this time')
  .option('--exe <path|name>', 'executable: a full path, or a base name')
  .option('--json', 'a JSON array')
  .action(lazy(() => import('./commands/groups.js')));

filters(program.command('top').description("what the processes did before an event (CPU, syscalls, files, signals; metrics), or this host now with --live"))
  .argument('[id]', 'event id, or a unique prefix of one (default: the newest match)')
  .option('--live', 'this host now, sampled every second (no daemon needed)')
  .option('--json', 'the whole report (with --live: one sample per line)')
  .option('--source <trace>', 'ftrace or lttng (default: ftrace when the bundle has it)')
  .option('--rows <n>', 'processes per table')
  .option('--count <n>', 'with --live: stop after N samples')
  .action(lazy(() => import('./commands/top.js')));

filters(program.command('view').description("an event's raw trace as text (trace-cmd report, babeltrace2, or the ftrace text)"))
  .argument('[id]', 'event id, or a unique prefix of one (default: the newest match)')
  .option('--source <trace>', 'ftrace or lttng (default: ftrace when the bundle has it)')
  .option('--raw', "flightbox's own reader: one line per event, system calls named")
  .action(lazy(() => import('./commands/view.js')));

filters(program.command('watch').description('follow events as they are indexed, with the filters of list'))
  .option('-n, --lines <n>', 'first print the newest N events that match')
  .option('--json', 'one JSON object per event and line')
  .action(lazy(() => import('./commands/watch.js')));

program.command('export').description('write an event bundle as an archive: .tar.gz or .zip, chosen by the extension')
  .argument('<id>', 'event id, or a unique prefix of one')
  .requiredOption('-o, --output <file>', 'the archive to write (FILE.tar.gz, FILE.tgz or FILE.zip)')
  .option('--no-core', 'leave the core dump out')
  .option('--redact', 'drop environ and mask secrets in the command line')
  .option('-f, --force', 'overwrite the output file if it exists')
  .action(lazy(() => import('./commands/export.js')));

program.command('import').description('add a bundle exported on another host to this store and its index')
  .argument('<file>', 'an archive made by flightbox export')
  .action(lazy(() => import('./commands/import.js')));

program.command('mail').description('mail an event now (summary, and the archive when small enough)')
  .argument('<id>', 'event id, or a unique prefix of one')
  .requiredOption('--to <address...>', 'recipients')
  .action(lazy(() => import('./commands/mail.js')));

program.command('outbox').description('mail waiting to be sent, and mail that failed, with the last error')
  .option('--json', 'as JSON')
  .option('--all', 'also mail already sent')
  .action(lazy(() => import('./commands/outbox.js')));

program.command('reindex').description('rebuild the index from the bundles on disk')
  .action(lazy(() => import('./commands/reindex.js')));

program.command('gc').description('apply retention now: delete what maxUse, keepFree, maxAge and maxPerExe say must go')
  .option('--dry-run', 'only print what would be deleted')
  .option('--json', 'as JSON')
  .action(lazy(() => import('./commands/gc.js')));

program.command('delete').description('delete an event: its bundle and its index row')
  .argument('<id>', 'event id, or a unique prefix of one')
  .option('-f, --force', 'delete it even when pinned')
  .action(lazy(() => import('./commands/delete.js')));

program.command('pin').description('keep an event: retention never deletes a pinned event')
  .argument('<id>', 'event id, or a unique prefix of one')
  .action(lazy(() => import('./commands/pin.js')));

program.command('unpin').description('let retention delete an event again')
  .argument('<id>', 'event id, or a unique prefix of one')
  .action(lazy(async () => ({ run: (await import('./commands/pin.js')).runUnpin })));

program.command('install').description('make the kernel pipe every core dump to flightbox (persists across reboots)')
  .option('--no-persist', 'do not write the sysctl.d drop-in (lost at reboot)')
  .action(lazy(() => import('./commands/install.js')));

program.command('uninstall').description('restore the core_pattern and core_pipe_limit from before install')
  .action(lazy(() => import('./commands/uninstall.js')));

program.command('status').description('the crash handler, the daemon and its recorders, the store')
  .option('--json', 'as JSON')
  .action(lazy(() => import('./commands/status.js')));

program.command('check').description('a Nagios/Icinga plugin: crashes in a time window against thresholds (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)')
  .option('--warning <range>', 'WARNING when the count is outside this range ("1": more than 1; Nagios ranges N, N:, ~:N, N:M, @N:M)')
  .option('--critical <range>', 'CRITICAL when the count is outside this range')
  .option('--window <duration>', 'how far back to count (15m, 1h, 1d)', '15m')
  .option('--exe <path|name>', 'only this executable: a full path, or a base name')
  .option('--signal <sig>', 'only this signal (SIGSEGV, segv, 11)')
  // A plugin exits 3 (UNKNOWN) with its one line for a bad invocation too; --help stays 0.
  .exitOverride((err) => {
    if (err.exitCode === 0) throw err;
    process.stdout.write(`FLIGHTBOX UNKNOWN - ${err.message.replace(/^error: /, '').replace(/[\r\n|]+/g, ' ').trim()}\n`);
    process.exit(3);
  })
  .action(lazy(() => import('./commands/check.js')));

program.command('snapshot').description("ask the daemon to save every recorder's recent past as a snapshot event")
  .option('--reason <text>', 'why (kept with the event)')
  .option('--json', 'print the id, bundle and warnings as JSON')
  .action(lazy(() => import('./commands/snapshot.js')));

program.command('trigger').description('fire a rule now, as if its condition had matched (cooldown and maxPerDay apply)')
  .argument('<rule>', 'the rule name')
  .option('--json', 'print the result as JSON')
  .action(lazy(() => import('./commands/trigger.js')));

program.command('daemon').description('run the service in the foreground; as root, installs the handler for as long as it runs')
  .option('--no-install', 'do not install the core_pattern handler')
  .action(lazy(() => import('./commands/daemon.js')));

program.command('serve').description('a read-only web page: events, groups, stack traces, metrics charts (prints its URL with a token)')
  .option('--listen <addr>', 'address and port (port 0: any free port; a non-loopback address only when given)', '127.0.0.1:9478')
  .action(lazy(() => import('./commands/serve.js')));

program.command('config').description('check the configuration, or print the defaults')
  .addOption(new Option('--defaults', 'print every option with its default'))
  .action(lazy(() => import('./commands/config.js')));

function fail(err: unknown): void {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') {
      process.exitCode = 0;
      return;
    }
    // commander's message, as one sentence with the way out.
    process.stderr.write(`flightbox: ${err.message.replace(/^error: /, '').replace(/\.?\s*$/, '')} (see "flightbox --help").\n`);
    process.exitCode = ERROR_CODES.USAGE.exit;
    return;
  }
  if (err instanceof FlightboxError) {
    process.stderr.write(`flightbox: ${err.message}\n`);
  } else {
    process.stderr.write(`flightbox: internal error: ${messageOf(err)}\n${err instanceof Error ? err.stack ?? '' : ''}\n`);
  }
  process.exitCode = exitStatusFor(err);
}

program.parseAsync(process.argv).catch(fail);
