import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { dropDatabase, ensureDatabase } from '../../adapters/db/database';
import { type Clock, fixedClock } from '../../src/clock';
import { loadConfig } from '../../src/config';
import { type Deps, closeDeps, createDeps } from '../../src/deps';
import { type RunningWorkers, startWorkers } from '../../jobs/worker';
import { inject } from 'vitest';
import { testDatabaseUrl, testRedisUrl } from './test-env';

export const TEST_TOKEN = 'test-admin-token-0123456789abcdef';

export interface TestContext {
  deps: Deps;
  databaseUrl: string;
  inboxDir: string;
  outboxDir: string;
  workers(): RunningWorkers;
  close(): Promise<void>;
}

/**
 * A private world for one test file: its own database (copied from the migrated template), its own
 * queue prefix on the real Redis, its own inbox and outbox folders, and a pinned clock.
 */
export async function createTestContext(opts: { env?: Record<string, string>; clock?: Clock } = {}): Promise<TestContext> {
  const id = randomBytes(4).toString('hex');
  const database = `billing_test_${process.pid}_${id}`;
  const databaseUrl = testDatabaseUrl(database);
  await ensureDatabase(databaseUrl, inject('templateDatabase'));
  const dir = await mkdtemp(path.join(os.tmpdir(), `billing-test-${id}-`));
  const inboxDir = path.join(dir, 'inbox');
  const outboxDir = path.join(dir, 'outbox');
  const config = loadConfig({
    DATABASE_URL: databaseUrl,
    REDIS_URL: testRedisUrl,
    INBOX_DIR: inboxDir,
    OUTBOX_DIR: outboxDir,
    QUEUE_PREFIX: `bt-${id}`,
    ADMIN_TOKENS: TEST_TOKEN,
    INBOX_SETTLE_MS: '0',
    LOG_LEVEL: 'silent',
    ...opts.env,
  });
  const deps = createDeps(config, {
    clock: opts.clock ?? fixedClock('2026-11-21T10:00:00Z'),
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
  });
  let running: RunningWorkers | undefined;
  return {
    deps,
    databaseUrl,
    inboxDir,
    outboxDir,
    workers() {
      running ??= startWorkers(deps);
      return running;
    },
    async close() {
      await running?.close(5000);
      await deleteKeys(deps, `${config.queuePrefix}:*`);
      await closeDeps(deps);
      await dropDatabase(databaseUrl);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Removes every Redis key under the test's prefix, so runs leave nothing behind. */
async function deleteKeys(deps: Deps, pattern: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await deps.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
    if (keys.length > 0) await deps.redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}
