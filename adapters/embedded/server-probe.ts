import { Redis } from 'ioredis';
import pg from 'pg';

/**
 * Quick looks at the configured servers, for the demo's choice between them and the embedded
 * database. Each answers undefined when the server can be used, or what is wrong in a few words.
 */

/** PostgreSQL answers a query. A missing database is fine: the demo creates it. */
export async function postgresProblem(databaseUrl: string, timeoutMs: number): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => undefined);
  try {
    await answerWithin(timeoutMs, (async () => {
      await client.connect();
      await client.query('SELECT 1');
    })());
    return undefined;
  } catch (err) {
    if ((err as { code?: string }).code === '3D000') return undefined;
    return (err as Error).message || String(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Redis answers PING. */
export async function redisProblem(redisUrl: string, timeoutMs: number): Promise<string | undefined> {
  const redis = new Redis(redisUrl, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // The socket's error (ECONNREFUSED, ...) comes as an event; connect() only says "Connection is closed".
  let socketError: Error | undefined;
  redis.on('error', (err: Error) => (socketError ??= err));
  try {
    await answerWithin(timeoutMs, (async () => {
      await redis.connect();
      await redis.ping();
    })());
    return undefined;
  } catch (err) {
    return (socketError ?? (err as Error)).message || String(err);
  } finally {
    redis.disconnect();
  }
}

function answerWithin<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  work.catch(() => undefined);
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
