import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { dropDatabase } from '../adapters/db/database';
import { redactUrl } from '../src/config';
import { BENCH_PARTNER, writeCsvFeed } from './generate';
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
  freePort,
  freshBenchDatabase,
  namedDatabaseUrl,
  prepareIngestSchema,
  startEngine,
  waitForWorkers,
} from './harness';
import { runIdOf, shortCount } from './ingest';
import { type BenchReport, below, environmentLines } from './report';

/**
 * `bench api`: GET /queues on a `billing api` process, at a steady rate (default 200 requests per
 * second, open loop: a request is started on schedule whether or not the ones before have been
 * answered, so a slow answer cannot hide the ones queued behind it), first with nothing happening
 * (the baseline), then while a worker ingests a feed of N usages. Issue 7: p99 under 50 ms.
 */

const P99_TARGET_MS = 50;
const IDLE_SECONDS = 5;
/** The slowest a request may be before it counts as failed (the API answers 503 well before this). */
const REQUEST_TIMEOUT_MS = 10_000;

interface LoadResult {
  sent: number;
  failed: number;
  latenciesMs: number[];
  seconds: number;
}

export async function runApiBench(ctx: BenchContext, services: Services): Promise<BenchReport> {
  const startedAt = new Date();
  const runDir = path.join(BENCH_OUT_DIR, `api-${runIdOf(startedAt)}`);
  const databaseUrl = namedDatabaseUrl(ctx.databaseUrl, 'billing_bench_api');
  const queuePrefix = `bench-api-${randomBytes(4).toString('hex')}`;
  const inboxDir = path.join(runDir, 'inbox');
  const token = randomBytes(24).toString('hex');
  const port = await freePort();
  const env = {
    ...engineEnv(ctx),
    DATABASE_URL: databaseUrl,
    REDIS_URL: ctx.redisUrl,
    QUEUE_PREFIX: queuePrefix,
    INBOX_DIR: inboxDir,
    OUTBOX_DIR: path.join(runDir, 'outbox'),
    ADMIN_TOKENS: token,
    API_HOST: '127.0.0.1',
    API_PORT: String(port),
  };
  const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(ctx.phaseTimeoutMs)]);
  const processes: WorkerProcess[] = [];
  await mkdir(path.join(inboxDir, BENCH_PARTNER), { recursive: true });
  await freshBenchDatabase(databaseUrl);
  const deps = benchDeps({ databaseUrl, redisUrl: ctx.redisUrl, queuePrefix, inboxDir, outboxDir: env.OUTBOX_DIR });
  try {
    await prepareIngestSchema(deps);
    const feed = path.join(runDir, `acme-api-${ctx.rows}.csv`);
    ctx.log(`api: generating ${ctx.rows.toLocaleString('en-GB')} usages`);
    await writeCsvFeed(feed, ctx.rows);
    const name = path.basename(feed);
    await copyFile(feed, path.join(inboxDir, BENCH_PARTNER, `${name}.part`));

    const api = startEngine('api', env);
    processes.push(api);
    const worker = startEngine('worker', env);
    processes.push(worker);
    await waitForWorkers(deps, [worker], signal);
    const url = `http://127.0.0.1:${port}/queues`;
    await untilAnswering(url, token, api, signal);

    ctx.log(`api: ${ctx.apiRate} GET /queues per second for ${IDLE_SECONDS} s with nothing else happening`);
    const idle = await load(url, token, ctx.apiRate, signal, () => Promise.resolve(false), IDLE_SECONDS * 1000);

    ctx.log(`api: dropping ${name}; ${ctx.apiRate} GET /queues per second until it is ingested`);
    await rename(path.join(inboxDir, BENCH_PARTNER, `${name}.part`), path.join(inboxDir, BENCH_PARTNER, name));
    await deps.queues.enqueue('inbox-scan', {});
    const ingested = async () => {
      const row = await deps.db('usage_files').where('name', name).first<{ status: string } | undefined>('status');
      if (row?.status === 'failed') throw new Error(`api: the feed was rejected`);
      return row !== undefined && ['parsed', 'rated'].includes(row.status);
    };
    const busy = await load(url, token, ctx.apiRate, signal, ingested, ctx.phaseTimeoutMs);

    const p99 = percentile(busy.latenciesMs, 0.99);
    const idleP99 = percentile(idle.latenciesMs, 0.99);
    const describe = (r: LoadResult) =>
      `${r.sent} requests in ${r.seconds.toFixed(1)} s, ${r.failed} failed; p50 ${ms(percentile(r.latenciesMs, 0.5))}, p95 ${ms(percentile(r.latenciesMs, 0.95))}, ` +
      `p99 ${ms(percentile(r.latenciesMs, 0.99))}, max ${ms(Math.max(...r.latenciesMs))}`;
    return {
      title: `bench api: GET /queues at ${ctx.apiRate} requests/s while ${ctx.rows.toLocaleString('en-GB')} usages are ingested`,
      command: commandLine(),
      startedAt,
      finishedAt: new Date(),
      environment: environmentLines(services, ctx),
      rows: [
        {
          figure: `GET /queues p99 at ${ctx.apiRate} req/s during a ${shortCount(ctx.rows)} ingest`,
          measured: `${ms(p99)} (${busy.failed} of ${busy.sent} failed)`,
          baseline: `idle p99 ${ms(idleP99)}`,
          ratio: `${(p99 / idleP99).toFixed(1)}x`,
          target: below(busy.failed === 0 ? p99 : Number.POSITIVE_INFINITY, P99_TARGET_MS, `< ${P99_TARGET_MS} ms, no failures`),
        },
      ],
      notes: [
        `One \`billing api\` and one \`billing worker\` process (${ctx.engine === 'dist' ? 'compiled dist/' : 'sources through tsx'}, INGEST_CHUNK_ROWS=${ctx.chunkRows}) on ${redactUrl(databaseUrl)}; ` +
          `requests from this process with fetch (keep-alive), started on an open-loop schedule, latency from start to the whole body read.`,
        `  idle (${IDLE_SECONDS} s before the drop): ${describe(idle)}`,
        `  during the ingest (drop -> parsed): ${describe(busy)}`,
      ],
    };
  } catch (err) {
    throw signal.aborted ? new BenchStoppedError(ctx.signal.aborted ? 'interrupted' : 'the api benchmark did not finish in time (raise --timeout-min)', { cause: err }) : err;
  } finally {
    for (const p of processes) if (!p.hasExited()) await p.stop();
    await closeBenchDeps(deps);
    await deleteRedisKeys(ctx.redisUrl, queuePrefix).catch(() => 0);
    if (ctx.keep) ctx.log(`kept ${runDir} and database ${redactUrl(databaseUrl)}`);
    else {
      await rm(runDir, { recursive: true, force: true });
      await dropDatabase(databaseUrl).catch((err: unknown) => ctx.log(`could not drop the bench database: ${describeError(err)}`));
    }
  }
}

