import type { Redis } from 'ioredis';
import { createMailTransport, type MailTransport } from '../adapters/mail/mail-transport';
import { type Db, createDb } from '../adapters/db/database';
import { type QueueStore, type Queues, createPostgresQueues, createQueues, createRedis } from '../jobs/queues';
import { type Clock, systemClock } from './clock';
import type { Config } from './config';
import { type Logger, createLogger } from './logger';

/** Everything a use case may touch, built once per process in an entry point and passed down. */
export interface Deps {
  config: Config;
  db: Db;
  /** Where the queues live: Redis, except in the demo's embedded mode (see jobs/queues.ts). */
  queueStore: QueueStore;
  /**
   * The Redis connection of the queues, for what only Redis has (PING, CONFIG, keys). When the
   * queues are on PostgreSQL (queueStore.kind 'postgres') there is no Redis, and any use of this
   * throws an error that says so.
   */
  redis: Redis;
  queues: Queues;
  mailer: MailTransport;
  clock: Clock;
  logger: Logger;
}

export interface DepsOverrides {
  clock?: Clock;
  logger?: Logger;
  /** Queues on BullMQ's PostgreSQL backend instead of Redis (the demo's embedded mode). */
  queueStore?: QueueStore;
}

export function createDeps(config: Config, overrides: DepsOverrides = {}): Deps {
  const logger = overrides.logger ?? createLogger(config.logLevel);
  const queueStore = overrides.queueStore ?? { kind: 'redis' };
  let redis: Redis;
  let queues: Queues;
  if (queueStore.kind === 'redis') {
    redis = createRedis(config.redisUrl);
    // Without a listener ioredis prints every reconnect failure as an unhandled error event.
    redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis connection error'));
    queues = createQueues(redis, config.queuePrefix);
  } else {
    redis = noRedis();
    queues = createPostgresQueues(queueStore.url, config.queuePrefix);
  }
  return {
    config,
    db: createDb(config.databaseUrl),
    queueStore,
    redis,
    queues,
    mailer: createMailTransport({
      smtpUrl: config.smtpUrl,
      outboxDir: config.outboxDir,
      from: config.mailFrom,
      maxAttachmentBytes: config.limits.maxAttachmentBytes,
      logger,
    }),
    clock: overrides.clock ?? systemClock,
    logger,
  };
}

export async function closeDeps(deps: Deps): Promise<void> {
  deps.mailer.close();
  await deps.queues.close();
  await deps.db.destroy();
  if (deps.queueStore.kind === 'redis') deps.redis.disconnect();
}

/**
 * Stands where the Redis connection would be when the queues run on PostgreSQL: any use fails with
 * a message naming the mistake, rather than a TypeError from an undefined, or a silent connection to
 * whatever Redis the configuration names.
 */
function noRedis(): Redis {
  return new Proxy({} as Redis, {
    get(_target, property) {
      // Symbols are how inspection and printing look at an object; let them see an empty one.
      if (typeof property === 'symbol') return undefined;
      throw new Error(`deps.redis.${String(property)}: this process runs its queues on PostgreSQL (the demo's embedded mode) and has no Redis`);
    },
  });
}
