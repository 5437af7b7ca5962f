import { createRoute, z } from '@hono/zod-openapi';
import type { Metrics } from '../../metrics';
import { newRouter } from '../common';

const route = createRoute({
  method: 'get',
  path: '/metrics',
  summary: 'Prometheus metrics: jobs by queue and state, job durations, files and rows, invoices, deliveries',
  description:
    'Text exposition format. Queue gauges are read from Redis and pipeline counts from PostgreSQL on each scrape ' +
    '(billing_source_up says whether each answered); job durations are observed by the workers of this process.',
  responses: { 200: { content: { 'text/plain': { schema: z.string() } }, description: 'Prometheus text format, version 0.0.4' } },
});

export function metricsRoutes(metrics: Metrics) {
  return newRouter().openapi(route, async (c) => c.text(await metrics.registry.metrics(), 200, { 'Content-Type': metrics.registry.contentType }));
}
