import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { loadConfig, redactUrl } from '../src/config';
import { closeDeps, createDeps, type Deps } from '../src/deps';
import { dropDatabase, ensureDatabase, migrateLatest } from '../adapters/db/database';
import { importPartnerships, readImportFile } from '../src/use-cases/import-partnerships';

/**
 * What every benchmark needs around the code it measures: a preflight that says plainly which
 * service is down, a database and a queue prefix of its own, engine workers as child processes (so
 * their memory is their own), timed child commands, and cleanup that cannot hang.
 */

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BENCH_OUT_DIR = path.join(REPO_ROOT, 'bench', 'out');
export const DEMO_PARTNERSHIPS = path.join(REPO_ROOT, 'fixtures', 'demo', 'partnerships.yaml');

/** A problem a person can fix (a service down, a bad option): printed without a stack trace. */
export class BenchSetupError extends Error {
  override readonly name = 'BenchSetupError';
}

/** A run stopped on purpose: Ctrl-C, or a phase past its time limit. Cleanup has run; no stack trace needed. */
export class BenchStoppedError extends Error {
  override readonly name = 'BenchStoppedError';
}

export interface BenchContext {
  rows: number;
  keep: boolean;
  /** The bench's own database (never the demo's or the tests'); dropped and created by each bench. */
  databaseUrl: string;
  redisUrl: string;
  /** Per measured phase; a phase that takes longer is abandoned and cleaned up. */
  phaseTimeoutMs: number;
  cpuProf: boolean;
  signal: AbortSignal;
  log(message: string): void;
  /** INGEST_CHUNK_ROWS for the engine processes the benchmarks start. */
  chunkRows: number;
  /** What the engine processes run: dist/ as built at the start of the run, or the sources through tsx. */
  engine: 'dist' | 'sources';
  /** Files in the batch that one and then two workers ingest (bench scale). */
  files: number;
  /** Also measure the worker's peak RSS on a CSV feed of this many rows (bench ingest; 0: not). */
  rssRows: number;
  /** How far that feed goes: parsed (ingest only) or rated. */
  rssUntil: 'parsed' | 'rated';
  /** How far the ingest and scale benchmarks' files go: parsed (ingest only) or rated (the default). */
  until: 'parsed' | 'rated';
  /** Requests per second on GET /queues while a feed is ingested (bench api). */
  apiRate: number;
}

/** The environment every engine process of a benchmark gets, beyond its database, queues and folders. */
export function engineEnv(ctx: BenchContext): Record<string, string> {
  return {
    LOG_LEVEL: 'warn',
    INBOX_SETTLE_MS: '0',
    INGEST_CHUNK_ROWS: String(ctx.chunkRows),
    ...(ctx.engine === 'dist' ? { BILLING_FROM_DIST: '1' } : { BILLING_FROM_SOURCE: '1' }),
  };
}

export interface Services {
  postgres: string;
  redis: string;
  redisPolicy: string;
  psql: string;
}

/** The causes pg and ioredis give are often an AggregateError with an empty message; show the codes. */
export function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    return [...new Set(err.errors.map((e) => describeError(e)))].join('; ');
  }
  if (err instanceof Error) {
    const code = (err as { code?: string }).code;
    return err.message || code || err.name;
  }
  return String(err);
}

export function withTimeout<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/**
 * The bench's own database on the server named by `serverUrl`: the URL's database unless its name
 * says bench, `billing_bench` otherwise. The bench drops and recreates it, so it must never be the
 * demo's (`billing`) or a test's.
 */
export function benchDatabaseUrl(serverUrl: string): string {
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch {
    throw new BenchSetupError(`--database-url "${serverUrl}" is not a URL`);
  }
  if (!/^postgres(ql)?:$/.test(url.protocol)) throw new BenchSetupError(`--database-url must start with postgres://`);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!/bench/i.test(name)) url.pathname = '/billing_bench';
  return url.toString();
}

