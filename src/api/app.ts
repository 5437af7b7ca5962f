import { secureHeaders } from 'hono/secure-headers';
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Deps } from '../deps';
import { bearerAuth } from './auth';
import { healthRoutes } from './routes/health';
import { fileRoutes } from './routes/files';
import { queueRoutes } from './routes/queues';
import { paymentRoutes } from './routes/payments';
import { receivablesRoutes } from './routes/receivables';
import { billingRunRoutes } from './routes/billing-runs';
import { auditRoutes } from './routes/audit';
import { metricsRoutes } from './routes/metrics';
import { dashboardRoutes } from './routes/dashboard';
import { invoiceRoutes } from './routes/invoices';
import { deliveryRoutes } from './routes/deliveries';
import { ADMIN_BASE } from './auth';
import { SECURE_HEADERS, bodyLimitExcept } from './common';
import { type Metrics, createMetrics } from '../metrics';

const OPENAPI = { openapi: '3.1.0', info: { title: 'Billing engine admin API', version: '1' }, security: [{ bearer: [] }] };

/**
 * The admin API. Every route except /health and /ready needs a bearer token from config (the pages
 * under /admin also take a session cookie from a login with a token); routes are declared with zod
 * schemas, which validate requests and generate /openapi.json. `metrics` is shared with the
 * workers when they run in the same process, so /metrics shows their job durations.
 */
export function createApp(deps: Deps, opts: { metrics?: Metrics } = {}): OpenAPIHono {
  const app = new OpenAPIHono();
  app.use('*', secureHeaders(SECURE_HEADERS));
  // File uploads stream to disk under their own limit (MAX_FILE_BYTES); every other body is small.
  app.use('*', bodyLimitExcept(deps.config.apiMaxBodyBytes, ['POST /files']));
  app.route('/', healthRoutes(deps));
  app.route(ADMIN_BASE, dashboardRoutes(deps, { openApiDocument: () => app.getOpenAPI31Document(OPENAPI) }));
  app.use('*', bearerAuth(deps.config.adminTokens));
  app.route('/', metricsRoutes(opts.metrics ?? createMetrics({ db: deps.db, queues: deps.queues })));
  app.route('/', queueRoutes(deps));
  app.route('/', fileRoutes(deps));
  app.route('/', paymentRoutes(deps));
  app.route('/', receivablesRoutes(deps));
  app.route('/', billingRunRoutes(deps));
  app.route('/', auditRoutes(deps));
  app.route('/', invoiceRoutes(deps));
  app.route('/', deliveryRoutes(deps));
  app.doc31('/openapi.json', OPENAPI);
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });

  app.notFound((c) => c.json({ error: 'not_found', message: `no route ${c.req.method} ${c.req.path}` }, 404));
  app.onError((err, c) => {
    deps.logger.error({ err: err.message, path: c.req.path }, 'api error');
    return c.json({ error: 'internal', message: 'internal error' }, 500);
  });
  return app;
}
