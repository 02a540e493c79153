import { describe, expect, it } from 'vitest';
import { decodeProcBytes, escapeControl } from '../../lib/escape.js';

/** No raw C0/DEL/C1 controls, no bidi/zero-width/line-separator format characters. */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

describe('escapeControl: what it escapes', () => {
  it.each([
    ['newline', 'a\nb', 'a\\x0ab'],
    ['carriage return', 'a\rb', 'a\\x0db'],
    ['CRLF header injection', 'x\r\nBcc: evil@example.com', 'x\\x0d\\x0aBcc: evil@example.com'],
    ['tab', 'a\tb', 'a\\x09b'],
    ['NUL', 'a\0b', 'a\\x00b'],
    ['bell and backspace', '\x07\x08', '\\x07\\x08'],
    ['ESC sequence (colour)', '\x1b[31mred\x1b[0m', '\\x1b[31mred\\x1b[0m'],
    ['ESC title-setting OSC', '\x1b]0;pwned\x07', '\\x1b]0;pwned\\x07'],
    ['DEL', 'a\x7fb', 'a\\x7fb'],
    ['C1 CSI (U+009B)', 'a\u009b31mb', 'a\\x9b31mb'],
    ['C1 NEL (U+0085)', 'a\u0085b', 'a\\x85b'],
    ['C1 first and last', '\u0080\u009f', '\\x80\\x9f'],
    ['RLO bidi override', 'file\u202Egnp.exe', 'file\\u{202e}gnp.exe'],
    ['LRO, PDF', '\u202Dx\u202C', '\\u{202d}x\\u{202c}'],
    ['LRE, RLE', '\u202Ax\u202B', '\\u{202a}x\\u{202b}'],
    ['isolates LRI..PDI', '\u2066\u2067\u2068\u2069', '\\u{2066}\\u{2067}\\u{2068}\\u{2069}'],
    ['zero-width space and joiners', 'a\u200Bb\u200Cc\u200Dd', 'a\\u{200b}b\\u{200c}c\\u{200d}d'],
    ['LRM and RLM', '\u200E\u200F', '\\u{200e}\\u{200f}'],
    ['line and paragraph separators', 'a\u2028b\u2029c', 'a\\u{2028}b\\u{2029}c'],
    ['backslash', 'C:\\path', 'C:\\\\path'],
    ['a literal "\\x0a" cannot be confused with an escaped newline', '\\x0a', '\\\\x0a'],
  ])('%s', (_what, input, expected) => {
    expect(escapeControl(input)).toBe(expected);
  });

  it('escapes every C0 control, DEL and every C1 control', () => {
    for (let cp = 0; cp < 0xa0; cp++) {
      if (cp >= 0x20 && cp < 0x7f) continue;
      const out = escapeControl(`a${String.fromCodePoint(cp)}b`);
      expect(out).toBe(`a\\x${cp.toString(16).padStart(2, '0')}b`);
    }
  });
});

describe('escapeControl: what it keeps', () => {
  it.each([
    ['plain ASCII', 'segv-test --flag=1 /usr/bin/x'],
    ['spaces and punctuation', 'a b!"#$%&\'()*+,-./:;<=>?@[]^_`{|}~'],
    ['Latin-1 letters (U+00A0 and above)', 'caf\u00e9 \u00a0\u00ff'],
    ['CJK', '日本語のプログラム'],
    ['emoji (astral plane)', 'crash 💥 🚀'],
    ['empty', ''],
  ])('%s is unchanged', (_what, s) => {
    expect(escapeControl(s)).toBe(s);
  });

  it('the output of any mixture contains no unsafe characters', () => {
    const hostile = 'x\x1b[2J\r\n\u202e\u2066\u200b\u0085\x7f\u2028\\y';
    const out = escapeControl(hostile);
    expect(out).not.toMatch(UNSAFE);
    expect(out).toBe('x\\x1b[2J\\x0d\\x0a\\u{202e}\\u{2066}\\u{200b}\\x85\\x7f\\u{2028}\\\\y');
  });
});

describe('escapeControl: truncation', () => {
  it('defaults to 256 characters plus an ellipsis', () => {
    const out = escapeControl('a'.repeat(1000));
    expect(out).toBe(`${'a'.repeat(256)}…`);
  });

  it.each([
    [10, 'a'.repeat(20), `${'a'.repeat(10)}…`],
    [10, 'a'.repeat(11), `${'a'.repeat(10)}…`],
    [10, 'a'.repeat(9), 'a'.repeat(9)],
    [4096, 'b'.repeat(5000), `${'b'.repeat(4096)}…`],
  ])('max %i: %j', (max, input, expected) => {
    expect(escapeControl(input, max)).toBe(expected);
  });

  it('a string of exactly max characters is not truncated (no ellipsis)', () => {
    expect(escapeControl('a'.repeat(10), 10)).toBe('a'.repeat(10));
    expect(escapeControl('x'.repeat(256))).toBe('x'.repeat(256));
  });

  it('counts the escaped form against the limit', () => {
    const out = escapeControl('\n'.repeat(100), 20);
    expect(out.endsWith('…')).toBe(true);
    expect(out.length).toBe(21);
    expect(out).not.toMatch(UNSAFE);
  });

  it('a truncated result never contains a raw control character', () => {
    for (let max = 1; max < 30; max++) {
      const out = escapeControl('ab\x1b[31m\ncd\u202eef'.repeat(5), max);
      expect(out).not.toMatch(UNSAFE);
      expect(out.length).toBeLessThanOrEqual(max + 1);
    }
  });

  it('truncation does not split a surrogate pair (output stays well-formed UTF-16)', () => {
    for (let max = 1; max < 12; max++) {
      const out = escapeControl('ab💥cd💥ef💥gh', max);
      expect(out, `max ${max}: ${JSON.stringify(out)}`).not.toMatch(LONE_SURROGATE);
    }
  });

  it('stops early on huge input (does not scan the whole string)', () => {
    const big = 'z'.repeat(5_000_000);
    const t0 = performance.now();
    const out = escapeControl(big, 100);
    expect(out).toBe(`${'z'.repeat(100)}…`);
    expect(performance.now() - t0).toBeLessThan(500);
  });
});

describe('decodeProcBytes', () => {
  it.each([
    ['ASCII', Buffer.from('bash'), 'bash'],
    ['UTF-8', Buffer.from('caf\u00e9', 'utf8'), 'caf\u00e9'],
    ['invalid UTF-8 becomes U+FFFD', Buffer.from([0x61, 0xff, 0x62]), 'a\ufffdb'],
    ['empty', Buffer.alloc(0), ''],
  ])('%s', (_what, buf, text) => {
    expect(decodeProcBytes(buf)).toBe(text);
  });
});
