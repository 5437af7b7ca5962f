import { type Server, type Socket, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { type Job, Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../adapters/db/database';
import { QUEUE_NAMES, type QueueName } from '../jobs/catalog';
import { createQueues, createRedis } from '../jobs/queues';
import { createApp } from '../src/api/app';
import { type TestContext, TEST_TOKEN, createTestContext } from './support/test-context';

const JOB_STATES = ['waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized', 'waiting-children'];
const auth = { Authorization: `Bearer ${TEST_TOKEN}` };
const BODY_LIMIT = 4096;
const isoTimestamp: unknown = expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

interface QueueBody {
  name: string;
  paused: boolean;
  counts: Record<string, unknown>;
  oldestWaitingAgeSeconds: number | null;
  workers: number;
}
const queuesBody = (body: unknown) => body as { prefix: string; queues: QueueBody[] };

interface JobBody {
  id: string;
  name: string;
  data: Record<string, unknown>;
  attemptsMade: number;
  failedReason: string | null;
  createdAt: string | null;
  processedAt: string | null;
  finishedAt: string | null;
}

describe('the admin API', () => {
  let ctx: TestContext;
  let app: ReturnType<typeof createApp>;
  const extraWorkers: Worker[] = [];

  beforeAll(async () => {
    ctx = await createTestContext({ env: { API_MAX_BODY_BYTES: String(BODY_LIMIT) } });
    app = createApp(ctx.deps);
  });

  afterAll(async () => {
    for (const w of extraWorkers) await w.close();
    await ctx?.close();
  });

  /** Empties a queue between tests, so each sees only its own jobs. */
  async function emptyQueue(name: QueueName): Promise<void> {
    await ctx.deps.queues.get(name).obliterate({ force: true });
  }

  /**
   * A job that really failed: added, taken by a worker with a lock token, and moved to failed by
   * BullMQ, as a worker would on an error with no attempts left.
   */
  async function failedJob(queue: QueueName, data: Record<string, unknown>, reason = 'smtp said no'): Promise<Job> {
    const added = await ctx.deps.queues.get(queue).add(queue, data, { attempts: 1 });
    const worker = new Worker(queue, null, { connection: createRedis(ctx.deps.config.redisUrl), prefix: ctx.deps.config.queuePrefix });
    try {
      const token = `test-${added.id}`;
      const job = (await worker.getNextJob(token)) as Job | undefined;
      if (!job || job.id !== added.id) throw new Error(`expected to take job ${added.id}, got ${job?.id}`);
      await job.moveToFailed(new Error(reason), token, false);
      expect(await job.getState()).toBe('failed');
      return job;
    } finally {
      await worker.close();
    }
  }

  describe('health and readiness', () => {
    it('answers /health without a token while the process runs', async () => {
      const res = await app.request('/health');
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ok' });
    });

    it('answers /ready without a token when PostgreSQL and Redis answer and the schema is migrated', async () => {
      const res = await app.request('/ready');
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ready', checks: { database: 'ok', redis: 'ok', migrations: 'ok' }, failed: [] });
    });

    it('answers /ready 503 naming the migration that is not applied, and what to run', async () => {
      const last = await ctx.deps.db('knex_migrations').orderBy('id', 'desc').first<{ id: number; name: string; batch: number; migration_time: Date }>('*');
      await ctx.deps.db('knex_migrations').where('id', last.id).delete();
      try {
        const res = await app.request('/ready');
        expect(res.status).toBe(503);
        expect(await res.json()).toEqual({
          status: 'not_ready',
          checks: { database: 'ok', redis: 'ok', migrations: `database schema is not current: 1 migration(s) pending (${last.name}); run \`billing migrate\`` },
          failed: ['migrations'],
        });
      } finally {
        await ctx.deps.db('knex_migrations').insert(last);
      }
      expect((await app.request('/ready')).status).toBe(200);
    });

    it('answers /ready 503 within a few seconds when PostgreSQL refuses connections', async () => {
      const deadDb = createDb('postgres://postgres@127.0.0.1:1/x');
      try {
        const res = await answeredWithin(5000, createApp({ ...ctx.deps, db: deadDb }).request('/ready'));
        expect(res.status).toBe(503);
        const body = (await res.json()) as { status: string; checks: Record<string, string>; failed: string[] };
        expect({ status: body.status, redis: body.checks.redis, failed: body.failed }).toEqual({ status: 'not_ready', redis: 'ok', failed: ['database', 'migrations'] });
        expect(body.checks.database).toMatch(/^unreachable: .*ECONNREFUSED/);
        // Liveness does not depend on the database: a restart would not bring it back.
        expect((await createApp({ ...ctx.deps, db: deadDb }).request('/health')).status).toBe(200);
      } finally {
        await deadDb.destroy();
      }
    });

    it('answers /ready 503 within a few seconds when PostgreSQL accepts the connection but never replies', async () => {
      const blackHole = await listenSilently();
      const deadDb = createDb(`postgres://postgres@127.0.0.1:${blackHole.port}/x`);
      try {
        const res = await answeredWithin(5000, createApp({ ...ctx.deps, db: deadDb }).request('/ready'));
        expect(res.status).toBe(503);
        expect(await res.json()).toEqual({
          status: 'not_ready',
          checks: { database: 'unreachable: no answer within 2000 ms', redis: 'ok', migrations: 'unknown: no answer within 2000 ms' },
          failed: ['database', 'migrations'],
        });
      } finally {
        await blackHole.close();
        await deadDb.destroy();
      }
    });

    it('answers /ready and /queues 503 within a few seconds when Redis does not answer', async () => {
      const blackHole = await listenSilently();
      const deadRedis = createRedis(`redis://127.0.0.1:${blackHole.port}`);
      deadRedis.on('error', () => undefined);
      try {
        const deadApp = createApp({ ...ctx.deps, redis: deadRedis, queues: createQueues(deadRedis, ctx.deps.config.queuePrefix) });
        const ready = await answeredWithin(5000, deadApp.request('/ready'));
        expect(ready.status).toBe(503);
        expect(await ready.json()).toMatchObject({ checks: { database: 'ok', redis: 'unreachable: no answer within 2000 ms', migrations: 'ok' }, failed: ['redis'] });
        const queues = await answeredWithin(8000, deadApp.request('/queues', { headers: auth }));
        expect(queues.status).toBe(503);
        expect(await queues.json()).toEqual({ error: 'unavailable', message: 'queues unreachable: no answer within 5000 ms' });
      } finally {
        deadRedis.disconnect();
        await blackHole.close();
      }
    });
  });

  describe('authentication', () => {
    it.each([
      ['no Authorization header', {}],
      ['a wrong token', { Authorization: 'Bearer wrong' }],
      ['another scheme', { Authorization: `Token ${TEST_TOKEN}` }],
      ['Bearer with no token', { Authorization: 'Bearer' }],
      ['Bearer with two words', { Authorization: `Bearer ${TEST_TOKEN} b` }],
      ['the right token with a prefix', { Authorization: `Bearer x${TEST_TOKEN}` }],
      ['the right token as a cookie', { Cookie: `billing_session=${TEST_TOKEN}` }],
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

    it('protects every route in the route table; only GET /health and GET /ready are open', async () => {
      const walked: string[] = [];
      const open: string[] = [];
      for (const route of app.routes) {
        const methods = route.method === 'ALL' ? ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] : [route.method];
        // Parameters and wildcards filled with a harmless value, so the request reaches the route.
        const path = route.path.replace(/:[A-Za-z0-9_]+(\{[^}]*\})?\??/g, '1').replace(/\*/g, 'anything');
        for (const method of methods) {
          // A route with validators appears once per handler; one request each is enough.
          if (walked.includes(`${method} ${route.path}`)) continue;
          walked.push(`${method} ${route.path}`);
          const res = await app.request(path, { method, headers: { Accept: 'text/html,application/json' } });
          if (res.status !== 401) open.push(`${method} ${route.path}`);
        }
      }
      expect(open).toEqual(['GET /health', 'GET /ready']);
      // The walk covered the protected routes themselves, not only the catch-all middleware.
      for (const route of [
        'GET /queues',
        'GET /queues/:name/jobs',
        'POST /queues/:name/jobs/:id/retry',
        'POST /queues/:name/retry-failed',
        'POST /queues/:name/pause',
        'POST /queues/:name/resume',
        'GET /metrics',
        'GET /openapi.json',
        'POST /admin/login',
        'POST /admin/logout',
        'GET /admin/docs',
        'GET /admin/queues',
        'GET /admin/queues/api/queues',
        'PUT /admin/queues/api/queues/:queueName/:jobId/retry',
        'GET /admin/queues/static/anything',
      ]) {
        expect(walked.some((w) => w === route || w.replace(/\/\*$/, '/anything') === route), route).toBe(true);
      }
    });
  });

  describe('queues', () => {
    it('lists every queue with job counts, the oldest waiting job, workers and paused', async () => {
      await emptyQueue('reconcile');
      // A job added two minutes ago, so the age is seen to come from Redis rather than be made up.
      await ctx.deps.queues.enqueue('reconcile', {}, { timestamp: Date.now() - 120_000 });
      await ctx.deps.queues.enqueue('reconcile', {});
      const worker = new Worker('billing-run', null, { connection: createRedis(ctx.deps.config.redisUrl), prefix: ctx.deps.config.queuePrefix });
      extraWorkers.push(worker);
      await worker.waitUntilReady();

      const res = await app.request('/queues', { headers: auth });
      expect(res.status).toBe(200);
      const body = queuesBody(await res.json());
      expect(body.prefix).toBe(ctx.deps.config.queuePrefix);
      expect(body.queues.map((q) => q.name)).toEqual(QUEUE_NAMES);
      for (const q of body.queues) {
        expect(Object.keys(q.counts).sort(), q.name).toEqual([...JOB_STATES].sort());
        for (const state of JOB_STATES) expect(Number.isInteger(q.counts[state]), `${q.name} ${state}`).toBe(true);
        expect(q.paused, q.name).toBe(false);
      }
      const by = Object.fromEntries(body.queues.map((q) => [q.name, q]));
      expect(by.reconcile?.counts.waiting).toBe(2);
      expect(by.reconcile?.oldestWaitingAgeSeconds).toBeGreaterThanOrEqual(120);
      expect(by.reconcile?.oldestWaitingAgeSeconds).toBeLessThan(180);
      expect(by['ingest-file']?.oldestWaitingAgeSeconds).toBeNull();
      expect(Object.fromEntries(body.queues.map((q) => [q.name, q.workers]))).toEqual({ ...Object.fromEntries(QUEUE_NAMES.map((n) => [n, 0])), 'billing-run': 1 });
      await worker.close();
    });

    it('lists failed jobs with their ids, attempts, failure reason and times, never the rest of the payload', async () => {
      await emptyQueue('deliver-email');
      const job = await failedJob('deliver-email', { deliveryId: 77, recipient: 'someone@example.com', password: 'hunter2' });
      const res = await app.request('/queues/deliver-email/jobs?state=failed', { headers: auth });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { items: JobBody[]; total: number; page: number; pageSize: number };
      expect(body).toMatchObject({ total: 1, page: 1, pageSize: 50 });
      expect(body.items).toEqual([
        {
          id: job.id,
          name: 'deliver-email',
          data: { deliveryId: 77 },
          attemptsMade: 1,
          failedReason: 'smtp said no',
          createdAt: new Date(job.timestamp).toISOString(),
          processedAt: isoTimestamp,
          finishedAt: isoTimestamp,
          delayedUntil: null,
        },
      ]);
      expect(JSON.stringify(body)).not.toContain('hunter2');
      expect(JSON.stringify(body)).not.toContain('someone@example.com');
    });

    it('pages through jobs newest first', async () => {
      await emptyQueue('deliver-email');
      const ids: string[] = [];
      for (const deliveryId of [1, 2, 3]) ids.push((await failedJob('deliver-email', { deliveryId })).id!);
      const page = async (n: number) =>
        (await (await app.request(`/queues/deliver-email/jobs?state=failed&page=${n}&pageSize=2`, { headers: auth })).json()) as { items: JobBody[]; total: number };
      const [first, second] = [await page(1), await page(2)];
      expect(first.total).toBe(3);
      expect([...first.items, ...second.items].map((j) => j.data.deliveryId)).toEqual([3, 2, 1]);
      expect(second.items).toHaveLength(1);
    });

    it('lists waiting jobs too, and refuses an unknown state (400)', async () => {
      await emptyQueue('reconcile');
      await ctx.deps.queues.enqueue('reconcile', {});
      const res = await app.request('/queues/reconcile/jobs?state=waiting', { headers: auth });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { items: JobBody[] }).items.map((j) => [j.name, j.data, j.failedReason])).toEqual([['reconcile', {}, null]]);
      const bad = await app.request('/queues/reconcile/jobs?state=stuck', { headers: auth });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { error: string }).error).toBe('bad_request');
    });

    it.each([
      ['GET', '/queues/nope/jobs'],
      ['POST', '/queues/nope/jobs/1/retry'],
      ['POST', '/queues/nope/retry-failed'],
      ['POST', '/queues/nope/pause'],
      ['POST', '/queues/nope/resume'],
    ])('answers %s %s with 404 and the list of queues', async (method, path) => {
      const res = await app.request(path, { method, headers: auth });
      expect(res.status).toBe(404);
      expect(await res.json()).toEqual({ error: 'not_found', message: `no queue "nope"; the queues are: ${QUEUE_NAMES.join(', ')}`, queues: QUEUE_NAMES });
    });

    it('retries a failed job once: back to waiting with fresh attempts; again is 409', async () => {
      await emptyQueue('deliver-email');
      const job = await failedJob('deliver-email', { deliveryId: 5 });
      const res = await app.request(`/queues/deliver-email/jobs/${job.id}/retry`, { method: 'POST', headers: auth });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ queue: 'deliver-email', id: job.id, state: 'waiting' });
      const queue = ctx.deps.queues.get('deliver-email');
      expect(await queue.getJobState(job.id!)).toBe('waiting');
      expect((await queue.getJob(job.id!))?.attemptsMade).toBe(0);

      const again = await app.request(`/queues/deliver-email/jobs/${job.id}/retry`, { method: 'POST', headers: auth });
      expect(again.status).toBe(409);
      expect(await again.json()).toEqual({ error: 'conflict', message: `job ${job.id} is waiting, not failed; only failed jobs can be retried` });
    });

    it('runs a double-clicked retry once: one 200, one 409, the job waiting once', async () => {
      await emptyQueue('deliver-email');
      const job = await failedJob('deliver-email', { deliveryId: 6 });
      const click = () => app.request(`/queues/deliver-email/jobs/${job.id}/retry`, { method: 'POST', headers: auth });
      const statuses = (await Promise.all([click(), click()])).map((r) => r.status).sort();
      expect(statuses).toEqual([200, 409]);
      const waiting = await ctx.deps.redis.lrange(`${ctx.deps.config.queuePrefix}:deliver-email:wait`, 0, -1);
      expect(waiting.filter((id) => id === job.id)).toHaveLength(1);
    });

    it('answers 404 for an unknown job and 400 for a job id with path characters', async () => {
      const res = await app.request('/queues/deliver-email/jobs/999999/retry', { method: 'POST', headers: auth });
      expect(res.status).toBe(404);
      expect(await res.json()).toEqual({ error: 'not_found', message: 'no job "999999" in queue deliver-email' });
      expect((await app.request('/queues/deliver-email/jobs/..%2F..%2Fx/retry', { method: 'POST', headers: auth })).status).toBe(400);
    });

    it('retries every failed job of a queue', async () => {
      await emptyQueue('rate-file');
      await failedJob('rate-file', { fileId: 1 });
      await failedJob('rate-file', { fileId: 2 });
      const res = await app.request('/queues/rate-file/retry-failed', { method: 'POST', headers: auth });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ queue: 'rate-file', retried: 2 });
      expect(await ctx.deps.queues.get('rate-file').getJobCounts('failed', 'waiting')).toEqual({ failed: 0, waiting: 2 });
    });

    it('answers requests that arrive together from one look at Redis', async () => {
      const clientLists = async () => {
        const stats = await ctx.deps.redis.info('commandstats');
        return Number(/cmdstat_client\|list:calls=(\d+)/.exec(stats)?.[1] ?? 0);
      };
      const before = await clientLists();
      const answers = await Promise.all(Array.from({ length: 20 }, async () => app.request('/queues', { headers: auth })));
      const used = (await clientLists()) - before;
      expect(answers.map((r) => r.status)).toEqual(Array.from({ length: 20 }, () => 200));
      const bodies = await Promise.all(answers.map(async (r) => JSON.stringify(await r.json())));
      expect(new Set(bodies).size).toBe(1);
      // One look is one CLIENT LIST per queue; twenty separate looks would be twenty times that.
      // (Other test files share this Redis, hence the margin.)
      expect(used).toBeGreaterThanOrEqual(QUEUE_NAMES.length);
      expect(used).toBeLessThan(QUEUE_NAMES.length * 10);
    });

    it('pauses and resumes a queue, as GET /queues shows', async () => {
      const paused = await app.request('/queues/ingest-file/pause', { method: 'POST', headers: auth });
      expect(await paused.json()).toEqual({ queue: 'ingest-file', paused: true });
      const during = queuesBody(await (await app.request('/queues', { headers: auth })).json());
      expect(during.queues.filter((q) => q.paused).map((q) => q.name)).toEqual(['ingest-file']);
      const resumed = await app.request('/queues/ingest-file/resume', { method: 'POST', headers: auth });
      expect(await resumed.json()).toEqual({ queue: 'ingest-file', paused: false });
      expect(await ctx.deps.queues.get('ingest-file').isPaused()).toBe(false);
    });
  });

  describe('headers and bodies', () => {
    it('puts the secure headers on every response: open, refused, not found, too large and pages', async () => {
      const responses = {
        health: await app.request('/health'),
        refused: await app.request('/queues'),
        notFound: await app.request('/nothing-here', { headers: auth }),
        tooLarge: await app.request('/queues/reconcile/pause', { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: 'x'.repeat(BODY_LIMIT + 1) }),
        page: await app.request('/admin/docs', { headers: auth }),
      };
      expect(Object.fromEntries(Object.entries(responses).map(([k, r]) => [k, r.status]))).toEqual({ health: 200, refused: 401, notFound: 404, tooLarge: 413, page: 200 });
      for (const [name, res] of Object.entries(responses)) {
        expect(res.headers.get('content-security-policy'), name).toContain("default-src 'self'");
        expect(res.headers.get('content-security-policy'), name).toContain("frame-ancestors 'none'");
        expect(res.headers.get('x-content-type-options'), name).toBe('nosniff');
        expect(res.headers.get('x-frame-options'), name).toBe('DENY');
        expect(res.headers.get('referrer-policy'), name).toBe('same-origin');
        expect(res.headers.get('strict-transport-security'), name).toMatch(/^max-age=/);
      }
    });

    it('refuses a body over the limit with 413, with or without Content-Length', async () => {
      const big = 'x'.repeat(BODY_LIMIT + 1);
      const withLength = await app.request('/queues/reconcile/pause', { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json', 'Content-Length': String(big.length) }, body: big });
      expect(withLength.status).toBe(413);
      expect(await withLength.json()).toEqual({ error: 'payload_too_large', message: `request body is larger than the limit of ${BODY_LIMIT} bytes` });
      const streamed = new Request('http://localhost/queues/reconcile/pause', {
        method: 'POST',
        headers: { ...auth, 'Content-Type': 'application/json' },
        body: new Blob([big]).stream(),
        duplex: 'half',
      });
      expect(streamed.headers.get('content-length')).toBeNull();
      expect((await app.request(streamed)).status).toBe(413);
      // A body under the limit goes through.
      expect((await app.request('/queues/reconcile/resume', { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: '{}' })).status).toBe(200);
    });

    it('leaves file uploads to their own, larger limit', async () => {
      const res = await app.request('/files?partner=NOBODY&name=a.csv', { method: 'POST', headers: auth, body: 'usage_id\n'.repeat(BODY_LIMIT) });
      expect(res.status).not.toBe(413);
    });
  });

  describe('API reference', () => {
    it('publishes the new routes in /openapi.json', async () => {
      const doc = (await (await app.request('/openapi.json', { headers: auth })).json()) as { paths: Record<string, unknown> };
      expect(Object.keys(doc.paths)).toEqual(
        expect.arrayContaining(['/health', '/ready', '/metrics', '/queues', '/queues/{name}/jobs', '/queues/{name}/jobs/{id}/retry', '/queues/{name}/retry-failed', '/queues/{name}/pause', '/queues/{name}/resume']),
      );
    });

    it('renders the document as a page at /admin/docs, with no script', async () => {
      const res = await app.request('/admin/docs', { headers: auth });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      const html = await res.text();
      expect(html).toContain('POST</span> <code>/queues/{name}/jobs/{id}/retry</code>');
      expect(html).toContain('Move a failed job back to waiting, with a fresh set of attempts');
      expect(html).toContain('id="schema-Job"');
      expect(html).not.toMatch(/<script/i);
      const doc = await app.request('/admin/docs/openapi.json', { headers: auth });
      expect(((await doc.json()) as { openapi: string }).openapi).toBe('3.1.0');
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
