import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { HonoAdapter } from '@bull-board/hono';
import { serveStatic } from '@hono/node-server/serve-static';
import { type Context, Hono } from 'hono';
import type { QueueName } from '../../../jobs/catalog';
import { ADMIN_BASE, SESSION_TTL_SECONDS, createSessions, sessionCookie, sessionOrBearerAuth, unauthorized } from '../auth';
import type { ApiDeps } from '../common';
import { docsRoutes } from './docs';

/** What each queue does, shown beside it on the dashboard. */
const QUEUE_DESCRIPTIONS: Partial<Record<QueueName, string>> = {
  'inbox-scan': 'Claims settled files dropped into the inbox',
  'ingest-file': 'Parses and validates one usage file into usages',
  'ingest-chunk': 'Helps ingest a big file, one chunk at a time',
  'rate-file': "Prices one file's usages into billing records and transactions",
  'billing-run': "Issues a period's invoices",
  'deliver-email': 'Sends one invoice email',
  reconcile: 'Re-enqueues whatever PostgreSQL shows unfinished',
};

/** After login, go back where the operator was heading, but only to one of our own pages. */
function safeNext(value: unknown): string {
  const fallback = `${ADMIN_BASE}/queues`;
  if (typeof value !== 'string') return fallback;
  // A path under /admin, with no scheme, host, backslash or control character: never an open redirect.
  return value.startsWith(`${ADMIN_BASE}/`) && /^\/[A-Za-z0-9/_.~?=&%-]*$/.test(value) && !value.startsWith('//') ? value : fallback;
}

const escape = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

/** The login form, as the body of a 401: the page is only ever shown to someone not logged in. */
function loginPage(c: Context, next: string, problem?: string) {
  return c.html(
    `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><link rel="icon" href="data:,"><title>Billing admin: log in</title>
<style>body{font:15px/1.45 system-ui,sans-serif;background:#151a21;color:#e6e9ef;display:grid;place-items:center;min-height:100vh;margin:0}
form{background:#1f2630;padding:2rem;border-radius:8px;width:22rem} input{width:100%;box-sizing:border-box;padding:.5rem;margin:.5rem 0 1rem}
button{padding:.5rem 1rem;cursor:pointer} .problem{color:#ff8a80}</style></head>
<body><form method="post" action="${ADMIN_BASE}/login">
<h1>Billing admin</h1>
${problem ? `<p class="problem" role="alert">${escape(problem)}</p>` : ''}
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="${escape(next)}">
<button type="submit">Log in</button>
<p><small>The token is exchanged for a session cookie valid for ${SESSION_TTL_SECONDS / 3600} hours.</small></p>
</form></body></html>`,
    401,
    { 'WWW-Authenticate': 'Bearer realm="billing"', 'Cache-Control': 'no-store' },
  );
}

/**
 * The browser side of the admin API, under /admin: the Bull Board dashboard of every queue in the
 * catalog at /admin/queues and the API reference at /admin/docs. Scripts can use their bearer
 * token here as everywhere; a browser logs in once with a token and then carries a session cookie
 * (see src/api/auth.ts). Every route, the login post included, answers 401 without a valid token.
 */
export function dashboardRoutes(deps: ApiDeps, opts: { openApiDocument: () => object }): Hono {
  const sessions = createSessions(deps.config.adminTokens);
  const router = new Hono();

  router.post('/login', async (c) => {
    const form = await c.req.parseBody();
    const next = safeNext(form.next);
    const token = typeof form.token === 'string' ? form.token.trim() : undefined;
    if (!sessions.acceptsToken(token)) {
      deps.logger.warn({ path: c.req.path }, 'dashboard login refused');
      return loginPage(c, next, 'That token is not valid.');
    }
    deps.logger.info({}, 'dashboard login');
    c.header('Set-Cookie', sessionCookie(c, sessions.issue(Date.now()), SESSION_TTL_SECONDS));
    return c.redirect(next, 303);
  });

  // Pages get the login form; the dashboard's own API calls and scripts get the JSON 401.
  const wantsPage = (c: Context) => c.req.method === 'GET' && (c.req.header('accept') ?? '').includes('text/html');
  router.use('*', sessionOrBearerAuth(sessions, (c) => (wantsPage(c) ? loginPage(c, safeNext(c.req.path)) : unauthorized(c))));
  // Authenticated pages and answers are never cached, by the browser or anything in between.
  router.use('*', async (c, next) => {
    await next();
    if (!c.req.path.startsWith(`${ADMIN_BASE}/queues/static/`)) c.header('Cache-Control', 'no-store');
  });

  router.post('/logout', (c) => {
    c.header('Set-Cookie', sessionCookie(c, '', 0));
    return c.redirect(`${ADMIN_BASE}/queues`, 303);
  });

  router.route('/docs', docsRoutes(opts.openApiDocument));

  const board = new HonoAdapter(serveStatic);
  board.setBasePath(`${ADMIN_BASE}/queues`);
  createBullBoard({
    queues: deps.queues.all().map((q) => new BullMQAdapter(q, { description: QUEUE_DESCRIPTIONS[q.name as QueueName] ?? '' })),
    serverAdapter: board,
    options: { uiConfig: { boardTitle: 'Billing queues' } },
  });
  router.route('/queues', board.registerPlugin());
  return router;
}
