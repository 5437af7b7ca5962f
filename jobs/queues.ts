import { Queue, type JobsOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { type Payload, type QueueName, QUEUE_NAMES, defaultJobOptions, jobIdFor, queueCatalog } from './catalog';

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
  const queues = new Map<QueueName, Queue>(
    QUEUE_NAMES.map((name) => [name, new Queue(name, { connection, prefix, defaultJobOptions })]),
  );
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
