import { existsSync } from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, loadConfig } from '../src/config';
import { runApiBench } from './api';
import { type BenchContext, BenchSetupError, BenchStoppedError, REPO_ROOT, type Services, benchDatabaseUrl, buildEngine, commandLine, describeError, preflight } from './harness';
import { runIngestBench } from './ingest';
import { runInvoicesBench } from './invoices';
import { runRateBench } from './rate';
import { type BenchReport, environmentLines, renderCombined } from './report';
import { runScaleBench } from './scale';

/**
 * `npm run bench -- [which...]`: end-to-end benchmarks against real PostgreSQL and Redis, each on a
 * database and a queue prefix of its own, ending with one table of every figure (issue 7): what was
 * measured, the baseline from the same run, their ratio, the target and whether it was met. A new
 * benchmark is one more entry in BENCHES.
 */
interface BenchDefinition {
  description: string;
  run(ctx: BenchContext, services: Services, opts: Options): Promise<BenchReport>;
}

const BENCHES: Record<string, BenchDefinition> = {
  ingest: {
    description: 'a generated CSV and XML feed through inbox, queues and database, against psql \\copy; worker peak RSS',
    run: runIngestBench,
  },
  scale: {
    description: 'a batch of --files feeds ingested and rated by one worker process, then by two',
    run: runScaleBench,
  },
  api: {
    description: 'GET /queues latency at --api-rate requests/s while a feed is ingested',
    run: runApiBench,
  },
  rate: {
    description: 'N usages of one partnership rated with graduated tiers, a discount and a three-way split (usages per second)',
    run: runRateBench,
  },
  invoices: {
    description: 'invoices rendered (PDF, CSV) and emailed through the deliver-email workers, against pre-built messages over the same pool',
    run: (ctx, services, opts) => runInvoicesBench(ctx, services, { invoices: opts.invoices }),
  },
};

interface Options {
  rows: number;
  invoices: number;
  files: number;
  rssRows: number;
  rssUntil: 'parsed' | 'rated';
  until: 'parsed' | 'rated';
  apiRate: number;
  chunkRows: number;
  build: boolean;
  keep?: boolean;
  databaseUrl?: string;
  redisUrl?: string;
  timeoutMin?: number;
  cpuProf?: boolean;
}

function positiveInt(value: string): number {
  const n = Number(value.replaceAll('_', ''));
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive whole number');
  return n;
}

function wholeNumber(value: string): number {
  const n = Number(value.replaceAll('_', ''));
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number');
  return n;
}

/** Generous enough for a slow machine, short enough that a stuck run ends: 5 minutes + 2 per 100k rows. */
function defaultPhaseTimeoutMin(rows: number): number {
  return 5 + Math.ceil(rows / 100_000) * 2;
}

