import {
  type JobProgress,
  type JobsOptions,
  type PostgresConnectionOptions,
  type PostgresPoolConfig,
  type PostgresQueueBackend,
  type Processor,
  Queue,
  QueueEvents,
  Worker,
  type WorkerOptions,
  createPostgresBackend,
} from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import pg from 'pg';
import { type Payload, type QueueName, QUEUE_NAMES, defaultJobOptions, jobIdFor, queueCatalog } from './catalog';

/**
 * Where BullMQ keeps the queues. Production runs on Redis, always. BullMQ's PostgreSQL backend is
 * for the demo's embedded mode only, where there is no Redis to be had: `url` is then the embedded
 * queue database. Use cases never see the difference; only the code here builds BullMQ objects.
 */
export type QueueStore = { kind: 'redis' } | { kind: 'postgres'; url: string };

/**
 * BullMQ's connection to a PostgreSQL queue database. Each queue, worker and event listener builds
 * its own pool from it (plus one LISTEN connection for a worker or listener); two connections each
 * are plenty when every query goes to one embedded session anyway.
 */
function postgresConnection(url: string): PostgresPoolConfig {
  return { connectionString: url, max: 2, application_name: 'billing-engine' };
}

/*
 * BullMQ types each class by its backend (Queue<..., RedisQueueBackend> by default), though the API
 * the engine uses is the same on both; the engine holds every queue, worker and listener by that
 * default type. These casts are the one place a PostgreSQL-backed instance is given it.
 */
const asQueue = (queue: Queue<unknown, unknown, string, unknown, unknown, string, PostgresQueueBackend, PostgresConnectionOptions>) => queue as unknown as Queue;
const asWorker = (worker: Worker<unknown, unknown, string, PostgresQueueBackend, JobProgress, PostgresConnectionOptions>) => worker as unknown as Worker;
const asQueueEvents = (events: QueueEvents<unknown, PostgresQueueBackend, PostgresConnectionOptions>) => events as unknown as QueueEvents;

export type Queues = {
  readonly prefix: string;
  get(name: QueueName): Queue;
  all(): Queue[];
  enqueue<Q extends QueueName>(name: Q, payload: Payload<Q>, opts?: JobsOptions): Promise<string | undefined>;
  close(): Promise<void>;
};

/** BullMQ's blocking commands need ioredis to retry forever rather than fail a request. */
export function redisOptions(): RedisOptions {
  return { maxRetriesPerRequest: null, enableReadyCheck: true, connectionName: 'billing-engine' };
}

export function createRedis(redisUrl: string): Redis {
  return new Redis(redisUrl, redisOptions());
}

export function createQueues(connection: Redis, prefix: string): Queues {
  return queuesOf(prefix, (name) => new Queue(name, { connection, prefix, defaultJobOptions }));
}

/**
 * The queues on a PostgreSQL queue database (the embedded demo). BullMQ namespaces them by schema
 * there, not by prefix; `prefix` is kept for display only.
 */
export function createPostgresQueues(url: string, prefix: string): Queues {
  return queuesOf(prefix, (name) => asQueue(new Queue(name, { connection: postgresConnection(url), defaultJobOptions }, createPostgresBackend)));
}

function queuesOf(prefix: string, open: (name: QueueName) => Queue): Queues {
  const queues = new Map<QueueName, Queue>(QUEUE_NAMES.map((name) => [name, open(name)]));
  const get = (name: QueueName): Queue => {
    const q = queues.get(name);
    if (!q) throw new Error(`unknown queue ${name}`);
    return q;
  };
  return {
    prefix,
    get,
    all: () => [...queues.values()],
    async enqueue(name, payload, opts) {
      const data = queueCatalog[name].parse(payload) as object;
      const jobId = jobIdFor(name, payload);
      const job = await get(name).add(name, data, { ...(jobId ? { jobId } : {}), ...opts });
      return job.id;
    },
    async close() {
      await Promise.all([...queues.values()].map((q) => q.close()));
    },
  };
}

/** Builds the workers of one startWorkers call on the store; closed after them. */
export interface WorkerConnection {
  worker(name: QueueName, processor: Processor, opts: Omit<WorkerOptions, 'connection' | 'prefix'>): Worker;
  /** Drops the connection, once the workers are closed. */
  close(): void;
}

