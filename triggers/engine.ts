// The pure rule engine: state + rules + one event → the rules that fire, and those that
// matched but were held back by cooldown or maxPerDay. No I/O and no clock of its own: time
// is event.t. The daemon owns the sources (triggers/*) and runs the actions.
import { signalName } from '../lib/signals.js';
import { compileRulePattern, formatMetricValue } from '../lib/rules-config.js';
import type { Firing, Rule, Suppressed, TriggerEvent } from '../lib/rules.js';

/** maxPerDay counts firings in any rolling window of this length. */
export const DAY_MS = 86_400_000;
/** A firing's reason is one line of at most this many characters. */
export const MAX_REASON_CHARS = 1000;
/** A label (a named capture group) is cut to this length. */
export const MAX_LABEL_CHARS = 256;
/** Log and kmsg lines are matched on their first this-many characters: bounds the regex work
 *  a hostile line can cause (the pattern comes from root's config, the line does not). */
export const MAX_MATCH_INPUT_CHARS = 64 * 1024;

type Threshold = Extract<Rule['when'], { kind: 'threshold' }>;
type CrashCondition = Extract<Rule['when'], { kind: 'crash' }>;

/** A threshold episode: from the first sample where the condition held until it clears. */
export interface Episode {
  since: number;
  /** the rule fired, or was suppressed, in this episode: nothing more until it ends */
  settled: boolean;
}

export interface RuleState {
  /** JSON of the condition this state belongs to: a reload that changes it ends the episode */
  when: string;
  lastFiredAt: number | null;
  /** firing times within the last 24 h, oldest first; never more than the rule's maxPerDay */
  firedAt: number[];
  episode: Episode | null;
}

/** Plain data that step() updates; create one per rule set lifetime with createEngineState(). */
export interface EngineState {
  /** by rule name; kept across reloads for names that remain (so a reload does not reset limits) */
  rules: Map<string, RuleState>;
  /** a copy of the rule list of the previous step, to notice a reload */
  seen: Rule[];
  /** the rules by name; the first of two rules with one name wins (config refuses duplicates) */
  index: Map<string, Rule>;
}

export interface StepResult {
  fires: Firing[];
  suppressed: Suppressed[];
}

export function createEngineState(): EngineState {
  return { rules: new Map(), seen: [], index: new Map() };
}

/** Feed one event; returns what fired and what was suppressed. Updates `state`. */
export function step(state: EngineState, rules: readonly Rule[], event: TriggerEvent): StepResult {
  reconcile(state, rules);
  const out: StepResult = { fires: [], suppressed: [] };
  switch (event.kind) {
    case 'value': {
      const rule = state.index.get(event.rule);
      if (rule?.when.kind === 'threshold') onValue(state, rule, rule.when, event, out);
      break;
    }
    case 'log':
    case 'kmsg': {
      const input = event.line.length > MAX_MATCH_INPUT_CHARS ? event.line.slice(0, MAX_MATCH_INPUT_CHARS) : event.line;
      for (const rule of state.index.values()) {
        const w = rule.when;
        if (event.kind === 'log' ? w.kind !== 'log' || w.path !== event.path : w.kind !== 'kmsg') continue;
        const re = patternOf(rule);
        const m = re?.exec(input);
        if (!m) continue;
        const labels: Record<string, string> = {};
        for (const [k, v] of Object.entries(m.groups ?? {})) if (v !== undefined) labels[k] = clip(v, MAX_LABEL_CHARS);
        attempt(state, rule, event.t, oneLine(event.line), labels, out);
      }
      break;
    }
    case 'signal':
      for (const rule of state.index.values()) {
        if (rule.when.kind === 'signal' && rule.when.signal === event.signal) {
          attempt(state, rule, event.t, `${event.signal} received`, { signal: event.signal }, out);
        }
      }
      break;
    case 'manual': {
      // `flightbox trigger NAME` fires any rule, whatever its source; cooldown and maxPerDay
      // still apply (a script looping on the command must not flood the store). An unknown
      // name fires nothing: the caller says so.
      const rule = state.index.get(event.rule);
      if (rule) attempt(state, rule, event.t, 'triggered by hand', {}, out);
      break;
    }
    case 'crash':
      for (const rule of state.index.values()) {
        if (rule.when.kind !== 'crash' || !crashMatches(rule.when, event)) continue;
        const labels: Record<string, string> = { id: event.id, signal: signalName(event.signal), uid: String(event.uid) };
        if (event.exe !== null) labels.exe = clip(event.exe, MAX_LABEL_CHARS);
        if (event.signature !== null) labels.signature = event.signature;
        const what = event.exe ?? 'an unknown executable';
        attempt(state, rule, event.t, oneLine(`${what} crashed with ${signalName(event.signal)} (uid ${event.uid}, event ${event.id})`), labels, out);
      }
      break;
  }
  return out;
}

