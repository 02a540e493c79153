// Masking secrets in a crashed process's command line before a bundle leaves the host
// (export --redact, mail). Pure and deliberately simple: it errs on the side of masking,
// because a false positive costs a little debugging detail and a false negative leaks a
// password into someone's mailbox.
//
// What is masked (the replacement is always REDACTED, "***"):
//   1. `--name=value`, `-name=value` and `name=value` (also `-Dsome.password=value`) when
//      the name looks secret (SECRET_WORDS below, case-insensitive, anywhere in the name:
//      "--keyboard=us" is masked too, on purpose);
//   2. `--name value` / `-name value`: the next argument, when the name looks secret and the
//      next argument does not itself look like an option ("--password --verbose" masks
//      nothing). Names starting with "no-" are flags and take no value;
//   3. user:password@ in URLs anywhere in an argument (`postgres://u:p@db/x` →
//      `postgres://u:***@db/x`);
//   4. header-like arguments `Name: value` with a secret-looking name; for
//      `Authorization: Bearer xyz` the scheme is kept (`Authorization: Bearer ***`);
//   5. short options of a few known tools, where guessing would be wrong for others:
//      mysql-family `-pSECRET`, sshpass `-p SECRET`/`-pSECRET`, redis-cli `-a SECRET`.
// Not recognized: other short options (`-p x` means a port as often as a password),
// secrets inside JSON or other structured arguments, and anything in argv[0] except URLs.
// An empty value is left empty. The result always has as many elements as the input.
import { basename } from 'node:path';

export const REDACTED = '***';

/** Substrings that make an option or variable name look like it holds a secret. */
export const SECRET_WORDS = [
  'pass', 'passwd', 'password', 'secret', 'token', 'key', 'auth', 'credential', 'apikey', 'api-key', 'access-key', 'session',
] as const;

const SECRET_NAME_RE = new RegExp(SECRET_WORDS.map((w) => w.replace(/-/g, '[-_]?')).join('|'), 'i');

/** Known tools whose short options carry a password: attached (`-pX`) and/or separate (`-p X`). */
const KNOWN_SHORT_SECRETS: Readonly<Record<string, readonly { flag: string; attached: boolean; separate: boolean }[]>> = {
  mysql: [{ flag: '-p', attached: true, separate: false }],
  mysqldump: [{ flag: '-p', attached: true, separate: false }],
  mysqladmin: [{ flag: '-p', attached: true, separate: false }],
  mariadb: [{ flag: '-p', attached: true, separate: false }],
  'mariadb-dump': [{ flag: '-p', attached: true, separate: false }],
  sshpass: [{ flag: '-p', attached: true, separate: true }],
  'redis-cli': [{ flag: '-a', attached: false, separate: true }],
};

/** A name (option without dashes, variable, header) that looks like it holds a secret. */
export function looksSecret(name: string): boolean {
  return SECRET_NAME_RE.test(name);
}

// `name=value`: the name may carry dashes and a -D prefix, never a slash or a space, so a
// path like /etc/app/key=1 or a sentence is not taken for an assignment.
const ASSIGNMENT_RE = /^(-{0,2}[A-Za-z_][\w.-]*)=([\s\S]*)$/;
// An option without a value: `--password`, `-passin`.
const OPTION_RE = /^-{1,2}([A-Za-z][\w.-]*)$/;
// scheme://user:password@ — the user part has no ':', '/', '@'; the password no '@'.
const URL_USERINFO_RE = /([A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s:@/]*):([^\s@]+)@/g;
// `Name: value` as curl -H and friends take it.
const HEADER_RE = /^([A-Za-z][A-Za-z0-9_-]*)[ \t]*:[ \t]*([\s\S]*)$/;
const AUTH_SCHEME_RE = /^([A-Za-z][A-Za-z0-9_-]*)([ \t]+)\S/;

function maskUrls(arg: string): string {
  return arg.replace(URL_USERINFO_RE, `$1:${REDACTED}@`);
}

/** Rules 1, 3 and 4 on one argument on its own; null when no rule applies. */
function maskArgument(arg: string): string | null {
  const a = ASSIGNMENT_RE.exec(arg);
  if (a && looksSecret(a[1]!)) return a[2] === '' ? arg : `${a[1]}=${REDACTED}`;
  const h = HEADER_RE.exec(arg);
  if (h && looksSecret(h[1]!) && h[2] !== '' && !h[2]!.startsWith('//')) {
    const value = h[2]!;
    const scheme = /authorization$/i.test(h[1]!) ? AUTH_SCHEME_RE.exec(value) : null;
    const prefix = arg.slice(0, arg.length - value.length);
    return scheme ? `${prefix}${scheme[1]}${scheme[2]}${REDACTED}` : `${prefix}${REDACTED}`;
  }
  const u = maskUrls(arg);
  return u === arg ? null : u;
}

function looksLikeOption(arg: string): boolean {
  return /^--?[A-Za-z]/.test(arg);
}

/** The argument list with secret values replaced by "***" (see the rules above). */
export function redactCmdline(argv: readonly string[]): string[] {
  const out = [...argv];
  if (out.length === 0) return out;
  out[0] = maskUrls(out[0]!);
  const tool = KNOWN_SHORT_SECRETS[basename(argv[0]!)] ?? [];
  for (let i = 1; i < out.length; i++) {
    const arg = argv[i]!;
    const short = tool.find((t) => arg.startsWith(t.flag));
    if (short) {
      if (arg.length > short.flag.length && short.attached) {
        out[i] = `${short.flag}${REDACTED}`;
        continue;
      }
      if (arg === short.flag && short.separate && i + 1 < out.length) {
        if (argv[i + 1] !== '') out[i + 1] = REDACTED;
        i++;
        continue;
      }
    }
    const masked = maskArgument(arg);
    if (masked !== null) {
      out[i] = masked;
      continue;
    }
    const o = OPTION_RE.exec(arg);
    if (o && looksSecret(o[1]!) && !/^no-/i.test(o[1]!) && i + 1 < out.length && !looksLikeOption(argv[i + 1]!)) {
      if (argv[i + 1] !== '') out[i + 1] = REDACTED;
      i++;
    }
  }
  return out;
}
