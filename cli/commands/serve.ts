// flightbox serve: the read-only web page, until SIGINT or SIGTERM. It prints the URL with
// its token; it shows the user who runs it what the CLI would (root: every event; another
// user: the crashes of their own processes).
import { FlightboxError } from '../../lib/errors.js';
import { DEFAULT_LISTEN, hostPort, isLoopback, newToken, parseListen } from '../../web/access.js';
import { startWebServer, storeAccess, type WebServer } from '../../web/server.js';
import { invocation } from '../args.js';
import { loadCliConfig, openStoreForQuery } from '../context.js';

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<{ listen?: string }>(args);
  const listen = parseListen(opts.listen ?? DEFAULT_LISTEN);
  const { config } = loadCliConfig(opts);
  const uid = process.getuid?.() ?? 0;
  const open = () => openStoreForQuery(config, { userView: true });
  // Refuse to start on a store this user cannot read at all, as `flightbox list` would.
  open().close();
  const stores = storeAccess(open, uid === 0);
  const token = newToken();
  let server: WebServer;
  try {
    server = await startWebServer({
      listen,
      token,
      stores,
      viewer: { uid, ownOnly: uid !== 0, canExport: uid === 0 },
      onError: (err) => process.stderr.write(`flightbox serve: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`),
    });
  } catch (err) {
    stores.close();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') {
      throw new FlightboxError('USAGE', `cannot listen on ${hostPort(listen.host, listen.port)}: ${code}`);
    }
    throw err;
  }
  if (!isLoopback(listen.host)) {
    process.stderr.write(`flightbox serve: warning: listening on ${hostPort(listen.host, server.port)}, reachable from other hosts, without TLS: the token crosses the network in clear.\n`);
  }
  process.stdout.write(`${server.url}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await server.close();
  stores.close();
  return 0;
}