// Does a crash match? exe is a glob over the full path where '*' matches any run of
// characters INCLUDING '/' (so */nginx matches /usr/sbin/nginx and /opt/x/bin/nginx, and
// /usr/* matches everything below /usr) and '?' any one character; nothing else is special
// (no [...] classes). A " (deleted)" suffix (the binary was replaced by an upgrade while it
// ran) is ignored. signals: any of the list; signature: a prefix of the hash, case-insensitive;
// uid: equal. Fields left out match everything.
export function crashMatches(c: CrashCondition, e: { exe: string | null; signal: number; signature: string | null; uid: number }): boolean {
  if (c.exe !== null) {
    if (e.exe === null || !globOf(c.exe).test(e.exe.replace(/ \(deleted\)$/, ''))) return false;
  }
  if (c.signals !== null && !c.signals.includes(e.signal)) return false;
  if (c.signature !== null && !(e.signature ?? '').toLowerCase().startsWith(c.signature.toLowerCase())) return false;
  if (c.uid !== null && c.uid !== e.uid) return false;
  return true;
}

// ---- thresholds ------------------------------------------------------------------------

/**
 * The condition (value past the threshold) must hold on every sample for forMs, counted from
 * the first sample where it held; a sample where it does not hold, or no data, before the rule
 * fires starts the wait over. Once the rule has fired (or was suppressed) the episode lasts
 * until the value is back past `clear` (hysteresis) or there is no data, and fires nothing more.
 */
function onValue(state: EngineState, rule: Rule, c: Threshold, e: Extract<TriggerEvent, { kind: 'value' }>, out: StepResult): void {
  const st = stateOf(state, rule);
  const v = e.value;
  if (v === null || !Number.isFinite(v)) {
    st.episode = null;
    return;
  }
  const holds = c.op === 'above' ? v > c.value : v < c.value;
  const cleared = c.op === 'above' ? v <= c.clear : v >= c.clear;
  const ep = st.episode;
  if (ep?.settled) {
    if (cleared) st.episode = null;
    return;
  }
  if (!holds) {
    st.episode = null;
    return;
  }
  const episode = ep ?? (st.episode = { since: e.t, settled: false });
  const held = e.t - episode.since;
  if (held < c.forMs) return;
  episode.settled = true;
  attempt(state, rule, e.t, thresholdReason(c, v, held, e.labels), { ...e.labels }, out);
}

/** "process.rss 2.1 GiB above 2 GiB for 30s (pid 1234 mysqld)" */
function thresholdReason(c: Threshold, v: number, heldMs: number, labels: Record<string, string>): string {
  let s = `${c.metric} ${formatMetricValue(c.metric, v)} ${c.op} ${formatMetricValue(c.metric, c.value)}`;
  if (c.mount !== null) s += ` on ${c.mount}`;
  if (heldMs > 0) s += ` for ${formatDuration(heldMs)}`;
  const parts: string[] = [];
  const { pid, comm, count, ...rest } = labels;
  if (pid !== undefined) parts.push(comm !== undefined ? `pid ${pid} ${comm}` : `pid ${pid}`);
  else if (comm !== undefined) parts.push(comm);
  if (count !== undefined && count !== '1') parts.push(`highest of ${count} processes`);
  for (const [k, val] of Object.entries(rest)) parts.push(`${k}=${val}`);
  if (parts.length > 0) s += ` (${parts.join(', ')})`;
  return oneLine(s);
}

