// The read-only web page of `flightbox serve` (node:http, GET only). In order, every
// request: the method (GET), the Host header (ours, against DNS rebinding), the token (once
// in the URL, then an HttpOnly SameSite=Strict cookie; without it 401 and no data), then
// the route. It shows what the CLI shows the user running it: the store is opened as
// `flightbox list` opens it, so another user sees only the crashes of their own processes.
import { randomBytes } from 'node:crypto';
import { closeSync, createReadStream, fstatSync, mkdtempSync, openSync, rmSync, constants } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname, networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { analyzeBundle } from '../analysis/top.js';
import type { TopReport } from '../analysis/types.js';
import { filterFrom, type FilterOptions } from '../cli/args.js';
import { eventJson } from '../cli/format.js';
import { FlightboxError, messageOf, type ErrorCode } from '../lib/errors.js';
import { readSmallNoFollow } from '../lib/safe-fs.js';
import { exportArchive } from '../store/archive.js';
import { readManifest, type Manifest } from '../store/manifest.js';
import type { EventRow } from '../store/index-db.js';
import type { Store } from '../store/store.js';
import { cookieName, hostAllowed, hostPort, isWildcard, parseCookies, tokenCookie, tokenMatches, type ListenAddress } from './access.js';
import { eventBody, groupsBody, layout, listBody, messageBody, type ListFilters, type Viewer } from './pages.js';

/** The list shows at most this many events (the newest). */
export const MAX_LIST_ROWS = 500;
/** Archives being written at once; more wait for a 503 and try again. */
export const MAX_CONCURRENT_EXPORTS = 2;
/** Analyses kept (bundles never change once published). */
const ANALYSIS_CACHE_ENTRIES = 16;
const MAX_TRACE_BYTES = 1024 * 1024;
const METRICS_SUMMARY = 'recorder/metrics/summary.txt';
const MAX_SUMMARY_BYTES = 64 * 1024;
const MAX_URL_CHARS = 4096;
const MAX_CONNECTIONS = 64;
/** An event in a URL: an id or a prefix of one (ids are [0-9A-Za-z-]). */
const ID_IN_URL = /^[0-9A-Za-z-]{1,64}$/;

/** How requests reach the store: `use` runs a synchronous query (never across an await). */
export interface StoreAccess {
  use<T>(fn: (store: Store) => T): T;
  close(): void;
}

/**
 * `open` as the CLI opens the store for queries. `shared`: one store for the server's life
 * (root: one SQLite connection per process); otherwise a fresh one per request, so that a
 * user's view (built from the crashes granted to them) shows crashes recorded since.
 */
export function storeAccess(open: () => Store, shared: boolean): StoreAccess {
  let store: Store | null = null;
  return {
    use(fn) {
      if (shared) {
        store ??= open();
        return fn(store);
      }
      const s = open();
      try {
        return fn(s);
      } finally {
        s.close();
      }
    },
    close() {
      store?.close();
      store = null;
    },
  };
}

export interface WebServerOptions {
  listen: ListenAddress;
  token: string;
  stores: StoreAccess;
  viewer: Viewer;
  /** the bundle's metrics and process activity (analysis/top.ts) */
  analyze?: (bundleDir: string, id: string) => Promise<TopReport>;
  /** where archives are written before they are sent */
  tmpDir?: string;
  /** errors that are ours, not the request's */
  onError?: (err: unknown) => void;
}

