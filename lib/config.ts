// The configuration: embedded defaults, the YAML file that overrides them, and validation
// that names file, line and key. Returns {config, warnings, errors}; callers decide whether
// an error is fatal (daemon, CLI) or a warning to record (the handler must still capture).
import { readFileSync } from 'node:fs';
import { basename, isAbsolute } from 'node:path';
import type { Document } from 'yaml';
import { builtin } from './builtin.js';
import { loadYaml } from './yaml.js';
import { errnoCode, messageOf } from './errors.js';
import { DEFAULT_RULE_COOLDOWN_MS, DEFAULT_RULE_MAX_PER_DAY, type Rule } from './rules.js';
import { parseRules } from './rules-config.js';
import { isMailAddress } from './mail-address.js';
import { formatSize, parseDuration, parseSize } from './units.js';


export const DEFAULT_CONFIG_PATH = '/etc/flightbox/flightbox.yaml';
export const DEFAULT_STORE_ROOT = '/var/lib/flightbox';
export const DEFAULT_SYSCTL_DROP_IN = '/etc/sysctl.d/60-flightbox.conf';
export const DEFAULT_CORE_MAX_BYTES = 2 * 1024 ** 3;
export const DEFAULT_BUSY_TIMEOUT_MS = 10_000;
export const DEFAULT_BACKTRACE_TIMEOUT_MS = 60_000;
export const DEFAULT_COMPRESS_LEVEL = 3;
export const DEFAULT_CORES_PER_EXE_PER_HOUR = 5;
/** Each storing handler holds a core's worth of I/O and a stack-trace tool's memory. */
export const DEFAULT_MAX_CONCURRENT_HANDLERS = 8;
/**
 * The kernel's pipe of a core longer than the launcher's prefix is made this big, so that the
 * kernel goes on writing the core while node starts and while the handler writes to disk
 * instead of waiting for every 64 KiB to be read. 1 GiB of random data held 2.05 s with the
 * kernel's 64 KiB pipe, 0.91 s with 16 MiB (cat: 1.29 s); 256 MiB of text 648 -> 334 ms.
 */
export const DEFAULT_CORE_PIPE_BYTES = 16 * 1024 * 1024;
export const MIN_CORE_PIPE_BYTES = 64 * 1024;
export const MAX_CORE_PIPE_BYTES = 256 * 1024 * 1024;
export const DEFAULT_SNAPSHOT_DEADLINE_MS = 10_000;
export const DEFAULT_METRICS_INTERVAL_MS = 1000;
export const DEFAULT_METRICS_WINDOW_MS = 10 * 60 * 1000;
export const DEFAULT_METRICS_TOP_PROCESSES = 5;
export const DEFAULT_FTRACE_BUFFER_BYTES_PER_CPU = 4 * 1024 * 1024;
/** ~3 % of a CPU at the ~0.3 µs an event costs here (README, Performance). */
export const DEFAULT_FTRACE_MAX_EVENT_RATE = 100_000;
export const DEFAULT_FTRACE_EVENTS: readonly string[] = [
  'sched/sched_switch', 'sched/sched_process_fork', 'sched/sched_process_exec', 'sched/sched_process_exit',
  'signal/signal_generate', 'raw_syscalls/sys_enter', 'raw_syscalls/sys_exit',
];
export const DEFAULT_LTTNG_SUBBUF_BYTES = 512 * 1024;
export const DEFAULT_LTTNG_NUM_SUBBUF = 8;
// retention: (store/retention.ts). As systemd-coredump: a share of the store's filesystem,
// never more than 4 GiB, when the file does not say.
export const DEFAULT_RETENTION_MAX_USE_PERCENT = 10;
export const DEFAULT_RETENTION_KEEP_FREE_PERCENT = 15;
export const DEFAULT_RETENTION_CAP_BYTES = 4 * 1024 ** 3;
export const MAX_RETENTION_PER_EXE = 1_000_000;
export const DEFAULT_MAIL_MAX_ATTACHMENT_BYTES = 10 * 1000 * 1000;
export const DEFAULT_MAIL_MAX_PER_HOUR = 10;
export const DEFAULT_MAIL_RETRY_ATTEMPTS = 8;
export const DEFAULT_MAIL_RETRY_BACKOFF_MS = 30_000;
export const DEFAULT_MAIL_SMTP_TIMEOUT_MS = 60_000;
export const DEFAULT_MAIL_SUBJECT = '[flightbox] {host}: {exe} crashed ({signal})';
export const DEFAULT_MAIL_RULE_SUBJECT = '[flightbox] {host}: rule {rule} fired: {reason}';
// monitoring (daemon/exporter.ts): Prometheus and Graphite are off unless configured.
export const DEFAULT_GRAPHITE_PORT = 2003;
export const DEFAULT_GRAPHITE_PREFIX = 'flightbox';
export const DEFAULT_GRAPHITE_INTERVAL_MS = 60_000;
export const MIN_GRAPHITE_INTERVAL_MS = 1000;
export const MAX_GRAPHITE_INTERVAL_MS = 24 * 3_600_000;
export const MAX_GRAPHITE_PREFIX_CHARS = 200;
/** Fields a mail subject template may use; anything else in braces is a config error. */
export const MAIL_TEMPLATE_FIELDS = ['host', 'exe', 'comm', 'pid', 'uid', 'signal', 'id', 'signature', 'time', 'kind', 'rule', 'reason'] as const;
export const MAX_MAIL_RECIPIENTS = 50;
export const MAX_MAIL_SUBJECT_TEMPLATE_CHARS = 200;
// Deliberately simple (the same shape as a rule's mail action): a local part without spaces,
// quotes or brackets, and a host name. CR and LF can never match, so an address cannot
// smuggle a header into a mail.

