import { OpenAPIHono, z } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { secureHeaders } from 'hono/secure-headers';
import type { Deps } from '../deps';

// Routes answer 503 instead of hanging when a dependency does not answer in time.
export { within } from '../process';

export type ApiDeps = Pick<Deps, 'db' | 'redis' | 'queues' | 'config' | 'logger' | 'clock'>;

export const ErrorSchema = z
  .object({ error: z.string().openapi({ example: 'not_found' }), message: z.string() })
  .openapi('Error');

export const errorResponse = (description: string) => ({
  content: { 'application/json': { schema: ErrorSchema } },
  description,
});

/** Every router validates with zod and answers a bad request with the same body shape. */
export function newRouter(): OpenAPIHono {
  return new OpenAPIHono({
    defaultHook: (result, c) => {
      if (!result.success) {
        const message = result.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; ');
        return c.json({ error: 'bad_request', message }, 400);
      }
      return undefined;
    },
  });
}

export const Paging = z.object({
  page: z.coerce.number().int().min(1).default(1).openapi({ example: 1 }),
  pageSize: z.coerce.number().int().min(1).max(500).default(50).openapi({ example: 50 }),
});

export const IdParam = z.object({
  id: z.string().regex(/^[1-9]\d{0,17}$/, 'must be a positive whole number').openapi({ param: { name: 'id', in: 'path' }, example: '42' }),
});

/**
 * Headers on every response. The content security policy fits both the JSON API and the pages
 * under /admin: scripts, styles, fonts and fetches from this origin only (the dashboard's own
 * bundle; nothing from a CDN), inline styles (the dashboard's loading screen uses them), no
 * framing, no plugins, forms posting only here.
 */
export const SECURE_HEADERS: Parameters<typeof secureHeaders>[0] = {
  contentSecurityPolicy: {
    defaultSrc: ["'self'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'", "'unsafe-inline'"],
    imgSrc: ["'self'", 'data:'],
    fontSrc: ["'self'"],
    connectSrc: ["'self'"],
    objectSrc: ["'none'"],
    baseUri: ["'self'"],
    formAction: ["'self'"],
    frameAncestors: ["'none'"],
  },
  xFrameOptions: 'DENY',
  // Not "no-referrer": with it, browsers send `Origin: null` on the dashboard's own form posts, and
  // the same-origin check on cookie-authenticated changes could no longer tell them from a forgery.
  referrerPolicy: 'same-origin',
};

/**
 * Caps request bodies at `maxBytes` (413 with the API's error body), counting the bytes as they
 * arrive when there is no Content-Length. Routes that stream large uploads to disk and enforce
 * their own limit are listed in `except` as "METHOD /path".
 */
export function bodyLimitExcept(maxBytes: number, except: readonly string[]): MiddlewareHandler {
  const limit = bodyLimit({
    maxSize: maxBytes,
    onError: (c) => c.json({ error: 'payload_too_large', message: `request body is larger than the limit of ${maxBytes} bytes` }, 413),
  });
  return (c, next) => (except.includes(`${c.req.method} ${c.req.path}`) ? next() : limit(c, next));
}
