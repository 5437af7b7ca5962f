import type { Db } from '../adapters/db/database';
import { migrationSource } from '../adapters/db/migrations/index';
import { pingQueueDatabase } from '../jobs/queues';
import type { Deps } from './deps';

/** Resolves with the value, or rejects after `ms`, so a dead dependency answers instead of hanging. */
export function within<T>(ms: number, work: Promise<T>): Promise<T> {
  return Promise.race([
    work,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref()),
  ]);
}

/**
 * Calls that arrive while a read is under way share it instead of starting their own; once it has
 * settled, the next call reads again. `keepUntilNextTurn` keeps a settled read for the rest of the
 * event-loop turn, so callers awaited one after another in that turn (prom-client collecting each
 * gauge of one scrape) still share it. A read that may hang should carry its own timeout (within).
 */
export function shareInFlight<T>(read: () => Promise<T>, opts: { keepUntilNextTurn?: boolean } = {}): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    if (pending) return pending;
    const mine = read();
    pending = mine;
    const release = () => {
      if (pending === mine) pending = undefined;
    };
    const settled = () => (opts.keepUntilNextTurn ? setImmediate(release) : release());
    mine.then(settled, settled);
    return mine;
  };
}

export interface MigrationState {
  /** Migrations this code lists (adapters/db/migrations/index.ts) that the database has not run. */
  pending: string[];
  /** Migrations the database has run that this code does not know: a newer release migrated it. */
  unknown: string[];
}

/**
 * Compares knex's record of completed migrations with the list in the code. It only reads: knex's
 * own `migrate.list` would create the bookkeeping table on a fresh database, which a readiness
 * probe must never do.
 */
export async function readMigrationState(db: Db): Promise<MigrationState> {
  const expected = await migrationSource.getMigrations([]);
  const table = await db.raw<{ rows: Array<{ exists: boolean }> }>("SELECT to_regclass('knex_migrations') IS NOT NULL AS exists");
  const completed = table.rows[0]?.exists ? (await db('knex_migrations').select<Array<{ name: string }>>('name')).map((r) => r.name) : [];
  return {
    pending: expected.filter((name) => !completed.includes(name)),
    unknown: completed.filter((name) => !expected.includes(name)),
  };
}

/** The problem with the schema in words an operator can act on, or undefined when it is current. */
export function describeMigrationProblem(state: MigrationState): string | undefined {
  if (state.pending.length === 0) return undefined;
  return `database schema is not current: ${state.pending.length} migration(s) pending (${state.pending.join(', ')}); run \`billing migrate\``;
}

/**
 * Waits for PostgreSQL and Redis at startup with growing pauses and a clear message each time,
 * instead of crashing and being restarted in a tight loop by a supervisor. With `requireCurrentSchema`
 * it also waits for the migrations to be applied (a deploy may run `billing migrate` beside it).
 */
export async function waitForServices(deps: Deps, maxWaitMs = 60_000, opts: { requireCurrentSchema?: boolean } = {}): Promise<void> {
  const started = Date.now();
  for (let attempt = 1, pause = 500; ; attempt += 1, pause = Math.min(pause * 2, 10_000)) {
    const problems: string[] = [];
    let dbUp = true;
    await within(3000, deps.db.raw('SELECT 1')).catch((e: Error) => {
      dbUp = false;
      problems.push(`PostgreSQL unreachable (${e.message}): check DATABASE_URL and that the server is running`);
    });
    const store = deps.queueStore;
    if (store.kind === 'redis') {
      await within(3000, deps.redis.ping()).catch((e: Error) =>
        problems.push(`Redis unreachable (${e.message}): check REDIS_URL and that the server is running`),
      );
    } else {
      await within(3000, pingQueueDatabase(store.url)).catch((e: Error) =>
        problems.push(`the queue database (BullMQ on PostgreSQL) unreachable (${e.message})`),
      );
    }
    if (dbUp && opts.requireCurrentSchema) {
      await within(3000, readMigrationState(deps.db)).then(
        (state) => {
          const problem = describeMigrationProblem(state);
          if (problem) problems.push(problem);
        },
        (e: Error) => problems.push(`could not read the applied migrations (${e.message})`),
      );
    }
    if (problems.length === 0) return;
    if (Date.now() - started + pause > maxWaitMs) {
      throw new Error(`${problems.join('; ')}. Gave up after ${attempt} attempts over ${Math.floor((Date.now() - started) / 1000)} s.`);
    }
    deps.logger.warn({ attempt, retryInMs: pause }, `waiting for services: ${problems.join('; ')}`);
    await new Promise((r) => setTimeout(r, pause));
  }
}

/**
 * Runs `stop` once on SIGTERM or SIGINT, then exits 0; a second signal exits 1 at once. `stop` is
 * expected to bound itself (workers get a grace period); `hardDeadlineMs` is the backstop for a
 * connection that never closes, so a supervisor's stop never hangs.
 */
export function onShutdown(deps: Pick<Deps, 'logger'>, stop: () => Promise<void>, hardDeadlineMs?: number): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) {
      deps.logger.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    stopping = true;
    deps.logger.info({ signal }, 'shutting down');
    if (hardDeadlineMs !== undefined) {
      setTimeout(() => {
        deps.logger.error({ hardDeadlineMs }, 'shutdown did not finish in time; exiting');
        process.exit(1);
      }, hardDeadlineMs).unref();
    }
    stop().then(
      () => {
        deps.logger.info({ signal }, 'stopped');
        process.exit(0);
      },
      (err: unknown) => {
        deps.logger.error({ err: (err as Error).message }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => handler('SIGTERM'));
  process.on('SIGINT', () => handler('SIGINT'));
}
