// The configuration: embedded defaults, the YAML file that overrides them, and validation
// that names file, line and key. Returns {config, warnings, errors}; callers decide whether
// an error is fatal (daemon, CLI) or a warning to record (the handler must still capture).
import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { createRequire } from 'node:module';
import type { Document } from 'yaml';
import { errnoCode, messageOf } from './errors.js';
import { DEFAULT_RULE_COOLDOWN_MS, DEFAULT_RULE_MAX_PER_DAY, type Rule } from './rules.js';
import { parseRules } from './rules-config.js';
import { parseDuration, parseSize } from './units.js';

export const DEFAULT_CONFIG_PATH = '/etc/flightbox/flightbox.yaml';
export const DEFAULT_STORE_ROOT = '/var/lib/flightbox';
export const DEFAULT_SYSCTL_DROP_IN = '/etc/sysctl.d/60-flightbox.conf';
export const DEFAULT_CORE_MAX_BYTES = 2 * 1024 ** 3;
export const DEFAULT_BUSY_TIMEOUT_MS = 10_000;
export const DEFAULT_BACKTRACE_TIMEOUT_MS = 60_000;
export const DEFAULT_COMPRESS_LEVEL = 3;
export const DEFAULT_FREEZE_TIMEOUT_MS = 500;
export const DEFAULT_SNAPSHOT_DEADLINE_MS = 10_000;
export const DEFAULT_METRICS_INTERVAL_MS = 1000;
export const DEFAULT_METRICS_WINDOW_MS = 10 * 60 * 1000;
export const DEFAULT_METRICS_TOP_PROCESSES = 5;
export const DEFAULT_FTRACE_BUFFER_BYTES_PER_CPU = 4 * 1024 * 1024;
export const DEFAULT_FTRACE_EVENTS: readonly string[] = [
  'sched/sched_switch', 'sched/sched_process_fork', 'sched/sched_process_exec', 'sched/sched_process_exit',
  'signal/signal_generate', 'raw_syscalls/sys_enter', 'raw_syscalls/sys_exit',
];
export const DEFAULT_LTTNG_SUBBUF_BYTES = 512 * 1024;
export const DEFAULT_LTTNG_NUM_SUBBUF = 8;

export type CompressMethod = 'zstd' | 'gzip' | 'none';
export type BacktraceTool = 'auto' | 'eu-stack' | 'gdb' | 'none';

export interface Config {
  /** Absolute path of the file the values came from, or null for pure defaults. */
  source: string | null;
  store: { root: string; busyTimeoutMs: number };
  core: { maxSizeBytes: number; compress: CompressMethod; level: number; honourRlimit: boolean };
  capture: { environ: boolean };
  backtrace: { tool: BacktraceTool; timeoutMs: number };
  install: { launcher: string | null; sysctlDropIn: string | null };
  daemon: { socket: string | null; freezeTimeoutMs: number; snapshotDeadlineMs: number };
  recorders: {
    metrics: { enabled: boolean; intervalMs: number; windowMs: number; topProcesses: number };
    ftrace: {
      /** 'auto': on when running as root and tracefs is available */
      enabled: boolean | 'auto';
      bufferSizeBytes: number;
      events: string[];
      instance: string;
      /** make the kernel stop the buffer at the fatal signal itself (an event trigger) */
      freezeOnFatalSignal: boolean;
    };
    lttng: {
      enabled: boolean;
      kernel: string[];
      userspace: string[];
      subbufSizeBytes: number;
      numSubbuf: number;
      session: string;
    };
  };
  /** trigger rules (lib/rules-config.ts validates them) */
  rules: Rule[];
}

export interface ConfigIssue {
  key: string;
  message: string;
  file: string | null;
  line: number | null;
}

export interface LoadedConfig {
  config: Config;
  warnings: ConfigIssue[];
  errors: ConfigIssue[];
}

