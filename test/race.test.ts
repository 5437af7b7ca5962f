import { type Job, Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { QueueName } from '../jobs/catalog';
import { createProcessors } from '../jobs/processors';
import { DEMO_PERIOD } from '../src/cli/demo';
import type { Deps } from '../src/deps';
import { deliverInvoice } from '../src/use-cases/deliver-invoice';
import { ingestFile } from '../src/use-cases/ingest-file';
import { rateFile } from '../src/use-cases/rate-file';
import { runBillingPeriod } from '../src/use-cases/run-billing-period';
import { scanInbox } from '../src/use-cases/scan-inbox';
import { counts, fileRow } from './support/file-rows';
import { dropSettled, importDemoPartnerships, ingestDemoFeeds, issueDemoInvoices } from './support/inbox-drops';
import { findInvariantViolations } from './support/invariants';
import { type SmtpSink, startSmtpSink } from './support/smtp-sink';
import { type TestContext, createTestContext } from './support/test-context';

/**
 * Reliability case 24: two workers running the same job after a lost lock leave one effect, and
 * the loser fails harmlessly. The lost lock is real: worker A takes the job with a one-second lock it
 * never renews, worker B's stall check finds the lock gone and hands the job to B, and A carries on
 * regardless, as a worker paused by a long GC or a network partition would. Both then run the real
 * processor at the same time. Then the same races without BullMQ, for every use case, by calling it
 * twice at once.
 */

const MAIL_FROM = 'Northbridge Billing <billing@northbridge.example>';
let sink: SmtpSink;
const worlds: TestContext[] = [];

async function world(env: Record<string, string> = {}): Promise<TestContext> {
  const ctx = await createTestContext({ env: { SMTP_URL: sink.url, MAIL_FROM, ...env } });
  worlds.push(ctx);
  await importDemoPartnerships(ctx.deps);
  return ctx;
}

beforeAll(async () => {
  sink = await startSmtpSink();
});

afterAll(async () => {
  for (const w of worlds) await w.close();
  await sink?.close();
});

async function expectInvariants(deps: Deps): Promise<void> {
  const violations = await findInvariantViolations(deps.db);
  expect(violations).toEqual(Object.fromEntries(Object.keys(violations).map((k) => [k, []])));
}

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

interface RaceOutcome {
  /** What each worker's run of the real processor returned or threw. */
  a: PromiseSettledResult<unknown>;
  b: PromiseSettledResult<unknown>;
  jobState: string;
}

/**
 * Runs the queue's real processor for `jobId` in two workers at once, the first having lost its lock.
 * Resolves when both runs have finished.
 */
async function raceAfterLostLock(ctx: TestContext, queue: QueueName, jobId: string): Promise<RaceOutcome> {
  const processor = createProcessors(ctx.deps)[queue];
  const connection = { url: ctx.deps.config.redisUrl };
  const prefix = ctx.deps.config.queuePrefix;
  const bStarted = deferred();
  const aRun = deferred<PromiseSettledResult<unknown>>();
  const bRun = deferred<PromiseSettledResult<unknown>>();
  const run = async (job: Job, done: (r: PromiseSettledResult<unknown>) => void) => {
    try {
      const value = await processor(job, ctx.deps.logger);
      done({ status: 'fulfilled', value });
      return value;
    } catch (reason) {
      done({ status: 'rejected', reason });
      throw reason;
    }
  };
  // A: its lock lapses after a second and is never renewed; it waits until B holds the job, then works.
  const a = new Worker(queue, async (job) => {
    await bStarted.promise;
    return run(job, aRun.resolve);
  }, { connection, prefix, lockDuration: 1000, skipLockRenewal: true, skipStalledCheck: true });
  a.on('error', () => undefined); // A's completion is refused: B holds the lock now
  await expect.poll(() => ctx.deps.queues.get(queue).getJobState(jobId), { timeout: 10_000 }).toBe('active');
  // B: finds the job stalled (its lock gone) and takes it over while A is still on it.
  const b = new Worker(queue, (job) => {
    bStarted.resolve();
    return run(job, bRun.resolve);
  }, { connection, prefix, lockDuration: 30_000, stalledInterval: 300, maxStalledCount: 1 });
  b.on('error', () => undefined);
  try {
    const [aResult, bResult] = await Promise.all([aRun.promise, bRun.promise]);
    await expect.poll(() => ctx.deps.queues.get(queue).getJobState(jobId), { timeout: 10_000 }).toBe('completed');
    return { a: aResult, b: bResult, jobState: await ctx.deps.queues.get(queue).getJobState(jobId) };
  } finally {
    await Promise.all([a.close(true), b.close()]);
  }
}

function outcomes(race: RaceOutcome): string[] {
  return [race.a, race.b].map((r) => (r.status === 'fulfilled' ? `ok:${(r.value as { kind?: string }).kind}` : `error:${(r.reason as Error).name}`)).sort();
}

// 12 rows in chunks of 3: row 5 has a bad quantity, row 9 repeats row 2's usage id.
const ROWS = Array.from({ length: 12 }, (_, i) => {
  const n = i + 1;
  const id = n === 9 ? 'RACE-2' : `RACE-${n}`;
  const quantity = n === 5 ? '1e3' : String(n);
  return `${id},CPU_HOUR,${n % 2 === 0 ? 'm.chen' : 'a.patel'},${quantity},2026-10-${String(n + 1).padStart(2, '0')}T09:00:00Z`;
});
const FEED = `usage_id,product,user,quantity,start_time\n${ROWS.join('\n')}\n`;

describe('two workers on the same job after a lost lock (case 24)', () => {
  it('ingest-file: the rows land once, and the other run stops harmlessly or reports the same outcome', async () => {
    const ctx = await world({ INGEST_CHUNK_ROWS: '3' });
    await dropSettled(ctx.deps, 'ACME', 'race.csv', FEED);
    const [file] = await scanInbox(ctx.deps);
    const race = await raceAfterLostLock(ctx, 'ingest-file', `ingest-file-${file!.fileId}`);

    // Each run either finished the file or found it finished (and reports its outcome), or was told
    // to retry; nothing else. What matters is below: the rows landed once.
    expect(outcomes(race)).toContain('ok:parsed');
    for (const o of outcomes(race)) expect(['ok:parsed', 'ok:skipped', 'error:RetryableError']).toContain(o);
    for (const r of [race.a, race.b]) {
      if (r.status === 'fulfilled' && (r.value as { kind: string }).kind === 'parsed') {
        expect(r.value).toEqual({ kind: 'parsed', fileId: file!.fileId, read: 12, accepted: 10, rejected: 1, duplicate: 1 });
      }
    }
    expect(counts(await fileRow(ctx.deps, file!.fileId))).toEqual({ status: 'parsed', read: 12, accepted: 10, rejected: 1, duplicate: 1, committed: 12 });
    const usages = await ctx.deps.db('product_usages').where('source_file_id', file!.fileId).orderBy('source_record').pluck<string[]>('external_id');
    expect(usages).toEqual(['RACE-1', 'RACE-2', 'RACE-3', 'RACE-4', 'RACE-6', 'RACE-7', 'RACE-8', 'RACE-10', 'RACE-11', 'RACE-12']);
    const errors = await ctx.deps.db('usage_file_errors').where('file_id', file!.fileId).orderBy('record').select<{ record: number; code: string }[]>('record', 'code');
    expect(errors).toEqual([{ record: 5, code: 'invalid_quantity' }, { record: 9, code: 'duplicate_usage' }]);
    expect((await rateFile(ctx.deps, file!.fileId)).kind).toBe('rated');
    await expectInvariants(ctx.deps);
  });

  it('rate-file: every usage is rated once per account', async () => {
    const ctx = await world();
    await dropSettled(ctx.deps, 'ACME', 'race.csv', FEED);
    const [file] = await scanInbox(ctx.deps);
    expect((await ingestFile(ctx.deps, file!.fileId)).kind).toBe('parsed'); // queues rate-file-<id>
    const race = await raceAfterLostLock(ctx, 'rate-file', `rate-file-${file!.fileId}`);

    const rated = [race.a, race.b].flatMap((r) => (r.status === 'fulfilled' ? [r.value as { kind: string; usages?: number }] : []));
    expect(rated.reduce((n, r) => n + (r.usages ?? 0), 0)).toBe(10);
    expect((await fileRow(ctx.deps, file!.fileId)).status).toBe('rated');
    // m.chen's 6 usages (even rows) are split over two accounts: 6 x 2 + 4 records.
    const [records] = await ctx.deps.db('billing_records').count<{ count: string }[]>('* as count');
    expect(Number(records?.count)).toBe(16);
    await expectInvariants(ctx.deps);
  });

  it('deliver-email: the invoice is emailed once and recorded as sent', async () => {
    const ctx = await world();
    await ingestDemoFeeds(ctx.deps);
    const { acme, jsmith } = await issueDemoInvoices(ctx.deps);
    await ctx.deps.queues.get('deliver-email').remove(`deliver-email-${jsmith.deliveryId}`);
    const before = sink.messages.length;
    const race = await raceAfterLostLock(ctx, 'deliver-email', `deliver-email-${acme.deliveryId}`);

    // One run sent it; the other found it mid-send (and marked it unknown, which the sender's record
    // of the 250 then overwrote) or already sent.
    expect(outcomes(race).filter((o) => o === 'ok:sent')).toHaveLength(1);
    const row = await ctx.deps.db('email_deliveries').where('id', acme.deliveryId).first<{ status: string; message_id: string }>('status', 'message_id');
    expect(row.status).toBe('sent');
    expect(sink.messages.slice(before).map((m) => m.parsed.messageId)).toEqual([row.message_id]);
  });
});

describe('the same use case twice at the same moment, for the same id (case 24)', () => {
  it('runBillingPeriod: one invoice per partnership, gapless numbers, one delivery each', async () => {
    const ctx = await world();
    await ingestDemoFeeds(ctx.deps);
    const runs = await Promise.allSettled([
      runBillingPeriod(ctx.deps, { period: DEMO_PERIOD, requestedBy: 'race-a' }),
      runBillingPeriod(ctx.deps, { period: DEMO_PERIOD, requestedBy: 'race-b' }),
    ]);
    const results = runs.flatMap((r) => (r.status === 'fulfilled' ? r.value.partnerships : []));
    // Each partnership invoiced once across both runs; the other run found it already invoiced.
    for (const code of ['NRF-ACME', 'NRF-JSMITH']) {
      const mine = results.filter((r) => r.partnership === code).map((r) => r.outcome).sort();
      expect(mine.filter((o) => o === 'invoiced'), code).toHaveLength(1);
      for (const o of mine) expect(['invoiced', 'already_invoiced']).toContain(o);
    }
    const invoices = await ctx.deps.db('invoices').orderBy('number').select<{ number: string }[]>('number');
    expect(invoices.map((i) => i.number)).toEqual(['INV-2026-000001', 'INV-2026-000002']);
    const [deliveries] = await ctx.deps.db('email_deliveries').count<{ count: string }[]>('* as count');
    expect(Number(deliveries?.count)).toBe(2);
    await expectInvariants(ctx.deps);
  });

  it('deliverInvoice: one email, whichever call claims the delivery first', async () => {
    const ctx = await world();
    await ingestDemoFeeds(ctx.deps);
    const { acme } = await issueDemoInvoices(ctx.deps);
    const before = sink.messages.length;
    const both = await Promise.all([
      deliverInvoice(ctx.deps, acme.deliveryId, { finalAttempt: false }),
      deliverInvoice(ctx.deps, acme.deliveryId, { finalAttempt: false }),
    ]);
    expect(both.filter((o) => o.kind === 'sent')).toHaveLength(1);
    const row = await ctx.deps.db('email_deliveries').where('id', acme.deliveryId).first<{ status: string; message_id: string }>('status', 'message_id');
    expect(row.status).toBe('sent');
    expect(sink.messages.slice(before).map((m) => m.parsed.messageId)).toEqual([row.message_id]);
  });
});
