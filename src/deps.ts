import type { Redis } from 'ioredis';
import { createMailTransport, type MailTransport } from '../adapters/mail/mail-transport';
import { type Db, createDb } from '../adapters/db/database';
import { type Queues, createQueues, createRedis } from '../jobs/queues';
import { type Clock, systemClock } from './clock';
import type { Config } from './config';
import { type Logger, createLogger } from './logger';

/** Everything a use case may touch, built once per process in an entry point and passed down. */
export interface Deps {
  config: Config;
  db: Db;
  redis: Redis;
  queues: Queues;
  mailer: MailTransport;
  clock: Clock;
  logger: Logger;
}

export interface DepsOverrides {
  clock?: Clock;
  logger?: Logger;
}

export function createDeps(config: Config, overrides: DepsOverrides = {}): Deps {
  const logger = overrides.logger ?? createLogger(config.logLevel);
  const redis = createRedis(config.redisUrl);
  // Without a listener ioredis prints every reconnect failure as an unhandled error event.
  redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis connection error'));
  return {
    config,
    db: createDb(config.databaseUrl),
    redis,
    queues: createQueues(redis, config.queuePrefix),
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
  deps.redis.disconnect();
}
