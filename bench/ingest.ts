import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { dropDatabase } from '../adapters/db/database';
import { loadConfig, redactUrl } from '../src/config';
import type { Deps } from '../src/deps';
import { BENCH_PARTNER, type FeedStats, expectedRecords, writeCsvFeed, writeXmlFeed } from './generate';
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
  runTimed,
  startWorker,
  waitForWorkerReady,
} from './harness';
import { type BenchReport, type ReportRow, atMost, environmentLines, formatBytes, formatMb, formatRate, formatRatio, formatSeconds } from './report';

/**
 * `bench ingest`: a generated feed of N usages through the real pipeline, dropped into the inbox of a
 * worker running in its own process (inbox scan -> register -> ingest-file (+ ingest-chunk helpers)
 * -> rate-file, on BullMQ and PostgreSQL), timed against a plain `psql \copy` of the same rows into a
 * bare table, taken in the same database just before. The CSV runs first, then the XML, each on a
 * freshly created database with a fresh worker, so neither sees the other's rows or memory; with
 * --rss-rows, a CSV of that many rows follows, for the worker's peak memory on a bigger file.
 */

type Format = 'csv' | 'xml';

// Targets from issue 7: ingest + rate within 5x (CSV) or 7x (XML) of \copy, and a worker that stays
// within 256 MB whatever the file size.
const RATIO_TARGET: Record<Format, number> = { csv: 5, xml: 7 };
export const PEAK_RSS_TARGET_MB = 256;
const POLL_MS = 250;

// Same columns as the CSV, typed as the engine types them, no keys and no indexes.
const BARE_TABLE = `CREATE TABLE bare_usage (
  usage_id text, product text, "user" text, account text, quantity numeric,
  start_time timestamptz, end_time timestamptz, description text)`;

interface Sample {
  /** Milliseconds since the drop, by this process's clock. */
  atMs: number;
  status: string;
  committed: number;
  records: number;
  rssKb: number;
}

interface Milestone {
  fraction: number;
  atMs: number;
  rssKb: number;
}

interface PhaseResult {
  label: string;
  /** How far the phase went: memory and timings up to there. */
  until: 'parsed' | 'rated';
  format: Format;
  rows: number;
  feedBytes: number;
  copyMs: number;
  copyCommand: string;
  /** All from the drop (the rename into the inbox), by the database's clock. */
  claimedMs: number;
  parseStartedMs: number;
  parsedMs: number;
  ratedMs: number;
  peakRssKb: number;
  /** Resident set once the worker was ready, before the file was dropped. */
  idleRssKb: number;
  ingestMilestones: Milestone[];
  rateMilestones: Milestone[];
  counts: { read: number; accepted: number; rejected: number; duplicate: number; records: number; transactions: number; expectedRecords: number; chunks: number };
  rowErrors: string[];
  workerPid: number;
  workerExit: string;
  workerLog: string[];
  profileDir?: string;
}

interface FileRow {
  id: string;
  status: string;
  error: string | null;
  records_committed: number;
  rows_read: number;
  rows_accepted: number;
  rows_rejected: number;
  rows_duplicate: number;
  chunks_total: number | null;
  received_at: Date;
  parse_started_at: Date | null;
  parsed_at: Date | null;
  rated_at: Date | null;
}

