import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from 'bullmq';
import { migrateLatest } from '../../adapters/db/database';
import type { QueueName } from '../../jobs/catalog';
import { REPEATING_JOBS } from '../../jobs/worker';
import { loadConfig } from '../../src/config';
import { closeDeps, createDeps, type Deps } from '../../src/deps';
import { importPartnerships } from '../../src/use-cases/import-partnerships';
import { resendDelivery } from '../../src/use-cases/resend-delivery';
import { requestBillingRun } from '../../src/use-cases/run-billing-period';
import type { Dataset } from './dataset';
import { type FaultInjector, type Progress } from './injector';
import type { FaultMailbox } from './mailbox';
import type { Cleanup, OwnPostgres, OwnRedis } from './services';
import { type Snapshot, takeSnapshot } from './snapshot';
import { WorkerPool } from './workers';

/**
 * One run of the whole pipeline on the dataset, through the real entry points: the feeds are
 * dropped into the inbox, `billing worker` processes claim, ingest and rate them, a billing run is
 * requested as POST /billing-runs requests one, and the invoices go out by SMTP. With an injector, faults land on it as it
 * goes; the run ends when PostgreSQL says everything is finished, and is then snapshotted.
 *
 * Progress is read from PostgreSQL by polling: it is the source of truth, and while Redis is down,
 * restarted or flushed, queue events are exactly what cannot be relied on.
 */

export interface RunOptions {
  name: string;
  dataset: Dataset;
  postgres: OwnPostgres;
  redis: OwnRedis;
  mailbox: FaultMailbox;
  workers: number;
  /** INGEST_CHUNK_ROWS for the workers: records per chunk of a file, chunks being shared out between workers. */
  chunkRows: number;
  workDir: string;
  cleanup: Cleanup;
  /** `missingSchedulers` reads, on the harness's own connection, which job schedulers are not in Redis. */
  injector?: (pool: WorkerPool, missingSchedulers: () => Promise<string[]>) => FaultInjector;
  /** Give up when nothing has moved for this long (after the operator step). */
  stallTimeoutMs: number;
  log: (message: string) => void;
}

export interface RunResult {
  snapshot: Snapshot;
  durationMs: number;
  injector?: FaultInjector;
  workerStarts: number;
  unexpectedExits: WorkerPool['unexpectedExits'];
  operatorRetries: string[];
  billingRunJobs: number;
}

const FILE_DONE = ['rated', 'failed'];

/**
 * SCHEDULE_CHECK_EVERY_MS of the suite's workers: how often each checks that its job schedulers are
 * still in Redis (a minute by default). After Redis loses its data no worker is restarted: this
 * check, or the reconnect after a restart, is what puts the schedulers back and reconciles, so it
 * runs often enough for a short run.
 */
export const SCHEDULE_CHECK_EVERY_MS = 2000;