function buildProgram(): Command {
  const list = Object.entries(BENCHES).map(([name, b]) => `  ${name.padEnd(10)} ${b.description}`).join('\n');
  return new Command('bench')
    .description(
      `Benchmarks of the billing engine against real PostgreSQL and Redis.\n\nBenchmarks:\n${list}\n\n` +
        `All of them at 1M rows take the best part of an hour on two cores; \`npm run bench -- --rows 50000 --invoices 1000\` runs every figure small.`,
    )
    .argument('[which...]', `benchmarks to run (${Object.keys(BENCHES).join(', ')}); all when omitted`)
    .option('--rows <n>', 'usages per generated feed (ingest, api, rate), and in the scale batch all together', positiveInt, 1_000_000)
    .option('--invoices <n>', 'invoices to render and deliver (bench invoices)', positiveInt, 10_000)
    .option('--files <n>', 'files in the batch of bench scale', positiveInt, 20)
    .option('--rss-rows <n>', "also measure the worker's peak RSS on a CSV of this many rows, e.g. 5000000 (bench ingest; 0: not)", wholeNumber, 0)
    .addOption(new Option('--until <stage>', 'how far the ingest and scale feeds go: rated, or parsed (ingest only)').choices(['parsed', 'rated']).default('rated'))
    .addOption(new Option('--rss-until <stage>', 'how far the --rss-rows feed goes: rated, or parsed (ingest only)').choices(['parsed', 'rated']).default('rated'))
    .option('--api-rate <n>', 'GET /queues requests per second (bench api)', positiveInt, 200)
    .option('--chunk-rows <n>', 'INGEST_CHUNK_ROWS of the engine processes', positiveInt, 50_000)
    .option('--no-build', 'do not build dist/ first: run the engine from dist/ as it is, or from its sources if there is none')
    .option('--keep', 'keep the generated files (under bench/out/) and the bench databases')
    .option('--database-url <url>', 'PostgreSQL server; the benchmarks use databases of their own there (billing_bench*) (default: DATABASE_URL)')
    .option('--redis-url <url>', 'Redis; the bench uses its own queue prefix bench-<random> (default: REDIS_URL)')
    .addOption(new Option('--timeout-min <n>', 'give up a measured phase after this many minutes (default: 5 + 2 per 100k rows)').argParser(positiveInt))
    .option('--cpu-prof', "write the ingest workers' CPU profiles (node --cpu-prof) under bench/out/profiles/")
    .showHelpAfterError()
    .action(async (which: string[], opts: Options) => {
      const names = which.length > 0 ? which : Object.keys(BENCHES);
      const unknown = names.filter((n) => !(n in BENCHES));
      if (unknown.length > 0) throw new BenchSetupError(`unknown benchmark ${unknown.join(', ')}; choose from ${Object.keys(BENCHES).join(', ')}`);

      const defaults = opts.databaseUrl && opts.redisUrl ? undefined : loadConfig();
      const databaseUrl = benchDatabaseUrl(opts.databaseUrl ?? defaults!.databaseUrl);
      const redisUrl = opts.redisUrl ?? defaults!.redisUrl;
      const services = await preflight(databaseUrl, redisUrl);

      // Ctrl-C ends the run through the same cleanup as a failure: workers stopped, keys and files removed.
      const interrupt = new AbortController();
      process.once('SIGINT', () => {
        process.stderr.write('\ninterrupted: stopping the workers and cleaning up (Ctrl-C again to quit at once)\n');
        process.once('SIGINT', () => process.exit(130));
        interrupt.abort();
      });
      const log = (message: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
      const startedAt = new Date();
      const ctx: BenchContext = {
        rows: opts.rows,
        keep: opts.keep ?? false,
        databaseUrl,
        redisUrl,
        phaseTimeoutMs: (opts.timeoutMin ?? defaultPhaseTimeoutMin(Math.max(opts.rows, opts.rssRows))) * 60_000,
        cpuProf: opts.cpuProf ?? false,
        signal: interrupt.signal,
        log,
        chunkRows: opts.chunkRows,
        engine: opts.build ? await buildEngine(log) : existsSync(path.join(REPO_ROOT, 'dist', '.built')) ? 'dist' : 'sources',
        files: opts.files,
        rssRows: opts.rssRows,
        rssUntil: opts.rssUntil,
        until: opts.until,
        apiRate: opts.apiRate,
      };
      const reports: BenchReport[] = [];
      for (const name of names) {
        log(`--- ${name}`);
        reports.push(await BENCHES[name]!.run(ctx, services, opts));
      }
      process.stdout.write(`\n${renderCombined(reports, { command: commandLine(), startedAt, finishedAt: new Date(), environment: environmentLines(services, ctx) })}`);
    });
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  if (err instanceof BenchSetupError || err instanceof ConfigError) {
    console.error(`bench: ${err.message}`);
    process.exitCode = 2;
  } else if (err instanceof BenchStoppedError) {
    console.error(`bench stopped: ${err.message}; the workers were stopped and the bench's keys, files and databases removed`);
    process.exitCode = 1;
  } else {
    console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : describeError(err)}`);
    process.exitCode = 1;
  }
}