export async function runIngestBench(ctx: BenchContext, services: Services): Promise<BenchReport> {
  const startedAt = new Date();
  const runId = runIdOf(startedAt);
  const runDir = path.join(BENCH_OUT_DIR, `ingest-${runId}`);
  const queuePrefix = `bench-${randomBytes(4).toString('hex')}`;
  const databaseUrl = namedDatabaseUrl(ctx.databaseUrl, 'billing_bench_ingest');
  const feeds = { csv: path.join(runDir, 'feeds', `acme-bench-${ctx.rows}.csv`), xml: path.join(runDir, 'feeds', `acme-bench-${ctx.rows}.xml`) };
  try {
    await mkdir(path.dirname(feeds.csv), { recursive: true });
    ctx.log(`generating ${ctx.rows.toLocaleString('en-GB')} usages as CSV and XML in ${path.relative(process.cwd(), runDir)}/feeds`);
    const generation = performance.now();
    const csvStats = await writeCsvFeed(feeds.csv, ctx.rows);
    const xmlStats = await writeXmlFeed(feeds.xml, ctx.rows);
    const generationMs = performance.now() - generation;
    ctx.log(`  CSV ${formatBytes(csvStats.bytes)}, XML ${formatBytes(xmlStats.bytes)} in ${formatSeconds(generationMs)}`);

    const phases: PhaseResult[] = [];
    for (const format of ['csv', 'xml'] as const) {
      const stats = format === 'csv' ? csvStats : xmlStats;
      phases.push(
        await runIngestPhase(ctx, {
          label: format.toUpperCase(),
          format,
          feed: feeds[format],
          csv: feeds.csv,
          stats,
          runDir,
          runId,
          databaseUrl,
          queuePrefix: `${queuePrefix}-${format}`,
          until: ctx.until,
        }),
      );
    }
    if (ctx.rssRows > 0) {
      const big = path.join(runDir, 'feeds', `acme-bench-${ctx.rssRows}.csv`);
      ctx.log(`generating ${ctx.rssRows.toLocaleString('en-GB')} usages as CSV, for the worker's peak memory on a bigger file`);
      const bigStats = await writeCsvFeed(big, ctx.rssRows);
      phases.push(
        await runIngestPhase(ctx, {
          label: `CSV ${shortCount(ctx.rssRows)}`,
          format: 'csv',
          feed: big,
          csv: big,
          stats: bigStats,
          runDir,
          runId,
          databaseUrl,
          queuePrefix: `${queuePrefix}-big`,
          until: ctx.rssUntil,
        }),
      );
      await rm(big, { force: true });
    }
    return buildReport(ctx, services, { startedAt, csvStats, xmlStats, generationMs, phases, databaseUrl });
  } finally {
    if (ctx.keep) ctx.log(`kept ${runDir} and database ${redactUrl(databaseUrl)}`);
    else {
      await rm(runDir, { recursive: true, force: true });
      await dropDatabase(databaseUrl).catch((err: unknown) => ctx.log(`could not drop the bench database: ${describeError(err)}`));
    }
  }
}

export function runIdOf(startedAt: Date): string {
  return `${startedAt.toISOString().replace(/[-:]/g, '').slice(0, 15)}-${randomBytes(3).toString('hex')}`;
}

export function shortCount(n: number): string {
  return n >= 1_000_000 && n % 1_000_000 === 0 ? `${n / 1_000_000}M` : n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n);
}

