import { Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Db } from '../adapters/db/database';
import { FILE_STATUSES } from '../adapters/db/file-repository';
import { JOB_STATES, type QueueStatus, type Queues, describeQueues } from '../jobs/queues';
import { shareInFlight, within } from './process';

/** What the workers report about each job they finish. */
export interface JobTimings {
  observeJob(queue: string, outcome: 'completed' | 'failed', seconds: number): void;
}

export interface Metrics extends JobTimings {
  /** Its own registry, never prom-client's global one: one process may hold several apps (tests do). */
  readonly registry: Registry;
}

/** Where the cluster-wide figures come from; without them a registry holds only this process's own. */
export interface MetricSources {
  db: Db;
  queues: Queues;
}

/** Delivery statuses as migration 0001 constrains them, so a status with no rows still reads 0. */
const DELIVERY_STATUSES = ['pending', 'sending', 'sent', 'failed', 'unknown'] as const;

/** A scrape must answer even when a dependency does not; a source that misses this reads as down. */
const SOURCE_TIMEOUT_MS = 3000;

export interface PipelineCounts {
  files: Record<string, number>;
  rows: { read: number; accepted: number; rejected: number; duplicate: number };
  invoices: Array<{ kind: string; status: string; count: number }>;
  deliveries: Record<string, number>;
}

/**
 * Counts of files, rows, invoices and deliveries from PostgreSQL: grouped counts over indexed
 * status columns and sums over usage_files (one row per file, not per usage), cheap to run on
 * every scrape and from `billing status`.
 */
export async function readPipelineCounts(db: Db): Promise<PipelineCounts> {
  const [files, rows, invoices, deliveries] = await Promise.all([
    db('usage_files').select('status').count<Array<{ status: string; count: string }>>('* as count').groupBy('status'),
    db('usage_files')
      .first(
        db.raw('coalesce(sum(rows_read), 0)::bigint AS read'),
        db.raw('coalesce(sum(rows_accepted), 0)::bigint AS accepted'),
        db.raw('coalesce(sum(rows_rejected), 0)::bigint AS rejected'),
        db.raw('coalesce(sum(rows_duplicate), 0)::bigint AS duplicate'),
      ) as Promise<{ read: string; accepted: string; rejected: string; duplicate: string }>,
    db('invoices').select('kind', 'status').count<Array<{ kind: string; status: string; count: string }>>('* as count').groupBy('kind', 'status'),
    db('email_deliveries').select('status').count<Array<{ status: string; count: string }>>('* as count').groupBy('status'),
  ]);
  // Counts of rows and files, not money: far below 2^53, so plain numbers are exact.
  const byStatus = (list: Array<{ status: string; count: string }>, known: readonly string[]) => ({
    ...Object.fromEntries(known.map((s) => [s, 0])),
    ...Object.fromEntries(list.map((r) => [r.status, Number(r.count)])),
  });
  return {
    files: byStatus(files, FILE_STATUSES),
    rows: { read: Number(rows.read), accepted: Number(rows.accepted), rejected: Number(rows.rejected), duplicate: Number(rows.duplicate) },
    invoices: invoices.map((r) => ({ kind: r.kind, status: r.status, count: Number(r.count) })),
    deliveries: byStatus(deliveries, DELIVERY_STATUSES),
  };
}

/**
 * One read per scrape, shared by every gauge of that source (prom-client collects them one after
 * another); a source that fails or times out gives undefined, and its gauges stay empty.
 */
function sharedRead<T>(read: () => Promise<T>): () => Promise<T | undefined> {
  return shareInFlight(() => read().catch(() => undefined), { keepUntilNextTurn: true });
}

/**
 * The metrics of one app or worker process. With `sources`, gauges for queues (from Redis) and for
 * files, rows, invoices and deliveries (from PostgreSQL) are read on each scrape; job durations
 * are observed by the workers running in this process (jobs/worker.ts).
 */
export function createMetrics(sources?: MetricSources): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const jobDuration = new Histogram({
    name: 'billing_job_duration_seconds',
    help: 'Time from a job starting to its completing or failing, observed by the workers of this process',
    labelNames: ['queue', 'outcome'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
    registers: [registry],
  });

  if (sources) registerSourceGauges(registry, sources);

  return {
    registry,
    observeJob(queue, outcome, seconds) {
      jobDuration.observe({ queue, outcome }, seconds);
    },
  };
}

function registerSourceGauges(registry: Registry, { db, queues }: MetricSources): void {
  const readQueues = sharedRead(() => within(SOURCE_TIMEOUT_MS, describeQueues(queues, Date.now())));
  const readCounts = sharedRead(() => within(SOURCE_TIMEOUT_MS, readPipelineCounts(db)));
  new Gauge({
    name: 'billing_source_up',
    help: 'Whether the source answered this scrape in time (1) or not (0); its figures are missing when 0',
    labelNames: ['source'] as const,
    registers: [registry],
    async collect() {
      const [q, c] = await Promise.all([readQueues(), readCounts()]);
      this.set({ source: 'redis' }, q ? 1 : 0);
      this.set({ source: 'postgres' }, c ? 1 : 0);
    },
  });

  const queueGauge = <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (g: Gauge<L>, q: QueueStatus) => void) =>
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        for (const q of (await readQueues()) ?? []) fill(this, q);
      },
    });
  queueGauge('billing_queue_jobs', 'Jobs per queue and state, read from Redis on scrape', ['queue', 'state'], (g, q) => {
    for (const state of JOB_STATES) g.set({ queue: q.name, state }, q.counts[state]);
  });
  queueGauge('billing_queue_oldest_waiting_seconds', 'Age of the oldest waiting job (0 when none waits)', ['queue'], (g, q) =>
    g.set({ queue: q.name }, q.oldestWaitingAgeSeconds ?? 0),
  );
  queueGauge('billing_queue_workers', 'Worker connections on the queue, across all processes', ['queue'], (g, q) => g.set({ queue: q.name }, q.workers));
  queueGauge('billing_queue_paused', '1 while the queue is paused', ['queue'], (g, q) => g.set({ queue: q.name }, q.paused ? 1 : 0));

  const countGauge = <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (g: Gauge<L>, c: PipelineCounts) => void) =>
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        const counts = await readCounts();
        if (counts) fill(this, counts);
      },
    });
  countGauge('billing_files', 'Usage files by status, from PostgreSQL', ['status'], (g, c) => {
    for (const [status, n] of Object.entries(c.files)) g.set({ status }, n);
  });
  countGauge('billing_file_rows', 'Feed rows read, accepted, rejected and reported as duplicates, over all files', ['outcome'], (g, c) => {
    for (const [outcome, n] of Object.entries(c.rows)) g.set({ outcome }, n);
  });
  countGauge('billing_invoices', 'Invoices and credit notes issued, by kind and status', ['kind', 'status'], (g, c) => {
    for (const r of c.invoices) g.set({ kind: r.kind, status: r.status }, r.count);
  });
  countGauge('billing_email_deliveries', 'Invoice email deliveries by status (watch failed and unknown)', ['status'], (g, c) => {
    for (const [status, n] of Object.entries(c.deliveries)) g.set({ status }, n);
  });
}
