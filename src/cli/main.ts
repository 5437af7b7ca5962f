import { Command, InvalidArgumentError } from 'commander';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { ConfigError, loadConfig, redactUrl } from '../config';
import { createDeps, closeDeps, type Deps } from '../deps';
import { ensureDatabase, migrateLatest } from '../../adapters/db/database';
import { createApp } from '../api/app';
import { type RepeatingJobsKeeper, type RunningWorkers, checkRedisPolicy, keepRepeatingJobs, startWorkers } from '../../jobs/worker';
import { onShutdown, waitForServices, within } from '../process';
import { importPartnerships, readImportFile } from '../use-cases/import-partnerships';
import { ingestLocalFile } from '../use-cases/ingest-local-file';
import { runBillingPeriod } from '../use-cases/run-billing-period';
import { deliverInvoice } from '../use-cases/deliver-invoice';
import { PermanentError } from '../use-cases/errors';
import { isPeriod } from '../core/period';
import { runDemo } from './demo';
import { registerStatusCommand } from './commands/status';
import { bearerAuth } from '../api/auth';
import { metricsRoutes } from '../api/routes/metrics';
import { type Metrics, createMetrics } from '../metrics';
import { registerReceivablesCommands } from './commands/receivables';
import { registerRatingCommands } from './commands/rating';
import { registerResendCommand } from './commands/resend';

function period(value: string): string {
  if (!isPeriod(value)) throw new InvalidArgumentError('expected a month as YYYY-MM, e.g. 2026-10');
  return value;
}

/** Builds deps for a command, runs it, and always closes connections so the process can exit. */
async function withDeps(run: (deps: Deps) => Promise<void>): Promise<void> {
  const deps = createDeps(loadConfig());
  try {
    await run(deps);
  } finally {
    await closeDeps(deps);
  }
}

