import { type Job, Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultJobOptions } from '../jobs/catalog';
import { createApp } from '../src/api/app';
import { ingestFile } from '../src/use-cases/ingest-file';
import { reconcile } from '../src/use-cases/reconcile';
import { scanInbox } from '../src/use-cases/scan-inbox';
import { fileRow } from './support/file-rows';
import { dropSettled, importDemoPartnerships } from './support/inbox-drops';
import { TEST_TOKEN, type TestContext, createTestContext } from './support/test-context';

/**
 * Reliability cases 25 and 29: how jobs fail. A job that stalls twice is failed, shown to operators
 * and can be retried; bad input fails at once without retries; an infrastructure fault is retried
 * with exponential backoff and jitter (the catalog's settings) until it goes away.
 */

const auth = { Authorization: `Bearer ${TEST_TOKEN}` };
const FEED = 'usage_id,product,user,quantity,start_time\nQ-1,CPU_HOUR,a.patel,10,2026-10-05T09:00:00Z\nQ-2,CONFOCAL_HOUR,m.chen,2,2026-10-06T09:00:00Z\n';
const worlds: TestContext[] = [];

async function world(): Promise<TestContext> {
  const ctx = await createTestContext();
  worlds.push(ctx);
  await importDemoPartnerships(ctx.deps);
  return ctx;
}

afterAll(async () => {
  for (const w of worlds) await w.close();
});

describe('a job that stalls twice (case 25)', () => {
  let ctx: TestContext;
  let fileId: number;
  let jobId: string;
  const stuck: Worker[] = [];

  beforeAll(async () => {
    ctx = await world();
    await dropSettled(ctx.deps, 'ACME', 'stalls.csv', FEED);
    fileId = (await scanInbox(ctx.deps))[0]!.fileId;
    jobId = `ingest-file-${fileId}`;
    // Workers that take the job and never finish it nor renew its lock, as a worker does when it is
    // frozen or killed. The engine's workers allow one stall (maxStalledCount: 1, jobs/worker.ts);
    // these check for stalls every 200 ms with half-second locks instead of every 30 s with 60 s ones.
    for (let i = 0; i < 2; i += 1) {
      const w: Worker = new Worker('ingest-file', () => new Promise<unknown>(() => undefined), {
        connection: { url: ctx.deps.config.redisUrl },
        prefix: ctx.deps.config.queuePrefix,
        concurrency: 3,
        lockDuration: 500,
        skipLockRenewal: true,
        stalledInterval: 200,
        maxStalledCount: 1,
      });
      w.on('error', () => undefined);
      stuck.push(w);
    }
  });

  afterAll(async () => {
    await Promise.all(stuck.map((w) => w.close(true)));
  });

  it('is failed, not run a third time', async () => {
    const queue = ctx.deps.queues.get('ingest-file');
    await expect.poll(() => queue.getJobState(jobId), { timeout: 20_000, interval: 100 }).toBe('failed');
    const job = await queue.getJob(jobId);
    expect(job?.failedReason).toBe('job stalled more than allowable limit');
    expect(job?.stalledCounter).toBe(2);
    await Promise.all(stuck.map((w) => w.close(true)));
    // Nothing was ingested: the work is still to do, and PostgreSQL says so.
    expect((await fileRow(ctx.deps, fileId)).status).toBe('received');
  });

  it('is visible to operators: in the admin API with its reason, and in the reconciler\'s report', async () => {
    const app = createApp(ctx.deps);
    const res = await app.request('/queues/ingest-file/jobs?state=failed', { headers: auth });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { items: Array<{ id: string; data: unknown; failedReason: string }> };
    expect(body.items.map((j) => [j.id, j.data, j.failedReason])).toEqual([[jobId, { fileId }, 'job stalled more than allowable limit']]);
    expect((await reconcile(ctx.deps)).awaitingOperator).toEqual([{ queue: 'ingest-file', jobId, reason: 'job stalled more than allowable limit' }]);
  });

  it('is retried by the operator and then done exactly once', async () => {
    const app = createApp(ctx.deps);
    ctx.workers();
    const res = await app.request(`/queues/ingest-file/jobs/${jobId}/retry`, { method: 'POST', headers: auth });
    expect(res.status).toBe(200);
    await expect.poll(async () => (await fileRow(ctx.deps, fileId)).status, { timeout: 20_000 }).toBe('rated');
    expect(await ctx.deps.db('product_usages').where('source_file_id', fileId).orderBy('external_id').pluck<string[]>('external_id')).toEqual(['Q-1', 'Q-2']);
  });
});