export interface WebServer {
  /** the URL to open, with the token */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** HTTP status for a FlightboxError code. */
export function httpStatusFor(code: ErrorCode): number {
  switch (code) {
    case 'USAGE':
    case 'AMBIGUOUS':
      return 400;
    case 'NOT_FOUND':
      return 404;
    case 'PERMISSION':
      return 403;
    default:
      return 500;
  }
}

/** Headers on every response, the 401s and 403s included. */
function securityHeaders(nonce: string | null): Record<string, string> {
  return {
    'Content-Security-Policy': [
      "default-src 'self'", "script-src 'none'", `style-src ${nonce ? `'nonce-${nonce}'` : "'none'"}`, "img-src 'self' data:",
      "object-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
    ].join('; '),
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'X-Frame-Options': 'DENY',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'Cache-Control': 'no-store',
  };
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

function param(q: URLSearchParams, name: string): string {
  return (q.get(name) ?? '').trim().slice(0, 1024);
}

function listFilters(q: URLSearchParams): ListFilters {
  return { exe: param(q, 'exe'), signal: param(q, 'signal'), kind: param(q, 'kind'), since: param(q, 'since'), signature: param(q, 'signature') };
}

/** The same parsing and the same errors as the CLI's --exe, --signal, --kind, --since, --signature. */
function filterOptions(f: ListFilters): FilterOptions {
  const o: FilterOptions = {};
  if (f.exe) o.exe = f.exe;
  if (f.signal) o.signal = f.signal;
  if (f.kind) o.kind = f.kind;
  if (f.since) o.since = f.since;
  if (f.signature) o.signature = f.signature;
  return o;
}

/** A manifest's stack-trace file name: a plain name inside the bundle, nothing else. */
function traceFile(m: Manifest): string | null {
  const f = m.backtrace?.file;
  return typeof f === 'string' && /^[A-Za-z0-9._-]{1,100}$/.test(f) && !f.startsWith('.') ? f : null;
}

export async function startWebServer(o: WebServerOptions): Promise<WebServer> {
  const analyze = o.analyze ?? analyzeBundle;
  const cache = new Map<string, Promise<TopReport>>();
  let exporting = 0;
  let port = 0;
  const localAddresses = isWildcard(o.listen.host)
    ? [hostname(), ...Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address))]
    : [];

