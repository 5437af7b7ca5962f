import { createHash, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/**
 * Bearer tokens from config, compared in constant time (as digests, so length leaks nothing).
 * Any missing, malformed or wrong token is a plain 401; tokens in the query string are never read.
 */
export function bearerAuth(tokens: readonly string[]): MiddlewareHandler {
  const expected = tokens.map(digest);
  return async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header);
    const given = match?.[1] ? digest(match[1]) : undefined;
    let ok = false;
    // Compare against every token, without an early exit, so timing does not reveal which matched.
    for (const e of expected) if (given && timingSafeEqual(e, given)) ok = true;
    if (!ok) {
      return c.json({ error: 'unauthorized', message: 'a valid bearer token is required' }, 401, {
        'WWW-Authenticate': 'Bearer realm="billing"',
      });
    }
    await next();
  };
}