export async function runPipeline(opts: RunOptions): Promise<RunResult> {
  const { dataset, log } = opts;
  const database = `faults_${opts.name}`;
  await opts.postgres.createDatabase(database);
  const env = {
    DATABASE_URL: opts.postgres.url(database),
    REDIS_URL: opts.redis.url,
    SMTP_URL: opts.mailbox.url,
    MAIL_FROM: 'Billing <billing@faults.example>',
    INBOX_DIR: path.join(opts.workDir, 'inbox'),
    OUTBOX_DIR: path.join(opts.workDir, 'outbox'),
    QUEUE_PREFIX: `faults-${opts.name}`,
    // Info: the report reads from each worker's log when its start-up is over ('workers started')
    // and whether its schedule check found the schedulers gone after Redis lost its data.
    LOG_LEVEL: 'info',
    INBOX_SCAN_EVERY_MS: '1000',
    INBOX_SETTLE_MS: '0',
    INGEST_CHUNK_ROWS: String(opts.chunkRows),
    SCHEDULE_CHECK_EVERY_MS: String(SCHEDULE_CHECK_EVERY_MS),
    // An invoice's CSV lists its transactions: tens of thousands of rows for a big partnership.
    MAX_ATTACHMENT_BYTES: String(256 * 1024 ** 2),
  };
  const deps = createDeps(loadConfig({ ...env, LOG_LEVEL: 'silent' }));
  await mkdir(opts.workDir, { recursive: true });
  // While a server is down, the harness's own connections complain on every attempt: BullMQ prints
  // unheard queue errors and knex prints pool warnings to the console. They go to a log file instead.
  const harnessLog = createWriteStream(path.join(opts.workDir, 'harness.log'), { flags: 'a' });
  opts.cleanup.add(`close the ${opts.name} harness log`, () => new Promise((resolve) => harnessLog.end(resolve)));
  for (const q of deps.queues.all()) q.on('error', (err: Error) => harnessLog.write(`queue ${q.name}: ${err.message}\n`));
  (deps.db.client as { logger: { _warn?: (m: string) => void; _error?: (m: string) => void } }).logger._warn = (m) => harnessLog.write(`knex: ${m}\n`);
  const pool = new WorkerPool(env, opts.workers, path.join(opts.workDir, 'workers.log'), log);
  opts.cleanup.add(`kill the ${opts.name} run's workers`, () => Promise.resolve(pool.killRemaining()));
  const started = Date.now();
  const operatorRetries: string[] = [];
  let injector: FaultInjector | undefined;
  try {
    await migrateLatest(deps.db);
    await importPartnerships(deps, dataset.partnerships, 'faults');
    pool.startAll();
    await waitFor('a worker to run its start-up reconcile', 120_000, async () => {
      const counts = await deps.queues.get('reconcile').getJobCounts('completed', 'failed');
      return (counts.completed ?? 0) + (counts.failed ?? 0) > 0;
    });
    injector = opts.injector?.(pool, () => missingSchedulers(deps));
    const progress: Progress = { phase: 'ingest', fraction: 0 };
    const ticker = setInterval(() => injector?.tick(progress), 100);
    try {
      await dropFeeds(dataset, env.INBOX_DIR);
      log(`  dropped ${dataset.files.length} feeds (${dataset.totals.read} rows) into the inbox`);

      await settle(opts, deps, progress, injector, operatorRetries, async () => {
        const p = await ingestProgress(deps, dataset);
        progress.fraction = p.fraction;
        // Ingest faults due late (a fraction reached only as the last file finished) still fire here,
        // before the billing request: each phase gets the faults planned for it.
        return { done: p.done && (injector?.pendingIn('ingest') ?? 0) === 0, marker: `${p.fraction.toFixed(4)}/${p.statuses}` };
      });
      log(`  ingested and rated after ${((Date.now() - started) / 1000).toFixed(1)} s`);

      progress.phase = 'billing';
      progress.fraction = 1;
      progress.billingRequestedAt = Date.now();
      // As POST /billing-runs does: a billing_runs row, queued, and its job.
      const { billingRunId } = await requestBillingRun(deps, { period: dataset.period, requestedBy: 'fault-suite' });
      await settle(opts, deps, progress, injector, operatorRetries, async () => {
        const run = await deps.db('billing_runs').where('id', billingRunId).first<{ status: string; error: string | null }>('status', 'error');
        if (run.status === 'failed') return { done: false, marker: run.status, fatal: `billing run ${billingRunId} failed: ${run.error}` };
        const { rows } = await deps.db.raw<{ rows: Array<{ status: string; n: number }> }>(
          `SELECT status, count(*)::int AS n FROM email_deliveries GROUP BY status ORDER BY status`);
        const open = rows.filter((r) => r.status === 'pending' || r.status === 'sending').reduce((n, r) => n + r.n, 0);
        const marker = `${run.status}/${rows.map((r) => `${r.status}:${r.n}`).join(',')}`;
        return { done: run.status === 'completed' && open === 0 && (injector?.remaining ?? 0) === 0, marker };
      }, billingRunId);
      log(`  invoiced and emailed after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      // A resend can itself be interrupted (the kill at the next accepted email may still be armed),
      // so the operator looks again until every unknown delivery is one the recipient has.
      for (let round = 1; await resolveUnknownDeliveries(deps, opts.mailbox, operatorRetries, log); round += 1) {
        if (round > 5) throw new Error(`${opts.name} run: unknown deliveries still not delivered after ${round - 1} rounds of resends`);
        await settle(opts, deps, progress, injector, operatorRetries, async () => {
          const [open] = await deps.db('email_deliveries').whereIn('status', ['pending', 'sending']).count<{ count: string }[]>('* as count');
          return { done: Number(open?.count) === 0, marker: String(open?.count) };
        });
        log(`  operator's resends (round ${round}) done after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      }
      progress.phase = 'done';
    } finally {
      clearInterval(ticker);
      await injector?.stop();
    }
    const stops = await pool.stopAll();
    const unclean = stops.filter((s) => s !== 'code 0' && s !== 'not running');
    if (unclean.length > 0) log(`  workers that did not stop cleanly on SIGTERM: ${unclean.join(', ')}`);
    const billingRunJobs = (await deps.db('billing_runs').count<{ count: string }[]>('* as count'))[0]?.count;
    const snapshot = await takeSnapshot(deps.db, opts.mailbox.messages());
    await opts.mailbox.saveAll(path.join(opts.workDir, 'mail'));
    return {
      snapshot,
      durationMs: Date.now() - started,
      ...(injector ? { injector } : {}),
      workerStarts: pool.starts,
      unexpectedExits: pool.unexpectedExits,
      operatorRetries,
      billingRunJobs: Number(billingRunJobs),
    };
  } finally {
    pool.killRemaining();
    await closeDeps(deps).catch(() => undefined);
  }
}

/** Drops every feed the way upstream systems do: written aside, then renamed into the partner's folder. */
async function dropFeeds(dataset: Dataset, inboxDir: string): Promise<void> {
  for (const f of dataset.files) {
    const target = path.join(inboxDir, f.partner, f.name);
    await mkdir(path.dirname(target), { recursive: true });
    await copyFile(f.path, `${target}.part`);
    await rename(`${target}.part`, target);
  }
}

async function ingestProgress(deps: Deps, dataset: Dataset): Promise<{ fraction: number; done: boolean; statuses: string }> {
  const { rows } = await deps.db.raw<{ rows: Array<{ status: string; n: number; ingested: string; rated: string }> }>(`
    SELECT status, count(*)::int AS n,
           coalesce(sum(CASE WHEN status IN ('parsed', 'rated') THEN rows_read ELSE records_committed END), 0)::text AS ingested,
           coalesce(sum(CASE WHEN status = 'rated' THEN rows_accepted ELSE 0 END), 0)::text AS rated
    FROM usage_files WHERE status <> 'duplicate' GROUP BY status ORDER BY status`);
  const ingested = rows.reduce((n, r) => n + Number(r.ingested), 0);
  const rated = rows.reduce((n, r) => n + Number(r.rated), 0);
  const finished = rows.filter((r) => FILE_DONE.includes(r.status)).reduce((n, r) => n + r.n, 0);
  return {
    fraction: (ingested / dataset.totals.read + rated / dataset.totals.accepted) / 2,
    done: finished === dataset.files.length,
    statuses: rows.map((r) => `${r.status}:${r.n}`).join(','),
  };
}

/**
 * Polls `check` until it reports done. When nothing has moved for a while and every planned fault
 * has fired, it does what an operator does with the dashboard: retries jobs that failed for good
 * (stalled twice, attempts used up) while their work is unfinished. Every retry is reported.
 */
async function settle(
  opts: RunOptions,
  deps: Deps,
  progress: Progress,
  injector: FaultInjector | undefined,
  operatorRetries: string[],
  check: () => Promise<{ done: boolean; marker: string; fatal?: string }>,
  billingRunId?: number,
): Promise<void> {
  let lastMarker = '';
  let lastChange = Date.now();
  let lastOperator = 0;
  for (;;) {
    // A failing check is a server down for a moment, not a result: try again.
    const result = await check().catch((err: unknown) => ({ done: false, marker: `error: ${(err as Error).message}`, fatal: undefined }));
    if (result.fatal !== undefined) throw new Error(`${opts.name} run: ${result.fatal}`);
    if (result.done) return;
    if (result.marker !== lastMarker) {
      lastMarker = result.marker;
      lastChange = Date.now();
    }
    const quietMs = Date.now() - lastChange;
    // The operator steps in once the planned faults are spent, or sooner when the run has been quiet
    // for long: faults planned for a later phase never come while the run waits on a job that
    // failed for good (a job killed mid-way twice fails as stalled, case 25).
    const operatorDue = (injector?.remaining ?? 0) === 0 ? quietMs > 45_000 : quietMs > 90_000;
    if (operatorDue && Date.now() - lastOperator > 45_000) {
      lastOperator = Date.now();
      const retried = await retryFailedWork(deps, billingRunId).catch((err: unknown) => [`(operator step failed: ${(err as Error).message})`]);
      for (const r of retried) opts.log(`  [operator] ${r}`);
      operatorRetries.push(...retried);
    }
    if (quietMs > opts.stallTimeoutMs) {
      throw new Error(`${opts.name} run: no progress for ${(quietMs / 1000).toFixed(0)} s in phase ${progress.phase} (${result.marker})`);
    }
    await sleep(500);
  }
}

/**
 * The documented procedure for a delivery left `unknown` (a worker died while sending it): ask the
 * recipient whether the message with that Message-ID arrived (here: look in the test mailbox); if
 * it did, leave it; if not, resend it. Returns whether anything was resent.
 */
async function resolveUnknownDeliveries(deps: Deps, mailbox: FaultMailbox, actions: string[], log: (m: string) => void): Promise<boolean> {
  const unknown = await deps.db('email_deliveries as d').join('invoices as i', 'i.id', 'd.invoice_id').where('d.status', 'unknown').orderBy('d.id')
    .select<{ id: string; message_id: string; number: string }[]>('d.id', 'd.message_id', 'i.number');
  const received = new Set(mailbox.messages().map((m) => m.messageId));
  let resent = false;
  for (const d of unknown) {
    let action: string;
    if (received.has(d.message_id)) action = `delivery ${d.id} of ${d.number} is unknown; the recipient has ${d.message_id}: left as it is`;
    else {
      await resendDelivery(deps, Number(d.id), { requestedBy: 'fault-suite operator' });
      resent = true;
      action = `delivery ${d.id} of ${d.number} is unknown; the recipient does not have ${d.message_id}: resent`;
    }
    log(`  [operator] ${action}`);
    actions.push(action);
  }
  return resent;
}

/** Failed jobs whose work PostgreSQL still shows unfinished, retried; returns what was retried and why it had failed. */
async function retryFailedWork(deps: Deps, billingRunId: number | undefined): Promise<string[]> {
  const retried: string[] = [];
  const unfinished = async (queue: QueueName, job: Job): Promise<boolean> => {
    const data = job.data as { fileId?: number; deliveryId?: number; billingRunId?: number };
    if (queue === 'ingest-file' || queue === 'ingest-chunk' || queue === 'rate-file') {
      const f = await deps.db('usage_files').where('id', data.fileId).first<{ status: string } | undefined>('status');
      return f !== undefined && (queue === 'rate-file' ? ['parsed'] : ['received', 'parsing']).includes(f.status);
    }
    if (queue === 'deliver-email') {
      const d = await deps.db('email_deliveries').where('id', data.deliveryId).first<{ status: string } | undefined>('status');
      return d !== undefined && ['pending', 'sending'].includes(d.status);
    }
    if (queue === 'billing-run') return billingRunId !== undefined && data.billingRunId === billingRunId;
    return false;
  };
  for (const queue of ['ingest-file', 'ingest-chunk', 'rate-file', 'billing-run', 'deliver-email'] as const) {
    for (const job of await deps.queues.get(queue).getFailed()) {
      if (!(await unfinished(queue, job))) continue;
      await job.retry('failed');
      const last = job.stacktrace?.at(-1)?.split('\n')[0];
      retried.push(`retried ${job.id} (failed: ${job.failedReason ?? last ?? 'no reason recorded'}; attempts made ${job.attemptsMade}, stalled ${job.stalledCounter})`);
    }
  }
  return retried;
}

async function missingSchedulers(deps: Deps): Promise<string[]> {
  const missing: string[] = [];
  for (const [queue, id] of REPEATING_JOBS) if (!(await deps.queues.get(queue).getJobScheduler(id))) missing.push(id);
  return missing;
}

async function waitFor(what: string, timeoutMs: number, ok: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await ok().catch(() => false)) return;
    await sleep(250);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