/**
 * On Redis, the workers of a process share one connection of their own (blocking commands must not
 * hold up the queues' connection). On PostgreSQL each worker has its own small pool.
 */
export function openWorkerConnection(store: QueueStore, redisUrl: string, prefix: string, onError: (err: Error) => void): WorkerConnection {
  if (store.kind === 'postgres') {
    return {
      worker: (name, processor, opts) => asWorker(new Worker(name, processor, { ...opts, connection: postgresConnection(store.url) }, createPostgresBackend)),
      close: () => undefined,
    };
  }
  const connection = createRedis(redisUrl);
  connection.on('error', onError);
  return {
    worker: (name, processor, opts) => new Worker(name, processor, { ...opts, connection, prefix }),
    close: () => connection.disconnect(),
  };
}

/** A QueueEvents listener on the store: job completions and failures as they happen. */
export function openQueueEvents(store: QueueStore, name: QueueName, redisUrl: string, prefix: string): QueueEvents {
  if (store.kind === 'postgres') return asQueueEvents(new QueueEvents(name, { connection: postgresConnection(store.url) }, createPostgresBackend));
  return new QueueEvents(name, { connection: { url: redisUrl }, prefix });
}

/** Resolves when the PostgreSQL queue database answers. */
export async function pingQueueDatabase(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Every state a job can be in; `paused` is a flag on the queue, not a state of its jobs. */
export const JOB_STATES = ['waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized', 'waiting-children'] as const;
export type JobStateName = (typeof JOB_STATES)[number];

export interface QueueStatus {
  name: QueueName;
  paused: boolean;
  counts: Record<JobStateName, number>;
  /** Seconds since the oldest job still waiting was added; null when nothing waits. */
  oldestWaitingAgeSeconds: number | null;
  /** Worker connections on this queue, from Redis CLIENT LIST (all processes and machines). */
  workers: number;
}

/**
 * What an operator wants to know about one queue, in one place for the API, /metrics and
 * `billing status`. Ages are measured against `nowMs` from the wall clock, because BullMQ stamps
 * jobs with the wall clock of the process that added them.
 */
export async function describeQueue(queues: Queues, name: QueueName, nowMs: number): Promise<QueueStatus> {
  const queue = queues.get(name);
  const [counts, oldest, workers, paused] = await Promise.all([
    queue.getJobCounts(...JOB_STATES) as Promise<Record<JobStateName, number>>,
    // BullMQ pushes new jobs on the left of the wait list; ascending order reads from the oldest end.
    queue.getJobs(['wait'], 0, 0, true),
    queue.getWorkersCount(),
    queue.isPaused(),
  ]);
  const addedAt = oldest[0]?.timestamp;
  return {
    name,
    paused,
    counts,
    oldestWaitingAgeSeconds: addedAt === undefined ? null : Math.max(0, Math.floor((nowMs - addedAt) / 1000)),
    workers,
  };
}

export function describeQueues(queues: Queues, nowMs: number): Promise<QueueStatus[]> {
  return Promise.all(QUEUE_NAMES.map((name) => describeQueue(queues, name, nowMs)));
}

/** The queue of that name, or undefined: for routes that take a queue name from a URL. */
export function findQueueName(name: string): QueueName | undefined {
  return (QUEUE_NAMES as readonly string[]).includes(name) ? (name as QueueName) : undefined;
}

/**
 * A job's payload reduced to its ids (and a billing run's period), for listings and log lines.
 * Payloads hold ids by design; this keeps anything else a future payload might carry (a name, an
 * address) out of API answers and logs.
 */
export function payloadIds(data: unknown): Record<string, number | string> {
  const ids: Record<string, number | string> = {};
  if (typeof data !== 'object' || data === null) return ids;
  for (const [key, value] of Object.entries(data)) {
    const isId = /^[a-z][A-Za-z]*Id$/.test(key);
    if (isId && typeof value === 'number' && Number.isSafeInteger(value)) ids[key] = value;
    else if (isId && typeof value === 'string' && /^[A-Za-z0-9_.:-]{1,64}$/.test(value)) ids[key] = value;
    else if (key === 'period' && typeof value === 'string' && /^\d{4}-\d{2}$/.test(value)) ids[key] = value;
  }
  return ids;
}