export function defaultConfig(): Config {
  return {
    source: null,
    store: { root: DEFAULT_STORE_ROOT, busyTimeoutMs: DEFAULT_BUSY_TIMEOUT_MS },
    core: { maxSizeBytes: DEFAULT_CORE_MAX_BYTES, compress: 'zstd', level: DEFAULT_COMPRESS_LEVEL, honourRlimit: true },
    capture: { environ: true },
    backtrace: { tool: 'auto', timeoutMs: DEFAULT_BACKTRACE_TIMEOUT_MS },
    install: { launcher: null, sysctlDropIn: DEFAULT_SYSCTL_DROP_IN },
    daemon: { socket: null, freezeTimeoutMs: DEFAULT_FREEZE_TIMEOUT_MS, snapshotDeadlineMs: DEFAULT_SNAPSHOT_DEADLINE_MS },
    recorders: {
      metrics: { enabled: true, intervalMs: DEFAULT_METRICS_INTERVAL_MS, windowMs: DEFAULT_METRICS_WINDOW_MS, topProcesses: DEFAULT_METRICS_TOP_PROCESSES },
      ftrace: {
        enabled: 'auto',
        bufferSizeBytes: DEFAULT_FTRACE_BUFFER_BYTES_PER_CPU,
        events: [...DEFAULT_FTRACE_EVENTS],
        instance: 'flightbox',
        freezeOnFatalSignal: true,
      },
      lttng: {
        enabled: false,
        kernel: ['sched_switch', 'syscalls'],
        userspace: ['*'],
        subbufSizeBytes: DEFAULT_LTTNG_SUBBUF_BYTES,
        numSubbuf: DEFAULT_LTTNG_NUM_SUBBUF,
        session: 'flightbox',
      },
    },
    rules: [],
  };
}

/** The daemon's control socket: configured, or inside the root-only store. */
export function socketPath(c: Config): string {
  return c.daemon.socket ?? `${c.store.root}/daemon.sock`;
}

type Setter = (c: Config, v: unknown) => string | undefined; // returns the complaint, if any
interface Schema {
  [key: string]: Setter | Schema;
}

const absPath = (set: (c: Config, v: string) => void): Setter => (c, v) => {
  if (typeof v !== 'string' || !isAbsolute(v)) return `expected an absolute path, got ${show(v)}`;
  if (v.includes('\0') || /[\n\r]/.test(v)) return `path must not contain NUL or newlines, got ${show(v)}`;
  set(c, v);
};
const nullableAbsPath = (set: (c: Config, v: string | null) => void): Setter => (c, v) =>
  v === null || v === false ? (set(c, null), undefined) : absPath(set)(c, v);
const size = (set: (c: Config, v: number) => void): Setter => (c, v) => {
  const n = parseSize(v);
  if (n === undefined) return `expected a size such as 2GiB or 500MB, got ${show(v)}`;
  set(c, n);
};
const duration = (set: (c: Config, v: number) => void): Setter => (c, v) => {
  const n = parseDuration(v);
  if (n === undefined) return `expected a duration such as 30s or 5m, got ${show(v)}`;
  set(c, n);
};
const bool = (set: (c: Config, v: boolean) => void): Setter => (c, v) => {
  if (typeof v !== 'boolean') return `expected true or false, got ${show(v)}`;
  set(c, v);
};
const oneOf = <T extends string>(values: readonly T[], set: (c: Config, v: T) => void): Setter => (c, v) => {
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
    return `expected one of ${values.join(', ')}, got ${show(v)}`;
  }
  set(c, v as T);
};
const intIn = (lo: number, hi: number, set: (c: Config, v: number) => void): Setter => (c, v) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    return `expected a whole number from ${lo} to ${hi}, got ${show(v)}`;
  }
  set(c, v);
};

const stringList = (re: RegExp, item: string, set: (c: Config, v: string[]) => void): Setter => (c, v) => {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) return `expected a list of ${item} names, got ${show(v)}`;
  const bad = (v as string[]).find((x) => !re.test(x));
  if (bad !== undefined) return `${show(bad)} is not a valid ${item} name`;
  set(c, [...(v as string[])]);
};
const enabledAuto = (set: (c: Config, v: boolean | 'auto') => void): Setter => (c, v) => {
  if (typeof v !== 'boolean' && v !== 'auto') return `expected true, false or auto, got ${show(v)}`;
  set(c, v);
};
const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
const name = (set: (c: Config, v: string) => void): Setter => (c, v) => {
  if (typeof v !== 'string' || !NAME_RE.test(v)) return `expected a name of letters, digits, '_', '.', '-', got ${show(v)}`;
  set(c, v);
};

