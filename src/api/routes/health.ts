import { createRoute, z } from '@hono/zod-openapi';
import { describeMigrationProblem, readMigrationState } from '../../process';
import { type ApiDeps, newRouter, within } from '../common';

/** Each readiness check answers within this bound, so a hung dependency gives 503, not a hang. */
const CHECK_TIMEOUT_MS = 2000;

const Health = z.object({ status: z.literal('ok') }).openapi('Health');

const Ready = z
  .object({
    status: z.enum(['ready', 'not_ready']),
    checks: z.object({
      database: z.string().openapi({ example: 'ok' }),
      redis: z.string().openapi({ example: 'ok' }),
      migrations: z.string().openapi({ example: 'ok' }),
    }),
    failed: z.array(z.enum(['database', 'redis', 'migrations'])).openapi({ description: 'the checks that did not pass' }),
  })
  .openapi('Ready');

const healthRoute = createRoute({
  method: 'get',
  path: '/health',
  summary: 'The process is alive (no token needed)',
  description: 'Answers while the process runs, whatever its dependencies do: for liveness probes. Use /ready for traffic.',
  responses: { 200: { content: { 'application/json': { schema: Health } }, description: 'Alive' } },
});

const readyRoute = createRoute({
  method: 'get',
  path: '/ready',
  summary: 'PostgreSQL and Redis reachable and the schema migrated (no token needed)',
  responses: {
    200: { content: { 'application/json': { schema: Ready } }, description: 'Every check passed' },
    503: { content: { 'application/json': { schema: Ready } }, description: 'A check failed or did not answer in time; `failed` names it' },
  },
});

const outcome = (work: Promise<unknown>) =>
  within(CHECK_TIMEOUT_MS, work).then(
    () => 'ok',
    (e: Error) => `unreachable: ${e.message}`,
  );

export function healthRoutes(deps: ApiDeps) {
  return newRouter()
    .openapi(healthRoute, (c) => c.json({ status: 'ok' as const }, 200))
    .openapi(readyRoute, async (c) => {
      const [database, redis, migrations] = await Promise.all([
        outcome(deps.db.raw('SELECT 1')),
        outcome(deps.redis.ping()),
        within(CHECK_TIMEOUT_MS, readMigrationState(deps.db)).then(
          (state) => describeMigrationProblem(state) ?? 'ok',
          (e: Error) => `unknown: ${e.message}`,
        ),
      ]);
      const checks = { database, redis, migrations };
      const failed = (['database', 'redis', 'migrations'] as const).filter((k) => checks[k] !== 'ok');
      return c.json({ status: failed.length === 0 ? ('ready' as const) : ('not_ready' as const), checks, failed }, failed.length === 0 ? 200 : 503);
    });
}
