// Who may talk to the web page. Every local user can reach a localhost port, so a request
// needs the token `flightbox serve` printed (once in the URL, then a cookie); and a page
// reached through a name that is not ours (DNS rebinding: evil.example resolving to
// 127.0.0.1) is refused before the token is even looked at. Pure, except newToken.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { FlightboxError } from '../lib/errors.js';

export const TOKEN_BYTES = 32;
export const DEFAULT_LISTEN = '127.0.0.1:9478';

/** 32 random bytes as 64 hex digits. */
export function newToken(): string {
  return randomBytes(TOKEN_BYTES).toString('hex');
}

/**
 * Whether `given` is the token, in time that does not depend on where they differ: both
 * are hashed first, so even their lengths are compared in constant time.
 */
export function tokenMatches(expected: string, given: string | undefined | null): boolean {
  if (typeof given !== 'string' || given.length === 0 || given.length > 1024) return false;
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b) && expected.length > 0;
}

/** The cookie's name: one per port, so two servers on one host (two users) keep their own. */
export function cookieName(port: number): string {
  return `flightbox_${port}`;
}

/** name=value pairs of a Cookie header (the first of each name wins, as browsers send most specific first). */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    if (name && !out.has(name)) out.set(name, value);
  }
  return out;
}

/** The Set-Cookie header for the token: never readable by a script, never sent cross-site. */
export function tokenCookie(port: number, token: string): string {
  return `${cookieName(port)}=${token}; Path=/; HttpOnly; SameSite=Strict`;
}

export interface ListenAddress {
  /** an IP address or a host name, without brackets */
  host: string;
  port: number;
}

/** "127.0.0.1:9478", "[::1]:0", "localhost:8080", "0.0.0.0:9478", or a bare port "9478". */
export function parseListen(value: string): ListenAddress {
  const bad = (why: string) => new FlightboxError('USAGE', `--listen: ${why}, got ${JSON.stringify(value)} (use e.g. 127.0.0.1:9478, [::1]:9478 or 127.0.0.1:0)`);
  const v = value.trim();
  let host: string;
  let port: string;
  if (/^\d+$/.test(v)) {
    host = '127.0.0.1';
    port = v;
  } else {
    const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(v) ?? /^([^:[\]\s]+):(\d+)$/.exec(v);
    if (!m) throw bad('expected ADDRESS:PORT');
    host = m[1]!;
    port = m[2]!;
    if (/^\[/.test(v) && isIP(host) !== 6) throw bad('not an IPv6 address in the brackets');
    if (!isIP(host) && !/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(host)) throw bad('not an address or a host name');
  }
  const n = Number(port);
  if (!Number.isInteger(n) || n < 0 || n > 65535 || port.length > 5) throw bad('the port must be 0 to 65535');
  return { host, port: n };
}

/** Loopback: 127.0.0.0/8, ::1, localhost (and its subdomains, which resolvers keep local). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./.test(h) || /^(0{1,4}:){7}0{0,3}1$/.test(h);
  return false;
}

export function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]';
}

/** "host:port" for a URL, with brackets around an IPv6 address. */
export function hostPort(host: string, port: number): string {
  return `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}

/**
 * Whether a request's Host header names this server: one of the loopback names, the listen
 * address as given, or (listening on every address) one of `localAddresses`; and the port
 * it really listens on. Anything else is a page that was not loaded from us.
 */
export function hostAllowed(header: string | undefined, listen: ListenAddress, opts: { port: number; localAddresses?: readonly string[] }): boolean {
  if (!header || header.length > 300) return false;
  const m = /^\[([0-9a-fA-F:.]+)\](?::(\d{1,5}))?$/.exec(header) ?? /^([^:[\]]+)(?::(\d{1,5}))?$/.exec(header);
  if (!m) return false;
  const name = m[1]!.toLowerCase().replace(/\.$/, '');
  const port = m[2] === undefined ? 80 : Number(m[2]);
  if (port !== opts.port) return false;
  if (name === listen.host.toLowerCase()) return true;
  if (name === 'localhost' || name === '127.0.0.1' || name === '::1') return true;
  if (isWildcard(listen.host)) return (opts.localAddresses ?? []).some((a) => a.toLowerCase() === name);
  return false;
}
