// The shapes of trigger rules, shared by the config loader (validation, with file/line/key
// errors), the pure rule engine (triggers/engine.ts) and the daemon that runs the sources
// and actions. Plain data: every value here has been validated.

/** System-wide metrics a threshold can watch. */
export const SYSTEM_METRICS = [
  'cpu',              // CPU busy %, all CPUs
  'load1', 'load5', 'load15',
  'memory.available', // % of MemTotal
  'swap.used',        // % of SwapTotal (0 without swap)
  'psi.cpu.some', 'psi.memory.some', 'psi.memory.full', 'psi.io.some', 'psi.io.full', // avg10, %
  'disk.free',        // % free of the filesystem at `mount` (default /)
  'fds',              // open file handles, system-wide (/proc/sys/fs/file-nr)
] as const;
export type SystemMetric = (typeof SYSTEM_METRICS)[number];

/** Per-process metrics (ProcDump's triggers); the value is the maximum over the selected processes. */
export const PROCESS_METRICS = ['process.rss', 'process.cpu', 'process.threads', 'process.fds'] as const;
export type ProcessMetric = (typeof PROCESS_METRICS)[number];

/** Which processes a per-process threshold watches: exactly one way of choosing. */
export type ProcessSelector =
  | { name: string }          // comm, exact
  | { cmdline: string }       // a regex source, matched against the NUL→space joined cmdline
  | { pidFile: string }       // absolute path of a file holding a pid
  | { cgroup: string };       // cgroup v2 path prefix, e.g. /system.slice/mysqld.service

export type Condition =
  | {
      kind: 'threshold';
      metric: SystemMetric | ProcessMetric;
      process: ProcessSelector | null;
      /** for disk.free: the mount point */
      mount: string | null;
      op: 'above' | 'below';
      value: number;
      /** the condition must hold this long before the rule fires (Prometheus' `for`) */
      forMs: number;
      /** hysteresis: the episode ends only when the value is back past this (default: value) */
      clear: number;
    }
  | { kind: 'log'; path: string; match: string }
  | { kind: 'kmsg'; match: string }
  | { kind: 'signal'; signal: 'SIGUSR1' | 'SIGUSR2' }
  | { kind: 'manual' }
  | { kind: 'crash'; exe: string | null; signals: number[] | null; signature: string | null; uid: number | null };

export type Action =
  | { kind: 'snapshot'; recorders: string[] | null }
  | { kind: 'collect'; commands: string[]; timeoutMs: number }
  | { kind: 'exec'; argv: string[]; timeoutMs: number }
  | { kind: 'mail'; to: string[] }
  | { kind: 'start-recorder'; recorder: string }
  | { kind: 'stop-recorder'; recorder: string };

export interface Rule {
  name: string;
  when: Condition;
  do: Action[];
  cooldownMs: number;
  maxPerDay: number;
  /** 1-based line of the rule in its config file, for messages */
  line: number | null;
}

export const DEFAULT_RULE_COOLDOWN_MS = 5 * 60_000;
export const DEFAULT_RULE_MAX_PER_DAY = 100;
export const DEFAULT_COLLECT_TIMEOUT_MS = 10_000;
export const DEFAULT_EXEC_TIMEOUT_MS = 30_000;
export const MAX_RULES = 256;
export const RULE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** What a source reports to the engine. `t` is ms since the epoch. */
export type TriggerEvent =
  | { kind: 'value'; rule: string; t: number; value: number | null; labels: Record<string, string> }
  | { kind: 'log'; path: string; t: number; line: string }
  | { kind: 'kmsg'; t: number; line: string }
  | { kind: 'signal'; t: number; signal: 'SIGUSR1' | 'SIGUSR2' }
  | { kind: 'manual'; t: number; rule: string }
  | { kind: 'crash'; t: number; id: string; exe: string | null; signal: number; signature: string | null; uid: number };

/** A rule that fired: the daemon runs its actions and records an event. */
export interface Firing {
  rule: string;
  t: number;
  /** one line for humans: "process.rss 2.3 GiB above 2 GiB for 30s (pid 1234 mysqld)" or the matched line */
  reason: string;
  /** named capture groups of a log/kmsg match, the pid of a per-process threshold, the crash id… */
  labels: Record<string, string>;
}

/** Why a rule did not fire although its condition matched (for logs and counters). */
export interface Suppressed {
  rule: string;
  t: number;
  why: 'cooldown' | 'maxPerDay';
}