describe('bad input and infrastructure faults (case 29)', () => {
  it('fails bad input at once as UnrecoverableError, with no retry: a malformed payload, a permanent error', async () => {
    const ctx = await world();
    await dropSettled(ctx.deps, 'ACME', 'no-rules.csv', FEED);
    const fileId = (await scanInbox(ctx.deps))[0]!.fileId;
    expect((await ingestFile(ctx.deps, fileId)).kind).toBe('parsed'); // queues its rate-file job
    await ctx.deps.db('rule_versions').update({ superseded_at: ctx.deps.db.fn.now() }); // nothing prices the usages now
    const bad = await ctx.deps.queues.get('ingest-file').add('ingest-file', { fileId: 'seven' });
    const failures: Array<{ queue: string; attemptsMade: number; name: string; message: string }> = [];
    const running = ctx.workers();
    for (const w of running.workers) w.on('failed', (job, err) => failures.push({ queue: w.name, attemptsMade: job?.attemptsMade ?? -1, name: err.name, message: err.message }));

    await expect.poll(() => failures.length, { timeout: 15_000 }).toBe(2);
    expect(failures.sort((a, b) => a.queue.localeCompare(b.queue))).toEqual([
      { queue: 'ingest-file', attemptsMade: 1, name: 'UnrecoverableError', message: 'invalid ingest-file payload: fileId: Invalid input: expected number, received string' },
      { queue: 'rate-file', attemptsMade: 1, name: 'UnrecoverableError', message: expect.stringContaining('has no rules in force') as string },
    ]);
    expect(await ctx.deps.queues.get('ingest-file').getJobState(bad.id!)).toBe('failed');
    expect(await ctx.deps.queues.get('rate-file').getJobState(`rate-file-${fileId}`)).toBe('failed');
  });

  it('retries a database fault with exponential backoff and jitter, and succeeds once it is gone', { timeout: 60_000 }, async () => {
    const ctx = await world();
    // A real database error on every attempt: a CHECK constraint refusing one of the file's usages.
    await ctx.deps.db.raw(`ALTER TABLE product_usages ADD CONSTRAINT test_fault_q_2 CHECK (external_id <> 'Q-2') NOT VALID`);
    await dropSettled(ctx.deps, 'ACME', 'db-fault.csv', FEED);
    const fileId = (await scanInbox(ctx.deps))[0]!.fileId;
    const retries: Array<{ attemptsMade: number; delay: number; message: string }> = [];
    const running = ctx.workers();
    const ingest = running.workers.find((w) => w.name === 'ingest-file')!;
    ingest.on('failed', (job: Job | undefined, err) => retries.push({ attemptsMade: job?.attemptsMade ?? -1, delay: job?.delay ?? -1, message: err.message }));

    await expect.poll(() => retries.length, { timeout: 30_000 }).toBeGreaterThanOrEqual(3);
    await ctx.deps.db.raw('ALTER TABLE product_usages DROP CONSTRAINT test_fault_q_2');
    const { backoff } = defaultJobOptions;
    expect(backoff).toEqual({ type: 'exponential', delay: 1000, jitter: 0.5 });
    for (const r of retries.slice(0, 3)) {
      expect(r.message).toContain('violates check constraint "test_fault_q_2"');
      // Attempt n waits between half and all of 1 s x 2^(n-1).
      const ceiling = 1000 * 2 ** (r.attemptsMade - 1);
      expect(r.delay, `delay after attempt ${r.attemptsMade}`).toBeGreaterThanOrEqual(ceiling / 2);
      expect(r.delay, `delay after attempt ${r.attemptsMade}`).toBeLessThanOrEqual(ceiling);
    }
    expect(retries.slice(0, 3).map((r) => r.attemptsMade)).toEqual([1, 2, 3]);
    await expect.poll(async () => (await fileRow(ctx.deps, fileId)).status, { timeout: 30_000 }).toBe('rated');
    expect(await ctx.deps.db('product_usages').where('source_file_id', fileId).orderBy('external_id').pluck<string[]>('external_id')).toEqual(['Q-1', 'Q-2']);
  });
});

describe('worker locks from the configuration (WORKER_LOCK_DURATION_MS, WORKER_STALLED_INTERVAL_MS)', () => {
  it('takes over the job of a worker that died, within the configured lock and stall check rather than the defaults', { timeout: 60_000 }, async () => {
    const ctx = await createTestContext({ env: { WORKER_LOCK_DURATION_MS: '1000', WORKER_STALLED_INTERVAL_MS: '1000' } });
    worlds.push(ctx);
    await importDemoPartnerships(ctx.deps);
    await dropSettled(ctx.deps, 'ACME', 'orphaned.csv', FEED);
    const fileId = (await scanInbox(ctx.deps))[0]!.fileId;
    const queue = ctx.deps.queues.get('ingest-file');
    const jobId = `ingest-file-${fileId}`;

    // A worker takes the job and dies with it: its lock (1 s, never renewed) runs out, nobody finishes the job.
    const dying: Worker = new Worker('ingest-file', () => new Promise<unknown>(() => undefined), {
      connection: { url: ctx.deps.config.redisUrl },
      prefix: ctx.deps.config.queuePrefix,
      lockDuration: 1000,
      skipLockRenewal: true,
      // A stall check holds off every other worker's on the queue for its interval: leave them to the engine's.
      skipStalledCheck: true,
    });
    dying.on('error', () => undefined);
    await expect.poll(() => queue.getJobState(jobId), { timeout: 10_000, interval: 50 }).toBe('active');
    await dying.close(true);

    const started = Date.now();
    const running = ctx.workers();
    expect(running.workers.map((w) => [w.name, w.opts.lockDuration, w.opts.stalledInterval])).toEqual(running.workers.map((w) => [w.name, 1000, 1000]));
    // With the defaults (a 30 s stall check) this takes half a minute or more.
    await expect.poll(async () => (await fileRow(ctx.deps, fileId)).status, { timeout: 10_000, interval: 100 }).toBe('rated');
    expect(Date.now() - started).toBeLessThan(10_000);
    const job = await queue.getJob(jobId);
    expect(job?.stalledCounter).toBe(1);
    expect(await ctx.deps.db('product_usages').where('source_file_id', fileId).orderBy('external_id').pluck<string[]>('external_id')).toEqual(['Q-1', 'Q-2']);
  });
});
