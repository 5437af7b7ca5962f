import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { getCookie } from 'hono/cookie';

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/**
 * A check of a presented token against the configured ones, in constant time: both sides are
 * compared as digests (so length leaks nothing) and every token is compared, without an early
 * exit, so timing does not reveal which one matched.
 */
export function tokenMatcher(tokens: readonly string[]): (candidate: string | undefined) => boolean {
  const expected = tokens.map(digest);
  return (candidate) => {
    const given = candidate ? digest(candidate) : undefined;
    let ok = false;
    for (const e of expected) if (given && timingSafeEqual(e, given)) ok = true;
    return ok;
  };
}

/** The token of an `Authorization: Bearer <token>` header, or undefined for anything else. */
function bearerToken(c: Context): string | undefined {
  const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(c.req.header('authorization') ?? '');
  return match?.[1];
}

export function unauthorized(c: Context) {
  return c.json({ error: 'unauthorized', message: 'a valid bearer token is required' }, 401, {
    'WWW-Authenticate': 'Bearer realm="billing"',
  });
}

/**
 * Bearer tokens from config. Any missing, malformed or wrong token is a plain 401; tokens in the
 * query string are never read.
 */
export function bearerAuth(tokens: readonly string[]): MiddlewareHandler {
  const matches = tokenMatcher(tokens);
  return async (c, next) => {
    if (!matches(bearerToken(c))) return unauthorized(c);
    await next();
  };
}

// ---------------------------------------------------------------------------------------------
// Browser sessions for the dashboard pages.
//
// A browser cannot attach a bearer header to a page load, so the pages under /admin accept a
// session cookie as well. An operator posts a token once to /admin/login; the answer sets a cookie
// holding an expiry and an HMAC-SHA256 of it. The HMAC key is derived from the configured tokens,
// so no extra secret is needed, every API process accepts the same cookie, and removing or
// rotating a token ends every session. The cookie is HttpOnly (no script reads it),
// SameSite=Strict (no other site can make the browser send it) and Secure when served over HTTPS;
// unsafe methods additionally need a same-origin Origin header. The JSON API outside /admin never
// looks at the cookie.
// ---------------------------------------------------------------------------------------------

export const SESSION_COOKIE = 'billing_session';
/** Where the browser pages live (dashboard, API reference, login); the session cookie is scoped to it. */
export const ADMIN_BASE = '/admin';
export const SESSION_PATH = ADMIN_BASE;
/** A working day: long enough not to annoy, short enough that a forgotten browser logs itself out. */
export const SESSION_TTL_SECONDS = 8 * 3600;

export interface Sessions {
  /** Whether the token is one of the configured ones. */
  acceptsToken(token: string | undefined): boolean;
  /** A signed cookie value valid until `nowMs + ttl`. */
  issue(nowMs: number): string;
  /** Whether a cookie value is well formed, correctly signed and not expired. */
  verify(value: string | undefined, nowMs: number): boolean;
}

export function createSessions(tokens: readonly string[], ttlSeconds = SESSION_TTL_SECONDS): Sessions {
  const acceptsToken = tokenMatcher(tokens);
  // No tokens, no sessions: an empty key would make every signature forgeable.
  const key = tokens.length > 0 ? createHmac('sha256', tokens.join('\n')).update('billing dashboard session v1').digest() : undefined;
  const sign = (payload: string) => createHmac('sha256', key ?? Buffer.alloc(0)).update(payload).digest('base64url');
  return {
    acceptsToken,
    issue(nowMs) {
      const payload = `v1.${Math.floor(nowMs / 1000) + ttlSeconds}`;
      return `${payload}.${sign(payload)}`;
    },
    verify(value, nowMs) {
      if (!key || !value) return false;
      const match = /^(v1\.(\d{1,12}))\.([A-Za-z0-9_-]{43})$/.exec(value);
      if (!match) return false;
      const [, payload = '', expires = '0', signature = ''] = match;
      const expected = Buffer.from(sign(payload));
      const given = Buffer.from(signature);
      if (!timingSafeEqual(expected, given)) return false;
      return Number(expires) * 1000 > nowMs;
    },
  };
}

/** True when the request came over HTTPS, directly or through a proxy that says so. */
export function isHttps(c: Context): boolean {
  return new URL(c.req.url).protocol === 'https:' || c.req.header('x-forwarded-proto')?.split(',')[0]?.trim() === 'https';
}

/** The Set-Cookie value for a session (or, with an empty value, for clearing it). */
export function sessionCookie(c: Context, value: string, maxAgeSeconds: number): string {
  return [
    `${SESSION_COOKIE}=${value}`,
    `Path=${SESSION_PATH}`,
    `Max-Age=${maxAgeSeconds}`,
    'HttpOnly',
    'SameSite=Strict',
    ...(isHttps(c) ? ['Secure'] : []),
  ].join('; ');
}

/**
 * A cookie-authenticated request that changes something must come from one of our own pages:
 * SameSite=Strict already keeps other sites' requests cookie-less, and this refuses any request
 * whose Origin (or Fetch Metadata) names another site, for browsers that get SameSite wrong.
 */
function sameOrigin(c: Context): boolean {
  const site = c.req.header('sec-fetch-site');
  if (site && site !== 'same-origin' && site !== 'none') return false;
  const origin = c.req.header('origin');
  if (!origin) return true;
  try {
    return new URL(origin).host === (c.req.header('host') ?? new URL(c.req.url).host);
  } catch {
    return false;
  }
}

/**
 * For the dashboard pages: a bearer token (scripts, curl) or a valid session cookie (browsers).
 * Without either, `refuse` answers (a login page for a browser, JSON 401 for anything else).
 */
export function sessionOrBearerAuth(sessions: Sessions, refuse: (c: Context) => Response | Promise<Response>): MiddlewareHandler {
  return async (c, next) => {
    if (sessions.acceptsToken(bearerToken(c))) return next();
    if (sessions.verify(getCookie(c, SESSION_COOKIE), Date.now())) {
      const safe = c.req.method === 'GET' || c.req.method === 'HEAD';
      if (!safe && !sameOrigin(c)) return c.json({ error: 'forbidden', message: 'cross-site request refused' }, 403);
      return next();
    }
    return refuse(c);
  };
}
