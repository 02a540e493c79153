// The web page's gate: the token (constant-time, hashed), the cookie, the Host check
// against DNS rebinding, the --listen address. Pure functions, from tables.
import { describe, expect, it } from 'vitest';
import {
  cookieName, hostAllowed, hostPort, isLoopback, newToken, parseCookies, parseListen, tokenCookie, tokenMatches,
} from '../../web/access.js';
import { FlightboxError } from '../../lib/errors.js';

const TOKEN = 'a'.repeat(32) + 'b'.repeat(32);

describe('the token', () => {
  it('is 32 random bytes as 64 hex digits, new each time', () => {
    const a = newToken();
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(newToken()).not.toBe(a);
  });

  it.each([
    ['the token', TOKEN, true],
    ['the last digit wrong', `${TOKEN.slice(0, 63)}c`, false],
    ['the first digit wrong', `c${TOKEN.slice(1)}`, false],
    ['a prefix', TOKEN.slice(0, 32), false],
    ['the token and more', `${TOKEN}0`, false],
    ['upper case', TOKEN.toUpperCase(), false],
    ['empty', '', false],
    ['undefined', undefined, false],
    ['null', null, false],
    ['huge', 'a'.repeat(100_000), false],
  ] as const)('%s → %s', (_what, given, ok) => {
    expect(tokenMatches(TOKEN, given)).toBe(ok);
  });

  it('an empty expected token matches nothing', () => {
    expect(tokenMatches('', '')).toBe(false);
    expect(tokenMatches('', 'x')).toBe(false);
  });
});

describe('cookies', () => {
  it('one name per port: two servers on one host keep their own', () => {
    expect(cookieName(9478)).toBe('flightbox_9478');
    expect(cookieName(1)).not.toBe(cookieName(2));
  });

  it('the Set-Cookie is HttpOnly, SameSite=Strict, for the whole site', () => {
    expect(tokenCookie(9478, TOKEN)).toBe(`flightbox_9478=${TOKEN}; Path=/; HttpOnly; SameSite=Strict`);
  });

  it.each([
    [undefined, {}],
    ['', {}],
    ['a=1', { a: '1' }],
    ['a=1; b=2', { a: '1', b: '2' }],
    ['a=1;b=2 ;  c = 3', { a: '1', b: '2', c: '3' }],
    ['a="quoted"', { a: 'quoted' }],
    ['a=1; a=2', { a: '1' }],
    ['novalue; a=1', { a: '1' }],
    ['a=x=y', { a: 'x=y' }],
  ] as const)('%j', (header, want) => {
    expect(Object.fromEntries(parseCookies(header))).toEqual(want);
  });
});

describe('--listen', () => {
  it.each([
    ['127.0.0.1:9478', { host: '127.0.0.1', port: 9478 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['[::1]:8080', { host: '::1', port: 8080 }],
    ['localhost:80', { host: 'localhost', port: 80 }],
    ['0.0.0.0:9478', { host: '0.0.0.0', port: 9478 }],
    ['[::]:9478', { host: '::', port: 9478 }],
    ['9000', { host: '127.0.0.1', port: 9000 }],
    ['box.example.org:1', { host: 'box.example.org', port: 1 }],
  ])('%s', (v, want) => {
    expect(parseListen(v)).toEqual(want);
  });

  it.each(['', '127.0.0.1', ':9478', '127.0.0.1:65536', '127.0.0.1:-1', '[::1', '::1:80', '[localhost]:80', 'a b:80', 'x:99999999', '127.0.0.1:80/x'])(
    '%j is refused (usage)',
    (v) => {
      expect(() => parseListen(v)).toThrow(FlightboxError);
      try { parseListen(v); } catch (err) { expect((err as FlightboxError).code).toBe('USAGE'); }
    },
  );

  it.each([
    ['127.0.0.1', true], ['127.1.2.3', true], ['::1', true], ['[::1]', true], ['localhost', true], ['LOCALHOST', true],
    ['a.localhost', true], ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false], ['::', false], ['192.168.1.5', false], ['10.0.0.1', false], ['localhost.evil.example', false], ['128.0.0.1', false],
  ])('loopback(%s) = %s', (h, want) => {
    expect(isLoopback(h)).toBe(want);
  });

  it('brackets an IPv6 address in a URL', () => {
    expect(hostPort('::1', 80)).toBe('[::1]:80');
    expect(hostPort('127.0.0.1', 80)).toBe('127.0.0.1:80');
  });
});

describe('the Host header (DNS rebinding)', () => {
  const local = { host: '127.0.0.1', port: 9478 };
  it.each([
    ['127.0.0.1:9478', true],
    ['localhost:9478', true],
    ['LOCALHOST:9478', true],
    ['[::1]:9478', true],
    ['localhost.:9478', true],
    ['127.0.0.1:9479', false],
    ['127.0.0.1', false],
    ['evil.example:9478', false],
    ['localhost.evil.example:9478', false],
    ['127.0.0.1.nip.io:9478', false],
    ['127.0.0.1:9478@evil.example', false],
    ['127.0.0.1:9478 ', false],
    ['', false],
    [undefined, false],
  ])('%j on 127.0.0.1:9478 → %s', (h, ok) => {
    expect(hostAllowed(h, local, { port: 9478 })).toBe(ok);
  });

  it('port 0 means the port really bound', () => {
    expect(hostAllowed('127.0.0.1:41000', { host: '127.0.0.1', port: 0 }, { port: 41000 })).toBe(true);
    expect(hostAllowed('127.0.0.1:0', { host: '127.0.0.1', port: 0 }, { port: 41000 })).toBe(false);
  });

  it('an explicit address and, on every address, the host\'s own addresses and name', () => {
    expect(hostAllowed('192.168.1.5:9478', { host: '192.168.1.5', port: 9478 }, { port: 9478 })).toBe(true);
    expect(hostAllowed('192.168.1.6:9478', { host: '192.168.1.5', port: 9478 }, { port: 9478 })).toBe(false);
    const any = { host: '0.0.0.0', port: 9478 };
    const opts = { port: 9478, localAddresses: ['10.1.2.3', 'fe80::1', 'box'] };
    expect(hostAllowed('10.1.2.3:9478', any, opts)).toBe(true);
    expect(hostAllowed('[fe80::1]:9478', any, opts)).toBe(true);
    expect(hostAllowed('box:9478', any, opts)).toBe(true);
    expect(hostAllowed('evil.example:9478', any, opts)).toBe(false);
  });

  it('port 80 may be left out of the header', () => {
    expect(hostAllowed('localhost', { host: '127.0.0.1', port: 80 }, { port: 80 })).toBe(true);
  });
});