/** Every key the file may set, with its validator. Keys not listed here are errors (typos). */
const SCHEMA: Schema = {
  store: {
    root: absPath((c, v) => { c.store.root = v; }),
    busyTimeout: duration((c, v) => { c.store.busyTimeoutMs = v; }),
  },
  core: {
    maxSize: size((c, v) => { c.core.maxSizeBytes = v; }),
    compress: oneOf(['zstd', 'gzip', 'none'] as const, (c, v) => { c.core.compress = v; }),
    level: intIn(1, 19, (c, v) => { c.core.level = v; }),
    honourRlimit: bool((c, v) => { c.core.honourRlimit = v; }),
  },
  capture: {
    environ: bool((c, v) => { c.capture.environ = v; }),
  },
  backtrace: {
    tool: oneOf(['auto', 'eu-stack', 'gdb', 'none'] as const, (c, v) => { c.backtrace.tool = v; }),
    timeout: duration((c, v) => { c.backtrace.timeoutMs = v; }),
  },
  install: {
    launcher: nullableAbsPath((c, v) => { c.install.launcher = v; }),
    sysctlDropIn: nullableAbsPath((c, v) => { c.install.sysctlDropIn = v; }),
  },
  daemon: {
    socket: nullableAbsPath((c, v) => { c.daemon.socket = v; }),
    freezeTimeout: duration((c, v) => { c.daemon.freezeTimeoutMs = v; }),
    snapshotDeadline: duration((c, v) => { c.daemon.snapshotDeadlineMs = v; }),
  },
  recorders: {
    metrics: {
      enabled: bool((c, v) => { c.recorders.metrics.enabled = v; }),
      interval: duration((c, v) => { c.recorders.metrics.intervalMs = v; }),
      window: duration((c, v) => { c.recorders.metrics.windowMs = v; }),
      topProcesses: intIn(0, 100, (c, v) => { c.recorders.metrics.topProcesses = v; }),
    },
    ftrace: {
      enabled: enabledAuto((c, v) => { c.recorders.ftrace.enabled = v; }),
      bufferSize: size((c, v) => { c.recorders.ftrace.bufferSizeBytes = v; }),
      events: stringList(/^[a-z0-9_]+(\/[a-z0-9_]+)?$/, 'tracefs event (system/event or system)', (c, v) => { c.recorders.ftrace.events = v; }),
      instance: name((c, v) => { c.recorders.ftrace.instance = v; }),
      freezeOnFatalSignal: bool((c, v) => { c.recorders.ftrace.freezeOnFatalSignal = v; }),
    },
    lttng: {
      enabled: bool((c, v) => { c.recorders.lttng.enabled = v; }),
      kernel: stringList(/^[A-Za-z0-9_*]+$/, 'kernel event', (c, v) => { c.recorders.lttng.kernel = v; }),
      userspace: stringList(/^[A-Za-z0-9_:*.-]+$/, 'user-space event', (c, v) => { c.recorders.lttng.userspace = v; }),
      subbufSize: size((c, v) => { c.recorders.lttng.subbufSizeBytes = v; }),
      numSubbuf: intIn(2, 1024, (c, v) => { c.recorders.lttng.numSubbuf = v; }),
      session: name((c, v) => { c.recorders.lttng.session = v; }),
    },
  },
};

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

export function resolveConfigPath(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): {
  path: string;
  explicit: boolean;
} {
  if (explicit) return { path: explicit, explicit: true };
  if (env.FLIGHTBOX_CONFIG) return { path: env.FLIGHTBOX_CONFIG, explicit: true };
  return { path: DEFAULT_CONFIG_PATH, explicit: false };
}

