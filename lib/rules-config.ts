// Validation of the config's `rules:` section: YAML nodes in, Rule[] and one ConfigIssue per
// mistake out, each naming the file, the 1-based line and a key path such as
// `rules[1] (mysqld-rss).when.threshold.above` (indexes are 0-based, as in jq and yq).
// Pure: the yaml module is only asked for its node predicates (loadConfig has already loaded it).
import { isMailAddress } from './mail-address.js';
import { loadYaml } from './yaml.js';
import { isAbsolute } from 'node:path';
import type { Pair } from 'yaml';
import type { ConfigIssue } from './config.js';
// parseSignal/signalName are pure and dependency-free; they live with the handler for
// historical reasons (lib/ importing handler/ goes against the layering: see the report).
import { parseSignal, signalName } from './signals.js';
import {
  DEFAULT_COLLECT_TIMEOUT_MS,
  DEFAULT_EXEC_TIMEOUT_MS,
  DEFAULT_RULE_COOLDOWN_MS,
  DEFAULT_RULE_MAX_PER_DAY,
  MAX_RULES,
  PROCESS_METRICS,
  RULE_NAME_RE,
  SYSTEM_METRICS,
  type Action,
  type Condition,
  type ProcessMetric,
  type ProcessSelector,
  type Rule,
  type SystemMetric,
} from './rules.js';
import { formatSize, parseDuration, parseSize } from './units.js';

/** Regex sources (log, kmsg, cmdline) longer than this are refused. */
export const MAX_RULE_PATTERN_CHARS = 1000;
/** A collect command or one exec argument. */
export const MAX_COMMAND_CHARS = 4096;
/** The engine keeps one timestamp per firing of the last 24 h: this bounds its memory per rule. */
export const MAX_RULE_MAX_PER_DAY = 10_000;
/** The kernel keeps at most 15 characters of a process name (TASK_COMM_LEN - 1). */
export const MAX_COMM_CHARS = 15;
export const RECORDER_NAMES = ['metrics', 'ftrace', 'lttng'] as const;
export const RULE_SOURCES = ['threshold', 'log', 'kmsg', 'signal', 'crash', 'manual'] as const;
export const ACTION_NAMES = ['snapshot', 'collect', 'exec', 'mail', 'start', 'stop'] as const;

/** Metrics whose values are percentages: a value may be written 80 or "80%". */
export const PERCENT_METRICS: ReadonlySet<string> = new Set([
  'cpu', 'memory.available', 'swap.used', 'psi.cpu.some', 'psi.memory.some', 'psi.memory.full', 'psi.io.some',
  'psi.io.full', 'disk.free', 'process.cpu',
]);

const ALL_METRICS: readonly string[] = [...SYSTEM_METRICS, ...PROCESS_METRICS];
const RULE_KEYS = ['name', 'when', 'do', 'cooldown', 'maxPerDay'];
const THRESHOLD_KEYS = ['metric', 'process', 'above', 'below', 'for', 'clear', 'mount'];
const SELECTOR_KEYS = ['name', 'cmdline', 'pidFile', 'cgroup'] as const;
// Deliberately simple: a local part without spaces, quotes or brackets, and a host name.
// CR and LF can never match, so an address cannot smuggle a header into a mail.
const MAX_UID = 4_294_967_294; // (uid_t)-1 means "no uid"

/** Compile a rule's regex the one way both the validator and the engine do (JS syntax, no flags). */
export function compileRulePattern(source: string): RegExp {
  return new RegExp(source);
}

export interface RulesContext {
  /** the config file, for messages */
  file: string | null;
  /** 1-based line of a source offset (yaml's LineCounter), null when unknown */
  lineOf: (offset: number | undefined) => number | null;
}

export interface ParsedRules {
  /** the valid rules; a rule with any mistake is left out */
  rules: Rule[];
  errors: ConfigIssue[];
}

