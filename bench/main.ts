import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, loadConfig } from '../src/config';
import { type BenchContext, BenchSetupError, BenchStoppedError, type Services, benchDatabaseUrl, describeError, preflight } from './harness';
import { runIngestBench } from './ingest';
import { runInvoicesBench } from './invoices';
import { runRateBench } from './rate';
import { type BenchReport, renderReport } from './report';

/**
 * `npm run bench -- [which...]`: end-to-end benchmarks against real PostgreSQL and Redis, each on a
 * database and a queue prefix of its own. A new benchmark is one more entry in BENCHES.
 */
interface BenchDefinition {
  description: string;
  run(ctx: BenchContext, services: Services, opts: Options): Promise<BenchReport>;
}

const BENCHES: Record<string, BenchDefinition> = {
  ingest: {
    description: 'a generated CSV and XML feed through inbox, queues and database, against psql \\copy',
    run: runIngestBench,
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

/** Generous enough for a slow machine, short enough that a stuck run ends: 5 minutes + 2 per 100k rows. */
function defaultPhaseTimeoutMin(rows: number): number {
  return 5 + Math.ceil(rows / 100_000) * 2;
}

function buildProgram(): Command {
  const list = Object.entries(BENCHES).map(([name, b]) => `  ${name.padEnd(10)} ${b.description}`).join('\n');
  return new Command('bench')
    .description(`Benchmarks of the billing engine against real PostgreSQL and Redis.\n\nBenchmarks:\n${list}`)
    .argument('[which...]', `benchmarks to run (${Object.keys(BENCHES).join(', ')}); all when omitted`)
    .option('--rows <n>', 'usages per generated feed', positiveInt, 1_000_000)
    .option('--invoices <n>', 'invoices to render and deliver (bench invoices)', positiveInt, 10_000)
    .option('--keep', 'keep the generated files (under bench/out/) and the bench database')
    .option('--database-url <url>', 'PostgreSQL server; the bench uses its own database there (billing_bench unless the name says bench) (default: DATABASE_URL)')
    .option('--redis-url <url>', 'Redis; the bench uses its own queue prefix bench-<random> (default: REDIS_URL)')
    .addOption(new Option('--timeout-min <n>', 'give up a measured phase after this many minutes (default: 5 + 2 per 100k rows)').argParser(positiveInt))
    .option('--cpu-prof', "write the worker's CPU profile (node --cpu-prof) under bench/out/profiles/")
    .showHelpAfterError()
    .action(async (which: string[], opts: Options) => {
      const names = which.length > 0 ? which : Object.keys(BENCHES);
      const unknown = names.filter((n) => !(n in BENCHES));
      if (unknown.length > 0) throw new BenchSetupError(`unknown benchmark ${unknown.join(', ')}; choose from ${Object.keys(BENCHES).join(', ')}`);

      const defaults = opts.databaseUrl && opts.redisUrl ? undefined : loadConfig();
      const databaseUrl = benchDatabaseUrl(opts.databaseUrl ?? defaults!.databaseUrl);
      const redisUrl = opts.redisUrl ?? defaults!.redisUrl;
      const services = await preflight(databaseUrl, redisUrl);

      // Ctrl-C ends the run through the same cleanup as a failure: worker stopped, keys and files removed.
      const interrupt = new AbortController();
      process.once('SIGINT', () => {
        process.stderr.write('\ninterrupted: stopping the worker and cleaning up (Ctrl-C again to quit at once)\n');
        process.once('SIGINT', () => process.exit(130));
        interrupt.abort();
      });
      const ctx: BenchContext = {
        rows: opts.rows,
        keep: opts.keep ?? false,
        databaseUrl,
        redisUrl,
        phaseTimeoutMs: (opts.timeoutMin ?? defaultPhaseTimeoutMin(opts.rows)) * 60_000,
        cpuProf: opts.cpuProf ?? false,
        signal: interrupt.signal,
        log: (message) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`),
      };
      for (const name of names) {
        const report = await BENCHES[name]!.run(ctx, services, opts);
        process.stdout.write(`\n${renderReport(report)}`);
      }
    });
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  if (err instanceof BenchSetupError || err instanceof ConfigError) {
    console.error(`bench: ${err.message}`);
    process.exitCode = 2;
  } else if (err instanceof BenchStoppedError) {
    console.error(`bench stopped: ${err.message}; the worker was stopped and the bench's keys, files and database removed`);
    process.exitCode = 1;
  } else {
    console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : describeError(err)}`);
    process.exitCode = 1;
  }
}