/** Load and validate. A missing default file means embedded defaults; a missing explicit file is an error. */
export function loadConfig(path: string, opts: { explicit: boolean }): LoadedConfig {
  const config = defaultConfig();
  const errors: ConfigIssue[] = [];
  const warnings: ConfigIssue[] = [];
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' && !opts.explicit) return { config, warnings, errors };
    errors.push({ key: '', message: `cannot read config: ${messageOf(err)}`, file: path, line: null });
    return { config, warnings, errors };
  }
  config.source = isAbsolute(path) ? path : `${process.cwd()}/${path}`;
  // yaml is loaded only when there is a file to parse (the handler's start-up is on the crash path).
  const { LineCounter, parseDocument, isMap } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const lineOf = (offset: number | undefined) => (offset === undefined ? null : lines.linePos(offset).line);
  for (const e of doc.errors) {
    errors.push({ key: '', message: e.message.split('\n')[0] ?? 'invalid YAML', file: path, line: lineOf(e.pos[0]) });
  }
  if (errors.length > 0) return { config, warnings, errors };
  validate(doc, config, path, lineOf, errors, isMap);
  return { config, warnings, errors };
}

function validate(
  doc: Document,
  config: Config,
  file: string,
  lineOf: (offset: number | undefined) => number | null,
  errors: ConfigIssue[],
  isMap: typeof import('yaml').isMap,
): void {
  const root = doc.contents;
  if (root === null || root === undefined) return; // empty file: defaults
  if (!isMap(root)) {
    errors.push({ key: '', message: 'expected a mapping at the top level', file, line: lineOf(root.range?.[0]) });
    return;
  }
  walk(root, SCHEMA, '');

  function walk(map: { items: { key: unknown; value: unknown }[] }, schema: Schema, prefix: string): void {
    for (const pair of map.items) {
      const key = String((pair.key as { value?: unknown })?.value ?? pair.key);
      const full = prefix ? `${prefix}.${key}` : key;
      const keyLine = lineOf((pair.key as { range?: [number] })?.range?.[0]);
      if (!prefix && key === 'rules') {
        // A list of rules, not options: validated from the YAML nodes for per-item lines.
        const parsed = parseRules(pair.value, { file, lineOf });
        config.rules = parsed.rules;
        errors.push(...parsed.errors);
        continue;
      }
      const entry = schema[key];
      if (entry === undefined) {
        const known = [...Object.keys(schema), ...(prefix ? [] : ['rules'])].map((k) => (prefix ? `${prefix}.${k}` : k)).join(', ');
        errors.push({ key: full, message: `${prefix ? 'unknown option' : 'unknown section'} (known: ${known})`, file, line: keyLine });
        continue;
      }
      const value = pair.value as { range?: [number]; toJSON?: () => unknown } | null;
      if (typeof entry === 'function') {
        const raw = value?.toJSON?.() ?? null;
        const complaint = entry(config, raw);
        if (complaint) errors.push({ key: full, message: complaint, file, line: lineOf(value?.range?.[0]) ?? keyLine });
        continue;
      }
      if (value === null || value === undefined || (value as { value?: unknown }).value === null) continue; // "section:" alone: defaults
      if (!isMap(value)) {
        errors.push({ key: full, message: 'expected a mapping of options', file, line: keyLine });
        continue;
      }
      walk(value, entry, full);
    }
  }
}

/** "CONFIG_INVALID: core.maxSize: expected a size ..., got "lots" (/etc/flightbox/flightbox.yaml:4)" */
export function formatConfigIssue(issue: ConfigIssue): string {
  const where = issue.file ? ` (${issue.file}${issue.line ? `:${issue.line}` : ''})` : '';
  return `${issue.key ? `${issue.key}: ` : ''}${issue.message}${where}`;
}

