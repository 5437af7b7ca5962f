import { QueueEvents } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../adapters/db/database';
import { QUEUE_NAMES } from '../jobs/catalog';
import { type RunningWorkers, startWorkers } from '../jobs/worker';
import { createApp } from '../src/api/app';
import { DEMO_DIR } from '../src/cli/demo';
import { type Metrics, createMetrics } from '../src/metrics';
import { readExpected } from './support/golden';
import { importDemoPartnerships, ingestDemoFeeds, issueDemoInvoices } from './support/inbox-drops';
import { type TestContext, TEST_TOKEN, createTestContext } from './support/test-context';

const auth = { Authorization: `Bearer ${TEST_TOKEN}` };

/** Prometheus text format read into `name{label="v",...}` -> value, labels sorted as written. */
function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!match) throw new Error(`not a Prometheus sample line: ${line}`);
    samples.set(match[1]!, Number(match[2]));
  }
  return samples;
}

/**
 * /metrics after the demo's feeds went through ingest and rating, the period was invoiced, and the
 * two invoice emails were sent by real workers: the figures must be the ones in expected.yaml and
 * the database, not made up.
 */
describe('GET /metrics', () => {
  let ctx: TestContext;
  let metrics: Metrics;
  let workers: RunningWorkers;
  let events: QueueEvents;

  beforeAll(async () => {
    ctx = await createTestContext();
    await importDemoPartnerships(ctx.deps);
    await ingestDemoFeeds(ctx.deps);
    const issued = await issueDemoInvoices(ctx.deps);
    // The workers of this "process" report into the same registry as its API, as in `billing start`.
    metrics = createMetrics({ db: ctx.deps.db, queues: ctx.deps.queues });
    events = new QueueEvents('deliver-email', { connection: { url: ctx.deps.config.redisUrl }, prefix: ctx.deps.config.queuePrefix });
    await events.waitUntilReady();
    workers = startWorkers(ctx.deps, ['deliver-email'], { timings: metrics });
    for (const { deliveryId } of [issued.acme, issued.jsmith]) {
      const job = await ctx.deps.queues.get('deliver-email').getJob(`deliver-email-${deliveryId}`);
      if (!job) throw new Error(`no deliver-email job for delivery ${deliveryId}`);
      await job.waitUntilFinished(events, 30_000);
    }
  });

  afterAll(async () => {
    await workers?.close(5000);
    await events?.close();
    await ctx?.close();
  });

  async function scrape(app = createApp(ctx.deps, { metrics })): Promise<{ res: Response; samples: Map<string, number> }> {
    const res = await app.request('/metrics', { headers: auth });
    return { res, samples: parseMetrics(await res.clone().text()) };
  }

  it('needs the token', async () => {
    expect((await createApp(ctx.deps, { metrics }).request('/metrics')).status).toBe(401);
  });

  it('answers in the Prometheus text format', async () => {
    const { res, samples } = await scrape();
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(samples.get('billing_source_up{source="postgres"}')).toBe(1);
    expect(samples.get('billing_source_up{source="redis"}')).toBe(1);
    // The process's own metrics are there too.
    expect(samples.has('process_cpu_user_seconds_total')).toBe(true);
  });

  it('counts files and rows as expected.yaml has them', async () => {
    const expected = await readExpected(DEMO_DIR);
    const files = Object.values(expected.files);
    const sum = (k: 'read' | 'accepted' | 'rejected' | 'duplicate') => files.reduce((a, f) => a + f[k], 0);
    const { samples } = await scrape();
    expect(samples.get('billing_files{status="rated"}')).toBe(files.length);
    for (const status of ['received', 'parsing', 'parsed', 'failed', 'duplicate']) expect(samples.get(`billing_files{status="${status}"}`), status).toBe(0);
    expect({
      read: samples.get('billing_file_rows{outcome="read"}'),
      accepted: samples.get('billing_file_rows{outcome="accepted"}'),
      rejected: samples.get('billing_file_rows{outcome="rejected"}'),
      duplicate: samples.get('billing_file_rows{outcome="duplicate"}'),
    }).toEqual({ read: sum('read'), accepted: sum('accepted'), rejected: sum('rejected'), duplicate: sum('duplicate') });
  });

  it('counts the invoices issued and their deliveries by status', async () => {
    const { samples } = await scrape();
    expect(samples.get('billing_invoices{kind="invoice",status="issued"}')).toBe(2);
    expect(['pending', 'sending', 'sent', 'failed', 'unknown'].map((s) => samples.get(`billing_email_deliveries{status="${s}"}`))).toEqual([0, 0, 2, 0, 0]);
  });

  it('shows jobs by queue and state, workers, and the durations the workers observed', async () => {
    const { samples } = await scrape();
    for (const queue of QUEUE_NAMES) {
      for (const state of ['waiting', 'active', 'delayed', 'failed', 'completed']) expect(samples.has(`billing_queue_jobs{queue="${queue}",state="${state}"}`), `${queue} ${state}`).toBe(true);
    }
    expect(samples.get('billing_queue_jobs{queue="deliver-email",state="completed"}')).toBe(2);
    expect(samples.get('billing_queue_workers{queue="deliver-email"}')).toBe(1);
    expect(samples.get('billing_queue_workers{queue="ingest-file"}')).toBe(0);
    expect(samples.get('billing_queue_paused{queue="deliver-email"}')).toBe(0);
    expect(samples.get('billing_job_duration_seconds_count{queue="deliver-email",outcome="completed"}')).toBe(2);
    expect(samples.get('billing_job_duration_seconds_bucket{le="+Inf",queue="deliver-email",outcome="completed"}')).toBe(2);
    expect(samples.get('billing_job_duration_seconds_sum{queue="deliver-email",outcome="completed"}')).toBeGreaterThan(0);
  });

  it('keeps answering when PostgreSQL does not, saying which source is down', async () => {
    const deadDb = createDb('postgres://postgres@127.0.0.1:1/x');
    try {
      // A second app in the same process: its registry is its own, so nothing clashes.
      const { res, samples } = await scrape(createApp({ ...ctx.deps, db: deadDb }));
      expect(res.status).toBe(200);
      expect(samples.get('billing_source_up{source="postgres"}')).toBe(0);
      expect(samples.get('billing_source_up{source="redis"}')).toBe(1);
      expect([...samples.keys()].filter((k) => k.startsWith('billing_files'))).toEqual([]);
      expect(samples.get('billing_queue_jobs{queue="deliver-email",state="completed"}')).toBe(2);
    } finally {
      await deadDb.destroy();
    }
  });
});