async function runIngestPhase(
  ctx: BenchContext,
  p: {
    label: string;
    format: Format;
    feed: string;
    csv: string;
    stats: FeedStats;
    runDir: string;
    runId: string;
    databaseUrl: string;
    queuePrefix: string;
    /** Stop the phase once the file is parsed (memory through ingest only), or rated (the default). */
    until?: 'parsed' | 'rated';
  },
): Promise<PhaseResult> {
  const { label } = p;
  const timeout = AbortSignal.timeout(ctx.phaseTimeoutMs);
  const signal = AbortSignal.any([ctx.signal, timeout]);
  const whyStopped = () =>
    ctx.signal.aborted ? 'interrupted' : `the ${label} phase did not finish within ${formatSeconds(ctx.phaseTimeoutMs)} (raise --timeout-min)`;
  const inboxDir = path.join(p.runDir, `inbox-${p.queuePrefix}`);
  const workerEnv = {
    ...engineEnv(ctx),
    DATABASE_URL: p.databaseUrl,
    REDIS_URL: ctx.redisUrl,
    QUEUE_PREFIX: p.queuePrefix,
    INBOX_DIR: inboxDir,
    OUTBOX_DIR: path.join(p.runDir, `outbox-${p.queuePrefix}`),
  };
  loadConfig({ ...process.env, ...workerEnv }); // the worker would refuse a bad setting; say so before starting it

  ctx.log(`${label}: fresh database ${redactUrl(p.databaseUrl)}, queue prefix ${p.queuePrefix}`);
  await freshBenchDatabase(p.databaseUrl);
  const deps = benchDeps({ databaseUrl: p.databaseUrl, redisUrl: ctx.redisUrl, queuePrefix: p.queuePrefix, inboxDir, outboxDir: workerEnv.OUTBOX_DIR });
  let worker: WorkerProcess | undefined;
  try {
    await prepareIngestSchema(deps);

    const copy = await timeCopy(ctx, deps, p.databaseUrl, p.csv, p.stats.rows, signal);
    ctx.log(`${label}: psql \\copy of the CSV into a bare table: ${formatSeconds(copy.ms)}`);

    // The feed is copied in under a name the scanner ignores; the timed drop is the rename.
    const name = path.basename(p.feed);
    const dropped = path.join(inboxDir, BENCH_PARTNER, name);
    await mkdir(path.dirname(dropped), { recursive: true });
    await copyFile(p.feed, `${dropped}.part`);
    await deps.db.raw('CHECKPOINT');

    const profileDir = ctx.cpuProf ? path.join(BENCH_OUT_DIR, 'profiles', `${p.runId}-${p.queuePrefix}`) : undefined;
    worker = startWorker(workerEnv, profileDir ? { cpuProfDir: profileDir } : {});
    await waitForWorkerReady(deps, worker, signal);
    const idle = await processMemory(worker.pid);
    ctx.log(`${label}: worker pid ${worker.pid} ready (RSS ${formatMb(idle?.rssKb ?? NaN)}); dropping ${name} into the inbox`);

    const dropMs = await databaseClockMs(deps);
    const dropLocal = Date.now();
    await rename(`${dropped}.part`, dropped);
    await deps.queues.enqueue('inbox-scan', {});
    const until = p.until ?? 'rated';
    const samples = await watchFile(ctx, deps, worker, { name, rows: p.stats.rows, label, dropLocal, signal, until });

    // VmHWM is the process's peak resident set since it started: read it just before stopping it.
    const memory = await processMemory(worker.pid);
    const workerExit = await worker.stop();
    const file = await fileRow(deps, name);
    if (!file?.parsed_at || !file.parse_started_at || (until === 'rated' && !file.rated_at)) throw new Error(`${label}: the file row lacks its timestamps`);
    const expected = expectedRecords(p.stats);
    const [records, transactions, rowErrors] = await Promise.all([
      count(deps, 'billing_records'),
      count(deps, 'transactions'),
      deps.db('usage_file_errors').where('file_id', file.id).orderBy('id').limit(5).select<{ record: number; field: string | null; message: string }[]>('record', 'field', 'message'),
    ]);
    return {
      label,
      format: p.format,
      rows: p.stats.rows,
      feedBytes: p.stats.bytes,
      copyMs: copy.ms,
      copyCommand: copy.command,
      claimedMs: file.received_at.getTime() - dropMs,
      parseStartedMs: file.parse_started_at.getTime() - dropMs,
      parsedMs: file.parsed_at.getTime() - dropMs,
      ratedMs: file.rated_at ? file.rated_at.getTime() - dropMs : Number.NaN,
      until,
      peakRssKb: memory?.peakKb ?? NaN,
      idleRssKb: idle?.rssKb ?? NaN,
      ingestMilestones: milestones(samples, (s) => s.committed, p.stats.rows),
      rateMilestones: milestones(samples, (s) => s.records, expected),
      counts: {
        read: file.rows_read,
        accepted: file.rows_accepted,
        rejected: file.rows_rejected,
        duplicate: file.rows_duplicate,
        records,
        transactions,
        expectedRecords: expected,
        chunks: file.chunks_total ?? 0,
      },
      rowErrors: rowErrors.map((e) => `record ${e.record} ${e.field ?? ''}: ${e.message}`),
      workerPid: worker.pid,
      workerExit,
      workerLog: worker.output(),
      ...(profileDir ? { profileDir } : {}),
    };
  } catch (err) {
    throw signal.aborted ? new BenchStoppedError(whyStopped(), { cause: err }) : err;
  } finally {
    if (worker && !worker.hasExited()) ctx.log(`${label}: stopping worker pid ${worker.pid} (${await worker.stop()})`);
    await closeBenchDeps(deps);
    const deleted = await deleteRedisKeys(ctx.redisUrl, p.queuePrefix).catch((err: unknown) => {
      ctx.log(`could not delete Redis keys ${p.queuePrefix}:*: ${describeError(err)}`);
      return 0;
    });
    ctx.log(`${label}: deleted ${deleted} Redis keys under ${p.queuePrefix}:`);
  }
}

