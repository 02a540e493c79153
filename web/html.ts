// HTML built by a tagged template that escapes every interpolated value unless it is
// already markup (SafeHtml). A crash's strings (comm, exe, cmdline, frames, cgroup) are
// chosen by the crashed process: they reach a page only through here. Pure.

/** Markup that is already safe: produced by `html` or `raw` and nothing else. */
export class SafeHtml {
  readonly #text: string;
  constructor(text: string) {
    this.#text = text;
  }
  toString(): string {
    return this.#text;
  }
}

const ENTITIES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

// Markup characters become entities. Control characters (but tab and newline), C1, and the
// invisible and bidirectional formatting characters become visible \xNN / \u{...} text, as on
// the terminal (lib/escape.ts): a name cannot hide text or reorder what the reader sees.
// With the u flag, [\ud800-\udfff] matches only lone surrogates.
// eslint-disable-next-line no-control-regex
const SPECIAL = /[&<>"']|[\x00-\x08\x0b-\x1f\x7f-\x9f]|[\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]|[\ud800-\udfff]/gu;

/** Text as HTML text or a quoted attribute value. */
export function escapeHtml(s: string): string {
  return s.replace(SPECIAL, (ch) => {
    const e = ENTITIES[ch];
    if (e) return e;
    const cp = ch.codePointAt(0) ?? 0;
    return cp < 0x100 ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u{${cp.toString(16)}}`;
  });
}

/** At most `max` characters (whole code points), with an ellipsis when cut. */
export function clip(s: string, max: number): string {
  if (s.length <= max) return s;
  let out = '';
  for (const ch of s) {
    if (out.length + ch.length > max) break;
    out += ch;
  }
  return `${out}…`;
}

export type HtmlValue = SafeHtml | string | number | boolean | null | undefined | readonly HtmlValue[];

function render(v: HtmlValue): string {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof SafeHtml) return v.toString();
  if (Array.isArray(v)) return (v as readonly HtmlValue[]).map(render).join('');
  return escapeHtml(String(v));
}

/** html`<td>${value}</td>`: every value escaped, SafeHtml and arrays of it kept as they are. */
export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): SafeHtml {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? '');
  return new SafeHtml(out);
}

/** Markup written by this program (never data): trusted as it is. */
export function raw(markup: string): SafeHtml {
  return new SafeHtml(markup);
}
