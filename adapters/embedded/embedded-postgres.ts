import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { runMigrations } from 'bullmq';
import pg from 'pg';
import { type PgliteServer, servePglite } from './pglite-server';

/** BullMQ's schema in the queue database (BullMQ's default). */
export const QUEUE_SCHEMA = 'bullmq';

export interface EmbeddedPostgresOptions {
  /** Keeps both databases in this folder between runs; without it they live in memory. */
  dataDir?: string;
  /** Told when an embedded session looks stuck. */
  onWarning?: (message: string) => void;
}

export interface EmbeddedPostgres {
  /** The billing database, for DATABASE_URL. */
  readonly databaseUrl: string;
  /** The queue database: BullMQ's PostgreSQL backend keeps its jobs here, where Redis would. */
  readonly queueUrl: string;
  /** Where the data is kept, or undefined when in memory. */
  readonly dataDir: string | undefined;
  /** False when the billing database was there from an earlier run. */
  readonly created: boolean;
  /** Disconnects every client, closes both databases (writing them out) and frees the folder. */
  stop(): Promise<void>;
}

/**
 * PostgreSQL inside this process, for the demo where no server is reachable: two PGlite databases,
 * each served on 127.0.0.1 (a free port) so the engine's pg driver, knex, COPY and BullMQ's
 * PostgreSQL backend use them exactly as they would a server.
 *
 * Two databases, not one, because PGlite is a single session shared by every connection (see
 * SessionScheduler): a transaction of the engine holds the session, and BullMQ's lock renewals and
 * job fetches must not queue behind it, nor could a transaction that enqueued a job ever finish.
 * The split also mirrors production, where jobs live in Redis apart from the facts in PostgreSQL.
 */
export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const dataDir = opts.dataDir === undefined ? undefined : path.resolve(opts.dataDir);
  const cleanups: Array<() => Promise<void>> = [];
  const stop = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  };
  try {
    if (dataDir) cleanups.push(await lockDataDir(dataDir));
    const billingDir = dataDir && path.join(dataDir, 'billing');
    const queueDir = dataDir && path.join(dataDir, 'queues');
    const created = isNewDataDir(billingDir);

    const billing = await PGlite.create(billingDir ?? 'memory://');
    cleanups.push(() => billing.close());
    // A fresh queue database starts as a copy of the fresh billing one: loading a dump takes well
    // under a second where a second initdb takes several.
    const template = created && isNewDataDir(queueDir) ? await billing.dumpDataDir('none') : undefined;
    const queues = await PGlite.create(queueDir ?? 'memory://', template ? { loadDataDir: template } : {});
    cleanups.push(() => queues.close());

    const billingServer = await servePglite(billing, { onWarning: opts.onWarning });
    cleanups.push(() => billingServer.close());
    const queueServer = await servePglite(queues, { onWarning: opts.onWarning });
    cleanups.push(() => queueServer.close());
    await prepareQueueDatabase(queueServer);

    return { databaseUrl: billingServer.url, queueUrl: queueServer.url, dataDir, created, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function isNewDataDir(dir: string | undefined): boolean {
  return dir === undefined || !existsSync(path.join(dir, 'PG_VERSION'));
}

/**
 * Creates or upgrades BullMQ's schema and points the session at it. On a server BullMQ sets its
 * search_path per connection, with a startup option; PGlite's one session ignores startup options,
 * so it is set once for the session, which every connection shares.
 */
async function prepareQueueDatabase(server: PgliteServer): Promise<void> {
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  try {
    await client.query(`SET search_path TO ${QUEUE_SCHEMA}`);
    await runMigrations(client, QUEUE_SCHEMA);
  } finally {
    await client.end();
  }
}

/**
 * PGlite does not guard its folder against a second process the way a PostgreSQL server does
 * (postmaster.pid), and two writers would corrupt it: a pid file refuses a second demo while the
 * first runs, and a stale one (its process gone) is taken over.
 */
async function lockDataDir(dir: string): Promise<() => Promise<void>> {
  await mkdir(dir, { recursive: true });
  const lockFile = path.join(dir, 'embedded.pid');
  for (let attempt = 0; ; attempt += 1) {
    try {
      const handle = await open(lockFile, 'wx');
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return () => rm(lockFile, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      const holder = Number((await readFile(lockFile, 'utf8').catch(() => '')).trim());
      if (Number.isSafeInteger(holder) && holder > 0 && (holder === process.pid || processIsAlive(holder))) {
        throw new Error(`the embedded PostgreSQL in ${dir} is in use by process ${holder}; wait for it to finish, or set DEMO_PGLITE_DIR to another folder`, { cause: err });
      }
      await rm(lockFile, { force: true });
    }
  }
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
