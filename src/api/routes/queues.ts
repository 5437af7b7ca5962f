import { createRoute, z } from '@hono/zod-openapi';
import { QUEUE_NAMES } from '../../../jobs/catalog';
import { type ApiDeps, errorResponse, newRouter, within } from '../common';

const JOB_STATES = ['waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized', 'waiting-children'] as const;

const Queues = z
  .object({
    prefix: z.string(),
    queues: z.array(z.object({ name: z.string(), counts: z.record(z.string(), z.number()) })),
  })
  .openapi('Queues');

const route = createRoute({
  method: 'get',
  path: '/queues',
  summary: 'Job counts per queue and state',
  responses: {
    200: { content: { 'application/json': { schema: Queues } }, description: 'Counts from Redis' },
    503: errorResponse('Redis does not answer in time'),
  },
});

export function queueRoutes(deps: ApiDeps) {
  return newRouter().openapi(route, async (c) => {
    try {
      const queues = await within(
        5000,
        Promise.all(QUEUE_NAMES.map(async (name) => ({ name, counts: await deps.queues.get(name).getJobCounts(...JOB_STATES) }))),
      );
      return c.json({ prefix: deps.queues.prefix, queues }, 200);
    } catch (err) {
      return c.json({ error: 'unavailable', message: `queues unreachable: ${(err as Error).message}` }, 503);
    }
  });
}
