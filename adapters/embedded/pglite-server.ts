import { type Server, type Socket, createServer } from 'node:net';
import type { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketHandler, type PGLiteSocketHandlerOptions } from '@electric-sql/pglite-socket';
import { SessionScheduler } from './session-scheduler';

export interface PgliteServer {
  readonly host: string;
  readonly port: number;
  /** A postgres:// URL for this server (PGlite has one database and trusts every user). */
  readonly url: string;
  /** Disconnects every client, rolling back what they left open, and stops listening. */
  close(): Promise<void>;
}

export interface ServeOptions {
  host?: string;
  /** 0 (the default) takes a free port. */
  port?: number;
  /** Told when the shared session looks stuck (see SessionScheduler). */
  onWarning?: (message: string) => void;
}

/**
 * Serves a PGlite database over TCP to ordinary PostgreSQL clients (pg, knex, BullMQ's PostgreSQL
 * backend, psql), many connections at a time. pglite-socket's handler speaks the wire protocol on
 * each socket; our SessionScheduler, given to it as its query queue, shares PGlite's one session
 * among them (whole requests, private transactions, COPY FROM STDIN, LISTEN/NOTIFY routing).
 */
export async function servePglite(db: PGlite, opts: ServeOptions = {}): Promise<PgliteServer> {
  const host = opts.host ?? '127.0.0.1';
  const scheduler = new SessionScheduler(db, opts.onWarning);
  // pglite-socket types its queue as its own (unexported) class; ours has the same methods.
  const queryQueue = scheduler as unknown as PGLiteSocketHandlerOptions['queryQueue'];
  const handlers = new Set<PGLiteSocketHandler>();
  let closing = false;

  const server: Server = createServer((socket: Socket) => {
    if (closing) {
      socket.destroy();
      return;
    }
    const handler = new PGLiteSocketHandler({ queryQueue, closeOnDetach: true });
    handlers.add(handler);
    const forget = () => handlers.delete(handler);
    handler.addEventListener('close', forget);
    handler.addEventListener('error', forget);
    handler.attach(socket).catch(() => {
      forget();
      socket.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('embedded PostgreSQL: the server has no TCP address');

  return {
    host,
    port: address.port,
    url: `postgres://postgres@${host}:${address.port}/postgres`,
    async close() {
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([...handlers].map((h) => h.detach(true)));
      handlers.clear();
      await closed;
    },
  };
}
