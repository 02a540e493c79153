// A Graphite (carbon) plaintext listener on 127.0.0.1 for the exporter's tests: every line
// received, in order, and how many connections came.
import { createServer, type AddressInfo, type Socket } from 'node:net';

export interface Carbon { port: number; lines: string[]; connections: number; close(): Promise<void> }

/** Listen on `port` (0: any free one). close() drops the connections and stops listening. */
export async function carbonListener(port = 0): Promise<Carbon> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    c.connections++;
    sockets.add(s);
    let buf = '';
    s.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      const parts = buf.split('\n');
      buf = parts.pop()!;
      c.lines.push(...parts);
    });
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  const c: Carbon = {
    port: 0,
    lines: [],
    connections: 0,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
  await new Promise<void>((r) => server.listen({ host: '127.0.0.1', port }, () => r()));
  c.port = (server.address() as AddressInfo).port;
  return c;
}
