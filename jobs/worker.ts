import { performance } from 'node:perf_hooks';
import { type Job, type Worker } from 'bullmq';
import type { Deps } from '../src/deps';
import type { Logger } from '../src/logger';
import type { JobTimings } from '../src/metrics';
import { type QueueName, QUEUE_NAMES } from './catalog';
import { createProcessors } from './processors';
import { openWorkerConnection, payloadIds } from './queues';

export interface RunningWorkers {
  workers: Worker[];
  /** Stops taking jobs and waits up to `timeoutMs` (default SHUTDOWN_GRACE_MS) for active ones. */
  close(timeoutMs?: number): Promise<void>;
}

export interface WorkerOptions {
  /** Receives each job's duration and outcome, for /metrics. */
  timings?: JobTimings;
}

/** Periodic housekeeping jobs log their completion at debug level; the rest at info. */
const QUIET_QUEUES: ReadonlySet<QueueName> = new Set(['inbox-scan', 'reconcile']);

/** A logger for one job: every line carries the queue, the job id, the attempt and the payload's ids. */
export function jobLogger(logger: Logger, queue: QueueName, job: Job): Logger {
  return logger.child({ queue, jobId: job.id, attempt: job.attemptsMade + 1, ...payloadIds(job.data) });
}

/**
 * Starts a BullMQ worker per queue in this process. Several processes (on several machines) can run
 * this against the same Redis and PostgreSQL: BullMQ hands each job to one worker at a time, and
 * PostgreSQL constraints make a job that runs twice (after a lost lock) take effect once.
 */
export function startWorkers(deps: Deps, queues: readonly QueueName[] = QUEUE_NAMES, opts: WorkerOptions = {}): RunningWorkers {
  const processors = createProcessors(deps);
  const concurrency: Partial<Record<QueueName, number>> = {
    'ingest-file': deps.config.concurrency.ingest,
    'ingest-chunk': deps.config.concurrency.ingest,
    'rate-file': deps.config.concurrency.rate,
    'deliver-email': deps.config.concurrency.deliver,
  };
  const connection = openWorkerConnection(deps.queueStore, deps.config.redisUrl, deps.config.queuePrefix, (err: Error) =>
    deps.logger.warn({ err: err.message }, 'worker redis connection error'),
  );
  // The jobs running in this process, with the lock token each was taken with, so a shutdown that
  // runs out of time can hand them back to the queue instead of leaving them locked.
  const active = new Map<string, { job: Job; token: string | undefined; queue: QueueName }>();

  const workers = queues.map((name) => {
    const processor = processors[name];
    const worker = connection.worker(
      name,
      async (job: Job, token?: string) => {
        const log = jobLogger(deps.logger, name, job);
        const key = `${name}:${job.id}`;
        const started = performance.now();
        active.set(key, { job, token, queue: name });
        log.debug('job started');
        try {
          const result = await processor(job, log);
          const seconds = (performance.now() - started) / 1000;
          opts.timings?.observeJob(name, 'completed', seconds);
          log[QUIET_QUEUES.has(name) ? 'debug' : 'info']({ durationMs: Math.floor(seconds * 1000) }, 'job completed');
          return result;
        } catch (err) {
          opts.timings?.observeJob(name, 'failed', (performance.now() - started) / 1000);
          throw err;
        } finally {
          active.delete(key);
        }
      },
      {
        concurrency: concurrency[name] ?? 1,
        // Locks are renewed every lockDuration/2 while a job runs; a worker that dies loses its lock and
        // the job is handed to another. A job that stalls twice fails and waits for an operator.
        lockDuration: 60_000,
        stalledInterval: 30_000,
        maxStalledCount: 1,
      },
    );
    const log = deps.logger.child({ queue: name });
    worker.on('failed', (job, err) => {
      const final = !job || job.attemptsMade >= (job.opts.attempts ?? 1) || err.name === 'UnrecoverableError';
      (job ? jobLogger(deps.logger, name, job) : log).warn({ attemptsMade: job?.attemptsMade, final, err: err.message }, final ? 'job failed; waiting for an operator' : 'job failed; will retry');
    });
    worker.on('error', (err) => log.error({ err: err.message }, 'worker error'));
    return worker;
  });
  deps.logger.info({ queues, prefix: deps.config.queuePrefix }, 'workers started');
  return {
    workers,
    async close(timeoutMs = deps.config.shutdownGraceMs) {
      // Stop taking jobs and let active ones finish. Past the deadline, hand each unfinished job back
      // to waiting (its lock released) so another worker starts it at once rather than after the
      // lock expires; every use case is safe to run again.
      if (active.size > 0) deps.logger.info({ active: [...active.keys()], graceMs: timeoutMs }, 'waiting for active jobs to finish');
      const graceful = Promise.all(workers.map((w) => w.close()));
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), timeoutMs);
      });
      const outcome = await Promise.race([graceful.then(() => 'done' as const), deadline]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        const released: string[] = [];
        for (const { job, token, queue } of active.values()) {
          try {
            await job.moveToWait(token);
            released.push(`${queue}:${job.id}`);
          } catch (err) {
            deps.logger.warn({ queue, jobId: job.id, err: (err as Error).message }, 'could not release job; it returns to waiting when its lock expires');
          }
        }
        deps.logger.warn({ timeoutMs, released }, 'active jobs did not finish in time; released them back to waiting');
        // BullMQ's close() cannot be hurried once started; drop the connections instead.
        await Promise.all(workers.map((w) => w.disconnect().catch(() => undefined)));
      }
      connection.close();
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
    deps.logger.warn(
      { policy },
      `Redis maxmemory-policy is "${policy}"; it must be "noeviction" or Redis may evict queued jobs under memory pressure. ` +
        'Fix: redis-cli CONFIG SET maxmemory-policy noeviction, and set "maxmemory-policy noeviction" in redis.conf so it survives a restart.',
    );
  }
}