/** Checks PostgreSQL, Redis and psql before anything is generated, with a message per service that is missing. */
export async function preflight(databaseUrl: string, redisUrl: string): Promise<Services> {
  const problems: string[] = [];
  const services: Services = { postgres: '?', redis: '?', redisPolicy: '?', psql: '?' };

  const server = new URL(databaseUrl);
  server.pathname = '/postgres';
  const client = new pg.Client({ connectionString: server.toString(), connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    services.postgres = rows[0]?.server_version ?? '?';
  } catch (err) {
    problems.push(`PostgreSQL is not reachable at ${redactUrl(server.toString())}: ${describeError(err)}. Start it (docker compose up -d) or pass --database-url.`);
  } finally {
    await client.end().catch(() => undefined);
  }

  // A connection that gives up at once: the engine's own retries forever, which would hang here.
  const redis = new Redis(redisUrl, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  // connect() only says "Connection is closed"; the cause (ECONNREFUSED, a DNS failure) comes as an event.
  let cause: unknown;
  redis.on('error', (err: unknown) => (cause = err));
  try {
    await redis.connect();
    const info = await redis.info('server');
    services.redis = /redis_version:(\S+)/.exec(info)?.[1] ?? '?';
    const policy = await redis.config('GET', 'maxmemory-policy');
    services.redisPolicy = policy[1] ?? '?';
  } catch (err) {
    problems.push(`Redis is not reachable at ${redactUrl(redisUrl)}: ${describeError(cause ?? err).replace(/\.$/, '')}. Start it (docker compose up -d) or pass --redis-url.`);
  } finally {
    redis.disconnect();
  }

  try {
    const run = await runTimed('psql', ['--version'], { timeoutMs: 10_000 });
    services.psql = run.stdout.trim();
  } catch (err) {
    problems.push(`psql is needed for the \\copy baseline: ${describeError(err)}`);
  }
  if (problems.length > 0) throw new BenchSetupError(problems.join('\n'));
  return services;
}

/**
 * The same server, another database: each benchmark of issue 7 has its own (billing_bench_ingest,
 * ...), so that running one does not drop another's, or the rating benchmark's, mid-run.
 */
export function namedDatabaseUrl(databaseUrl: string, name: string): string {
  const url = new URL(databaseUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** The partnership the ingest benchmarks bill: graduated tiers, a 10 % discount, a three-way split. */
export const INGEST_PARTNERSHIPS = path.join(REPO_ROOT, 'bench', 'fixtures', 'ingest-partnerships.yaml');

/** Migrates a fresh bench database and imports the ingest benchmarks' partnership. */
export async function prepareIngestSchema(deps: Deps): Promise<void> {
  await migrateLatest(deps.db);
  await importPartnerships(deps, await readImportFile(INGEST_PARTNERSHIPS), 'bench');
}

/**
 * Compiles the engine to dist/ (npm run build), which worker and API processes then run (see
 * bin/billing.js). If the build fails (someone's work in progress does not type-check), they run
 * the TypeScript sources through tsx instead, and the report says so: memory figures differ.
 */
export async function buildEngine(log: (message: string) => void): Promise<'dist' | 'sources'> {
  try {
    const run = await runTimed(process.execPath, [path.join(REPO_ROOT, 'bin', 'build.js')], { timeoutMs: 300_000 });
    log(`engine compiled to dist/ in ${(run.ms / 1000).toFixed(1)} s`);
    return 'dist';
  } catch (err) {
    log(`npm run build failed, so the engine runs from its TypeScript sources through tsx: ${describeError(err).slice(0, 300)}`);
    return 'sources';
  }
}

/** Drops and recreates the bench database, empty; prepareSchema migrates it and imports the partnerships. */
export async function freshBenchDatabase(databaseUrl: string): Promise<void> {
  await dropDatabase(databaseUrl);
  await ensureDatabase(databaseUrl);
}

/** Deps for the bench process itself, on the bench database and the phase's queue prefix. */
export function benchDeps(env: { databaseUrl: string; redisUrl: string; queuePrefix: string; inboxDir: string; outboxDir: string }): Deps {
  return createDeps(
    loadConfig({
      DATABASE_URL: env.databaseUrl,
      REDIS_URL: env.redisUrl,
      QUEUE_PREFIX: env.queuePrefix,
      INBOX_DIR: env.inboxDir,
      OUTBOX_DIR: env.outboxDir,
      LOG_LEVEL: 'warn',
    }),
  );
}

export async function prepareSchema(deps: Deps): Promise<void> {
  await migrateLatest(deps.db);
  await importPartnerships(deps, await readImportFile(DEMO_PARTNERSHIPS), 'bench');
}

export async function closeBenchDeps(deps: Deps): Promise<void> {
  await withTimeout(15_000, 'closing connections', closeDeps(deps)).catch(() => {
    deps.redis.disconnect();
  });
}

/** Deletes every key under `prefix:` with SCAN + UNLINK, on a connection that fails fast if Redis is gone. */
export async function deleteRedisKeys(redisUrl: string, prefix: string): Promise<number> {
  const redis = new Redis(redisUrl, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 1, retryStrategy: () => null });
  redis.on('error', () => undefined);
  let deleted = 0;
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return deleted;
}

export interface TimedRun {
  ms: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion and times it from spawn to exit; a non-zero exit is an error with its stderr. */
export function runTimed(command: string, args: string[], opts: { timeoutMs: number; signal?: AbortSignal; env?: NodeJS.ProcessEnv }): Promise<TimedRun> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, signal: opts.signal, timeout: opts.timeoutMs, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', (err) => reject(new Error(`${command}: ${describeError(err)}`)));
    child.on('close', (code, signal) => {
      const ms = performance.now() - started;
      if (code === 0) resolve({ ms, stdout, stderr });
      else reject(new Error(`${command} ${signal ? `was killed (${signal}${ms >= opts.timeoutMs ? `, after the ${opts.timeoutMs} ms limit` : ''})` : `exited with ${code}`}: ${stderr.trim() || stdout.trim()}`));
    });
  });
}

export interface Memory {
  rssKb: number;
  peakKb: number;
}

/** VmRSS and VmHWM (the peak) of a process, from /proc; undefined where there is no /proc. */
export async function processMemory(pid: number): Promise<Memory | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssKb: kb('VmRSS'), peakKb: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

export interface WorkerProcess {
  pid: number;
  /** Resolves with the exit code (or signal) when the process ends, whenever that is. */
  exited: Promise<string>;
  hasExited(): boolean;
  /** The last lines the worker wrote (it runs at LOG_LEVEL=warn, so these are warnings and errors). */
  output(): string[];
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. Safe to call twice. */
  stop(graceMs?: number): Promise<string>;
}

/**
 * Starts `node bin/billing.js worker` with the given environment: the same entry point an operator
 * runs, in its own process, so its memory is measured alone.
 */
export function startWorker(env: Record<string, string>, opts: { cpuProfDir?: string } = {}): WorkerProcess {
  return startEngine('worker', env, opts);
}

/** `node bin/billing.js <command>` (worker or api) in its own process, with its output kept. */
export function startEngine(
  command: 'worker' | 'api',
  env: Record<string, string>,
  opts: { cpuProfDir?: string; onLine?: (line: string) => void } = {},
): WorkerProcess {
  const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, path.join(REPO_ROOT, 'bin', 'billing.js'), command], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`could not start the ${command} process`);
  const lines: string[] = [];
  const take = (line: string) => {
    if (!line.trim()) return;
    lines.push(line.length > 400 ? `${line.slice(0, 400)}...` : line);
    if (lines.length > 200) lines.splice(0, lines.length - 200);
    opts.onLine?.(line);
  };
  // A chunk may end in the middle of a line: the rest comes with the next one.
  for (const stream of [child.stdout, child.stderr]) {
    let partial = '';
    stream?.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) take(line);
    });
    stream?.on('end', () => take(partial));
  }
  let done = false;
  const exited = new Promise<string>((resolve) => {
    child.on('exit', (code, signal) => {
      done = true;
      resolve(signal ? `signal ${signal}` : `code ${code}`);
    });
    child.on('error', (err) => {
      done = true;
      resolve(`spawn error: ${describeError(err)}`);
    });
  });
  return {
    pid: child.pid,
    exited,
    hasExited: () => done,
    output: () => [...lines],
    async stop(graceMs = 45_000) {
      if (done) return exited;
      child.kill('SIGTERM');
      // Unreferenced, so a worker that stops quickly does not leave this timer holding the bench open.
      const outcome = await Promise.race([exited, sleep(graceMs, 'timeout' as const, { ref: false })]);
      if (outcome !== 'timeout') return outcome;
      child.kill('SIGKILL');
      return `${await exited} (did not stop within ${graceMs} ms of SIGTERM)`;
    },
  };
}

