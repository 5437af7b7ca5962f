import { type Server, type Socket, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../adapters/db/database';
import { QUEUE_NAMES } from '../jobs/catalog';
import { createApp } from '../src/api/app';
import { type TestContext, TEST_TOKEN, createTestContext } from './support/test-context';

const JOB_STATES = ['waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized', 'waiting-children'];

const queuesBody = (body: unknown) => body as { prefix: string; queues: Array<{ name: string; counts: Record<string, unknown> }> };

describe('the admin API', () => {
  let ctx: TestContext;
  let app: ReturnType<typeof createApp>;

  beforeAll(async () => {
    ctx = await createTestContext();
    app = createApp(ctx.deps);
  });

  afterAll(async () => {
    await ctx?.close();
  });

  it('answers /health without a token when PostgreSQL and Redis answer', async () => {
    const res = await app.request('/health');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', database: 'ok', redis: 'ok' });
  });

  it.each([
    ['no Authorization header', {}],
    ['a wrong token', { Authorization: 'Bearer wrong' }],
    ['another scheme', { Authorization: `Token ${TEST_TOKEN}` }],
    ['Bearer with no token', { Authorization: 'Bearer' }],
    ['Bearer with two words', { Authorization: `Bearer ${TEST_TOKEN} b` }],
    ['the right token with a prefix', { Authorization: `Bearer x${TEST_TOKEN}` }],
  ])('refuses /queues with %s (401)', async (_label, headers: Record<string, string>) => {
    const res = await app.request('/queues', { headers });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="billing"');
    expect(await res.json()).toEqual({ error: 'unauthorized', message: 'a valid bearer token is required' });
  });

  it('never reads a token from the query string (401)', async () => {
    for (const query of [`token=${TEST_TOKEN}`, `access_token=${TEST_TOKEN}`]) {
      const res = await app.request(`/queues?${query}`);
      expect(res.status, query).toBe(401);
    }
  });

  it('lists every queue with numeric job counts for the right token', async () => {
    // One waiting job, so the counts are seen to come from Redis rather than be made up.
    await ctx.deps.queues.enqueue('reconcile', {});
    const res = await app.request('/queues', { headers: { Authorization: `Bearer ${TEST_TOKEN}` } });
    expect(res.status).toBe(200);
    const body = queuesBody(await res.json());
    expect(body.prefix).toBe(ctx.deps.config.queuePrefix);
    expect(body.queues.map((q) => q.name)).toEqual(QUEUE_NAMES);
    for (const q of body.queues) {
      expect(Object.keys(q.counts).sort(), q.name).toEqual([...JOB_STATES].sort());
      for (const state of JOB_STATES) expect(Number.isInteger(q.counts[state]), `${q.name} ${state}`).toBe(true);
    }
    const waiting = Object.fromEntries(body.queues.map((q) => [q.name, q.counts.waiting]));
    expect(waiting).toEqual({ ...Object.fromEntries(QUEUE_NAMES.map((n) => [n, 0])), reconcile: 1 });
  });

  it('protects every route in the route table except GET /health', async () => {
    const walked: string[] = [];
    for (const route of app.routes) {
      const methods = route.method === 'ALL' ? ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] : [route.method];
      // Parameters and wildcards filled with a harmless value, so the request reaches the route.
      const path = route.path.replace(/:[A-Za-z0-9_]+(\{[^}]*\})?\??/g, '1').replace(/\*/g, 'anything');
      for (const method of methods) {
        // A route with validators appears once per handler; one request each is enough.
        if ((method === 'GET' && path === '/health') || walked.includes(`${method} ${route.path}`)) continue;
        const res = await app.request(path, { method });
        expect(res.status, `${method} ${path} (${route.method} ${route.path})`).toBe(401);
        walked.push(`${method} ${route.path}`);
      }
    }
    // The walk covered the protected routes, not only the catch-all middleware.
    expect(walked).toContain('GET /queues');
    expect(app.routes.filter((r) => r.path === '/health').map((r) => r.method)).toEqual(['GET']);
  });

  describe('when a dependency does not answer', () => {
    it('answers /health 503 within a few seconds when PostgreSQL refuses connections', async () => {
      const deadDb = createDb('postgres://postgres@127.0.0.1:1/x');
      try {
        const res = await answeredWithin(5000, createApp({ ...ctx.deps, db: deadDb }).request('/health'));
        expect(res.status).toBe(503);
        const body = (await res.json()) as { status: string; database: string; redis: string };
        expect({ status: body.status, redis: body.redis }).toEqual({ status: 'unavailable', redis: 'ok' });
        expect(body.database).toMatch(/^unreachable: .*ECONNREFUSED/);
      } finally {
        await deadDb.destroy();
      }
    });

    it('answers /health 503 within a few seconds when PostgreSQL accepts the connection but never replies', async () => {
      const blackHole = await listenSilently();
      const deadDb = createDb(`postgres://postgres@127.0.0.1:${blackHole.port}/x`);
      try {
        const res = await answeredWithin(5000, createApp({ ...ctx.deps, db: deadDb }).request('/health'));
        expect(res.status).toBe(503);
        expect(await res.json()).toEqual({ status: 'unavailable', database: 'unreachable: no answer within 2000 ms', redis: 'ok' });
      } finally {
        await blackHole.close();
        await deadDb.destroy();
      }
    });
  });
});

/** The response, or a failure naming the deadline if none arrives in time (a hang must not look like a slow pass). */
async function answeredWithin(ms: number, response: Response | Promise<Response>): Promise<Response> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no response within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([response, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** A TCP server that accepts connections and never says anything, like a hung database. */
async function listenSilently(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
