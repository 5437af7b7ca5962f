import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../bench/harness';
import { REPEATING_JOBS, keepRepeatingJobs, scheduleRepeatingJobs } from '../jobs/worker';
import { moveInto, resolveInside, storedPath } from '../adapters/inbox/inbox-store';
import { DEMO_DIR, DEMO_PERIOD, dropDemoFeeds } from '../src/cli/demo';
import type { Deps } from '../src/deps';
import { ingestFile } from '../src/use-cases/ingest-file';
import { reconcile, type ReconcileSummary } from '../src/use-cases/reconcile';
import { scanInbox } from '../src/use-cases/scan-inbox';
import { pipelineIsIdle, waitUntilSettled } from '../src/use-cases/wait-for-pipeline';
import { fileRow } from './support/file-rows';
import { actualFiles, actualUsageCharges, readExpected } from './support/golden';
import { dropSettled, importDemoPartnerships, ingestDemoFeeds, issueDemoInvoices } from './support/inbox-drops';
import { findInvariantViolations } from './support/invariants';
import { loseQueueData } from './support/redis-keys';
import { type SmtpSink, startSmtpSink } from './support/smtp-sink';
import { type TestContext, createTestContext } from './support/test-context';
import { Cleanup, OwnRedis } from './faults/services';

/**
 * Reliability case 26: Redis losing its data loses no work. Each world here loses every key under
 * its queue prefix (the shared Redis is never flushed), then the reconciler puts back what
 * PostgreSQL shows unfinished, and real workers finish it.
 */

const MAIL_FROM = 'Northbridge Billing <billing@northbridge.example>';
const NOTHING: Omit<ReconcileSummary, 'awaitingOperator'> = {
  orphansRegistered: 0,
  ingestsQueued: 0,
  ratingsQueued: 0,
  billingRunsQueued: 0,
  deliveriesQueued: 0,
};

const worlds: TestContext[] = [];
let sink: SmtpSink;

async function world(env: Record<string, string> = {}): Promise<TestContext> {
  const ctx = await createTestContext({ env: { INGEST_CHUNK_ROWS: '2', SMTP_URL: sink.url, MAIL_FROM, ...env } });
  worlds.push(ctx);
  await importDemoPartnerships(ctx.deps);
  return ctx;
}

async function expectInvariants(deps: Deps): Promise<void> {
  const violations = await findInvariantViolations(deps.db);
  expect(violations).toEqual(Object.fromEntries(Object.keys(violations).map((k) => [k, []])));
}

beforeAll(async () => {
  sink = await startSmtpSink();
});

afterAll(async () => {
  for (const w of worlds) await w.close();
  await sink?.close();
});