function startApi(deps: Deps, metrics: Metrics): { close(): Promise<void> } {
  if (deps.config.adminTokens.length === 0) {
    throw new PermanentError('ADMIN_TOKENS is empty: set at least one token (16+ characters) before starting the API');
  }
  const server = serve({ fetch: createApp(deps, { metrics }).fetch, hostname: deps.config.api.host, port: deps.config.api.port });
  deps.logger.info({ host: deps.config.api.host, port: deps.config.api.port }, 'admin API listening');
  return { close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/**
 * A worker process without the API can still be scraped: WORKER_METRICS_PORT serves its job
 * durations and process metrics (the queue and database gauges come from the API's /metrics).
 */
function startWorkerMetrics(deps: Deps, metrics: Metrics, port: number): { close(): Promise<void> } {
  if (deps.config.adminTokens.length === 0) {
    throw new PermanentError('WORKER_METRICS_PORT is set but ADMIN_TOKENS is empty: /metrics needs a token to read it');
  }
  const app = new Hono();
  app.use('*', bearerAuth(deps.config.adminTokens));
  app.route('/', metricsRoutes(metrics));
  const server = serve({ fetch: app.fetch, hostname: deps.config.api.host, port });
  deps.logger.info({ host: deps.config.api.host, port }, 'worker metrics listening');
  return { close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** Long-running processes: workers, the API, or both. They stay up until SIGTERM or SIGINT. */
async function runServer(parts: { workers: boolean; api: boolean }): Promise<void> {
  const deps = createDeps(loadConfig());
  // What has been started so far; a signal during startup stops only that.
  const running: { workers?: RunningWorkers; schedules?: RepeatingJobsKeeper; api?: { close(): Promise<void> }; workerMetrics?: { close(): Promise<void> } } = {};
  const grace = deps.config.shutdownGraceMs;
  // Signal handlers first, so a SIGTERM during startup also stops cleanly. Workers stop taking jobs
  // and get the grace period for active ones; the API stops listening; the hard deadline is a
  // backstop for a connection that will not close.
  onShutdown(
    deps,
    async () => {
      running.schedules?.stop();
      await Promise.all([running.api?.close(), running.workerMetrics?.close(), running.workers?.close(grace)]);
      // Jobs released after the grace period may still hold database connections in this process;
      // exiting drops them and PostgreSQL rolls their transactions back, so do not wait for them.
      await within(3000, closeDeps(deps)).catch((err: Error) => deps.logger.warn({ err: err.message }, 'connections did not close in time; exiting anyway'));
    },
    grace + 10_000,
  );
  await waitForServices(deps, 60_000, { requireCurrentSchema: true });
  // One registry per process: the API's /metrics then includes the durations of this process's jobs.
  const metrics = createMetrics(parts.api ? { db: deps.db, queues: deps.queues } : undefined);
  if (parts.workers) {
    running.workers = startWorkers(deps, undefined, { timings: metrics });
    await checkRedisPolicy(deps);
    // Registers the schedulers, reconciles, and puts both back if Redis loses its data later.
    running.schedules = await keepRepeatingJobs(deps);
  }
  if (parts.api) running.api = startApi(deps, metrics);
  else if (deps.config.workerMetricsPort !== undefined) running.workerMetrics = startWorkerMetrics(deps, metrics, deps.config.workerMetricsPort);
}

export function buildCli(): Command {
  const program = new Command('billing')
    .description('Headless billing engine: usage files in, integer-penny invoices out.')
    .showHelpAfterError();

  program
    .command('migrate')
    .description('create the database if missing and apply schema migrations')
    .action(() =>
      withDeps(async (deps) => {
        if (await ensureDatabase(deps.config.databaseUrl)) console.log(`created database ${redactUrl(deps.config.databaseUrl)}`);
        const applied = await migrateLatest(deps.db);
        console.log(applied.length ? `applied: ${applied.join(', ')}` : 'schema is up to date');
      }),
    );

  program
    .command('import')
    .argument('<file>', 'partnerships file (.yaml, .yml or .json)')
    .description('load partners, products, partnerships, accounts, splits and rules (safe to run twice)')
    .action((file: string) =>
      withDeps(async (deps) => {
        const summary = await importPartnerships(deps, await readImportFile(file), 'cli');
        console.log(`imported ${summary.partners} partners, ${summary.products} products, ${summary.partnerships} partnerships (${summary.changed} changes)`);
      }),
    );

  program
    .command('ingest')
    .argument('<file>', 'a usage feed (.csv or .xml)')
    .option('--partner <code>', 'the partner the feed belongs to (XML feeds may name it themselves)')
    .option('--supersedes <fileId>', 'this feed corrects an earlier file: changed usages are replaced, missing ones withdrawn', (v) => {
      if (!/^[1-9]\d*$/.test(v)) throw new InvalidArgumentError('expected a file id');
      return Number(v);
    })
    .description('ingest and rate one feed in this process, showing progress')
    .action((file: string, opts: { partner?: string; supersedes?: number }) =>
      withDeps(async (deps) => {
        const result = await ingestLocalFile(deps, {
          file,
          ...(opts.partner ? { partnerCode: opts.partner } : {}),
          ...(opts.supersedes ? { supersedes: opts.supersedes } : {}),
          onProgress: (done, total) =>
            process.stderr.write(`\ringested ${done.toLocaleString('en-GB')} of ${total.toLocaleString('en-GB')} rows (${total > 0 ? Math.trunc((100 * done) / total) : 100}%)`),
        });
        process.stderr.write('\n');
        console.log(JSON.stringify(result, null, 2));
      }),
    );

  program
    .command('run-period')
    .argument('<period>', 'the month to invoice, YYYY-MM', period)
    .option('--send-now', 'send the invoice emails from this process instead of leaving them to the workers')
    .description('issue invoices for a period (safe to run twice)')
    .action((p: string, opts: { sendNow?: boolean }) =>
      withDeps(async (deps) => {
        const result = await runBillingPeriod(deps, { period: p, requestedBy: 'cli' });
        for (const r of result.partnerships) {
          console.log(`${r.partnership.padEnd(20)} ${r.outcome.padEnd(18)} ${r.invoiceNumber ?? ''} ${r.totalPennies ?? ''} ${r.note ?? ''}`.trimEnd());
          if (opts.sendNow && r.deliveryId !== undefined) {
            const sent = await deliverInvoice(deps, r.deliveryId, { finalAttempt: true });
            console.log(`  email: ${sent.kind}`);
          }
        }
        console.log(`billing run ${result.billingRunId}: ${result.invoicesCreated} invoice(s) created`);
      }),
    );

  program.command('worker').description('run the queue workers (scale by running more of them)').action(() => runServer({ workers: true, api: false }));
  program.command('api').description('run the admin API').action(() => runServer({ workers: false, api: true }));
  program.command('start').description('run workers, inbox scanning and the API in one process').action(() => runServer({ workers: true, api: true }));

  program
    .command('demo')
    .description('set up a database, load the fixtures, run the whole pipeline and print a summary')
    .action(() => runDemo());

  registerReceivablesCommands(program, withDeps);
  registerRatingCommands(program, withDeps);
  registerStatusCommand(program, withDeps);
  registerResendCommand(program, withDeps);

  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildCli().parseAsync(argv);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof PermanentError) {
      console.error(err.message);
      process.exitCode = 2;
      return;
    }
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exitCode = 1;
  }
}
