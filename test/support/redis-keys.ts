import type { Redis } from 'ioredis';

/** Every Redis key under `prefix:`, found with SCAN (never KEYS, which blocks a shared server). */
export async function keysUnder(redis: Redis, prefix: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    found.push(...keys);
    cursor = next;
  } while (cursor !== '0');
  return found;
}

/**
 * What Redis losing its data looks like to one test world: every key under its queue prefix gone
 * (jobs, schedulers, locks, events). The shared Redis is never flushed; other worlds keep theirs.
 */
export async function loseQueueData(redis: Redis, prefix: string): Promise<number> {
  const keys = await keysUnder(redis, prefix);
  let deleted = 0;
  for (let i = 0; i < keys.length; i += 500) deleted += await redis.unlink(...keys.slice(i, i + 500));
  return deleted;
}