describe('reconcile after Redis lost its data (case 26)', () => {
  it('re-enqueues every received, half-ingested and parsed file, and the workers finish them as in a clean run', async () => {
    const ctx = await world();
    const { deps } = ctx;
    await dropDemoFeeds(ctx.inboxDir);
    const registered = await scanInbox(deps);
    expect(registered.map((r) => r.status)).toEqual(['received', 'received', 'received', 'received']);
    const [parsed, halfway, ...untouched] = registered.map((r) => r.fileId) as [number, number, ...number[]];
    // One file parsed (its rate job queued), one ingest that died after its first chunk, two untouched.
    expect((await ingestFile(deps, parsed)).kind).toBe('parsed');
    await expect(ingestFile(deps, halfway, () => { throw new Error('worker killed after the first chunk'); })).rejects.toThrow('worker killed');
    expect(await fileRow(deps, halfway)).toMatchObject({ status: 'parsing', records_committed: 2 });

    expect(await loseQueueData(deps.redis, deps.config.queuePrefix)).toBeGreaterThan(0);
    expect(await deps.queues.get('rate-file').getJobState(`rate-file-${parsed}`)).toBe('unknown');
    for (const id of [halfway, ...untouched]) expect(await deps.queues.get('ingest-file').getJobState(`ingest-file-${id}`)).toBe('unknown');

    expect(await reconcile(deps)).toEqual({ ...NOTHING, ingestsQueued: 3, ratingsQueued: 1, awaitingOperator: [] });
    // The work is in hand now: a second pass adds nothing.
    expect(await reconcile(deps)).toEqual({ ...NOTHING, awaitingOperator: [] });
    for (const id of [halfway, ...untouched]) expect(await deps.queues.get('ingest-file').getJobState(`ingest-file-${id}`)).toBe('waiting');

    ctx.workers();
    await waitUntilSettled(deps, ['ingest-file', 'rate-file'], () => pipelineIsIdle(deps), 60_000);
    const expected = await readExpected(DEMO_DIR);
    expect(await actualFiles(deps.db)).toEqual(expected.files);
    expect(await actualUsageCharges(deps.db)).toEqual(expected.usage_charges);
    await expectInvariants(deps);
  });

  it('re-enqueues pending deliveries and ones a dead worker left sending; those become unknown and are not sent again', async () => {
    const ctx = await world();
    const { deps } = ctx;
    await ingestDemoFeeds(deps);
    const { acme, jsmith } = await issueDemoInvoices(deps);
    // What deliverInvoice writes just before it talks to the SMTP server; the worker then died.
    await deps.db('email_deliveries').where('id', acme.deliveryId).update({ status: 'sending', attempts: 1 });
    await loseQueueData(deps.redis, deps.config.queuePrefix);
    const before = sink.messages.length;

    expect(await reconcile(deps)).toEqual({ ...NOTHING, deliveriesQueued: 2, awaitingOperator: [] });
    ctx.workers();
    await waitUntilSettled(deps, ['deliver-email'], () => pipelineIsIdle(deps), 30_000);

    const rows = await deps.db('email_deliveries').orderBy('id').select<{ id: string; status: string; message_id: string }[]>('id', 'status', 'message_id');
    expect(rows.map((r) => [Number(r.id), r.status])).toEqual([[acme.deliveryId, 'unknown'], [jsmith.deliveryId, 'sent']]);
    const received = sink.messages.slice(before).map((m) => m.parsed.messageId);
    expect(received).toEqual([rows[1]!.message_id]);
  });

  it('replaces a completed job whose work PostgreSQL still shows unfinished', async () => {
    const ctx = await world();
    const { deps } = ctx;
    await dropSettled(deps, 'ACME', 'acme.csv', 'usage_id,product,user,quantity,start_time\nREC-1,CPU_HOUR,a.patel,10,2026-10-05T09:00:00Z\n');
    const [file] = await scanInbox(deps);
    const jobId = `ingest-file-${file!.fileId}`;
    // A worker that finished the job without doing the work (an old release, say): the id is taken by
    // a completed job, so enqueueing under it again would do nothing.
    const noop = new Worker('ingest-file', () => Promise.resolve('did nothing'), { connection: { url: deps.config.redisUrl }, prefix: deps.config.queuePrefix });
    try {
      await expect.poll(() => deps.queues.get('ingest-file').getJobState(jobId), { timeout: 10_000 }).toBe('completed');
    } finally {
      await noop.close();
    }
    expect((await fileRow(deps, file!.fileId)).status).toBe('received');

    expect(await reconcile(deps)).toEqual({ ...NOTHING, ingestsQueued: 1, awaitingOperator: [] });
    expect(await deps.queues.get('ingest-file').getJobState(jobId)).toBe('waiting');
    ctx.workers();
    await waitUntilSettled(deps, ['ingest-file', 'rate-file'], () => pipelineIsIdle(deps), 30_000);
    expect(await fileRow(deps, file!.fileId)).toMatchObject({ status: 'rated', rows_accepted: 1 });
  });

  it('leaves unfinished work whose job failed for good to an operator, reports it, and the retry finishes it', async () => {
    const ctx = await world();
    const { deps } = ctx;
    await dropSettled(deps, 'ACME', 'acme.csv', 'usage_id,product,user,quantity,start_time\nOPS-1,CPU_HOUR,a.patel,10,2026-10-05T09:00:00Z\n');
    const [file] = await scanInbox(deps);
    expect((await ingestFile(deps, file!.fileId)).kind).toBe('parsed');
    // Rating will find no rules in force: a permanent error, so the job fails at once, for good.
    await deps.db('rule_versions').update({ superseded_at: deps.db.fn.now() });
    const queue = deps.queues.get('rate-file');
    const jobId = `rate-file-${file!.fileId}`;
    ctx.workers();
    await expect.poll(() => queue.getJobState(jobId), { timeout: 15_000 }).toBe('failed');

    const summary = await reconcile(deps);
    expect(summary).toEqual({
      ...NOTHING,
      awaitingOperator: [{ queue: 'rate-file', jobId, reason: expect.stringContaining('has no rules in force') as string }],
    });
    expect(await queue.getJobState(jobId)).toBe('failed');
    expect((await fileRow(deps, file!.fileId)).status).toBe('parsed');

    // The operator fixes the rules and retries the failed job.
    await deps.db('rule_versions').update({ superseded_at: null });
    await (await queue.getJob(jobId))!.retry();
    await expect.poll(async () => (await fileRow(deps, file!.fileId)).status, { timeout: 15_000 }).toBe('rated');
  });

  it('registers a file claimed into processing/ whose registration never committed, once it is old enough', async () => {
    const ctx = await world();
    const { deps } = ctx;
    await dropSettled(deps, 'ACME', 'orphan.csv', 'usage_id,product,user,quantity,start_time\nORP-1,CPU_HOUR,a.patel,10,2026-10-05T09:00:00Z\n');
    // What scanInbox does before registering: reserve an id and claim the file by renaming it.
    const { rows } = await deps.db.raw<{ rows: { id: string }[] }>(`SELECT nextval('usage_files_id_seq') AS id`);
    const fileId = Number(rows[0]!.id);
    const relative = storedPath('processing', 'ACME', fileId, 'orphan.csv');
    await moveInto(ctx.inboxDir, resolveInside(ctx.inboxDir, 'ACME/orphan.csv'), relative);

    // Just claimed (the drop itself settled an hour ago): its claimer may still be registering it.
    expect((await reconcile(deps)).orphansRegistered).toBe(0);
    // Claimed longer ago than the reconciler waits (here: no wait at all), it is registered.
    expect(await reconcile(deps, { orphanAgeMs: 0 })).toEqual({ ...NOTHING, orphansRegistered: 1, awaitingOperator: [] });
    expect(await fileRow(deps, fileId)).toMatchObject({ status: 'received', name: 'orphan.csv' });
    expect(await deps.queues.get('ingest-file').getJobState(`ingest-file-${fileId}`)).toBe('waiting');
  });
});

