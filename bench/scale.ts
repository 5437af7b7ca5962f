import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dropDatabase } from '../adapters/db/database';
import { redactUrl } from '../src/config';
import { BENCH_PARTNER, type FeedStats, expectedRecords, writeCsvFeed } from './generate';
import {
  BENCH_OUT_DIR,
  type BenchContext,
  BenchStoppedError,
  type Services,
  type WorkerProcess,
  benchDeps,
  closeBenchDeps,
  commandLine,
  deleteRedisKeys,
  describeError,
  engineEnv,
  freshBenchDatabase,
  namedDatabaseUrl,
  prepareIngestSchema,
  processMemory,
  startWorker,
  waitForWorkers,
} from './harness';
import { count, databaseClockMs, runIdOf, shortCount } from './ingest';
import { type BenchReport, atLeast, environmentLines, formatMb, formatRate, formatRatio, formatSeconds } from './report';

/**
 * `bench scale`: a batch of F files (default 20) of N/F usages each, from four customers with the
 * same contract, dropped into the inbox at once, ingested and rated by one worker process, then (on
 * a fresh database) by two. Issue 7: two worker processes finish the batch at least 1.6 times as
 * fast as one. Both cores of this machine are shared by the workers, PostgreSQL and this process.
 */

const SPEEDUP_TARGET = 1.6;
/** The customers of bench/fixtures/ingest-partnerships.yaml; file i belongs to the (i mod 4)-th. */
const CUSTOMERS = [BENCH_PARTNER, 'BIOLAB', 'GENOMX', 'CRYOCO'] as const;

interface BatchResult {
  workers: number;
  ms: number;
  peakRssKb: number[];
  records: number;
  expectedRecords: number;
  filesRated: number;
}

export async function runScaleBench(ctx: BenchContext, services: Services): Promise<BenchReport> {
  const startedAt = new Date();
  const runDir = path.join(BENCH_OUT_DIR, `scale-${runIdOf(startedAt)}`);
  const databaseUrl = namedDatabaseUrl(ctx.databaseUrl, 'billing_bench_scale');
  const perFile = Math.max(1, Math.ceil(ctx.rows / ctx.files));
  try {
    const feedDir = path.join(runDir, 'feeds');
    await mkdir(feedDir, { recursive: true });
    ctx.log(`generating ${ctx.files} CSV feeds of ${perFile.toLocaleString('en-GB')} usages each`);
    const feeds: Array<{ file: string; partner: string; stats: FeedStats }> = [];
    for (let i = 0; i < ctx.files; i += 1) {
      const partner = CUSTOMERS[i % CUSTOMERS.length]!;
      const file = path.join(feedDir, `${partner.toLowerCase()}-batch-${String(i + 1).padStart(2, '0')}.csv`);
      feeds.push({ file, partner, stats: await writeCsvFeed(file, { count: perFile, firstId: i * perFile + 1, seed: 7000 + i }) });
    }
    const one = await runBatch(ctx, { workers: 1, feeds, runDir, databaseUrl });
    const two = await runBatch(ctx, { workers: 2, feeds, runDir, databaseUrl });
    const speedup = one.ms / two.ms;
    const rows = ctx.files * perFile;
    const label = `${ctx.files} files x ${shortCount(perFile)}`;
    return {
      title: `bench scale: ${label} usages, ingested and rated by one worker process, then by two`,
      command: commandLine(),
      startedAt,
      finishedAt: new Date(),
      environment: environmentLines(services, ctx),
      rows: [
        {
          figure: `${label}: 2 workers vs 1 (dropped -> all ${ctx.until})`,
          measured: `${formatSeconds(two.ms)}, ${formatRate(rows, two.ms)}`,
          baseline: `1 worker ${formatSeconds(one.ms)}`,
          ratio: `${formatRatio(speedup)} faster`,
          target: atLeast(speedup, SPEEDUP_TARGET, `>= ${SPEEDUP_TARGET}x faster`),
        },
      ],
      notes: [
        `Each batch: ${ctx.files} CSV feeds of ${perFile.toLocaleString('en-GB')} usages (distinct usage ids), ${ctx.files / CUSTOMERS.length} from each of ${CUSTOMERS.join(', ')} ` +
          `(the same contract: graduated tiers, discount, three-way split), renamed into their inbox folders at once, then an inbox-scan job; ` +
          `timed by the database's clock from the renames to the last usage_files.${ctx.until === 'parsed' ? 'parsed_at (ingest only)' : 'rated_at'}. Fresh database (${redactUrl(databaseUrl)}) per batch; ` +
          `workers: \`node bin/billing.js worker\` with INGEST_CHUNK_ROWS=${ctx.chunkRows} (${ctx.engine === 'dist' ? 'compiled dist/' : 'sources through tsx'}).`,
        ...[one, two].map(
          (b) =>
            `  ${b.workers} worker${b.workers > 1 ? 's' : ''}: ${formatSeconds(b.ms)}, ${b.filesRated} files ${ctx.until}` +
            (ctx.until === 'rated' ? `, billing records ${b.records} (expected ${b.expectedRecords})` : '') +
            ', ' +
            `peak RSS ${b.peakRssKb.map((kb) => formatMb(kb)).join(' and ')}`,
        ),
      ],
    };
  } finally {
    if (ctx.keep) ctx.log(`kept ${runDir} and database ${redactUrl(databaseUrl)}`);
    else {
      await rm(runDir, { recursive: true, force: true });
      await dropDatabase(databaseUrl).catch((err: unknown) => ctx.log(`could not drop the bench database: ${describeError(err)}`));
    }
  }
}

