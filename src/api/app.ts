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
import { invoiceRoutes } from './routes/invoices';
import { deliveryRoutes } from './routes/deliveries';

/**
 * The admin API. Every route except /health needs a bearer token from config; routes are declared
 * with zod schemas, which validate requests and generate /openapi.json.
 */
export function createApp(deps: Deps): OpenAPIHono {
  const app = new OpenAPIHono();
  app.use('*', secureHeaders());
  app.route('/', healthRoutes(deps));
  app.use('*', bearerAuth(deps.config.adminTokens));
  app.route('/', queueRoutes(deps));
  app.route('/', fileRoutes(deps));
  app.route('/', paymentRoutes(deps));
  app.route('/', receivablesRoutes(deps));
  app.route('/', billingRunRoutes(deps));
  app.route('/', auditRoutes(deps));
  app.route('/', invoiceRoutes(deps));
  app.route('/', deliveryRoutes(deps));
  app.doc31('/openapi.json', { openapi: '3.1.0', info: { title: 'Billing engine admin API', version: '1' }, security: [{ bearer: [] }] });
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });

  app.notFound((c) => c.json({ error: 'not_found', message: `no route ${c.req.method} ${c.req.path}` }, 404));
  app.onError((err, c) => {
    deps.logger.error({ err: err.message, path: c.req.path }, 'api error');
    return c.json({ error: 'internal', message: 'internal error' }, 500);
  });
  return app;
}
