import type { Deps } from './deps';

/** Resolves with the value, or rejects after `ms`, so a dead dependency answers instead of hanging. */
export function within<T>(ms: number, work: Promise<T>): Promise<T> {
  return Promise.race([
    work,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref()),
  ]);
}

/**
 * Waits for PostgreSQL and Redis at startup with growing pauses and a clear message each time,
 * instead of crashing and being restarted in a tight loop by a supervisor.
 */
export async function waitForServices(deps: Deps, maxWaitMs = 60_000): Promise<void> {
  const started = Date.now();
  for (let attempt = 1, pause = 500; ; attempt += 1, pause = Math.min(pause * 2, 10_000)) {
    const problems: string[] = [];
    await within(3000, deps.db.raw('SELECT 1')).catch((e: Error) => problems.push(`PostgreSQL unreachable (${e.message})`));
    await within(3000, deps.redis.ping()).catch((e: Error) => problems.push(`Redis unreachable (${e.message})`));
    if (problems.length === 0) return;
    if (Date.now() - started + pause > maxWaitMs) {
      throw new Error(`${problems.join('; ')}; gave up after ${attempt} attempts. Check DATABASE_URL and REDIS_URL.`);
    }
    deps.logger.warn({ attempt, retryInMs: pause }, `waiting for services: ${problems.join('; ')}`);
    await new Promise((r) => setTimeout(r, pause));
  }
}

/** Runs `stop` once on SIGTERM or SIGINT, then exits; a second signal exits at once. */
export function onShutdown(deps: Pick<Deps, 'logger'>, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    deps.logger.info({ signal }, 'shutting down');
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        deps.logger.error({ err: (err as Error).message }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => handler('SIGTERM'));
  process.on('SIGINT', () => handler('SIGINT'));
}