/** Validate the value of the top-level `rules:` key (a YAML node; null or absent means no rules). */
export function parseRules(node: unknown, ctx: RulesContext): ParsedRules {
  return new RulesParser(loadYaml(), ctx).rules(node);
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** A key of a mapping, with its nodes for line numbers. */
interface Entry {
  key: string;
  keyNode: unknown;
  value: unknown;
}

class RulesParser {
  readonly #y: typeof import('yaml');
  readonly #ctx: RulesContext;
  readonly #errors: ConfigIssue[] = [];
  /** mappings that had an unknown key: a missing key there is most likely that typo, said once */
  readonly #hadUnknown = new WeakSet<Map<string, unknown>>();

  constructor(yaml: typeof import('yaml'), ctx: RulesContext) {
    this.#y = yaml;
    this.#ctx = ctx;
  }

  rules(node: unknown): ParsedRules {
    const rules: Rule[] = [];
    if (this.#isNull(node)) return { rules, errors: this.#errors };
    if (!this.#y.isSeq(node)) {
      this.#issue('rules', node, `expected a list of rules, got ${this.#show(node)}`);
      return { rules, errors: this.#errors };
    }
    if (node.items.length > MAX_RULES) {
      this.#issue('rules', node.items[MAX_RULES] ?? node, `at most ${MAX_RULES} rules are allowed, got ${node.items.length}`);
    }
    const firstLine = new Map<string, number | null>();
    node.items.forEach((item, i) => {
      const rule = this.#rule(item, i, firstLine);
      if (rule) rules.push(rule);
    });
    return { rules, errors: this.#errors };
  }

  // ---- one rule -------------------------------------------------------------------------

  #rule(node: unknown, i: number, firstLine: Map<string, number | null>): Rule | null {
    const base = `rules[${i}]`;
    const before = this.#errors.length;
    if (!this.#y.isMap(node)) {
      this.#issue(base, node, `expected a rule (a mapping with name, when and do), got ${this.#show(node)}`);
      return null;
    }
    const line = this.#line(node);
    // The name first, so that every other message of this rule can carry it.
    const entries = this.#entries(node);
    const nameEntry = entries.find((e) => e.key === 'name');
    const typo = entries.some((e) => !RULE_KEYS.includes(e.key));
    let key = base;
    let name: string | null = null;
    if (nameEntry === undefined) {
      if (!typo) this.#issue(`${base}.name`, node, 'required: a name of letters, digits, \'.\', \'_\', \'-\'');
    } else {
      const v = this.#plain(nameEntry.value);
      if (typeof v !== 'string' || !RULE_NAME_RE.test(v)) {
        this.#issue(`${base}.name`, nameEntry.value,
          `expected a name of letters, digits, '.', '_', '-', starting with a letter or digit, at most 64 characters, got ${this.#show(nameEntry.value)}`);
      } else {
        name = v;
        key = `${base} (${v})`;
        const first = firstLine.get(v);
        if (firstLine.has(v)) {
          this.#issue(`${key}.name`, nameEntry.value, `duplicate rule name "${v}" (first defined${first ? ` at line ${first}` : ''})`);
        } else {
          firstLine.set(v, this.#line(nameEntry.value) ?? line);
        }
      }
    }
    const m = this.#known(entries, RULE_KEYS, key);
    const when = m.has('when')
      ? this.#when(m.get('when'), `${key}.when`)
      : this.#missing(m, `${key}.when`, node, `required: one of ${RULE_SOURCES.join(', ')}`);
    const actions = m.has('do')
      ? this.#actions(m.get('do'), `${key}.do`)
      : this.#missing(m, `${key}.do`, node, 'required: a list of actions such as [snapshot]');
    const cooldownMs = m.has('cooldown') ? this.#duration(m.get('cooldown'), `${key}.cooldown`, { min: 0 }) : DEFAULT_RULE_COOLDOWN_MS;
    let maxPerDay: number | null = DEFAULT_RULE_MAX_PER_DAY;
    if (m.has('maxPerDay')) {
      const v = this.#plain(m.get('maxPerDay'));
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_RULE_MAX_PER_DAY) {
        this.#issue(`${key}.maxPerDay`, m.get('maxPerDay'), `expected a whole number from 1 to ${MAX_RULE_MAX_PER_DAY}, got ${this.#show(m.get('maxPerDay'))}`);
        maxPerDay = null;
      } else {
        maxPerDay = v;
      }
    }
    if (this.#errors.length > before || name === null || when === null || actions === null || cooldownMs === null || maxPerDay === null) {
      return null;
    }
    return { name, when, do: actions, cooldownMs, maxPerDay, line };
  }

  // ---- when -----------------------------------------------------------------------------

  #when(node: unknown, key: string): Condition | null {
    if (this.#y.isScalar(node) && node.value === 'manual') return { kind: 'manual' };
    if (!this.#y.isMap(node)) {
      this.#issue(key, node, `expected manual or a mapping with one of ${RULE_SOURCES.join(', ')}, got ${this.#show(node)}`);
      return null;
    }
    const entries = this.#entries(node);
    const before = this.#errors.length;
    const m = this.#known(entries, RULE_SOURCES, key);
    const sources = [...m.keys()];
    if (sources.length === 0) {
      // an unknown key already said what is wrong
      if (this.#errors.length === before) this.#issue(key, node, `expected one of ${RULE_SOURCES.join(', ')}, got an empty mapping`);
      return null;
    }
    const parsed = sources.map((s) => this.#source(s, m.get(s), `${key}.${s}`));
    if (sources.length > 1) {
      this.#issue(key, node, `a rule has one source, got ${sources.join(' and ')}: write one rule for each`);
      return null;
    }
    return parsed[0] ?? null;
  }

  #source(kind: string, node: unknown, key: string): Condition | null {
    switch (kind) {
      case 'threshold': return this.#threshold(node, key);
      case 'log': return this.#log(node, key);
      case 'kmsg': return this.#kmsg(node, key);
      case 'signal': return this.#signal(node, key);
      case 'crash': return this.#crash(node, key);
      case 'manual':
        if (this.#isNull(node) || (this.#y.isMap(node) && node.items.length === 0)) return { kind: 'manual' };
        this.#issue(key, node, `manual takes no options (write when: manual), got ${this.#show(node)}`);
        return null;
      default: return null;
    }
  }

  #threshold(node: unknown, key: string): Condition | null {
    const m = this.#map(node, key, THRESHOLD_KEYS);
    if (m === null) return null;
    const before = this.#errors.length;
    let metric: SystemMetric | ProcessMetric | null = null;
    if (!m.has('metric')) {
      this.#missing(m, `${key}.metric`, node, `required: one of ${ALL_METRICS.join(', ')}`);
    } else {
      const v = this.#plain(m.get('metric'));
      if (typeof v === 'string' && ALL_METRICS.includes(v)) metric = v as SystemMetric | ProcessMetric;
      else this.#issue(`${key}.metric`, m.get('metric'), `expected one of ${ALL_METRICS.join(', ')}, got ${this.#show(m.get('metric'))}`);
    }
    const perProcess = metric !== null && (PROCESS_METRICS as readonly string[]).includes(metric);

    let process: ProcessSelector | null = null;
    if (m.has('process')) {
      if (metric !== null && !perProcess) {
        this.#issue(`${key}.process`, m.get('process'), `${metric} is a system-wide metric: process applies only to ${PROCESS_METRICS.join(', ')}`);
      } else {
        process = this.#selector(m.get('process'), `${key}.process`);
      }
    } else if (perProcess) {
      this.#missing(m, `${key}.process`, node, `required for ${metric}: a mapping with one of ${SELECTOR_KEYS.join(', ')}`);
    }

    let op: 'above' | 'below' | null = null;
    if (m.has('above') && m.has('below')) this.#issue(key, node, 'expected one of above and below, got both');
    else if (m.has('above')) op = 'above';
    else if (m.has('below')) op = 'below';
    else this.#missing(m, key, node, 'required: above or below (the threshold value)');
    const value = op !== null && metric !== null ? this.#metricValue(metric, m.get(op), `${key}.${op}`) : null;

    const forMs = m.has('for') ? this.#duration(m.get('for'), `${key}.for`, { min: 0 }) : 0;

    let clear = value;
    if (m.has('clear') && metric !== null) {
      clear = this.#metricValue(metric, m.get('clear'), `${key}.clear`);
      if (clear !== null && value !== null && op !== null) {
        const wrongSide = op === 'above' ? clear > value : clear < value;
        if (wrongSide) {
          this.#issue(`${key}.clear`, m.get('clear'),
            `with ${op} ${formatMetricValue(metric, value)}, clear must be ${op === 'above' ? 'at or below' : 'at or above'} it (the episode ends when the value is back past clear), got ${formatMetricValue(metric, clear)}`);
        }
      }
    }

    let mount: string | null = metric === 'disk.free' ? '/' : null;
    if (m.has('mount')) {
      if (metric !== null && metric !== 'disk.free') {
        this.#issue(`${key}.mount`, m.get('mount'), `mount applies only to disk.free, not to ${metric}`);
      } else {
        mount = this.#absPath(m.get('mount'), `${key}.mount`);
      }
    }
    if (this.#errors.length > before || metric === null || op === null || value === null || clear === null || forMs === null) return null;
    return { kind: 'threshold', metric, process, mount, op, value, forMs, clear };
  }

  #metricValue(metric: string, node: unknown, key: string): number | null {
    const v = this.#plain(node);
    if (metric === 'process.rss') {
      const n = parseSize(v);
      if (n === undefined) this.#issue(key, node, `expected a size such as 2GiB or 500MB, got ${this.#show(node)}`);
      return n ?? null;
    }
    if (PERCENT_METRICS.has(metric)) {
      let n: number | undefined;
      if (typeof v === 'number' && Number.isFinite(v)) n = v;
      else if (typeof v === 'string') {
        const p = /^\s*(\d+(?:\.\d+)?)\s*%?\s*$/.exec(v);
        if (p) n = Number(p[1]);
      }
      // process.cpu is a percentage of one CPU: a busy multi-threaded process goes past 100.
      const max = metric === 'process.cpu' ? Infinity : 100;
      if (n === undefined || n < 0 || n > max) {
        this.#issue(key, node, `expected a percentage ${max === 100 ? 'from 0 to 100 ' : ''}such as 80 or 80%, got ${this.#show(node)}`);
        return null;
      }
      return n;
    }
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v;
    const hint = typeof v === 'string' && /%\s*$/.test(v) ? ` (${metric} is not a percentage)` : '';
    this.#issue(key, node, `expected a number, got ${this.#show(node)}${hint}`);
    return null;
  }

  #selector(node: unknown, key: string): ProcessSelector | null {
    const m = this.#map(node, key, SELECTOR_KEYS);
    if (m === null) return null;
    const given = [...m.keys()];
    if (given.length === 0) return this.#missing(m, key, node, `expected one of ${SELECTOR_KEYS.join(', ')}`);
    if (given.length > 1) {
      this.#issue(key, node, `expected one way of choosing processes, got ${given.join(' and ')}`);
      return null;
    }
    const which = given[0]!;
    const vNode = m.get(which);
    const v = this.#plain(vNode);
    const k = `${key}.${which}`;
    switch (which) {
      case 'name':
        if (typeof v !== 'string' || v === '' || /[\0\n\r]/.test(v)) {
          this.#issue(k, vNode, `expected a process name (comm), got ${this.#show(vNode)}`);
          return null;
        }
        if (v.length > MAX_COMM_CHARS) {
          this.#issue(k, vNode, `the kernel keeps only ${MAX_COMM_CHARS} characters of a process name, so ${show(v)} never matches: use cmdline to match longer names`);
          return null;
        }
        return { name: v };
      case 'cmdline': {
        const src = this.#pattern(vNode, k);
        return src === null ? null : { cmdline: src };
      }
      case 'pidFile': {
        const p = this.#absPath(vNode, k);
        return p === null ? null : { pidFile: p };
      }
      case 'cgroup':
        if (typeof v !== 'string' || !v.startsWith('/') || /[\0\n\r]/.test(v) || v.split('/').includes('..')) {
          this.#issue(k, vNode, `expected a cgroup path starting with '/' such as /system.slice/mysqld.service, got ${this.#show(vNode)}`);
          return null;
        }
        return { cgroup: v };
      default:
        return null;
    }
  }

  #log(node: unknown, key: string): Condition | null {
    const m = this.#map(node, key, ['path', 'match']);
    if (m === null) return null;
    const path = m.has('path') ? this.#absPath(m.get('path'), `${key}.path`) : this.#missing(m, `${key}.path`, node, 'required: the absolute path of the log file');
    const match = m.has('match') ? this.#pattern(m.get('match'), `${key}.match`) : this.#missing(m, `${key}.match`, node, 'required: a regular expression');
    return path === null || match === null ? null : { kind: 'log', path, match };
  }

  #kmsg(node: unknown, key: string): Condition | null {
    const m = this.#map(node, key, ['match']);
    if (m === null) return null;
    const match = m.has('match') ? this.#pattern(m.get('match'), `${key}.match`) : this.#missing(m, `${key}.match`, node, 'required: a regular expression');
    return match === null ? null : { kind: 'kmsg', match };
  }

  #signal(node: unknown, key: string): Condition | null {
    const v = this.#plain(node);
    const n = typeof v === 'string' || (typeof v === 'number' && Number.isInteger(v)) ? parseSignal(String(v)) : undefined;
    if (n === 10) return { kind: 'signal', signal: 'SIGUSR1' };
    if (n === 12) return { kind: 'signal', signal: 'SIGUSR2' };
    if (n !== undefined && n >= 1 && n <= 64) {
      this.#issue(key, node, `${signalName(n)} cannot trigger a rule: only SIGUSR1 and SIGUSR2 can, the other signals belong to the daemon (SIGHUP reloads, SIGINT and SIGTERM stop it)`);
    } else {
      this.#issue(key, node, `expected SIGUSR1 or SIGUSR2, got ${this.#show(node)}`);
    }
    return null;
  }

  #crash(node: unknown, key: string): Condition | null {
    const c: Extract<Condition, { kind: 'crash' }> = { kind: 'crash', exe: null, signals: null, signature: null, uid: null };
    if (this.#isNull(node)) return c; // `crash:` alone: every crash
    const m = this.#map(node, key, ['exe', 'signal', 'signature', 'uid']);
    if (m === null) return null;
    let ok = true;
    if (m.has('exe')) {
      const n = m.get('exe');
      const v = this.#plain(n);
      if (typeof v !== 'string' || v === '' || v.length > MAX_COMMAND_CHARS || /[\0\n\r]/.test(v)) {
        this.#issue(`${key}.exe`, n, `expected a glob of the executable's full path such as */nginx, got ${this.#show(n)}`);
        ok = false;
      } else if (!v.startsWith('/') && !v.startsWith('*')) {
        this.#issue(`${key}.exe`, n, `the glob is matched against the executable's full path, so ${show(v)} never matches: start it with / or * (e.g. */${v})`);
        ok = false;
      } else {
        c.exe = v;
      }
    }
    if (m.has('signal')) {
      const n = m.get('signal');
      const list = this.#y.isSeq(n) ? n.items : [n];
      const signals: number[] = [];
      if (list.length === 0) {
        this.#issue(`${key}.signal`, n, 'expected a signal or a list of signals, got an empty list');
        ok = false;
      }
      for (const item of list) {
        const v = this.#plain(item);
        const sig = typeof v === 'string' || (typeof v === 'number' && Number.isInteger(v)) ? parseSignal(String(v)) : undefined;
        if (sig === undefined || sig < 1 || sig > 64) {
          this.#issue(`${key}.signal`, item, `expected a signal name or number such as SIGSEGV or 11, got ${this.#show(item)}`);
          ok = false;
        } else if (!signals.includes(sig)) {
          signals.push(sig);
        }
      }
      c.signals = signals;
    }
    if (m.has('signature')) {
      const n = m.get('signature');
      const v = this.#plain(n);
      if (typeof v !== 'string' || !/^[0-9a-fA-F]{1,16}$/.test(v)) {
        this.#issue(`${key}.signature`, n, `expected a prefix of the signature hash, 1 to 16 hex digits in quotes such as '3fa2', got ${this.#show(n)}`);
        ok = false;
      } else {
        c.signature = v.toLowerCase();
      }
    }
    if (m.has('uid')) {
      const n = m.get('uid');
      const v = this.#plain(n);
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_UID) {
        this.#issue(`${key}.uid`, n, `expected a numeric uid from 0 to ${MAX_UID}, got ${this.#show(n)}`);
        ok = false;
      } else {
        c.uid = v;
      }
    }
    return ok ? c : null;
  }

  // ---- do -------------------------------------------------------------------------------

  #actions(node: unknown, key: string): Action[] | null {
    if (!this.#y.isSeq(node) || node.items.length === 0) {
      this.#issue(key, node, `expected a non-empty list of actions such as [snapshot], got ${this.#show(node)}`);
      return null;
    }
    const out: Action[] = [];
    let ok = true;
    node.items.forEach((item, j) => {
      const a = this.#action(item, `${key}[${j}]`);
      if (a === null) ok = false;
      else out.push(a);
    });
    return ok ? out : null;
  }

  #action(node: unknown, key: string): Action | null {
    const known = ACTION_NAMES.join(', ');
    if (this.#y.isScalar(node)) {
      const v = node.value;
      if (v === 'snapshot') return { kind: 'snapshot', recorders: null };
      if (typeof v === 'string' && (ACTION_NAMES as readonly string[]).includes(v)) {
        this.#issue(key, node, `${v} needs an argument, e.g. { ${v}: ${ACTION_EXAMPLES[v] ?? '...'} }`);
      } else {
        this.#issue(key, node, `unknown action ${this.#show(node)} (known: ${known})`);
      }
      return null;
    }
    if (!this.#y.isMap(node)) {
      this.#issue(key, node, `expected an action such as snapshot or { collect: [...] }, got ${this.#show(node)}`);
      return null;
    }
    const entries = this.#entries(node);
    if (entries.length !== 1) {
      this.#issue(key, node, entries.length === 0
        ? `expected an action (known: ${known}), got an empty mapping`
        : `one action per list item, got ${entries.map((e) => e.key).join(' and ')}: write - { a: ... } for each`);
      return null;
    }
    const { key: kind, keyNode, value } = entries[0]!;
    const k = `${key}.${kind}`;
    switch (kind) {
      case 'snapshot': {
        if (this.#isNull(value)) return { kind: 'snapshot', recorders: null };
        const m = this.#map(value, k, ['recorders']);
        if (m === null) return null;
        if (!m.has('recorders')) return { kind: 'snapshot', recorders: null };
        const list = this.#stringList(m.get('recorders'), `${k}.recorders`, 'recorder names', (s) =>
          (RECORDER_NAMES as readonly string[]).includes(s) ? undefined : `unknown recorder ${show(s)} (known: ${RECORDER_NAMES.join(', ')})`);
        return list === null ? null : { kind: 'snapshot', recorders: [...new Set(list)] };
      }
      case 'collect': {
        let commandsNode: unknown = value;
        let timeoutMs: number | null = DEFAULT_COLLECT_TIMEOUT_MS;
        if (this.#y.isMap(value)) {
          const m = this.#map(value, k, ['commands', 'timeout']);
          if (m === null) return null;
          if (m.has('timeout')) timeoutMs = this.#duration(m.get('timeout'), `${k}.timeout`, { min: 1 });
          if (!m.has('commands')) {
            return this.#missing(m, `${k}.commands`, value, 'required: a list of commands such as [\'ps auxf\', dmesg]');
          }
          commandsNode = m.get('commands');
          const commands = this.#commands(commandsNode, `${k}.commands`);
          return commands === null || timeoutMs === null ? null : { kind: 'collect', commands, timeoutMs };
        }
        const commands = this.#commands(commandsNode, k);
        return commands === null ? null : { kind: 'collect', commands, timeoutMs };
      }
      case 'exec': {
        let argvNode: unknown = value;
        let argvKey = k;
        let timeoutMs: number | null = DEFAULT_EXEC_TIMEOUT_MS;
        if (this.#y.isMap(value)) {
          const m = this.#map(value, k, ['argv', 'timeout']);
          if (m === null) return null;
          if (m.has('timeout')) timeoutMs = this.#duration(m.get('timeout'), `${k}.timeout`, { min: 1 });
          if (!m.has('argv')) {
            return this.#missing(m, `${k}.argv`, value, 'required: the program and its arguments, such as [/usr/local/bin/notify, --urgent]');
          }
          argvNode = m.get('argv');
          argvKey = `${k}.argv`;
        }
        const argv = this.#argv(argvNode, argvKey);
        return argv === null || timeoutMs === null ? null : { kind: 'exec', argv, timeoutMs };
      }
      case 'mail': {
        const m = this.#map(value, k, ['to']);
        if (m === null) return null;
        if (!m.has('to')) {
          return this.#missing(m, `${k}.to`, value, 'required: a list of addresses such as [oncall@example.com]');
        }
        const to = this.#stringList(m.get('to'), `${k}.to`, 'mail addresses', (s) =>
          isMailAddress(s) ? undefined : `${show(s)} is not a mail address such as oncall@example.com`);
        return to === null ? null : { kind: 'mail', to: [...new Set(to)] };
      }
      case 'start':
      case 'stop': {
        const v = this.#plain(value);
        if (typeof v !== 'string' || !(RECORDER_NAMES as readonly string[]).includes(v)) {
          this.#issue(k, value ?? keyNode, `expected a recorder, one of ${RECORDER_NAMES.join(', ')}, got ${this.#show(value)}`);
          return null;
        }
        return { kind: kind === 'start' ? 'start-recorder' : 'stop-recorder', recorder: v };
      }
      default:
        this.#issue(k, keyNode, `unknown action (known: ${known})`);
        return null;
    }
  }

  /** collect: strings the daemon splits on whitespace into argv. There is never a shell. */
  #commands(node: unknown, key: string): string[] | null {
    return this.#stringList(node, key, 'commands', (s) => {
      const t = s.trim();
      if (t === '') return 'a command must not be empty';
      return commandComplaint(t);
    })?.map((s) => s.trim()) ?? null;
  }

  /** exec: '/abs/prog arg' (split on whitespace) or [/abs/prog, arg]. */
  #argv(node: unknown, key: string): string[] | null {
    let argv: string[];
    if (this.#y.isScalar(node) && typeof node.value === 'string') {
      const complaint = node.value.trim() === '' ? 'expected a program path' : commandComplaint(node.value.trim());
      if (complaint) {
        this.#issue(key, node, complaint);
        return null;
      }
      argv = node.value.trim().split(/\s+/);
    } else if (this.#y.isSeq(node) && node.items.length > 0) {
      const out: string[] = [];
      let ok = true;
      node.items.forEach((item, j) => {
        const v = this.#plain(item);
        // An unquoted number (--retries 3) is an argument like any other.
        const s = typeof v === 'number' && Number.isFinite(v) ? String(v) : v;
        if (typeof s !== 'string' || s.length > MAX_COMMAND_CHARS || s.includes('\0')) {
          this.#issue(`${key}[${j}]`, item, `expected an argument string, got ${this.#show(item)}`);
          ok = false;
        } else {
          out.push(s);
        }
      });
      if (!ok) return null;
      argv = out;
    } else {
      this.#issue(key, node, `expected '/path/to/program arg ...' or a list [/path/to/program, arg, ...], got ${this.#show(node)}`);
      return null;
    }
    const prog = argv[0] ?? '';
    if (!isAbsolute(prog) || /[\n\r]/.test(prog)) {
      this.#issue(key, node, `the program must be an absolute path (no PATH lookup), got ${show(prog)}`);
      return null;
    }
    return argv;
  }

  // ---- leaves ---------------------------------------------------------------------------

  #pattern(node: unknown, key: string): string | null {
    const v = this.#plain(node);
    if (typeof v !== 'string' || v === '') {
      this.#issue(key, node, `expected a regular expression, got ${this.#show(node)}`);
      return null;
    }
    if (v.length > MAX_RULE_PATTERN_CHARS) {
      this.#issue(key, node, `a regular expression may have at most ${MAX_RULE_PATTERN_CHARS} characters, got ${v.length}`);
      return null;
    }
    try {
      compileRulePattern(v);
    } catch (err) {
      // "Invalid regular expression: /(?<x/: Invalid capture group name"
      const why = err instanceof Error ? err.message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, '') : String(err);
      this.#issue(key, node, `not a valid JavaScript regular expression (${why}): ${show(v)}`);
      return null;
    }
    return v;
  }

  #absPath(node: unknown, key: string): string | null {
    const v = this.#plain(node);
    if (typeof v !== 'string' || !isAbsolute(v)) {
      this.#issue(key, node, `expected an absolute path, got ${this.#show(node)}`);
      return null;
    }
    if (/[\0\n\r]/.test(v)) {
      this.#issue(key, node, `path must not contain NUL or newlines, got ${show(v)}`);
      return null;
    }
    return v;
  }

  #duration(node: unknown, key: string, opts: { min: number }): number | null {
    const n = parseDuration(this.#plain(node));
    if (n === undefined || n < opts.min) {
      this.#issue(key, node, `expected a duration such as 30s or 5m${opts.min > 0 ? ' (more than 0)' : ''}, got ${this.#show(node)}`);
      return null;
    }
    return n;
  }

  /** A non-empty list of strings, each checked; one message per bad item. */
  #stringList(node: unknown, key: string, what: string, check: (s: string) => string | undefined): string[] | null {
    if (!this.#y.isSeq(node) || node.items.length === 0) {
      this.#issue(key, node, `expected a non-empty list of ${what}, got ${this.#show(node)}`);
      return null;
    }
    const out: string[] = [];
    let ok = true;
    node.items.forEach((item, j) => {
      const v = this.#plain(item);
      const complaint = typeof v !== 'string' ? `expected a string, got ${this.#show(item)}` : check(v);
      if (complaint !== undefined) {
        this.#issue(`${key}[${j}]`, item, complaint);
        ok = false;
      } else {
        out.push(v as string);
      }
    });
    return ok ? out : null;
  }

  // ---- YAML plumbing --------------------------------------------------------------------

  /** A mapping's known keys; each unknown key is its own error. Null (with an error) if not a mapping. */
  #map(node: unknown, key: string, known: readonly string[]): Map<string, unknown> | null {
    if (!this.#y.isMap(node)) {
      this.#issue(key, node, `expected a mapping with ${known.join(', ')}, got ${this.#show(node)}`);
      return null;
    }
    return this.#known(this.#entries(node), known, key);
  }

  #known(entries: Entry[], known: readonly string[], key: string): Map<string, unknown> {
    const m = new Map<string, unknown>();
    for (const e of entries) {
      if (known.includes(e.key)) {
        m.set(e.key, e.value);
      } else {
        this.#issue(`${key}.${e.key}`, e.keyNode, `unknown option (known: ${known.join(', ')})`);
        this.#hadUnknown.add(m);
      }
    }
    return m;
  }

  /** A required key is missing: say so, unless the mapping's unknown key (a typo) already did. */
  #missing(m: Map<string, unknown>, key: string, node: unknown, message: string): null {
    if (!this.#hadUnknown.has(m)) this.#issue(key, node, message);
    return null;
  }

  #entries(map: { items: Pair<unknown, unknown>[] }): Entry[] {
    return map.items.map((p) => ({
      key: String(this.#y.isScalar(p.key) ? p.key.value : this.#plain(p.key)),
      keyNode: p.key,
      // `key:` with nothing after it: the yaml library gives a Scalar holding null, or null
      value: p.value,
    }));
  }

  /** The plain value of a node (scalars as themselves, collections as JSON) for checks and messages. */
  #plain(node: unknown): unknown {
    if (node === null || node === undefined) return null;
    if (this.#y.isScalar(node)) return node.value;
    if (this.#y.isCollection(node)) return node.toJSON();
    if (this.#y.isAlias(node)) return `*${node.source}`;
    return node;
  }

  #show(node: unknown): string {
    return show(this.#plain(node));
  }

  #isNull(node: unknown): boolean {
    return node === null || node === undefined || (this.#y.isScalar(node) && node.value === null);
  }

  #line(node: unknown): number | null {
    const range = (node as { range?: readonly number[] | null } | null | undefined)?.range;
    return this.#ctx.lineOf(range?.[0]);
  }

  #issue(key: string, node: unknown, message: string): void {
    // An alias is never the scalar or collection a check expects, so every alias ends up
    // here exactly once. Resolving one would need the whole document; rules are short
    // enough to write out.
    if (this.#y.isAlias(node)) message = `YAML aliases (*${node.source}) are not supported in rules: write the value out`;
    this.#errors.push({ key, message, file: this.#ctx.file, line: this.#line(node) });
  }
}

