// A strict reader of the text format 0.0.4, for the exporter's unit tests and the monitoring
// system test, from its grammar: a sample line is name{label="value",...} value; inside a
// label value only \\, \" and \n are escapes, and a raw '"', '\' or line feed cannot occur.
// Anything else is an error.
import { expect } from 'vitest';

export interface ParsedSample { name: string; labels: Record<string, string>; value: number }
export interface Parsed { help: Map<string, string>; type: Map<string, string>; samples: ParsedSample[] }

export function parseExposition(text: string): Parsed {
  expect(text.endsWith('\n')).toBe(true);
  const out: Parsed = { help: new Map(), type: new Map(), samples: [] };
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') {
        expect(['counter', 'gauge', 'histogram', 'summary', 'untyped']).toContain(meta[3]);
        expect(out.samples.some((s) => s.name === meta[2]), `TYPE of ${meta[2]} after its samples`).toBe(false);
        out.type.set(meta[2]!, meta[3]!);
      } else {
        out.help.set(meta[2]!, meta[3]!.replace(/\\(n|\\)/g, (_, c: string) => (c === 'n' ? '\n' : '\\')));
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    let rest = m[2] ?? '';
    while (rest !== '') {
      const l = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
      if (!l) throw new Error(`bad labels in ${JSON.stringify(line)}`);
      labels[l[1]!] = l[2]!.replace(/\\([\\"n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
      rest = rest.slice(l[0].length);
    }
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    if (m[3] !== 'NaN' && Number.isNaN(value)) throw new Error(`bad value in ${JSON.stringify(line)}`);
    out.samples.push({ name: m[1]!, labels, value });
  }
  return out;
}

export const sampleOf = (p: Parsed, name: string, labels: Record<string, string> = {}): number | undefined =>
  p.samples.find((s) => s.name === name && JSON.stringify(s.labels) === JSON.stringify(labels))?.value;