/** The baseline: psql's client-side \copy of the same CSV into a bare table, timed from spawn to exit. */
export async function timeCopy(
  ctx: BenchContext,
  deps: Deps,
  databaseUrl: string,
  csv: string,
  rows: number,
  signal: AbortSignal,
): Promise<{ ms: number; command: string }> {
  await deps.db.raw('DROP TABLE IF EXISTS bare_usage');
  await deps.db.raw(BARE_TABLE);
  await deps.db.raw('CHECKPOINT');
  const copy = `\\copy bare_usage FROM '${csv.replaceAll("'", "''")}' WITH (FORMAT csv, HEADER true)`;
  const args = [databaseUrl, '-X', '-v', 'ON_ERROR_STOP=1', '-c', copy];
  const run = await runTimed('psql', args, { timeoutMs: ctx.phaseTimeoutMs, signal });
  const copied = Number(/COPY (\d+)/.exec(run.stdout)?.[1]);
  if (copied !== rows) throw new Error(`psql \\copy reported "${run.stdout.trim()}", expected COPY ${rows}`);
  // Gone before the engine runs, so its pages and WAL are not the engine's problem.
  await deps.db.raw('DROP TABLE bare_usage');
  await deps.db.raw('CHECKPOINT');
  return { ms: run.ms, command: `psql ${redactUrl(databaseUrl)} -X -v ON_ERROR_STOP=1 -c "${copy.replaceAll('\\', '\\\\')}"` };
}

export async function databaseClockMs(deps: Deps): Promise<number> {
  const { rows } = await deps.db.raw<{ rows: { ms: string }[] }>('SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms');
  return Number(rows[0]!.ms);
}

function fileRow(deps: Deps, name: string): Promise<FileRow | undefined> {
  return deps.db('usage_files').where('name', name).orderBy('id', 'desc').first<FileRow | undefined>(
    'id', 'status', 'error', 'records_committed', 'rows_read', 'rows_accepted', 'rows_rejected', 'rows_duplicate', 'chunks_total',
    'received_at', 'parse_started_at', 'parsed_at', 'rated_at',
  );
}

export async function count(deps: Deps, table: string): Promise<number> {
  const rows = await deps.db(table).count<{ count: string }[]>('* as count');
  return Number(rows[0]?.count);
}

/** Billing records written so far, from the table's sequence: constant time, unlike count(*). */
async function recordsSoFar(deps: Deps): Promise<number> {
  const { rows } = await deps.db.raw<{ rows: { last_value: string; is_called: boolean }[] }>('SELECT last_value, is_called FROM billing_records_id_seq');
  return rows[0]?.is_called ? Number(rows[0].last_value) : 0;
}

/**
 * Polls the file's row every POLL_MS until it is rated, sampling progress and the worker's memory.
 * A benchmark may poll; what it reports comes from the row's own timestamps, not from the polls.
 */