/**
 * Billing runs: a run is a billing_runs row from the moment it is requested ('queued' | 'running' |
 * 'completed' | 'failed') and its 'billing-run' job carries { billingRunId }.
 */
describe('reconcile: billing runs whose job is gone', () => {
  it('re-enqueues running runs and queued runs past their grace, as { billingRunId }, and nothing whose job is in hand', async () => {
    const ctx = await world();
    const { db } = ctx.deps;
    const insert = async (status: string, queuedAgoSeconds: number) => {
      const [row] = await db('billing_runs')
        .insert({ period: DEMO_PERIOD, status, requested_by: 'test', queued_at: db.raw(`now() - make_interval(secs => ?)`, [queuedAgoSeconds]) })
        .returning<{ id: string }[]>('id');
      return Number(row!.id);
    };
    const running = await insert('running', 600);
    const queuedLongAgo = await insert('queued', 300);
    const queuedJustNow = await insert('queued', 0); // its requester may be adding the job right now
    await insert('completed', 900);
    await insert('failed', 900);
    const runningWithJob = await insert('running', 600);
    const queue = ctx.deps.queues.get('billing-run');
    // The job of this run under an id of its own: the run is in hand.
    await queue.add('billing-run', { billingRunId: runningWithJob }, { jobId: 'added-by-hand' });

    expect(await reconcile(ctx.deps)).toEqual({ ...NOTHING, billingRunsQueued: 2, awaitingOperator: [] });
    const waiting = (await queue.getJobs(['waiting'])).map((j) => [j.id, (j.data as { billingRunId: number }).billingRunId]);
    expect(waiting.sort()).toEqual([
      [`billing-run-${queuedLongAgo}`, queuedLongAgo],
      [`billing-run-${running}`, running],
      ['added-by-hand', runningWithJob],
    ].sort());
    expect(waiting.map(([, id]) => id)).not.toContain(queuedJustNow);
    // In hand now: a second pass adds nothing.
    expect(await reconcile(ctx.deps)).toEqual({ ...NOTHING, awaitingOperator: [] });
  });
});