/** A size in bytes, or a percentage of the store's filesystem ("10%"). */
export type SizeLimit = { bytes: number } | { percent: number };

export type CompressMethod = 'zstd' | 'gzip' | 'none';
export type BacktraceTool = 'auto' | 'eu-stack' | 'gdb' | 'none';

/** How mail leaves the host: an SMTP server, or the local sendmail program. */
export type MailTransportConfig =
  | {
      kind: 'smtp';
      host: string;
      /** null: 465 when secure, else 587 (nodemailer's defaults) */
      port: number | null;
      /** TLS from the first byte (port 465); false: STARTTLS when the server offers it */
      secure: boolean;
      /** refuse to send unless STARTTLS succeeds */
      requireTLS: boolean;
      auth: { user: string; pass: string } | null;
      /** PEM file of the CA(s) to trust for the server's certificate, instead of the system's */
      ca: string | null;
      /** connection, greeting and idle-socket timeout */
      timeoutMs: number;
    }
  | { kind: 'sendmail'; path: string | null };

export interface Config {
  /** Absolute path of the file the values came from, or null for pure defaults. */
  source: string | null;
  store: { root: string; busyTimeoutMs: number };
  core: {
    maxSizeBytes: number;
    compress: CompressMethod;
    level: number;
    honourRlimit: boolean;
    /** full cores kept per executable per hour; beyond: metadata and stack trace only. null = no limit */
    maxPerExePerHour: number | null;
    /** handlers storing a core at once; beyond, crashes are recorded without their core */
    maxConcurrent: number | null;
    /** the core's pipe is enlarged to this many bytes once the core is longer than the launcher's prefix; null: the kernel's 64 KiB */
    pipeBufferBytes: number | null;
  };
  capture: { environ: boolean; userAccess: boolean };
  backtrace: { tool: BacktraceTool; timeoutMs: number; source: boolean };
  install: { launcher: string | null; sysctlDropIn: string | null };
  daemon: { socket: string | null; snapshotDeadlineMs: number };
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
      /** events a second on any CPU beyond which the system-call events are paused; null: never */
      maxEventRate: number | null;
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
  /** how much the store keeps (store/retention.ts) */
  retention: {
    /** bundles use at most this; null: 10% of the filesystem, at most 4 GiB */
    maxUse: SizeLimit | null;
    /** leave at least this free on the filesystem; null: 15% of it, at most 4 GiB */
    keepFree: SizeLimit | null;
    /** events older than this are deleted; null: no limit */
    maxAgeMs: number | null;
    /** at most this many events per executable (snapshots: one group); null: no limit */
    maxPerExe: number | null;
  };
  /** trigger rules (lib/rules-config.ts validates them) */
  rules: Rule[];
  /** mail (notify/): no transport means no mail at all */
  mail: {
    transport: MailTransportConfig | null;
    /** null: flightbox@<hostname> */
    from: string | null;
    /** recipients of crash mail; empty: crashes are not mailed */
    to: string[];
    maxAttachmentBytes: number;
    /** per storm group (all crashes together, each rule on its own) and hour; the rest go into one digest */
    maxPerHour: number;
    /** archives leave out environ and mask secrets in command lines */
    redact: boolean;
    /** subject of crash mail */
    subject: string;
    /** subject of a rule's mail */
    ruleSubject: string;
    retry: { attempts: number; backoffMs: number };
  };
  /** metrics for Prometheus (daemon/exporter.ts); both off by default */
  prometheus: {
    /** where GET /metrics is served, bound exactly as written (no wildcard unless written); null: no endpoint */
    listen: { host: string; port: number } | null;
    /** a *.prom file rewritten atomically for node_exporter's textfile collector; null: none */
    textfile: string | null;
  };
  /** the same counters pushed to Graphite (plaintext protocol over TCP); off while host is null */
  graphite: { host: string | null; port: number; prefix: string; intervalMs: number };
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
    core: {
      maxSizeBytes: DEFAULT_CORE_MAX_BYTES, compress: 'zstd', level: DEFAULT_COMPRESS_LEVEL, honourRlimit: true,
      maxPerExePerHour: DEFAULT_CORES_PER_EXE_PER_HOUR, maxConcurrent: DEFAULT_MAX_CONCURRENT_HANDLERS,
      pipeBufferBytes: DEFAULT_CORE_PIPE_BYTES,
    },
    capture: { environ: true, userAccess: true },
    backtrace: { tool: 'auto', timeoutMs: DEFAULT_BACKTRACE_TIMEOUT_MS, source: false },
    install: { launcher: null, sysctlDropIn: DEFAULT_SYSCTL_DROP_IN },
    daemon: { socket: null, snapshotDeadlineMs: DEFAULT_SNAPSHOT_DEADLINE_MS },
    recorders: {
      metrics: { enabled: true, intervalMs: DEFAULT_METRICS_INTERVAL_MS, windowMs: DEFAULT_METRICS_WINDOW_MS, topProcesses: DEFAULT_METRICS_TOP_PROCESSES },
      ftrace: {
        enabled: 'auto',
        bufferSizeBytes: DEFAULT_FTRACE_BUFFER_BYTES_PER_CPU,
        events: [...DEFAULT_FTRACE_EVENTS],
        instance: 'flightbox',
        freezeOnFatalSignal: true,
        maxEventRate: DEFAULT_FTRACE_MAX_EVENT_RATE,
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
    retention: { maxUse: null, keepFree: null, maxAgeMs: null, maxPerExe: null },
    rules: [],
    mail: {
      transport: null,
      from: null,
      to: [],
      maxAttachmentBytes: DEFAULT_MAIL_MAX_ATTACHMENT_BYTES,
      maxPerHour: DEFAULT_MAIL_MAX_PER_HOUR,
      redact: true,
      subject: DEFAULT_MAIL_SUBJECT,
      ruleSubject: DEFAULT_MAIL_RULE_SUBJECT,
      retry: { attempts: DEFAULT_MAIL_RETRY_ATTEMPTS, backoffMs: DEFAULT_MAIL_RETRY_BACKOFF_MS },
    },
    prometheus: { listen: null, textfile: null },
    graphite: { host: null, port: DEFAULT_GRAPHITE_PORT, prefix: DEFAULT_GRAPHITE_PREFIX, intervalMs: DEFAULT_GRAPHITE_INTERVAL_MS },
  };
}

/** The daemon's control socket: configured, or inside the root-only store. */
export function socketPath(c: Config): string {
  return c.daemon.socket ?? `${c.store.root}/daemon.sock`;
}

/** The FIFO beside the control socket on which crash handlers send their early freeze. */
export function freezeFifoPath(c: Config): string {
  return `${socketPath(c)}.freeze`;
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
/** A size in [lo, hi] bytes, or null (or false) for "leave it as it is". */
const nullableSize = (lo: number, hi: number, set: (c: Config, v: number | null) => void): Setter => (c, v) => {
  if (v === null || v === false) return void set(c, null);
  const n = parseSize(v);
  if (n === undefined || n < lo || n > hi) return `expected a size from ${formatSize(lo)} to ${formatSize(hi)}, or null, got ${show(v)}`;
  set(c, n);
};
const duration = (set: (c: Config, v: number) => void): Setter => (c, v) => {
  const n = parseDuration(v);
  if (n === undefined) return `expected a duration such as 30s or 5m, got ${show(v)}`;
  set(c, n);
};
const sizeLimit = (set: (c: Config, v: SizeLimit | null) => void): Setter => (c, v) => {
  if (v === null) return void set(c, null);
  if (typeof v === 'string' && v.trim().endsWith('%')) {
    const m = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(v);
    const p = m ? Number(m[1]) : NaN;
    if (!(p >= 0 && p <= 100)) return `expected a percentage from 0% to 100%, got ${show(v)}`;
    return void set(c, { percent: p });
  }
  const n = parseSize(v);
  if (n === undefined) return `expected a size such as 4GiB, a percentage of the filesystem such as 10%, or null, got ${show(v)}`;
  set(c, { bytes: n });
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
/** A whole number in [lo, hi], or null (or false) for "no limit". */
const nullableInt = (lo: number, hi: number, set: (c: Config, v: number | null) => void): Setter => (c, v) => {
  if (v === null || v === false) return void set(c, null);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    return `expected a whole number from ${lo} to ${hi}, or null for no limit, got ${show(v)}`;
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

// mail.transport is SMTP or sendmail: each key picks one, and a key of the other kind is
// refused where it stands (setters run in file order), so every message has its own line.
type SmtpTransport = Extract<MailTransportConfig, { kind: 'smtp' }>;
const smtp = (set: (t: SmtpTransport, v: unknown) => string | undefined): Setter => (c, v) => {
  if (c.mail.transport?.kind === 'sendmail') return 'an SMTP option cannot be combined with sendmail';
  c.mail.transport ??= {
    kind: 'smtp', host: 'localhost', port: null, secure: false, requireTLS: false, auth: null, ca: null, timeoutMs: DEFAULT_MAIL_SMTP_TIMEOUT_MS,
  };
  return set(c.mail.transport, v);
};
const sendmail = (set: (t: Extract<MailTransportConfig, { kind: 'sendmail' }>, v: unknown) => string | undefined): Setter => (c, v) => {
  if (c.mail.transport?.kind === 'smtp') return 'sendmail cannot be combined with SMTP options (host, port, auth, ...)';
  return set((c.mail.transport ??= { kind: 'sendmail', path: null }) as Extract<MailTransportConfig, { kind: 'sendmail' }>, v);
};
const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\])$/;
const mailAddress = (v: unknown): string | undefined =>
  typeof v === 'string' && isMailAddress(v) ? undefined : `${show(v)} is not a mail address such as ops@example.com`;
const mailTemplate = (set: (c: Config, v: string) => void): Setter => (c, v) => {
  if (typeof v !== 'string' || v.trim() === '') return `expected a subject template such as ${JSON.stringify(DEFAULT_MAIL_SUBJECT)}, got ${show(v)}`;
  if (v.length > MAX_MAIL_SUBJECT_TEMPLATE_CHARS) return `a subject template has at most ${MAX_MAIL_SUBJECT_TEMPLATE_CHARS} characters, got ${v.length}`;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(v)) return `a subject template must not contain control characters (newlines, tabs), got ${show(v)}`;
  const unknown = [...v.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1] ?? '').find((f) => !(MAIL_TEMPLATE_FIELDS as readonly string[]).includes(f));
  if (unknown !== undefined) return `unknown field {${unknown}} in the subject template (fields: ${MAIL_TEMPLATE_FIELDS.map((f) => `{${f}}`).join(' ')})`;
  set(c, v);
};

