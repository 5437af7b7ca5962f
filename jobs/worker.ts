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
        lockDuration: deps.config.workerLocks.lockDurationMs,
        stalledInterval: deps.config.workerLocks.stalledIntervalMs,
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

/** The job schedulers the workers keep in Redis: queue and scheduler id. */
export const REPEATING_JOBS: ReadonlyArray<readonly [QueueName, string]> = [
  ['inbox-scan', 'inbox-scan'],
  ['reconcile', 'reconcile'],
  ['billing-run', 'monthly-close'],
];

/** Repeating jobs: the inbox scan, the reconciler, and the monthly close on the first days of each month. */
export async function scheduleRepeatingJobs(deps: Deps): Promise<void> {
  await deps.queues.get('inbox-scan').upsertJobScheduler('inbox-scan', { every: deps.config.inbox.scanEveryMs }, { name: 'inbox-scan', data: {} });
  await deps.queues.get('reconcile').upsertJobScheduler('reconcile', { every: 60_000 }, { name: 'reconcile', data: {} });
  // Daily on days 1-5 at 06:00 UTC: a period closes at different instants in different time zones.
  // Each firing closes the month before under one billing run per period (its request key), which
  // the later days carry on for partnerships whose period had not ended yet.
  await deps.queues.get('billing-run').upsertJobScheduler('monthly-close', { pattern: '0 6 1-5 * *', tz: 'UTC' }, { name: 'billing-run', data: { requestedBy: 'scheduler' } });
}

export interface RepeatingJobsKeeper {
  /**
   * Looks now: when a scheduler is missing (Redis lost its data), registers them all again and
   * enqueues a reconcile. `reconcile: true` enqueues one in any case. Resolves true when it enqueued
   * a reconcile. Checks run one after another.
   */
  check(reason: string, opts?: { reconcile?: boolean }): Promise<boolean>;
  stop(): void;
}

/**
 * Registers the repeating jobs, enqueues the start-up reconcile, and keeps both true while the
 * process runs. Redis holds work, not facts: when it loses its data (FLUSHALL, a restart without
 * persistence, a failover to an empty replica) the schedulers go with it, and with them the
 * reconciler that puts PostgreSQL's unfinished work back on the queues. So every
 * `SCHEDULE_CHECK_EVERY_MS` this checks that each scheduler is still there and, if one is not,
 * registers them again and reconciles at once; and each time the Redis connection is ready again
 * after a drop it reconciles in any case, since even a restart that kept its snapshot may have lost
 * the jobs added after it. A marker key written at start tells a loss apart even when BullMQ has
 * already put a scheduler back by itself. Every worker process runs one; registering and
 * reconciling are safe to do twice.
 */
export async function keepRepeatingJobs(deps: Deps, opts: { checkEveryMs?: number } = {}): Promise<RepeatingJobsKeeper> {
  const log = deps.logger.child({ component: 'repeating-jobs' });
  // A key that only goes when Redis loses its data. The schedulers alone cannot say so: BullMQ puts
  // a scheduler back by itself when a worker takes one of its jobs that was in hand at the loss.
  const onRedis = deps.queueStore.kind === 'redis';
  const markerKey = `${deps.config.queuePrefix}:data-marker`;
  const markData = async () => {
    if (onRedis) await deps.redis.set(markerKey, new Date().toISOString(), 'NX');
  };
  await scheduleRepeatingJobs(deps);
  await markData();
  await deps.queues.enqueue('reconcile', {});
  const runCheck = async (reason: string, reconcileAnyway: boolean): Promise<boolean> => {
    const missing: string[] = [];
    if (onRedis && (await deps.redis.exists(markerKey)) === 0) missing.push('data-marker');
    for (const [queue, id] of REPEATING_JOBS) {
      if (!(await deps.queues.get(queue).getJobScheduler(id))) missing.push(id);
    }
    if (missing.length > 0) {
      log.warn({ missing, reason }, 'repeating jobs are missing from Redis (its data was lost); registering them again and reconciling from PostgreSQL');
      await scheduleRepeatingJobs(deps);
      await markData();
    } else if (reconcileAnyway) {
      log.info({ reason }, 'reconciling from PostgreSQL');
    }
    if (missing.length === 0 && !reconcileAnyway) return false;
    await deps.queues.enqueue('reconcile', {});
    return true;
  };
  // Checks run one after another; a periodic one is skipped while another is under way (waiting,
  // say, for Redis to come back).
  let busy = 0;
  let chain: Promise<unknown> = Promise.resolve();
  const check = (reason: string, o: { reconcile?: boolean } = {}): Promise<boolean> => {
    busy += 1;
    const run = chain.then(() => runCheck(reason, o.reconcile === true)).finally(() => {
      busy -= 1;
    });
    chain = run.catch(() => undefined);
    return run;
  };
  const onError = (err: unknown) => log.warn({ err: (err as Error).message }, 'could not check the repeating jobs; trying again at the next check');
  const timer = setInterval(() => {
    if (busy === 0) void check('periodic check').catch(onError);
  }, opts.checkEveryMs ?? deps.config.scheduleCheckEveryMs);
  timer.unref();
  // 'ready' comes again each time ioredis has reconnected (the start-up one came before this).
  const onReady = () => void check('redis connection ready again', { reconcile: true }).catch(onError);
  if (deps.queueStore.kind === 'redis') deps.redis.on('ready', onReady);
  return {
    check,
    stop() {
      clearInterval(timer);
      if (deps.queueStore.kind === 'redis') deps.redis.off('ready', onReady);
    },
  };
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