/**
 * A worker is ready once it has run the reconcile job it enqueues at start: its Redis connections,
 * database pool and processors are all up, so what is timed next is the pipeline, not start-up.
 */
export async function waitForWorkerReady(deps: Deps, worker: WorkerProcess, signal: AbortSignal, timeoutMs = 60_000): Promise<void> {
  const started = Date.now();
  const queue = deps.queues.get('reconcile');
  for (;;) {
    if (worker.hasExited()) throw new Error(`the worker exited during start-up (${await worker.exited}):\n${worker.output().slice(-20).join('\n')}`);
    const counts = await queue.getJobCounts('completed', 'failed');
    if ((counts.completed ?? 0) + (counts.failed ?? 0) > 0) return;
    if (Date.now() - started > timeoutMs) throw new Error(`the worker was not ready within ${timeoutMs} ms:\n${worker.output().slice(-20).join('\n')}`);
    await sleep(100, undefined, { signal });
  }
}

/** How this run was started, to print with its results. */
export function commandLine(): string {
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`);
  const args = process.argv.slice(2).map(quote).join(' ');
  return process.env.npm_lifecycle_event === 'bench' ? `npm run bench -- ${args}` : `node --import tsx bench/main.ts ${args}`;
}

/**
 * Waits until `count` worker processes are connected to the ingest queues (BullMQ lists its workers'
 * connections), each having run the start-up it does before taking jobs.
 */
export async function waitForWorkers(deps: Deps, workers: WorkerProcess[], signal: AbortSignal, timeoutMs = 90_000): Promise<void> {
  const started = Date.now();
  for (;;) {
    for (const w of workers) {
      if (w.hasExited()) throw new Error(`a worker exited during start-up (${await w.exited}):\n${w.output().slice(-20).join('\n')}`);
    }
    const connected = await deps.queues.get('ingest-chunk').getWorkersCount();
    if (connected >= workers.length) return;
    if (Date.now() - started > timeoutMs) throw new Error(`only ${connected} of ${workers.length} workers were ready within ${timeoutMs} ms`);
    await sleep(100, undefined, { signal });
  }
}

/** A free TCP port on this machine, for a process the benchmark starts. */
export { freePort } from '../test/faults/services';