// Monitoring addresses. A host is a DNS name, an IPv4 address or an IPv6 address; in
// host:port an IPv6 address is bracketed ('[::1]:9477', quoted in YAML, where a bare '['
// opens a list). Nothing is resolved here: the daemon binds or connects to what is written.
const DNS_NAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const isIP = (h: string): number => builtin('node:net').isIP(h);
const isHost = (h: string): boolean => isIP(h) !== 0 || (DNS_NAME_RE.test(h) && !/^[\d.]+$/.test(h));
const listenAddress = (set: (c: Config, v: { host: string; port: number } | null) => void): Setter => (c, v) => {
  if (v === null || v === false) return void set(c, null);
  const m = typeof v === 'string' ? /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v) : null;
  const host = m ? (m[1] ?? m[2] ?? '') : '';
  const port = m ? Number(m[3]) : NaN;
  if (!m || (m[1] !== undefined ? isIP(host) !== 6 : !isHost(host))) {
    return `expected host:port such as 127.0.0.1:9477 (an IPv6 address in brackets and quotes: '[::1]:9477'), or null, got ${show(v)}`;
  }
  if (!(port >= 1 && port <= 65535)) return `expected a port from 1 to 65535 in ${show(v)}`;
  set(c, { host, port });
};
const promTextfile = (set: (c: Config, v: string | null) => void): Setter => (c, v) => {
  if (v === null || v === false) return void set(c, null);
  if (typeof v !== 'string' || !isAbsolute(v) || /[\0\n\r]/.test(v)) return `expected the absolute path of a .prom file, or null, got ${show(v)}`;
  const base = basename(v);
  // node_exporter's textfile collector reads *.prom only; a dot file is never read either.
  if (!base.endsWith('.prom') || base.startsWith('.')) return `node_exporter reads only files named *.prom (not starting with a dot), got ${show(v)}`;
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
    maxPerExePerHour: nullableInt(0, 100_000, (c, v) => { c.core.maxPerExePerHour = v; }),
    maxConcurrent: nullableInt(1, 4096, (c, v) => { c.core.maxConcurrent = v; }),
    pipeBuffer: nullableSize(MIN_CORE_PIPE_BYTES, MAX_CORE_PIPE_BYTES, (c, v) => { c.core.pipeBufferBytes = v; }),
  },
  capture: {
    environ: bool((c, v) => { c.capture.environ = v; }),
    userAccess: bool((c, v) => { c.capture.userAccess = v; }),
  },
  backtrace: {
    tool: oneOf(['auto', 'eu-stack', 'gdb', 'none'] as const, (c, v) => { c.backtrace.tool = v; }),
    timeout: duration((c, v) => { c.backtrace.timeoutMs = v; }),
    source: bool((c, v) => { c.backtrace.source = v; }),
  },
  install: {
    launcher: nullableAbsPath((c, v) => { c.install.launcher = v; }),
    sysctlDropIn: nullableAbsPath((c, v) => { c.install.sysctlDropIn = v; }),
  },
  daemon: {
    socket: nullableAbsPath((c, v) => { c.daemon.socket = v; }),
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
      maxEventRate: nullableInt(1000, 1_000_000_000, (c, v) => { c.recorders.ftrace.maxEventRate = v; }),
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
  retention: {
    maxUse: sizeLimit((c, v) => { c.retention.maxUse = v; }),
    keepFree: sizeLimit((c, v) => { c.retention.keepFree = v; }),
    maxAge: (c, v) => {
      if (v === null) return void (c.retention.maxAgeMs = null);
      const n = parseDuration(v);
      if (n === undefined || n <= 0) return `expected a duration such as 30d, or null, got ${show(v)}`;
      c.retention.maxAgeMs = n;
    },
    maxPerExe: (c, v) => {
      if (v === null) return void (c.retention.maxPerExe = null);
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_RETENTION_PER_EXE) {
        return `expected a whole number from 1 to ${MAX_RETENTION_PER_EXE}, or null, got ${show(v)}`;
      }
      c.retention.maxPerExe = v;
    },
  },
  mail: {
    transport: {
      host: smtp((t, v) => {
        if (typeof v !== 'string' || v.length > 253 || !HOST_RE.test(v)) return `expected a host name or IP address, got ${show(v)}`;
        t.host = v;
      }),
      port: smtp((t, v) => {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) return `expected a port from 1 to 65535, got ${show(v)}`;
        t.port = v;
      }),
      secure: smtp((t, v) => {
        if (typeof v !== 'boolean') return `expected true (TLS from the start, port 465) or false (STARTTLS), got ${show(v)}`;
        t.secure = v;
      }),
      requireTLS: smtp((t, v) => {
        if (typeof v !== 'boolean') return `expected true or false, got ${show(v)}`;
        t.requireTLS = v;
      }),
      auth: smtp((t, v) => {
        const a = v as { user?: unknown; pass?: unknown } | null;
        if (typeof a !== 'object' || a === null || Array.isArray(a)) return `expected { user: NAME, pass: SECRET }, got ${show(v)}`;
        const extra = Object.keys(a).find((k) => k !== 'user' && k !== 'pass');
        if (extra !== undefined) return `unknown option ${show(extra)} (known: user, pass)`;
        if (typeof a.user !== 'string' || a.user === '' || /[\r\n\0]/.test(a.user)) return `expected a user name in auth.user, got ${show(a.user)}`;
        if (typeof a.pass !== 'string' && typeof a.pass !== 'number') return 'expected a password in auth.pass';
        t.auth = { user: a.user, pass: String(a.pass) };
      }),
      ca: smtp((t, v) => {
        if (typeof v !== 'string' || !isAbsolute(v) || /[\0\n\r]/.test(v)) return `expected the absolute path of a PEM file, got ${show(v)}`;
        t.ca = v;
      }),
      timeout: smtp((t, v) => {
        const n = parseDuration(v);
        if (n === undefined || n < 1000) return `expected a duration of at least 1s such as 60s, got ${show(v)}`;
        t.timeoutMs = n;
      }),
      sendmail: (c, v) => {
        if (v === false) return undefined; // "not sendmail": SMTP keys (or nothing) decide
        if (v !== true) return `expected true, got ${show(v)}`;
        return sendmail(() => undefined)(c, v);
      },
      path: sendmail((t, v) => {
        if (typeof v !== 'string' || !isAbsolute(v) || /[\0\n\r]/.test(v)) return `expected the absolute path of the sendmail program, got ${show(v)}`;
        t.path = v;
      }),
    },
    from: (c, v) => {
      if (v === null) return void (c.mail.from = null);
      const bad = mailAddress(v);
      if (bad) return bad;
      c.mail.from = v as string;
    },
    to: (c, v) => {
      const list = typeof v === 'string' ? [v] : v;
      if (!Array.isArray(list)) return `expected a list of mail addresses, got ${show(v)}`;
      if (list.length > MAX_MAIL_RECIPIENTS) return `at most ${MAX_MAIL_RECIPIENTS} recipients, got ${list.length}`;
      for (const a of list) {
        const bad = mailAddress(a);
        if (bad) return bad;
      }
      c.mail.to = [...new Set(list as string[])];
    },
    maxAttachment: size((c, v) => { c.mail.maxAttachmentBytes = v; }),
    maxPerHour: intIn(0, 10_000, (c, v) => { c.mail.maxPerHour = v; }),
    redact: bool((c, v) => { c.mail.redact = v; }),
    subject: mailTemplate((c, v) => { c.mail.subject = v; }),
    ruleSubject: mailTemplate((c, v) => { c.mail.ruleSubject = v; }),
    retry: {
      attempts: intIn(1, 100, (c, v) => { c.mail.retry.attempts = v; }),
      backoff: duration((c, v) => { c.mail.retry.backoffMs = v; }),
    },
  },
  prometheus: {
    listen: listenAddress((c, v) => { c.prometheus.listen = v; }),
    textfile: promTextfile((c, v) => { c.prometheus.textfile = v; }),
  },
  graphite: {
    host: (c, v) => {
      if (v === null || v === false) return void (c.graphite.host = null);
      const h = typeof v === 'string' ? v.replace(/^\[(.*)\]$/, '$1') : '';
      if (!isHost(h)) return `expected a host name or IP address, or null (no Graphite), got ${show(v)}`;
      c.graphite.host = h;
    },
    port: intIn(1, 65535, (c, v) => { c.graphite.port = v; }),
    prefix: (c, v) => {
      // Dotted path components of the characters every metric path is sanitized to.
      if (typeof v !== 'string' || v.length > MAX_GRAPHITE_PREFIX_CHARS || !/^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/.test(v)) {
        return `expected dotted names of letters, digits, '_' and '-' (at most ${MAX_GRAPHITE_PREFIX_CHARS} characters) such as flightbox.web1, got ${show(v)}`;
      }
      c.graphite.prefix = v;
    },
    interval: (c, v) => {
      const n = parseDuration(v);
      if (n === undefined || n < MIN_GRAPHITE_INTERVAL_MS || n > MAX_GRAPHITE_INTERVAL_MS) return `expected a duration from 1s to 24h such as 60s, got ${show(v)}`;
      c.graphite.intervalMs = n;
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
  const { LineCounter, parseDocument, isMap } = loadYaml();
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const lineOf = (offset: number | undefined) => (offset === undefined ? null : lines.linePos(offset).line);
  for (const e of doc.errors) {
    errors.push({ key: '', message: e.message.split('\n')[0] ?? 'invalid YAML', file: path, line: lineOf(e.pos[0]) });
  }
  if (errors.length > 0) return { config, warnings, errors };
  validate(doc, config, path, lineOf, errors, isMap, warnings);
  return { config, warnings, errors };
}

/**
 * Options that older versions had and this one no longer uses: still accepted, so that an
 * older file loads, with a warning saying why they do nothing.
 */
const OBSOLETE: Readonly<Record<string, string>> = {
  'daemon.freezeTimeout': "no longer used and ignored: the crash handler does not wait for the daemon's freeze any more (it writes one line on the daemon's freeze FIFO); remove it",
};

function validate(
  doc: Document,
  config: Config,
  file: string,
  lineOf: (offset: number | undefined) => number | null,
  errors: ConfigIssue[],
  isMap: typeof import('yaml').isMap,
  warnings: ConfigIssue[],
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
      const obsolete = OBSOLETE[full];
      if (obsolete !== undefined) {
        warnings.push({ key: full, message: obsolete, file, line: keyLine });
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
    `  maxPerExePerHour: ${d.core.maxPerExePerHour}            # full cores per executable per hour; beyond: metadata and stack trace only (null: no limit)`,
    `  maxConcurrent: ${d.core.maxConcurrent}               # handlers storing a core at once; beyond: metadata only, still indexed (null: no cap)`,
    `  pipeBuffer: 16MiB              # the kernel's pipe of a core longer than 8 MiB is made this big (perl), so the kernel never waits for the handler (null: 64 KiB)`,
    'capture:',
    `  environ: ${d.capture.environ}                  # keep /proc/PID/environ in the bundle (root-only file)`,
    `  userAccess: ${d.capture.userAccess}               # the crashing user may read their own crashes through the CLI (POSIX ACLs, needs setfacl); never for setuid or non-dumpable processes`,
    'backtrace:',
    `  tool: ${d.backtrace.tool}                     # auto (eu-stack, then gdb), eu-stack, gdb or none`,
    `  timeout: ${d.backtrace.timeoutMs / 1000}s                   # the stack-trace tool is killed after this`,
    `  source: ${d.backtrace.source}                  # source lines and inlined frames from debug info (DWARF; eu-stack); slower: 60-100 ms a crash more with libc's debug info installed`,
    'install:',
    '  launcher: null                 # path of the core_pattern launcher; null = <store.root>/core-handler',
    `  sysctlDropIn: ${d.install.sysctlDropIn}   # null = do not persist across reboots`,
    'daemon:',
    '  socket: null                   # control socket; null = <store.root>/daemon.sock (root-only)',
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
    `    maxEventRate: ${d.recorders.ftrace.maxEventRate}          # events a second on a CPU beyond which system-call events pause (null: never)`,
    '  lttng:                         # LTTng in snapshot mode (lttng-tools)',
    `    enabled: ${d.recorders.lttng.enabled}`,
    `    kernel: [${d.recorders.lttng.kernel.join(', ')}]      # needs lttng-modules; skipped with one warning where missing`,
    `    userspace: ['*']`,
    `    subbufSize: ${d.recorders.lttng.subbufSizeBytes / 1024}KiB`,
    `    numSubbuf: ${d.recorders.lttng.numSubbuf}`,
    `    session: ${d.recorders.lttng.session}`,
    '# How much the store keeps (flightbox gc; the daemon vacuums every minute and after each crash).',
    '# Over maxUse, or under keepFree, the oldest event of the executable with the most events goes',
    '# first (snapshots are one group); pinned events (flightbox pin) are never deleted.',
    'retention:',
    `  maxUse: null                   # size (4GiB) or share of the filesystem (10%); null = ${DEFAULT_RETENTION_MAX_USE_PERCENT}%, at most ${DEFAULT_RETENTION_CAP_BYTES / 1024 ** 3}GiB`,
    `  keepFree: null                 # leave this free on the store's filesystem; null = ${DEFAULT_RETENTION_KEEP_FREE_PERCENT}%, at most ${DEFAULT_RETENTION_CAP_BYTES / 1024 ** 3}GiB`,
    `  maxAge: ${d.retention.maxAgeMs}                   # a duration such as 30d; null = no limit`,
    `  maxPerExe: ${d.retention.maxPerExe}                # at most this many events per executable; null = no limit`,
    '# Mail (crash reports, rule actions, `flightbox mail`). No transport: no mail is queued or sent.',
    'mail:',
    '  transport: null                # { host: smtp.example.com, port: 587, secure: false, requireTLS: false,',
    '                                 #   auth: { user: flightbox, pass: secret }, ca: /etc/ssl/my-ca.pem, timeout: 60s }',
    '                                 # or { sendmail: true, path: /usr/sbin/sendmail }',
    '  from: null                     # null = flightbox@<hostname>',
    '  to: []                         # recipients of crash mail; none: crashes are not mailed',
    `  maxAttachment: ${d.mail.maxAttachmentBytes / 1e6}MB            # bigger archives go without the core, or not at all (the mail says where the bundle is)`,
    `  maxPerHour: ${d.mail.maxPerHour}                 # per hour for all crashes together, and for each rule; the rest in one digest`,
    `  redact: ${d.mail.redact}                   # attachments leave out environ and mask secrets in command lines`,
    `  subject: '${d.mail.subject}'   # fields: ${MAIL_TEMPLATE_FIELDS.map((f) => `{${f}}`).join(' ')}`,
    `  ruleSubject: '${d.mail.ruleSubject}'`,
    '  retry:',
    `    attempts: ${d.mail.retry.attempts}                  # then the mail is marked failed (flightbox outbox)`,
    `    backoff: ${d.mail.retry.backoffMs / 1000}s                 # doubled after each failed attempt, at most 1h`,
    '# Monitoring (the daemon): crashes by executable and signal, snapshots by rule, recorders,',
    '# store usage, mail backlog. Both off unless configured.',
    'prometheus:',
    '  listen: null                   # host:port serving GET /metrics, bound exactly as written, e.g. 127.0.0.1:9477',
    '                                 # (an address other than loopback exposes executable names to that network)',
    '  textfile: null                 # a *.prom file for node_exporter\'s textfile collector, rewritten atomically (0644)',
    '                                 # every 15s and on change, e.g. /var/lib/prometheus/node-exporter/flightbox.prom',
    'graphite:',
    '  host: null                     # Graphite (carbon) host: the same counters in the plaintext protocol; null = off',
    `  port: ${d.graphite.port}`,
    `  prefix: ${d.graphite.prefix}              # every path starts with this, e.g. flightbox.web1`,
    `  interval: ${d.graphite.intervalMs / 1000}s                  # how often the counters are pushed`,
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
