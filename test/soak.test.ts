import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type QueueName, defaultJobOptions } from '../jobs/catalog';
import { createRedis } from '../jobs/queues';
import { checkRedisPolicy } from '../jobs/worker';
import type { Deps } from '../src/deps';
import { Cleanup, OwnRedis } from './faults/services';
import { keysUnder } from './support/redis-keys';
import { type TestContext, createTestContext } from './support/test-context';

/**
 * Reliability case 30: many jobs through the queues leave the Redis key count bounded by the
 * retention settings in jobs/catalog.ts (removeOnComplete / removeOnFail), not by how many jobs ran.
 * SOAK_JOBS sets the number (10,000 by default, for CI; SOAK_JOBS=100000 for the full soak).
 *
 * The jobs are real work through the real workers: 40% reconcile jobs, which complete, and 60%
 * rate-file jobs for files that do not exist, which fail at once for good (no retries), so both
 * retention limits are exceeded.
 */

const JOBS = Number(process.env.SOAK_JOBS ?? 10_000);
const COMPLETING: QueueName = 'reconcile';
const FAILING: QueueName = 'rate-file';

function retention(setting: typeof defaultJobOptions.removeOnComplete): number {
  if (typeof setting === 'object' && setting !== null && typeof setting.count === 'number') return setting.count;
  throw new Error(`the soak expects a count in the retention setting, found ${JSON.stringify(setting)}`);
}

describe(`${JOBS} jobs through the queues (case 30)`, () => {
  let ctx: TestContext;

  beforeAll(async () => {
    ctx = await createTestContext();
  });

  afterAll(async () => {
    await ctx?.close();
  });

  it('leaves at most the retained jobs in Redis, however many ran', { timeout: Math.max(120_000, JOBS * 20) }, async () => {
    const keepCompleted = retention(defaultJobOptions.removeOnComplete);
    const keepFailed = retention(defaultJobOptions.removeOnFail);
    const completing = Math.floor(JOBS * 0.4);
    const failing = JOBS - completing;
    // Enough of each to exceed its limit, or the test would prove nothing about trimming.
    expect(completing, 'jobs that complete, above removeOnComplete.count').toBeGreaterThan(keepCompleted);
    expect(failing, 'jobs that fail, above removeOnFail.count').toBeGreaterThan(keepFailed);

    const { workers } = ctx.workers();
    let finished = 0;
    const allDone = new Promise<void>((resolve) => {
      const count = () => {
        finished += 1;
        if (finished === JOBS) resolve();
      };
      for (const w of workers.filter((w) => w.name === COMPLETING || w.name === FAILING)) {
        w.on('completed', count);
        w.on('failed', count);
      }
    });
    for (let i = 0; i < JOBS; i += 500) {
      const batch = Array.from({ length: Math.min(500, JOBS - i) }, (_, k) => i + k);
      await Promise.all(batch.map((n) => (n < completing
        ? ctx.deps.queues.enqueue(COMPLETING, {})
        // Ids above the test database's sequence: no such file, a permanent error, no retry.
        : ctx.deps.queues.enqueue(FAILING, { fileId: 1_000_000 + n }))));
    }
    await allDone;

    const prefix = ctx.deps.config.queuePrefix;
    const keys = await keysUnder(ctx.deps.redis, prefix);
    const jobKeys = (queue: QueueName) => keys.filter((k) => new RegExp(`^${prefix}:${queue}:[^:]+$`).test(k) && !/:(meta|id|events|wait|active|completed|failed|delayed|paused|prioritized|marker|stalled|stalled-check|pc|repeat|limiter|de|waiting-children)$/.test(k));
    const counts = {
      completing: await ctx.deps.queues.get(COMPLETING).getJobCounts('completed', 'failed', 'waiting', 'active', 'delayed'),
      failing: await ctx.deps.queues.get(FAILING).getJobCounts('completed', 'failed', 'waiting', 'active', 'delayed'),
    };
    expect(counts).toEqual({
      completing: { completed: keepCompleted, failed: 0, waiting: 0, active: 0, delayed: 0 },
      failing: { completed: 0, failed: keepFailed, waiting: 0, active: 0, delayed: 0 },
    });
    expect(jobKeys(COMPLETING)).toHaveLength(keepCompleted);
    expect(jobKeys(FAILING)).toHaveLength(keepFailed);
    // Besides the retained jobs, each queue holds a fixed handful of keys (id counter, meta, events, lists).
    const perQueueOverhead = 16;
    const bound = keepCompleted + keepFailed + perQueueOverhead * 2;
    console.log(`soak: ${JOBS} jobs, ${keys.length} keys under ${prefix}: (bound ${bound})`);
    expect(keys.length).toBeLessThanOrEqual(bound);
  });
});

describe('Redis eviction policy at worker start (case 30)', () => {
  const cleanup = new Cleanup();
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'billing-soak-redis-'));
  });

  afterAll(async () => {
    await cleanup.run();
    await rm(dir, { recursive: true, force: true });
  });

  /** checkRedisPolicy against a private Redis with the given policy; returns the warnings it logged. */
  async function warningsWith(policy: string): Promise<string[]> {
    const redis = await OwnRedis.start(path.join(dir, policy), cleanup, { maxmemoryPolicy: policy });
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, new Writable({ write: (chunk: Buffer, _enc, done) => { lines.push((JSON.parse(chunk.toString()) as { msg: string }).msg); done(); } }));
    const connection = createRedis(redis.url);
    try {
      await checkRedisPolicy({ redis: connection, logger } as unknown as Deps);
    } finally {
      connection.disconnect();
      await redis.kill();
    }
    return lines;
  }

  it('warns, saying how to fix it, when Redis may evict keys', async () => {
    const warnings = await warningsWith('allkeys-lru');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^Redis maxmemory-policy is "allkeys-lru"; it must be "noeviction"/);
  });

  it('says nothing when the policy is noeviction', async () => {
    expect(await warningsWith('noeviction')).toEqual([]);
  });
});
