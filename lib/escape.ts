// Escaping of hostile strings (comm, exe, cmdline, cgroup names: chosen by the crashed
// process) before they reach a log line, a terminal or a mail header. Pure functions.

const MAX_LOG_FIELD_CHARS = 256;

/** Control characters (C0, DEL, C1), backslashes and non-printing format characters become \xNN / \u{...}. */
export function escapeControl(s: string, max = MAX_LOG_FIELD_CHARS): string {
  let out = '';
  // for…of walks code points, so a cut never splits a surrogate pair.
  for (const ch of s) {
    const cp = ch.codePointAt(0) ?? 0;
    let piece = ch;
    if (cp < 0x20 || cp === 0x7f || (cp >= 0x80 && cp < 0xa0)) piece = `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (ch === '\\') piece = '\\\\';
    else if (
      cp === 0x2028 || cp === 0x2029 || cp === 0xfeff || cp === 0x061c || (cp >= 0x200b && cp <= 0x200f) ||
      (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || (cp >= 0xd800 && cp <= 0xdfff)
    ) {
      piece = `\\u{${cp.toString(16)}}`;
    }
    if (out.length + piece.length > max) return `${out}…`;
    out += piece;
  }
  return out;
}

/** Bytes from /proc (comm, cmdline) are not guaranteed UTF-8: keep them readable and lossless-ish. */
export function decodeProcBytes(buf: Buffer): string {
  return buf.toString('utf8');
}
