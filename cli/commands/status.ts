// flightbox status: the handler, the daemon and its recorders, the store.
import { socketPath } from '../../lib/config.js';
import { controlRequest } from '../../lib/control-client.js';
import { messageOf } from '../../lib/errors.js';
import { formatSize } from '../../lib/units.js';
import { corePipeLine, handlerStatus, overflowStatus } from '../../handler/install.js';
import { Store } from '../../store/store.js';
import { invocation } from '../args.js';
import { loadCliConfig } from '../context.js';
import { formatTime, listTable } from '../format.js';

interface RecorderLine {
  name: string;
  state: string;
  detail?: string;
  bufferBytes?: number | null;
  usedBytes?: number | null;
  eventsLost?: number | null;
  error?: string | null;
}

/** The launcher's directory on tmpfs (handler/install.ts launcherScript, handler/overflow.ts). */
function overflowLine(o: ReturnType<typeof overflowStatus>): string {
  if (o.state === 'missing') return `not ready (${o.dir} is made by install or the next crash's handler; until then node reads every crash itself)`;
  if (o.state === 'unsafe') return `not used: ${o.detail} (node reads every crash itself)`;
  const more = [o.waiting > 0 ? `${o.waiting} crash${o.waiting === 1 ? '' : 'es'} being recorded or waiting` : '', o.failed > 0 ? `${o.failed} that could not be recorded, kept as failed.* there` : ''].filter(Boolean);
  return `ready (${o.dir})${more.length > 0 ? `; ${more.join(', ')}` : ''}`;
}

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<{ json?: boolean }>(args);
  const { config, path } = loadCliConfig(opts);
  const handler = handlerStatus(config);
  const overflow = overflowStatus(config);
  const pipe = corePipeLine(config, handler.state);
  let daemon: Record<string, unknown> | null = null;
  let daemonError: string | null = null;
  try {
    const r = await controlRequest(socketPath(config), { op: 'status' }, 3000);
    if (r.ok) daemon = r;
    else daemonError = r.error;
  } catch (err) {
    daemonError = messageOf(err);
  }
  let store: { events: number; crashes: number; snapshots: number; bytes: number; newest: number | null } | null = null;
  let recent: ReturnType<ReturnType<Store['index']>['list']> = [];
  try {
    const s = new Store(config.store.root, { create: false, busyTimeoutMs: config.store.busyTimeoutMs });
    try {
      store = s.index().summary();
      recent = s.index().list({ limit: 5 });
    } finally {
      s.close();
    }
  } catch {
    store = null;
  }
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ handler, overflow, daemon, daemonError, store, storeRoot: config.store.root, config: config.source ?? path }, null, 2)}\n`);
    return handler.active ? 0 : 3;
  }
  const lines = [
    `Handler:         ${handler.active ? 'installed and active' : handler.installed ? 'installed, but core_pattern points elsewhere' : 'not installed'}`,
    `core_pattern:    ${handler.corePattern}`,
    `core_pipe_limit: ${handler.corePipeLimit}`,
    `Launcher spool:  ${overflowLine(overflow)}`,
    ...(pipe ? [`Core pipe:       ${pipe}`] : []),
    `Daemon:          ${daemon ? `running (pid ${String(daemon.pid)}, since ${String(daemon.startedAt)})${daemon.frozen ? ', recorders frozen' : ''}` : `not running (${daemonError})`}`,
  ];
  const taker = daemon?.crashes as { taking: boolean; taken: number; failed: number; onHand: number; detail?: string } | undefined;
  if (taker) {
    lines.push(`  crashes  ${taker.taking ? `recorded here when the launcher reads the whole core: ${taker.taken} so far${taker.failed ? `, ${taker.failed} failed` : ''}${taker.onHand ? `, ${taker.onHand} on hand` : ''}` : `recorded by the handler (${taker.detail ?? 'not taking them'})`}`);
  }
  for (const r of (daemon?.recorders as RecorderLine[] | undefined) ?? []) {
    const buf = r.bufferBytes ? `, buffer ${r.usedBytes !== null && r.usedBytes !== undefined ? `${formatSize(r.usedBytes)} of ` : ''}${formatSize(r.bufferBytes)}` : '';
    const lost = r.eventsLost ? `, ${r.eventsLost} events lost` : '';
    lines.push(`  ${r.name.padEnd(8)} ${r.state}${buf}${lost}${r.detail ? ` — ${r.detail}` : ''}${r.error ? ` (error: ${r.error})` : ''}`);
  }
  const rules = (daemon?.rules as { name: string; when: string; fired: number; suppressed: number; lastFired: string | null; lastError: string | null }[] | undefined) ?? [];
  if (rules.length > 0) lines.push('Rules:');
  for (const r of rules) {
    lines.push(`  ${r.name.padEnd(16)} ${r.when.padEnd(9)} fired ${r.fired}, suppressed ${r.suppressed}${r.lastFired ? `, last ${r.lastFired}` : ''}${r.lastError ? ` (error: ${r.lastError})` : ''}`);
  }
  lines.push(
    `Store:           ${config.store.root}${store ? ` — ${store.crashes} crash${store.crashes === 1 ? '' : 'es'}, ${store.snapshots} snapshot${store.snapshots === 1 ? '' : 's'}, ${formatSize(store.bytes)}${store.newest ? `, newest ${formatTime(store.newest)}` : ''}` : ' (empty or unreadable)'}`,
    `Config:          ${config.source ?? `${path} (absent: embedded defaults)`}`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  if (recent.length > 0) process.stdout.write(`\nLatest events:\n${listTable(recent)}\n`);
  return handler.active ? 0 : 3;
}