/**
 * Redis losing its data under running workers takes the schedulers with it, and with them the
 * reconciler. The workers put them back themselves (keepRepeatingJobs): on a timer when a scheduler
 * is missing, and whenever their Redis connection is ready again after a drop. These worlds run on
 * a private Redis that is really flushed and restarted; the shared one is never touched. Unfinished
 * work that only PostgreSQL remembers: a file registered while its queue was paused, so that its
 * job was still waiting in Redis when Redis lost it (the pause flag goes too).
 */
describe('running workers put their schedulers back after Redis lost its data, without a restart', () => {
  const cleanup = new Cleanup();
  const own: TestContext[] = [];
  const stopProcesses: Array<() => Promise<unknown>> = [];
  let dir: string;
  let redis: OwnRedis;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'billing-redis-loss-'));
    redis = await OwnRedis.start(path.join(dir, 'redis'), cleanup);
  });

  afterAll(async () => {
    // The worker process, then the worlds (they delete their keys from the private Redis), then Redis.
    for (const stop of stopProcesses) await stop();
    for (const c of own) await c.close();
    await cleanup.run();
    await rm(dir, { recursive: true, force: true });
  });

  async function privateWorld(env: Record<string, string>): Promise<TestContext> {
    const c = await createTestContext({ env: { REDIS_URL: redis.url, MAIL_FROM, ...env } });
    own.push(c);
    // While the private Redis restarts, BullMQ would print each refused reconnect of an unheard queue.
    for (const q of c.deps.queues.all()) q.on('error', () => undefined);
    await importDemoPartnerships(c.deps);
    return c;
  }

  const schedulerIds = async (deps: Deps) =>
    (await Promise.all(REPEATING_JOBS.map(async ([queue, id]) => ((await deps.queues.get(queue).getJobScheduler(id)) ? id : undefined)))).filter((id) => id !== undefined);

  /** A file that PostgreSQL has as received, whose ingest job waits in a paused queue. */
  async function fileWaitingInRedis(deps: Deps, name: string, usageId: string): Promise<number> {
    await deps.queues.get('ingest-file').pause();
    await dropSettled(deps, 'ACME', name, `usage_id,product,user,quantity,start_time\n${usageId},CPU_HOUR,a.patel,10,2026-10-05T09:00:00Z\n`);
    await scanInbox(deps);
    // Registered by this scan or by a worker's scheduled one; either way its job is queued now.
    const file = await deps.db('usage_files').where('name', name).first<{ id: string } | undefined>('id');
    expect(file).toBeDefined();
    const fileId = Number(file!.id);
    expect(await fileRow(deps, fileId)).toMatchObject({ status: 'received' });
    expect(await deps.queues.get('ingest-file').getJobState(`ingest-file-${fileId}`)).toBe('waiting');
    return fileId;
  }

  it('FLUSHALL under a running `billing worker` process: its check puts the schedulers back and the reconciler re-enqueues the file', { timeout: 120_000 }, async () => {
    const c = await privateWorld({});
    const { deps } = c;
    const lines: Array<{ msg: string; missing?: string[] }> = [];
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'billing.js'), 'worker'], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        DATABASE_URL: c.databaseUrl,
        REDIS_URL: redis.url,
        QUEUE_PREFIX: deps.config.queuePrefix,
        INBOX_DIR: c.inboxDir,
        OUTBOX_DIR: c.outboxDir,
        INBOX_SETTLE_MS: '0',
        LOG_LEVEL: 'info',
        SCHEDULE_CHECK_EVERY_MS: '1000',
      },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    stopProcesses.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    });
    let buffered = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (buffered + chunk).split('\n');
      buffered = parts.pop() ?? '';
      for (const p of parts) {
        try {
          lines.push(JSON.parse(p) as { msg: string });
        } catch {
          // not a log line
        }
      }
    });
    await expect.poll(() => schedulerIds(deps), { timeout: 60_000, interval: 250 }).toEqual(['inbox-scan', 'reconcile', 'monthly-close']);
    const fileId = await fileWaitingInRedis(deps, 'flushed.csv', 'FLUSH-1');

    await redis.flushAll();

    await expect.poll(async () => (await fileRow(deps, fileId)).status, { timeout: 60_000, interval: 250 }).toBe('rated');
    expect(await deps.db('product_usages').where('source_file_id', fileId).pluck('external_id')).toEqual(['FLUSH-1']);
    expect(await schedulerIds(deps)).toEqual(['inbox-scan', 'reconcile', 'monthly-close']);
    const noticed = lines.filter((l) => l.msg.startsWith('repeating jobs are missing from Redis'));
    expect(noticed.length).toBeGreaterThanOrEqual(1);
    expect(noticed[0]!.missing).toContain('reconcile');
    // The same process all along: never restarted.
    expect(child.exitCode).toBeNull();
    expect(lines.filter((l) => l.msg === 'workers started')).toHaveLength(1);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('FLUSHALL noticed by its marker even when every scheduler is already back (BullMQ re-adds one whose job a worker takes)', { timeout: 120_000 }, async () => {
    const c = await privateWorld({ SCHEDULE_CHECK_EVERY_MS: '3600000', INBOX_SCAN_EVERY_MS: '3600000' });
    const { deps } = c;
    const keeper = await keepRepeatingJobs(deps);
    try {
      expect(await keeper.check('periodic check')).toBe(false);
      await deps.redis.flushall();
      // What BullMQ does when a worker takes a scheduler's job that was in hand at the loss.
      await scheduleRepeatingJobs(deps);
      expect(await schedulerIds(deps)).toEqual(['inbox-scan', 'reconcile', 'monthly-close']);
      expect(await keeper.check('periodic check')).toBe(true);
      expect(await deps.queues.get('reconcile').getJobCounts('waiting', 'prioritized')).toSatisfy((n: Record<string, number>) => (n.waiting ?? 0) + (n.prioritized ?? 0) >= 1);
      // Marked again: the next check finds nothing lost.
      expect(await keeper.check('periodic check')).toBe(false);
    } finally {
      keeper.stop();
    }
  });

  it('Redis restarted without persistence: the reconnect alone puts the schedulers back and reconciles', { timeout: 120_000 }, async () => {
    // A periodic check an hour away: only the reconnect can explain the recovery.
    const c = await privateWorld({ SCHEDULE_CHECK_EVERY_MS: '3600000', INBOX_SCAN_EVERY_MS: '3600000' });
    const { deps } = c;
    c.workers();
    const keeper = await keepRepeatingJobs(deps);
    try {
      expect(await schedulerIds(deps)).toEqual(['inbox-scan', 'reconcile', 'monthly-close']);
      const fileId = await fileWaitingInRedis(deps, 'restarted.csv', 'RESTART-1');

      await redis.restart('lose-data', 500);
      await expect.poll(async () => (await fileRow(deps, fileId)).status, { timeout: 60_000, interval: 250 }).toBe('rated');
      expect(await deps.db('product_usages').where('source_file_id', fileId).pluck('external_id')).toEqual(['RESTART-1']);
      expect(await schedulerIds(deps)).toEqual(['inbox-scan', 'reconcile', 'monthly-close']);
    } finally {
      keeper.stop();
    }
  });
});
