// Runs the rules: owns the event sources the rules need (one tail per log file, the kernel
// log, the threshold sampler, signals, crash notices, manual triggers), passes each event
// through the pure rule engine, and hands every firing to the daemon. Counts what fired and
// what cooldown or maxPerDay suppressed.
import type { Logger } from '../lib/log.js';
import { messageOf } from '../lib/errors.js';
import type { Firing, Rule, TriggerEvent } from '../lib/rules.js';
import { createEngineState, step, type EngineState } from '../triggers/engine.js';

export const THRESHOLD_SAMPLE_INTERVAL_MS = 1000;

export interface FireResult {
  rule: string;
  id: string | null;
  error: string | null;
}

export interface FeedResult {
  fired: FireResult[];
  suppressed: { rule: string; why: string }[];
}

export interface TriggerRunnerDeps {
  log: Logger;
  /** run a firing's actions; resolves to the event id recorded (or null) */
  fire: (f: Firing, rule: Rule) => Promise<string | null>;
  sampleIntervalMs?: number;
  now?: () => number;
  /** the engine state of the runner this one replaces (a reload keeps cooldowns and daily counts) */
  state?: EngineState;
}

interface Counter {
  fired: number;
  suppressed: number;
  lastFired: number | null;
  lastError: string | null;
}

interface Closable {
  close(): Promise<void>;
}

export class TriggerRunner {
  readonly #rules: readonly Rule[];
  readonly #deps: TriggerRunnerDeps;
  readonly #state: EngineState;
  readonly #counters = new Map<string, Counter>();
  readonly #sources: Closable[] = [];
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;

  constructor(rules: readonly Rule[], deps: TriggerRunnerDeps) {
    this.#rules = rules;
    this.#deps = deps;
    this.#state = deps.state ?? createEngineState();
    for (const r of rules) this.#counters.set(r.name, { fired: 0, suppressed: 0, lastFired: null, lastError: null });
  }

  get state(): EngineState {
    return this.#state;
  }

  get rules(): readonly Rule[] {
    return this.#rules;
  }

  async start(): Promise<void> {
    const log = this.#deps.log;
    const now = this.#deps.now ?? Date.now;
    const paths = new Set<string>();
    for (const r of this.#rules) if (r.when.kind === 'log') paths.add(r.when.path);
    if (paths.size > 0) {
      const { LogTail } = await import('../triggers/log-tail.js');
      for (const path of paths) {
        const tail = new LogTail(path, (line, t) => { void this.feed({ kind: 'log', path, line, t }); }, { log });
        await tail.start();
        this.#sources.push(tail);
      }
    }
    if (this.#rules.some((r) => r.when.kind === 'kmsg')) {
      const { KmsgSource } = await import('../triggers/kmsg.js');
      const kmsg = new KmsgSource((line, t) => { void this.feed({ kind: 'kmsg', line, t }); }, { log });
      await kmsg.start();
      this.#sources.push(kmsg);
    }
    const thresholds = this.#rules.filter((r) => r.when.kind === 'threshold');
    if (thresholds.length > 0) {
      const { MetricSampler } = await import('../triggers/metric-sampler.js');
      const sampler = new MetricSampler({ now });
      const tick = () => {
        try {
          for (const ev of sampler.sample(thresholds)) void this.feed(ev);
        } catch (err) {
          log.warn({}, 'Threshold sampling failed, will retry: %s', messageOf(err));
        }
      };
      tick();
      this.#timer = setInterval(tick, this.#deps.sampleIntervalMs ?? THRESHOLD_SAMPLE_INTERVAL_MS);
    }
    if (this.#rules.length > 0) {
      log.info({ rules: this.#rules.length, logs: paths.size, thresholds: thresholds.length }, 'Rules running: %s', this.#rules.map((r) => r.name).join(', '));
    }
  }

  hasRule(name: string): boolean {
    return this.#rules.some((r) => r.name === name);
  }

  /** Does any rule listen for this signal? (Otherwise SIGUSR1 keeps its default meaning.) */
  handlesSignal(signal: 'SIGUSR1' | 'SIGUSR2'): boolean {
    return this.#rules.some((r) => r.when.kind === 'signal' && r.when.signal === signal);
  }

  /** Pass one event through the engine and run what fires. */
  async feed(ev: TriggerEvent): Promise<FeedResult> {
    if (this.#stopped) return { fired: [], suppressed: [] };
    const { fires, suppressed } = step(this.#state, this.#rules, ev);
    for (const s of suppressed) {
      const c = this.#counters.get(s.rule);
      if (c) c.suppressed++;
      this.#deps.log.debug({ rule: s.rule, why: s.why }, 'Rule %s matched but was suppressed (%s)', s.rule, s.why);
    }
    const fired = await Promise.all(fires.map(async (f): Promise<FireResult> => {
      const rule = this.#rules.find((r) => r.name === f.rule);
      const c = this.#counters.get(f.rule);
      if (!rule) return { rule: f.rule, id: null, error: 'rule vanished' };
      if (c) { c.fired++; c.lastFired = f.t; }
      try {
        const id = await this.#deps.fire(f, rule);
        return { rule: f.rule, id, error: null };
      } catch (err) {
        if (c) c.lastError = messageOf(err);
        this.#deps.log.warn({ rule: f.rule }, 'Rule %s fired but its actions failed: %s', f.rule, messageOf(err));
        return { rule: f.rule, id: null, error: messageOf(err) };
      }
    }));
    return { fired, suppressed: suppressed.map((s) => ({ rule: s.rule, why: s.why })) };
  }

  status(): { name: string; when: string; fired: number; suppressed: number; lastFired: string | null; lastError: string | null }[] {
    return this.#rules.map((r) => {
      const c = this.#counters.get(r.name)!;
      return {
        name: r.name,
        when: r.when.kind,
        fired: c.fired,
        suppressed: c.suppressed,
        lastFired: c.lastFired === null ? null : new Date(c.lastFired).toISOString(),
        lastError: c.lastError,
      };
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    for (const s of this.#sources.splice(0)) {
      try {
        await s.close();
      } catch (err) {
        this.#deps.log.warn({}, 'Failed to close a trigger source: %s', messageOf(err));
      }
    }
  }
}
