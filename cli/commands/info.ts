// flightbox info: everything known about one event, with its stack trace.
import { join } from 'node:path';
import { escapeControl } from '../../lib/escape.js';
import { readSmallNoFollow } from '../../lib/safe-fs.js';
import { formatSize } from '../../lib/units.js';
import { readManifest, type Manifest } from '../../store/manifest.js';
import { invocation, pickEvent, type FilterOptions } from '../args.js';
import { loadCliConfig, openStoreForQuery } from '../context.js';
import { formatTime } from '../format.js';

const MAX_TRACE_BYTES = 1024 * 1024;

function ago(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}min ago`;
  if (s < 172800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

/** The per-thread part of a stack-trace file (eu-stack prints its module map first). */
export function threadsPart(text: string): string {
  const i = text.search(/^TID \d+:$/m);
  return (i >= 0 ? text.slice(i) : text).trimEnd();
}

function coreLine(m: Manifest): string {
  const c = m.core;
  if (!c) return '-';
  if (!c.stored) return `none (${c.reason ?? 'not stored'})`;
  const parts = [`${c.truncated ? 'truncated' : 'present'}`, `${formatSize(c.size)}`];
  if (c.compression && c.compression !== 'none') parts.push(`stored as ${formatSize(c.storedSize)} (${c.compression})`);
  if (c.truncated && c.reason) parts.push(`cut by ${c.reason}`);
  if (!c.elf) parts.push('not an ELF core');
  return parts.join(', ');
}

export function renderInfo(m: Manifest, bundleDir: string): string {
  const p = m.process;
  const rows: [string, string][] = [
    ['ID', m.id],
    ['Kind', m.kind],
    ['Time', `${formatTime(m.timeMs)} (${ago(m.timeMs)})`],
  ];
  if (p) {
    const ns = p.pidInNamespace !== null && p.pidInNamespace !== p.pid ? ` [pid ${p.pidInNamespace} in its namespace]` : '';
    rows.push(
      ['PID', `${p.pid} (${escapeControl(p.comm ?? '?')})${ns}`],
      ['TID', `${p.tid ?? '-'}${p.tidInNamespace !== null && p.tidInNamespace !== p.tid ? ` [${p.tidInNamespace} in its namespace]` : ''}`],
      ['PPID', String(p.ppid ?? '-')],
      ['UID', String(p.uid)],
      ['GID', String(p.gid)],
      ['Signal', `${p.signal} (${p.signalName})`],
      ['Executable', escapeControl(p.exe ?? '-', 4096)],
      ['Command Line', p.cmdline ? escapeControl(p.cmdline.join(' '), 4096) : '-'],
      ['CWD', escapeControl(p.cwd ?? '-', 4096)],
      ['Root', escapeControl(p.root ?? '-', 4096)],
      ['Control Group', escapeControl(p.cgroup ?? '-', 4096)],
      ['Unit', escapeControl(p.unit ?? '-')],
      ['Container', p.inContainer === null ? 'unknown' : p.inContainer ? `yes (hostname ${escapeControl(p.hostnameInNamespace ?? '?')})` : 'no'],
      ['Dumpable', String(p.dumpable ?? '-')],
      ['RLIMIT_CORE', p.rlimitCore === null ? 'unlimited' : String(p.rlimitCore)],
      ['Threads', String(p.threads ?? '-')],
      ['Open fds', String(p.fdCount ?? '-')],
    );
  }
  rows.push(
    ['Hostname', escapeControl(m.host.hostname)],
    ['Boot ID', m.host.bootId ?? '-'],
    ['Kernel', m.host.kernel],
    ['Signature', m.signature ? `${m.signature.hash} (${escapeControl(m.signature.text, 1024)})` : '-'],
    ['Core', coreLine(m)],
    ['Bundle', bundleDir],
  );
  if (m.rule) rows.push(['Rule', escapeControl(m.rule)]);
  const w = Math.max(...rows.map(([k]) => k.length));
  const out = rows.map(([k, v]) => `${k.padStart(w)}: ${v}`);
  if (m.warnings.length > 0) {
    out.push(`${'Warnings'.padStart(w)}:`);
    for (const x of m.warnings) out.push(`${' '.repeat(w + 2)}${escapeControl(x, 1024)}`);
  }
  if (m.backtrace?.file) {
    let trace = '';
    try {
      trace = threadsPart(readSmallNoFollow(join(bundleDir, m.backtrace.file), MAX_TRACE_BYTES));
    } catch {
      trace = m.backtrace.frames.map((f, i) => `#${i} ${f.addr ?? ''} ${f.fn ?? '??'}${f.module ? ` - ${f.module}` : ''}`).join('\n');
    }
    out.push('', `Stack trace (${m.backtrace.tool}, ${m.backtrace.threads} thread${m.backtrace.threads === 1 ? '' : 's'}, crashing thread ${m.backtrace.crashingTid ?? '?'}):`);
    out.push(trace.split('\n').map((l) => escapeControl(l, 4096)).join('\n'));
  }
  if (m.modules.length > 0) {
    out.push('', 'Modules (build-id):');
    for (const mod of m.modules) out.push(`  ${escapeControl(mod.name).padEnd(32)} ${mod.buildId ?? '-'}`);
  }
  return `${out.join('\n')}\n`;
}

export async function run(...args: unknown[]): Promise<number> {
  const { positional, opts } = invocation<FilterOptions & { json?: boolean }>(args);
  const { config } = loadCliConfig(opts);
  const store = openStoreForQuery(config, { userView: true });
  try {
    const row = pickEvent(store, positional[0], opts);
    const dir = join(store.root, row.bundle);
    const m = readManifest(dir);
    process.stdout.write(opts.json ? `${JSON.stringify(m, null, 2)}\n` : renderInfo(m, dir));
    return 0;
  } finally {
    store.close();
  }
}