const ACTION_EXAMPLES: Record<string, string> = {
  collect: "['ps auxf', dmesg]",
  exec: '/usr/local/bin/notify',
  mail: '{ to: [oncall@example.com] }',
  start: 'ftrace',
  stop: 'ftrace',
};

// A token a shell would have interpreted: operators, redirections, substitutions, quotes.
const SHELL_TOKEN_RE = /^(?:\|\|?|&&?|;|\d*[<>].*|&>.*)$|\$[A-Za-z_{(]|`|^["']|["']$/;

/** Why a whitespace-split command would not do what it looks like, or undefined. */
function commandComplaint(command: string): string | undefined {
  if (command.length > MAX_COMMAND_CHARS) return `a command may have at most ${MAX_COMMAND_CHARS} characters, got ${command.length}`;
  if (/[\0\n\r]/.test(command)) return `a command must be one line without NUL, got ${show(command)}`;
  const token = command.split(/\s+/).find((t) => SHELL_TOKEN_RE.test(t));
  if (token !== undefined) {
    return `commands are split on spaces and run without a shell, so ${show(token)} would reach the program as a literal argument: put pipes, redirections and quoting in a script and use exec (in ${show(command)})`;
  }
  return undefined;
}

/** "2.0 GiB", "80%", "8": a threshold value as an operator wrote it. */
export function formatMetricValue(metric: string, v: number): string {
  if (metric === 'process.rss') return formatBytes(v);
  const n = Number.isInteger(v) ? String(v) : String(Math.round(v * 100) / 100);
  return PERCENT_METRICS.has(metric) ? `${n}%` : n;
}

// units.formatSize prints 2 GiB as "2.0 GiB"; a threshold written 2GiB reads better as "2 GiB".
function formatBytes(v: number): string {
  for (const [unit, f] of [['TiB', 1024 ** 4], ['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (v >= f && v % f === 0 && v / f < 1024) return `${v / f} ${unit}`;
  }
  return formatSize(v);
}
