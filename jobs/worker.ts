import { Worker } from 'bullmq';
import type { Deps } from '../src/deps';
import { type QueueName, QUEUE_NAMES } from './catalog';
import { createProcessors } from './processors';
import { createRedis } from './queues';

export interface RunningWorkers {
  workers: Worker[];
  close(timeoutMs?: number): Promise<void>;
}

/**
 * Starts a BullMQ worker per queue in this process. Several processes (on several machines) can run
 * this against the same Redis and PostgreSQL: BullMQ hands each job to one worker at a time, and
 * PostgreSQL constraints make a job that runs twice (after a lost lock) take effect once.
 */
export function startWorkers(deps: Deps, queues: readonly QueueName[] = QUEUE_NAMES): RunningWorkers {
  const processors = createProcessors(deps);
  const concurrency: Partial<Record<QueueName, number>> = {
    'ingest-file': deps.config.concurrency.ingest,
    'rate-file': deps.config.concurrency.rate,
    'deliver-email': deps.config.concurrency.deliver,
  };
  const connection = createRedis(deps.config.redisUrl);
  connection.on('error', (err: Error) => deps.logger.warn({ err: err.message }, 'worker redis connection error'));
  const workers = queues.map((name) => {
    const worker = new Worker(name, processors[name], {
      connection,
      prefix: deps.config.queuePrefix,
      concurrency: concurrency[name] ?? 1,
      // Locks are renewed every lockDuration/2 while a job runs; a worker that dies loses its lock and
      // the job is handed to another. A job that stalls twice fails and waits for an operator.
      lockDuration: 60_000,
      stalledInterval: 30_000,
      maxStalledCount: 1,
    });
    const log = deps.logger.child({ queue: name });
    worker.on('failed', (job, err) => log.warn({ jobId: job?.id, attempts: job?.attemptsMade, err: err.message }, 'job failed'));
    worker.on('error', (err) => log.error({ err: err.message }, 'worker error'));
    return worker;
  });
  deps.logger.info({ queues, prefix: deps.config.queuePrefix }, 'workers started');
  return {
    workers,
    async close(timeoutMs = 30_000) {
      // Stop taking jobs and let active ones finish; past the deadline, force-close so their locks
      // lapse and another worker picks them up (each use case is safe to run again).
      const graceful = Promise.all(workers.map((w) => w.close()));
      const deadline = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeoutMs).unref());
      if ((await Promise.race([graceful.then(() => 'done' as const), deadline])) === 'timeout') {
        deps.logger.warn({ timeoutMs }, 'active jobs did not finish in time; closing workers forcibly');
        await Promise.all(workers.map((w) => w.close(true)));
      }
      connection.disconnect();
    },
  };
}

/** Repeating jobs: the inbox scan, the reconciler, and the monthly close on the first days of each month. */
export async function scheduleRepeatingJobs(deps: Deps): Promise<void> {
  await deps.queues.get('inbox-scan').upsertJobScheduler('inbox-scan', { every: deps.config.inbox.scanEveryMs }, { name: 'inbox-scan', data: {} });
  await deps.queues.get('reconcile').upsertJobScheduler('reconcile', { every: 60_000 }, { name: 'reconcile', data: {} });
  // Daily on days 1-5 at 06:00 UTC: a period closes at different instants in different time zones,
  // and a run finds nothing to do for partnerships already invoiced.
  await deps.queues.get('billing-run').upsertJobScheduler('monthly-close', { pattern: '0 6 1-5 * *', tz: 'UTC' }, { name: 'billing-run', data: { requestedBy: 'scheduler' } });
}

/** Warns when Redis may evict BullMQ's keys under memory pressure, which loses jobs silently. */
export async function checkRedisPolicy(deps: Deps): Promise<void> {
  const reply = (await deps.redis.config('GET', 'maxmemory-policy'));
  const policy = reply[1];
  if (policy !== 'noeviction') {
    deps.logger.warn({ policy }, `Redis maxmemory-policy is "${policy}"; it must be "noeviction" or queued jobs can be evicted`);
  }
}