async function runBatch(
  ctx: BenchContext,
  b: { workers: number; feeds: Array<{ file: string; partner: string; stats: FeedStats }>; runDir: string; databaseUrl: string },
): Promise<BatchResult> {
  const label = `${b.workers} worker${b.workers > 1 ? 's' : ''}`;
  const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(ctx.phaseTimeoutMs)]);
  const queuePrefix = `bench-scale-${randomBytes(4).toString('hex')}`;
  const inboxDir = path.join(b.runDir, `inbox-${queuePrefix}`);
  const env = {
    ...engineEnv(ctx),
    DATABASE_URL: b.databaseUrl,
    REDIS_URL: ctx.redisUrl,
    QUEUE_PREFIX: queuePrefix,
    INBOX_DIR: inboxDir,
    OUTBOX_DIR: path.join(b.runDir, `outbox-${queuePrefix}`),
  };
  ctx.log(`scale, ${label}: fresh database, queue prefix ${queuePrefix}`);
  await freshBenchDatabase(b.databaseUrl);
  const deps = benchDeps({ databaseUrl: b.databaseUrl, redisUrl: ctx.redisUrl, queuePrefix, inboxDir, outboxDir: env.OUTBOX_DIR });
  const workers: WorkerProcess[] = [];
  try {
    await prepareIngestSchema(deps);
    const dropAt = (f: { file: string; partner: string }, suffix = '') => path.join(inboxDir, f.partner, `${path.basename(f.file)}${suffix}`);
    for (const f of b.feeds) {
      await mkdir(path.dirname(dropAt(f)), { recursive: true });
      await copyFile(f.file, dropAt(f, '.part'));
    }
    await deps.db.raw('CHECKPOINT');
    for (let i = 0; i < b.workers; i += 1) workers.push(startWorker(env));
    await waitForWorkers(deps, workers, signal);

    const dropMs = await databaseClockMs(deps);
    for (const f of b.feeds) await rename(dropAt(f, '.part'), dropAt(f));
    await deps.queues.enqueue('inbox-scan', {});
    let lastLog = Date.now();
    for (;;) {
      for (const w of workers) if (w.hasExited()) throw new Error(`a worker exited (${await w.exited}):\n${w.output().slice(-20).join('\n')}`);
      const rows = await deps.db('usage_files').select<Array<{ status: string; error: string | null }>>('status', 'error');
      const failed = rows.find((r) => r.status === 'failed' || r.status === 'duplicate');
      if (failed) throw new Error(`scale, ${label}: a feed ended ${failed.status}: ${failed.error ?? ''}`);
      const rated = rows.filter((r) => r.status === 'rated' || (ctx.until === 'parsed' && r.status === 'parsed')).length;
      if (rated === b.feeds.length) break;
      if (Date.now() - lastLog > 10_000) {
        lastLog = Date.now();
        ctx.log(`scale, ${label}: ${rows.length} files claimed, ${rows.filter((r) => ['parsed', 'rated'].includes(r.status)).length} parsed, ${rated} rated`);
      }
      await sleep(250, undefined, { signal });
    }
    const column = ctx.until === 'parsed' ? 'parsed_at' : 'rated_at';
    const { rows: last } = await deps.db.raw<{ rows: { ms: string }[] }>(`SELECT (extract(epoch FROM max(${column})) * 1000)::bigint AS ms FROM usage_files`);
    const peakRssKb = await Promise.all(workers.map(async (w) => (await processMemory(w.pid))?.peakKb ?? Number.NaN));
    const result: BatchResult = {
      workers: b.workers,
      ms: Number(last[0]!.ms) - dropMs,
      peakRssKb,
      records: await count(deps, 'billing_records'),
      expectedRecords: b.feeds.reduce((n, f) => n + expectedRecords(f.stats), 0),
      filesRated: b.feeds.length,
    };
    ctx.log(`scale, ${label}: all ${b.feeds.length} files rated in ${formatSeconds(result.ms)}`);
    return result;
  } catch (err) {
    throw signal.aborted ? new BenchStoppedError(ctx.signal.aborted ? 'interrupted' : `scale, ${label} did not finish in time (raise --timeout-min)`, { cause: err }) : err;
  } finally {
    for (const w of workers) if (!w.hasExited()) await w.stop();
    await closeBenchDeps(deps);
    await deleteRedisKeys(ctx.redisUrl, queuePrefix).catch(() => 0);
  }
}