  function send(res: ServerResponse, status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}, nonce: string | null = null): void {
    const buf = typeof body === 'string' ? Buffer.from(body) : body;
    res.writeHead(status, { ...securityHeaders(nonce), 'Content-Type': type, 'Content-Length': String(buf.length), ...extra });
    res.end(buf);
  }

  function sendPage(res: ServerResponse, status: number, title: string, body: Parameters<typeof layout>[1]): void {
    const nonce = randomBytes(16).toString('base64');
    send(res, status, 'text/html; charset=utf-8', layout(title, body, { nonce, viewer: o.viewer, host: hostname() }), {}, nonce);
  }

  function sendJson(res: ServerResponse, status: number, value: unknown): void {
    send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(value, null, 2)}\n`);
  }

  function sendError(res: ServerResponse, err: unknown, api: boolean): void {
    let status = 500;
    let message = 'internal error (see the server’s output)';
    if (err instanceof HttpError) ({ status, message } = err);
    else if (err instanceof FlightboxError) {
      status = httpStatusFor(err.code);
      message = err.message;
    } else o.onError?.(err);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (api) sendJson(res, status, { error: message });
    else sendPage(res, status, `Error ${status}`, messageBody(status === 404 ? 'Not found' : `Error ${status}`, message));
  }

  function analysis(dir: string, id: string): Promise<TopReport> {
    let p = cache.get(id);
    if (!p) {
      p = analyze(dir, id);
      cache.set(id, p);
      p.catch(() => cache.delete(id));
      if (cache.size > ANALYSIS_CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
    }
    return p;
  }

  function findEvent(id: string): { row: EventRow; dir: string } {
    if (!ID_IN_URL.test(id)) throw new FlightboxError('NOT_FOUND', `no event matches ${JSON.stringify(id)}`);
    return o.stores.use((s) => {
      const row = s.index().resolve(id);
      return { row, dir: join(s.root, row.bundle) };
    });
  }

  function listPage(res: ServerResponse, q: URLSearchParams, api: boolean): void {
    const filters = listFilters(q);
    let rows: EventRow[] = [];
    let error: string | null = null;
    try {
      const f = filterFrom(filterOptions(filters));
      rows = o.stores.use((s) => s.index().list({ ...f, limit: MAX_LIST_ROWS + 1, reverse: true }));
    } catch (err) {
      if (!(err instanceof FlightboxError) || err.code !== 'USAGE') throw err;
      if (api) throw new HttpError(400, err.message);
      error = err.message;
    }
    const more = rows.length > MAX_LIST_ROWS;
    if (more) rows = rows.slice(0, MAX_LIST_ROWS);
    if (api) return sendJson(res, 200, rows.map(eventJson));
    sendPage(res, error ? 400 : 200, 'Events', listBody({ rows, filters, error, more, limit: MAX_LIST_ROWS }));
  }

  function groupsPage(res: ServerResponse, q: URLSearchParams, api: boolean): void {
    const filters = { exe: param(q, 'exe'), since: param(q, 'since') };
    let groups: ReturnType<ReturnType<Store['index']>['groups']> = [];
    let error: string | null = null;
    try {
      const f = filterFrom(filterOptions({ ...filters, signal: '', kind: '', signature: '' }));
      groups = o.stores.use((s) => s.index().groups({ since: f.since, exe: f.exe }));
    } catch (err) {
      if (!(err instanceof FlightboxError) || err.code !== 'USAGE') throw err;
      if (api) throw new HttpError(400, err.message);
      error = err.message;
    }
    if (api) {
      return sendJson(res, 200, groups.map((g) => ({
        signature: g.signature, text: g.signature_text, count: g.count, firstSeen: new Date(g.first_seen).toISOString(),
        lastSeen: new Date(g.last_seen).toISOString(), exe: g.exe, lastId: g.last_id,
      })));
    }
    sendPage(res, error ? 400 : 200, 'Groups', groupsBody({ groups, filters, error }));
  }

  async function eventPage(res: ServerResponse, id: string): Promise<void> {
    const { row, dir } = findEvent(id);
    const manifest = readManifest(dir);
    let trace: { text: string } | { error: string } | null = null;
    const file = traceFile(manifest);
    if (file) {
      try {
        trace = { text: readSmallNoFollow(join(dir, file), MAX_TRACE_BYTES) };
      } catch (err) {
        trace = { error: `Cannot read the stack trace ${file}: ${messageOf(err)}` };
      }
    }
    let metricsSummary: string | null = null;
    if (manifest.files.some((f) => f.path === METRICS_SUMMARY)) {
      try {
        metricsSummary = readSmallNoFollow(join(dir, METRICS_SUMMARY), MAX_SUMMARY_BYTES);
      } catch {
        // not this user's to read (the flight recorder shows the whole system)
      }
    }
    let top: { report: TopReport } | { error: string };
    try {
      top = { report: await analysis(dir, row.id) };
    } catch (err) {
      top = { error: `Cannot analyse the bundle: ${messageOf(err)}` };
    }
    sendPage(res, 200, `${row.kind === 'crash' ? row.comm ?? row.id : 'Snapshot'} ${row.id}`, eventBody({ manifest, bundleDir: dir, trace, top, metricsSummary, viewer: o.viewer }));
  }

  async function archive(res: ServerResponse, id: string): Promise<void> {
    if (!o.viewer.canExport) throw new HttpError(403, 'exporting an archive is root’s, as with flightbox export');
    const { row, dir } = findEvent(id);
    if (exporting >= MAX_CONCURRENT_EXPORTS) {
      send(res, 503, 'text/plain; charset=utf-8', `${MAX_CONCURRENT_EXPORTS} archives are being written already; try again in a moment.\n`, { 'Retry-After': '5' });
      return;
    }
    exporting++;
    let fd = -1;
    const work = mkdtempSync(join(o.tmpDir ?? tmpdir(), 'flightbox-web-'));
    try {
      const out = join(work, `${row.id}.tar.gz`);
      // Redacted: no environ, secrets in the command line masked (export --redact).
      await exportArchive(dir, out, { format: 'tar.gz', noCore: false, redact: true, overwrite: false });
      fd = openSync(out, constants.O_RDONLY | constants.O_NOFOLLOW);
      // Gone from the disk now; the open descriptor keeps it for as long as the download takes.
      rmSync(work, { recursive: true, force: true });
      const size = fstatSync(fd).size;
      res.writeHead(200, {
        ...securityHeaders(null),
        'Content-Type': 'application/gzip',
        'Content-Length': String(size),
        'Content-Disposition': `attachment; filename="${row.id}.tar.gz"`,
      });
      const stream = createReadStream('', { fd, autoClose: true });
      fd = -1;
      await pipeline(stream, res).catch(() => { /* the client went away */ });
    } finally {
      exporting--;
      if (fd !== -1) closeSync(fd);
      rmSync(work, { recursive: true, force: true });
    }
  }

  async function route(res: ServerResponse, url: URL): Promise<void> {
    const path = url.pathname;
    const api = path.startsWith('/api/');
    try {
      if (path === '/' || path === '/api/events') return listPage(res, url.searchParams, api);
      if (path === '/groups' || path === '/api/groups') return groupsPage(res, url.searchParams, api);
      let m = /^\/event\/([^/]+)$/.exec(path);
      if (m) return await eventPage(res, decodeURIComponent(m[1]!));
      m = /^\/event\/([^/]+)\/archive\.tar\.gz$/.exec(path);
      if (m) return await archive(res, decodeURIComponent(m[1]!));
      m = /^\/api\/event\/([^/]+)$/.exec(path);
      if (m) {
        const { dir } = findEvent(decodeURIComponent(m[1]!));
        return sendJson(res, 200, readManifest(dir));
      }
      m = /^\/api\/event\/([^/]+)\/top$/.exec(path);
      if (m) {
        const { row, dir } = findEvent(decodeURIComponent(m[1]!));
        return sendJson(res, 200, await analysis(dir, row.id));
      }
      throw new HttpError(404, `no page ${path}`);
    } catch (err) {
      sendError(res, err instanceof URIError ? new HttpError(400, 'a malformed URL') : err, api);
    }
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const text = (status: number, msg: string, extra: Record<string, string> = {}) => send(res, status, 'text/plain; charset=utf-8', `${msg}\n`, extra);
    if (req.method !== 'GET') return text(405, 'Only GET: this page changes nothing.', { Allow: 'GET' });
    // A page loaded from another name (rebinding) must not read ours, token or not.
    if (!hostAllowed(req.headers.host, o.listen, { port, localAddresses })) return text(403, 'This server answers only to its own address (Host header refused).');
    const target = req.url ?? '';
    if (!target.startsWith('/') || target.startsWith('//') || target.length > MAX_URL_CHARS) return text(400, 'Bad request target.');
    const url = new URL(target, 'http://localhost');
    const given = url.searchParams.get('token');
    if (given !== null) {
      if (!tokenMatches(o.token, given)) return text(401, 'The token is wrong: open the URL flightbox serve printed.');
      // Once in the URL, then the cookie: the token leaves the address bar and the history.
      url.searchParams.delete('token');
      const location = `${url.pathname}${url.search}`;
      return send(res, 303, 'text/plain; charset=utf-8', '', { Location: location, 'Set-Cookie': tokenCookie(port, o.token) });
    }
    if (!tokenMatches(o.token, parseCookies(req.headers.cookie).get(cookieName(port)))) {
      return text(401, 'A token is needed: open the URL flightbox serve printed.');
    }
    route(res, url).catch((err: unknown) => {
      o.onError?.(err);
      if (!res.headersSent) text(500, 'internal error');
      else res.destroy();
    });
  }

  const server: Server = createServer({ requestTimeout: 300_000, headersTimeout: 30_000 }, handle);
  server.maxConnections = MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: o.listen.host, port: o.listen.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  const shown = isWildcard(o.listen.host) ? hostname() : o.listen.host;
  return {
    url: `http://${hostPort(shown, port)}/?token=${o.token}`,
    port,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
