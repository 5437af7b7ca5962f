import { createRoute, z } from '@hono/zod-openapi';
import { type ApiDeps, newRouter, within } from '../common';

const Health = z
  .object({ status: z.enum(['ok', 'unavailable']), database: z.string(), redis: z.string() })
  .openapi('Health');

const route = createRoute({
  method: 'get',
  path: '/health',
  summary: 'PostgreSQL and Redis reachable (no token needed)',
  responses: {
    200: { content: { 'application/json': { schema: Health } }, description: 'Both answer' },
    503: { content: { 'application/json': { schema: Health } }, description: 'One of them does not answer in time' },
  },
});

export function healthRoutes(deps: ApiDeps) {
  return newRouter().openapi(route, async (c) => {
    const [database, redis] = await Promise.all([
      within(2000, deps.db.raw('SELECT 1')).then(() => 'ok', (e: Error) => `unreachable: ${e.message}`),
      within(2000, deps.redis.ping()).then(() => 'ok', (e: Error) => `unreachable: ${e.message}`),
    ]);
    const healthy = database === 'ok' && redis === 'ok';
    return c.json({ status: healthy ? ('ok' as const) : ('unavailable' as const), database, redis }, healthy ? 200 : 503);
  });
}