/** The defaults as a YAML document, commented, for `flightbox config --defaults`. */
export function defaultsYaml(): string {
  const d = defaultConfig();
  return [
    '# flightbox configuration: every option with its default.',
    'store:',
    `  root: ${d.store.root}            # bundles, index and logs; must be owned by root, mode 0700`,
    `  busyTimeout: ${d.store.busyTimeoutMs / 1000}s                 # how long a writer waits for the SQLite lock`,
    'core:',
    `  maxSize: 2GiB                  # cores are cut at this size (marked truncated)`,
    `  compress: ${d.core.compress}                 # zstd, gzip or none (zstd falls back to gzip when the zstd program is missing)`,
    `  level: ${d.core.level}                       # compression level`,
    `  honourRlimit: ${d.core.honourRlimit}             # respect the crashed process's RLIMIT_CORE (ulimit -c), as a file core would`,
    'capture:',
    `  environ: ${d.capture.environ}                  # keep /proc/PID/environ in the bundle (root-only file)`,
    'backtrace:',
    `  tool: ${d.backtrace.tool}                     # auto (eu-stack, then gdb), eu-stack, gdb or none`,
    `  timeout: ${d.backtrace.timeoutMs / 1000}s                   # the stack-trace tool is killed after this`,
    'install:',
    '  launcher: null                 # path of the core_pattern launcher; null = <store.root>/core-handler',
    `  sysctlDropIn: ${d.install.sysctlDropIn}   # null = do not persist across reboots`,
    'daemon:',
    '  socket: null                   # control socket; null = <store.root>/daemon.sock (root-only)',
    `  freezeTimeout: ${d.daemon.freezeTimeoutMs}ms             # how long the crash handler waits for the daemon to freeze the recorders`,
    `  snapshotDeadline: ${d.daemon.snapshotDeadlineMs / 1000}s           # a recorder snapshot that takes longer is abandoned (warning)`,
    'recorders:',
    '  metrics:                       # built in, no privileges: /proc sampled into a ring',
    `    enabled: ${d.recorders.metrics.enabled}`,
    `    interval: ${d.recorders.metrics.intervalMs / 1000}s`,
    `    window: ${d.recorders.metrics.windowMs / 60000}m                   # the ring holds window / interval samples`,
    `    topProcesses: ${d.recorders.metrics.topProcesses}                # top processes by CPU and by RSS in each sample`,
    '  ftrace:                        # kernel events through a tracefs instance of our own',
    `    enabled: ${d.recorders.ftrace.enabled}                  # auto: on when root and tracefs is available`,
    `    bufferSize: ${d.recorders.ftrace.bufferSizeBytes / 1024 / 1024}MiB               # per CPU`,
    `    events: [${d.recorders.ftrace.events.join(', ')}]`,
    `    instance: ${d.recorders.ftrace.instance}`,
    `    freezeOnFatalSignal: ${d.recorders.ftrace.freezeOnFatalSignal}     # the kernel stops the buffer at a fatal signal (traceoff trigger)`,
    '  lttng:                         # LTTng in snapshot mode (lttng-tools)',
    `    enabled: ${d.recorders.lttng.enabled}`,
    `    kernel: [${d.recorders.lttng.kernel.join(', ')}]      # needs lttng-modules; skipped with one warning where missing`,
    `    userspace: ['*']`,
    `    subbufSize: ${d.recorders.lttng.subbufSizeBytes / 1024}KiB`,
    `    numSubbuf: ${d.recorders.lttng.numSubbuf}`,
    `    session: ${d.recorders.lttng.session}`,
    '# Trigger rules: when something happens, take a snapshot, collect command output, mail.',
    '# One source per rule (threshold, log, kmsg, signal, crash, manual); each rule has a',
    `# cooldown (default ${DEFAULT_RULE_COOLDOWN_MS / 60_000}m) and a daily cap (maxPerDay, default ${DEFAULT_RULE_MAX_PER_DAY}). None by default; for example:`,
    '# rules:',
    '#   - name: mysqld-rss',
    '#     when: { threshold: { metric: process.rss, process: { name: mysqld }, above: 2GiB, for: 30s } }',
    "#     do: [snapshot, { collect: ['ps auxf', dmesg] }, { mail: { to: [oncall@example.com] } }]",
    '#     cooldown: 10m',
    '#   - name: api-errors',
    "#     when: { log: { path: /var/log/app.log, match: 'ERROR (?<code>\\d+)' } }",
    '#     do: [snapshot]',
    '#   - name: by-hand',
    '#     when: manual               # flightbox trigger by-hand',
    '#     do: [snapshot, { start: ftrace }]',
    'rules: []',
    '',
  ].join('\n');
}