async function watchFile(
  ctx: BenchContext,
  deps: Deps,
  worker: WorkerProcess,
  w: { name: string; rows: number; label: string; dropLocal: number; signal: AbortSignal; until: 'parsed' | 'rated' },
): Promise<Sample[]> {
  const samples: Sample[] = [];
  let lastLog = Date.now();
  for (;;) {
    if (worker.hasExited()) {
      throw new Error(`${w.label}: the worker exited (${await worker.exited}) before the file was rated:\n${worker.output().slice(-20).join('\n')}`);
    }
    const file = await fileRow(deps, w.name);
    const records = file?.status === 'parsed' || file?.status === 'rated' ? await recordsSoFar(deps) : 0;
    const memory = await processMemory(worker.pid);
    const sample: Sample = { atMs: Date.now() - w.dropLocal, status: file?.status ?? 'dropped', committed: file?.records_committed ?? 0, records, rssKb: memory?.rssKb ?? NaN };
    samples.push(sample);
    if (file?.status === 'failed' || file?.status === 'duplicate') {
      throw new Error(`${w.label}: the feed ended ${file.status}: ${file.error ?? '(no error recorded)'}`);
    }
    if (file?.status === 'rated' || (w.until === 'parsed' && file?.status === 'parsed')) return samples;
    if (Date.now() - lastLog >= 10_000) {
      lastLog = Date.now();
      ctx.log(`${w.label}: ${formatSeconds(sample.atMs)} ${sample.status}, ${sample.committed} rows ingested, ${sample.records} billing records, worker RSS ${formatMb(sample.rssKb)}`);
    }
    await sleep(POLL_MS, undefined, { signal: w.signal });
  }
}

/** When progress first reached each quarter of `total`, with the worker's RSS at that moment. */
function milestones(samples: Sample[], progress: (s: Sample) => number, total: number): Milestone[] {
  const out: Milestone[] = [];
  for (const fraction of [0.25, 0.5, 0.75, 1]) {
    const hit = samples.find((s) => progress(s) >= fraction * total);
    if (hit) out.push({ fraction, atMs: hit.atMs, rssKb: hit.rssKb });
  }
  return out;
}