async function untilAnswering(url: string, token: string, api: WorkerProcess, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (api.hasExited()) throw new Error(`the API exited during start-up (${await api.exited}):\n${api.output().slice(-20).join('\n')}`);
    const ok = await fetch(url, { headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2000) }).then(
      async (r) => (await r.arrayBuffer(), r.ok),
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`the API did not answer within 60 s:\n${api.output().slice(-20).join('\n')}`);
    await sleep(200, undefined, { signal });
  }
}

/**
 * Fires requests at `rate` per second, each on its own schedule, until `done()` says so (checked
 * twice a second) or `maxMs` has passed, and waits for the ones still in flight.
 */
async function load(url: string, token: string, rate: number, signal: AbortSignal, done: () => Promise<boolean>, maxMs: number): Promise<LoadResult> {
  const interval = 1000 / rate;
  const latencies: number[] = [];
  const inFlight = new Set<Promise<void>>();
  let failed = 0;
  let sent = 0;
  const started = performance.now();
  let finished = false;
  const checker = (async () => {
    while (!finished) {
      if (await done()) finished = true;
      else await sleep(500);
    }
  })();
  while (!finished && performance.now() - started < maxMs) {
    if (signal.aborted) throw signal.reason;
    const due = started + sent * interval;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    sent += 1;
    const t0 = performance.now();
    const request = fetch(url, { headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
      .then(async (r) => {
        await r.arrayBuffer();
        if (!r.ok) failed += 1;
        else latencies.push(performance.now() - t0);
      })
      .catch(() => {
        failed += 1;
      })
      .finally(() => inFlight.delete(request));
    inFlight.add(request);
  }
  finished = true;
  await checker;
  await Promise.all(inFlight);
  return { sent, failed, latenciesMs: latencies, seconds: (performance.now() - started) / 1000 };
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
}

function ms(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(value < 10 ? 1 : 0)} ms` : 'n/a';
}

