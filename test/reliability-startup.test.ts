import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../bench/harness';
import { createDb, migrateLatest } from '../adapters/db/database';
import { Cleanup, OwnPostgres, OwnRedis, freePort } from './faults/services';
import { loseQueueData } from './support/redis-keys';
import { type TestContext, createTestContext } from './support/test-context';
import { testRedisUrl } from './support/test-env';

/**
 * Reliability case 27: PostgreSQL or Redis down when a worker starts. `billing worker` says which
 * service is unreachable and which setting names it, waits with growing pauses instead of exiting
 * (a supervisor would restart it in a tight loop), and starts working once the service is there.
 * The missing service is a private server started on the port the worker was given, late. (The
 * API's 503 when a dependency does not answer is in admin-api.test.ts.)
 */

interface LogLine {
  level: number;
  msg: string;
  attempt?: number;
  retryInMs?: number;
}

class WorkerUnderTest {
  readonly lines: LogLine[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  constructor(env: Record<string, string>) {
    this.child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'billing.js'), 'worker'], {
      cwd: REPO_ROOT,
      env: { ...process.env, LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buffered = '';
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const parts = buffered.split('\n');
      buffered = parts.pop() ?? '';
      for (const p of parts) {
        try {
          this.lines.push(JSON.parse(p) as LogLine);
        } catch {
          // not a log line
        }
      }
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  waits(): LogLine[] {
    return this.lines.filter((l) => l.msg.startsWith('waiting for services'));
  }

  stop(): Promise<number | null> {
    if (this.running) this.child.kill('SIGTERM');
    return this.exited;
  }
}

describe('a worker started while a service is down (case 27)', () => {
  const cleanup = new Cleanup();
  let dir: string;
  let ctx: TestContext;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'billing-startup-'));
    await chmod(dir, 0o755); // the postgres OS user runs the private server below it
    ctx = await createTestContext();
  });

  afterAll(async () => {
    await cleanup.run();
    await ctx?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('waits for PostgreSQL, naming it and DATABASE_URL, with growing pauses, then starts', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const prefix = `bt-start-${randomBytes(4).toString('hex')}`;
    const databaseUrl = `postgres://postgres@127.0.0.1:${port}/billing_startup`;
    const worker = new WorkerUnderTest({ DATABASE_URL: databaseUrl, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, INBOX_DIR: path.join(dir, 'inbox-pg') });
    cleanup.add('stop the worker', () => worker.stop());
    cleanup.add('remove its queue keys', () => loseQueueData(ctx.deps.redis, prefix));

    await expect.poll(() => worker.waits().length, { timeout: 30_000 }).toBeGreaterThanOrEqual(2);
    expect(worker.running).toBe(true);
    const [first, second] = worker.waits();
    expect(first!.msg).toMatch(/^waiting for services: PostgreSQL unreachable \(.+\): check DATABASE_URL and that the server is running/);
    expect(second!.retryInMs).toBeGreaterThan(first!.retryInMs!);

    // The server comes up on that port; the database is created and migrated (a worker also waits for the schema).
    const postgres = await OwnPostgres.start(path.join(dir, 'pg'), cleanup, { port });
    await postgres.createDatabase('billing_startup');
    const db = createDb(databaseUrl, { max: 1 });
    try {
      await migrateLatest(db);
    } finally {
      await db.destroy();
    }
    await expect.poll(() => worker.lines.some((l) => l.msg === 'workers started'), { timeout: 60_000 }).toBe(true);
    expect(worker.running).toBe(true);
    expect(await worker.stop()).toBe(0);
  });

  it('waits for Redis, naming it and REDIS_URL, with growing pauses, then starts', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const worker = new WorkerUnderTest({
      DATABASE_URL: ctx.databaseUrl,
      REDIS_URL: `redis://127.0.0.1:${port}`,
      QUEUE_PREFIX: `bt-start-${randomBytes(4).toString('hex')}`,
      INBOX_DIR: path.join(dir, 'inbox-redis'),
    });
    cleanup.add('stop the worker', () => worker.stop());

    await expect.poll(() => worker.waits().length, { timeout: 30_000 }).toBeGreaterThanOrEqual(2);
    expect(worker.running).toBe(true);
    const [first, second] = worker.waits();
    expect(first!.msg).toMatch(/^waiting for services: Redis unreachable \(.+\): check REDIS_URL and that the server is running/);
    expect(first!.msg).not.toContain('PostgreSQL');
    expect(second!.retryInMs).toBeGreaterThan(first!.retryInMs!);

    await OwnRedis.start(path.join(dir, 'redis'), cleanup, { port });
    await expect.poll(() => worker.lines.some((l) => l.msg === 'workers started'), { timeout: 60_000 }).toBe(true);
    expect(await worker.stop()).toBe(0);
  });
});