function buildReport(
  ctx: BenchContext,
  services: Services,
  r: { startedAt: Date; csvStats: FeedStats; xmlStats: FeedStats; generationMs: number; phases: PhaseResult[]; databaseUrl: string },
): BenchReport {
  const rows: ReportRow[] = [];
  for (const p of r.phases) {
    const n = shortCount(p.rows);
    const baseline = `\\copy ${formatSeconds(p.copyMs)}`;
    const ratedRatio = p.ratedMs / p.copyMs;
    const mainFeed = p.rows === ctx.rows;
    if (mainFeed) {
      rows.push({ figure: `${p.label} ${n}: ingest (dropped -> parsed)`, measured: `${formatSeconds(p.parsedMs)}, ${formatRate(p.rows, p.parsedMs)}`, baseline, ratio: formatRatio(p.parsedMs / p.copyMs) });
      if (p.until === 'rated') {
        rows.push({
          figure: `${p.label} ${n}: ingest + rate (dropped -> rated)`,
          measured: `${formatSeconds(p.ratedMs)}, ${formatRate(p.rows, p.ratedMs)}`,
          baseline,
          ratio: formatRatio(ratedRatio),
          target: atMost(ratedRatio, RATIO_TARGET[p.format], `<= ${RATIO_TARGET[p.format]}x \\copy`),
        });
      }
    }
    rows.push({
      figure: `${mainFeed ? `${p.label} ${n}` : p.label}: worker peak RSS (VmHWM)${p.until === 'parsed' ? ', through ingest only' : ''}`,
      measured: `${formatMb(p.peakRssKb)} (${formatMb(p.idleRssKb)} idle)`,
      target: atMost(p.peakRssKb / 1024, PEAK_RSS_TARGET_MB, `<= ${PEAK_RSS_TARGET_MB} MB`),
    });
  }
  const notes = [
    `Feeds: usages of ACME (NRF-ACME of bench/fixtures/ingest-partnerships.yaml: graduated tiers and a 10 % discount on CPU hours, ` +
      `m.chen split three ways), October 2026. ${r.csvStats.rows.toLocaleString('en-GB')} usages, ${r.csvStats.splitRows.toLocaleString('en-GB')} of them split; ` +
      `CSV ${formatBytes(r.csvStats.bytes)} (${(r.csvStats.bytes / r.csvStats.rows).toFixed(0)} bytes/row), XML ${formatBytes(r.xmlStats.bytes)}; generated in ${formatSeconds(r.generationMs)}.`,
    `Baseline: ${r.phases[0]?.copyCommand ?? ''}`,
    `  into bare_usage (same columns as the CSV, numeric/timestamptz where the engine parses them, no keys, no indexes), in the bench database, just before each phase's engine run.`,
    `Engine: one \`node bin/billing.js worker\` per phase (${ctx.engine === 'dist' ? 'compiled dist/' : 'TypeScript sources through tsx'}), ` +
      `LOG_LEVEL=warn INBOX_SETTLE_MS=0 INGEST_CHUNK_ROWS=${ctx.chunkRows}, concurrency ingest ${loadConfig(process.env).concurrency.ingest} / rate ${loadConfig(process.env).concurrency.rate}, ` +
      `on a fresh database (${redactUrl(r.databaseUrl)}); timed from the rename into <inbox>/ACME/ (followed by an inbox-scan job) to usage_files.parsed_at and .rated_at, by the database's clock.`,
  ];
  for (const p of r.phases) {
    const at = (ms: number) => `+${formatSeconds(ms)}`;
    const name = p.label.includes(' ') ? p.label : `${p.label} ${shortCount(p.rows)}`;
    const steps = (m: Milestone[]) => m.map((x) => `${x.fraction * 100}% ${at(x.atMs)} (RSS ${formatMb(x.rssKb)})`).join(', ');
    notes.push(
      '',
      `${name} (worker pid ${p.workerPid}, ${p.workerExit} after SIGTERM; \\copy ${formatSeconds(p.copyMs)}):`,
      `  timeline: claimed and registered ${at(p.claimedMs)}, ingest started ${at(p.parseStartedMs)}, parsed ${at(p.parsedMs)}` +
        (p.until === 'rated' ? `, rated ${at(p.ratedMs)} ` : ' (rating not waited for) ') +
        `(ingest ${formatSeconds(p.parsedMs - p.parseStartedMs)} in ${p.counts.chunks} chunks${p.until === 'rated' ? `, rating ${formatSeconds(p.ratedMs - p.parsedMs)}` : ''})`,
      `  rows ingested: ${steps(p.ingestMilestones)}`,
      ...(p.until === 'rated' ? [`  billing records: ${steps(p.rateMilestones)}`] : []),
      `  counts: read ${p.counts.read}, accepted ${p.counts.accepted}, rejected ${p.counts.rejected}, duplicate ${p.counts.duplicate}; ` +
        `billing records ${p.counts.records} (expected ${p.counts.expectedRecords}), transactions ${p.counts.transactions}`,
    );
    if (p.counts.accepted !== p.rows || (p.until === 'rated' && p.counts.records !== p.counts.expectedRecords)) {
      notes.push(`  WARNING: not every generated row was billed as expected; first errors:`, ...p.rowErrors.map((e) => `    ${e}`));
    }
    if (p.workerLog.length > 0) notes.push(`  worker output (${p.workerLog.length} lines, last 10):`, ...p.workerLog.slice(-10).map((l) => `    ${l}`));
    if (p.profileDir) notes.push(`  CPU profile: ${p.profileDir}`);
  }
  return {
    title: `bench ingest: ${ctx.rows.toLocaleString('en-GB')} usages, CSV and XML, through the queues and the database`,
    command: commandLine(),
    startedAt: r.startedAt,
    finishedAt: new Date(),
    environment: environmentLines(services, ctx),
    rows,
    notes,
  };
}