/** 30000 → "30s", 90000 → "1m30s", 1500 → "1.5s", 250 → "250ms" */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const tenths = Math.round(ms / 100);
  if (tenths < 600) return `${tenths / 10}s`;
  let s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return `${h ? `${h}h` : ''}${m ? `${m}m` : ''}${s ? `${s}s` : ''}`;
}

// ---- cooldown and maxPerDay ------------------------------------------------------------

function attempt(state: EngineState, rule: Rule, t: number, reason: string, labels: Record<string, string>, out: StepResult): void {
  const st = stateOf(state, rule);
  // cooldown first: it is the nearer limit, and the one an operator tunes.
  if (st.lastFiredAt !== null && rule.cooldownMs > 0 && t - st.lastFiredAt < rule.cooldownMs) {
    out.suppressed.push({ rule: rule.name, t, why: 'cooldown' });
    return;
  }
  while (st.firedAt.length > 0 && st.firedAt[0]! <= t - DAY_MS) st.firedAt.shift();
  if (st.firedAt.length >= rule.maxPerDay) {
    out.suppressed.push({ rule: rule.name, t, why: 'maxPerDay' });
    return;
  }
  st.firedAt.push(t);
  st.lastFiredAt = st.lastFiredAt === null ? t : Math.max(st.lastFiredAt, t);
  out.fires.push({ rule: rule.name, t, reason, labels });
}

// ---- state -----------------------------------------------------------------------------

/**
 * Notice a new rule list (a reload, or the caller's array changed in place): rebuild the
 * index, drop the state of rules that are gone, end the episode of rules whose condition
 * changed, and trim firing histories to a lowered maxPerDay. Cooldowns and daily counts of
 * rules that remain are kept, so reloading cannot be used to get around them.
 */
function reconcile(state: EngineState, rules: readonly Rule[]): void {
  if (rules.length === state.seen.length && rules.every((r, i) => r === state.seen[i])) return;
  state.seen = [...rules];
  state.index = new Map();
  for (const r of rules) if (!state.index.has(r.name)) state.index.set(r.name, r);
  for (const [name, st] of state.rules) {
    const r = state.index.get(name);
    if (r === undefined) {
      state.rules.delete(name);
      continue;
    }
    const when = JSON.stringify(r.when);
    if (when !== st.when) {
      st.when = when;
      st.episode = null;
    }
    if (st.firedAt.length > r.maxPerDay) st.firedAt.splice(0, st.firedAt.length - r.maxPerDay);
  }
}

function stateOf(state: EngineState, rule: Rule): RuleState {
  let st = state.rules.get(rule.name);
  if (st === undefined) {
    st = { when: JSON.stringify(rule.when), lastFiredAt: null, firedAt: [], episode: null };
    state.rules.set(rule.name, st);
  }
  return st;
}

// Compiled once per rule object; a reload brings new objects and so new regexes. No g/y
// flag: exec() keeps no lastIndex between lines.
const patterns = new WeakMap<Rule, RegExp | null>();
function patternOf(rule: Rule): RegExp | null {
  let re = patterns.get(rule);
  if (re === undefined) {
    const w = rule.when;
    try {
      re = w.kind === 'log' || w.kind === 'kmsg' ? compileRulePattern(w.match) : null;
    } catch {
      re = null; // the config validates patterns; a hand-made bad rule just never matches
    }
    patterns.set(rule, re);
  }
  return re;
}

const globs = new Map<string, RegExp>();
const MAX_CACHED_GLOBS = 1024;
function globOf(glob: string): RegExp {
  let re = globs.get(glob);
  if (re === undefined) {
    const src = [...glob].map((ch) => (ch === '*' ? '.*' : ch === '?' ? '.' : ch.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&'))).join('');
    re = new RegExp(`^${src}$`, 's');
    if (globs.size >= MAX_CACHED_GLOBS) globs.clear();
    globs.set(glob, re);
  }
  return re;
}

// ---- text ------------------------------------------------------------------------------

/** One line for humans: control characters shown as \xNN, cut to MAX_REASON_CHARS. */
function oneLine(s: string): string {
  const clean = s.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return clip(clean, MAX_REASON_CHARS);
}

function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
