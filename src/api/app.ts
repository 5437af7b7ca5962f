import { Hono } from 'hono';
import { secureHeaders } from 'hono/secure-headers';
import type { Deps } from '../deps';
import { QUEUE_NAMES } from '../../jobs/catalog';
import { bearerAuth } from './auth';

const JOB_STATES = ['waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized', 'waiting-children'] as const;

/** Resolves with the value, or rejects after `ms`, so a dead dependency answers 503 instead of hanging. */
function within<T>(ms: number, work: Promise<T>): Promise<T> {
  return Promise.race([
    work,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref()),
  ]);
}

/** The admin API. Every route except /health needs a bearer token from config. */
export function createApp(deps: Pick<Deps, 'db' | 'redis' | 'queues' | 'config' | 'logger'>): Hono {
  const app = new Hono();
  app.use('*', secureHeaders());

  app.get('/health', async (c) => {
    const [database, redis] = await Promise.all([
      within(2000, deps.db.raw('SELECT 1')).then(() => 'ok', (e: Error) => `unreachable: ${e.message}`),
      within(2000, deps.redis.ping()).then(() => 'ok', (e: Error) => `unreachable: ${e.message}`),
    ]);
    const healthy = database === 'ok' && redis === 'ok';
    return c.json({ status: healthy ? 'ok' : 'unavailable', database, redis }, healthy ? 200 : 503);
  });

  app.use('*', bearerAuth(deps.config.adminTokens));

  app.get('/queues', async (c) => {
    try {
      const queues = await within(
        5000,
        Promise.all(
          QUEUE_NAMES.map(async (name) => ({ name, counts: await deps.queues.get(name).getJobCounts(...JOB_STATES) })),
        ),
      );
      return c.json({ prefix: deps.queues.prefix, queues });
    } catch (err) {
      return c.json({ error: 'unavailable', message: `queues unreachable: ${(err as Error).message}` }, 503);
    }
  });

  app.notFound((c) => c.json({ error: 'not_found', message: `no route ${c.req.method} ${c.req.path}` }, 404));
  app.onError((err, c) => {
    deps.logger.error({ err: err.message, path: c.req.path }, 'api error');
    return c.json({ error: 'internal', message: 'internal error' }, 500);
  });
  return app;
}
