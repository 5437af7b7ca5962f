import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Temporal } from 'temporal-polyfill';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateLatest } from '../adapters/db/database';
import { fixedClock } from '../src/clock';
import { DEMO_DIR, DEMO_PERIOD } from '../src/cli/demo';
import { ingestFile } from '../src/use-cases/ingest-file';
import { rateFile } from '../src/use-cases/rate-file';
import { requestBillingRun, runBillingPeriod, scheduledRunKey } from '../src/use-cases/run-billing-period';
import { deliverInvoice } from '../src/use-cases/deliver-invoice';
import { RetryableError } from '../src/use-cases/errors';
import { reconcile } from '../src/use-cases/reconcile';
import { scanInbox } from '../src/use-cases/scan-inbox';
import { type IssuedInvoice, dropSettled, importDemoPartnerships, ingestDemoFeeds, issueDemoInvoices } from './support/inbox-drops';
import { findInvariantViolations } from './support/invariants';
import { type SmtpSink, startSmtpSink } from './support/smtp-sink';
import { type TestContext, createTestContext } from './support/test-context';

/**
 * Reliability cases 21 and 22, for the invoices: billing a period twice is stopped by a unique key
 * in PostgreSQL (not by a flag a second run could miss), and usage that arrives after its period was
 * invoiced goes on the next invoice as a late item labelled with its own period, while the issued
 * invoice stays exactly as it was. The clock reads 5 December 2026, so October and November are over.
 */

interface InvoiceView {
  number: string;
  period: string;
  status: string;
  total: string;
  lines: Array<[usagePeriod: string, kind: string, description: string, quantity: string, amount: string]>;
}

async function invoicesOf(ctx: TestContext, partnership: string): Promise<InvoiceView[]> {
  const invoices = await ctx.deps.db('invoices as i').join('partnerships as p', 'p.id', 'i.partnership_id').where('p.code', partnership).orderBy('i.period')
    .select<{ id: string; number: string; period: string; status: string; total_pennies: string }[]>('i.id', 'i.number', 'i.period', 'i.status', 'i.total_pennies');
  const out: InvoiceView[] = [];
  for (const inv of invoices) {
    const lines = await ctx.deps.db('invoice_lines').where('invoice_id', inv.id).orderBy('position')
      .select<{ usage_period: string; kind: string; description: string; quantity: string; amount_pennies: string }[]>('usage_period', 'kind', 'description', 'quantity', 'amount_pennies');
    out.push({
      number: inv.number,
      period: inv.period,
      status: inv.status,
      total: inv.total_pennies,
      lines: lines.map((l) => [l.usage_period, l.kind, l.description, l.quantity, l.amount_pennies]),
    });
  }
  return out;
}

describe('invoicing a period (cases 21 and 22)', () => {
  let ctx: TestContext;
  let october: InvoiceView[];

  beforeAll(async () => {
    ctx = await createTestContext({ clock: fixedClock('2026-12-05T10:00:00Z') });
    await importDemoPartnerships(ctx.deps);
    await ingestDemoFeeds(ctx.deps);
    const run = await runBillingPeriod(ctx.deps, { period: DEMO_PERIOD, requestedBy: 'test' });
    expect(run.partnerships.map((p) => [p.partnership, p.outcome])).toEqual([['NRF-ACME', 'invoiced'], ['NRF-JSMITH', 'invoiced']]);
    october = await invoicesOf(ctx, 'NRF-ACME');
  });

  afterAll(async () => {
    await ctx?.close();
  });

  it('21: a second run of the period finds every partnership already invoiced and issues nothing', async () => {
    const again = await runBillingPeriod(ctx.deps, { period: DEMO_PERIOD, requestedBy: 'test-again' });
    expect(again.invoicesCreated).toBe(0);
    expect(again.partnerships.map((p) => [p.partnership, p.outcome])).toEqual([['NRF-ACME', 'already_invoiced'], ['NRF-JSMITH', 'already_invoiced']]);
    expect(await invoicesOf(ctx, 'NRF-ACME')).toEqual(october);
  });

  it('21: the guarantee is a unique key: PostgreSQL itself refuses a second invoice for the partnership and period', async () => {
    const first = await ctx.deps.db('invoices').where({ period: DEMO_PERIOD, kind: 'invoice' }).first<Record<string, unknown>>('*');
    const { id: _id, number: _n, number_seq: _s, ...copy } = first;
    await expect(ctx.deps.db('invoices').insert({ ...copy, number: 'INV-2026-999999', number_seq: 999999 })).rejects.toMatchObject({
      code: '23505',
      constraint: 'invoices_one_per_period',
    });
  });

  it('22: usage of October arriving after October was invoiced goes on the November invoice as a late item; the October invoice is untouched', async () => {
    // One late October usage, and one of November so the November invoice has both.
    await dropSettled(ctx.deps, 'ACME', 'late.csv', [
      'usage_id,product,user,quantity,start_time',
      'LATE-1,CONFOCAL_HOUR,a.patel,2,2026-10-30T09:00:00Z',
      'NOV-1,CONFOCAL_HOUR,a.patel,1,2026-11-10T09:00:00Z',
      '',
    ].join('\n'));
    const [file] = await scanInbox(ctx.deps);
    expect(await ingestFile(ctx.deps, file!.fileId)).toMatchObject({ kind: 'parsed', accepted: 2 });
    expect(await rateFile(ctx.deps, file!.fileId)).toMatchObject({ kind: 'rated' });

    const november = await runBillingPeriod(ctx.deps, { period: '2026-11', requestedBy: 'test' });
    expect(november.partnerships.find((p) => p.partnership === 'NRF-ACME')).toMatchObject({ outcome: 'invoiced', invoiceNumber: 'INV-2026-000003' });
    const invoices = await invoicesOf(ctx, 'NRF-ACME');
    expect(invoices[0]).toEqual(october[0]);
    // The late 2 x 42.50, labelled with its own period; November's own: NOV-1 and the demo's ACME-0006
    // (31 October 23:30 at -01:00 is already 1 November in London), 1 + 1 x 42.50.
    expect(invoices[1]).toEqual({
      number: 'INV-2026-000003',
      period: '2026-11',
      status: 'issued',
      total: '17000',
      lines: [
        ['2026-10', 'charge', 'Confocal microscope time (usage in 2026-10, late)', '2', '8500'],
        ['2026-11', 'charge', 'Confocal microscope time', '2', '8500'],
      ],
    });
    const violations = await findInvariantViolations(ctx.deps.db);
    expect(violations).toEqual(Object.fromEntries(Object.keys(violations).map((k) => [k, []])));
  });
});

/**
 * The scheduled close of a period (the monthly-close scheduler's 'billing-run' job, which names no
 * run and no period) is one billing run per period, recorded under a unique request key in
 * PostgreSQL: the job retried after a fault, enqueued twice, or fired again on the next of its days
 * finds that run and carries it on instead of recording another. The scheduler's job does not run
 * the run itself: it hands it to the run's own job, { billingRunId } under billing-run-<id>, the
 * job the reconciler looks for.
 */
describe('a scheduled billing run is recorded once per period', () => {
  const SCHEDULED = { requestedBy: 'scheduler' } as const; // the scheduler's job template (jobs/worker.ts)
  const contexts: TestContext[] = [];

  afterAll(async () => {
    for (const c of contexts) await c.close();
  });

  async function runsOf(c: TestContext): Promise<Array<{ id: number; period: string; status: string; request_key: string | null; invoices_created: number; error: string | null }>> {
    const rows = await c.deps.db('billing_runs').orderBy('id').select<Array<{ id: string; period: string; status: string; request_key: string | null; invoices_created: number; error: string | null }>>(
      'id', 'period', 'status', 'request_key', 'invoices_created', 'error');
    return rows.map((r) => ({ ...r, id: Number(r.id) }));
  }

  it('the job enqueued twice and retried after a database fault records one run, which issues each invoice once', { timeout: 60_000 }, async () => {
    const c = await createTestContext({ clock: fixedClock('2026-11-02T06:00:00Z') });
    contexts.push(c);
    await importDemoPartnerships(c.deps);
    await ingestDemoFeeds(c.deps);
    // A real database error on the run's first invoice insert only (a sequence counts across rollbacks).
    await c.deps.db.raw(`CREATE SEQUENCE test_run_fault`);
    await c.deps.db.raw(`CREATE FUNCTION test_run_fault() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF nextval('test_run_fault') = 1 THEN RAISE EXCEPTION 'simulated database fault during the scheduled run'; END IF; RETURN NEW; END $$`);
    await c.deps.db.raw(`CREATE TRIGGER test_run_fault BEFORE INSERT ON invoices FOR EACH ROW EXECUTE FUNCTION test_run_fault()`);

    const queue = c.deps.queues.get('billing-run');
    const jobs = [await queue.add('billing-run', SCHEDULED), await queue.add('billing-run', SCHEDULED)];
    c.workers();
    for (const job of jobs) await expect.poll(() => queue.getJobState(job.id!), { timeout: 30_000 }).toBe('completed');
    const [first] = await runsOf(c);
    // Both firings handed the one run to its one job, which runs it.
    const done = await Promise.all(jobs.map((j) => queue.getJob(j.id!)));
    expect(done.map((j) => (j!.returnvalue as { billingRunId: number }).billingRunId)).toEqual([first!.id, first!.id]);
    const runJobId = `billing-run-${first!.id}`;
    await expect.poll(() => queue.getJobState(runJobId), { timeout: 30_000 }).toBe('completed');

    const runs = await runsOf(c);
    expect(runs).toEqual([{ id: first!.id, period: DEMO_PERIOD, status: 'completed', request_key: `schedule:${DEMO_PERIOD}`, invoices_created: 2, error: null }]);
    expect((await queue.getJobs(['completed', 'failed', 'waiting', 'active', 'delayed'])).map((j) => j.id).sort()).toEqual([...jobs.map((j) => j.id), runJobId].sort());
    // The fault did happen, in the run's job, and that job was retried.
    const runJob = await queue.getJob(runJobId);
    expect(runJob!.data).toEqual({ billingRunId: first!.id, requestedBy: 'scheduler' });
    expect((runJob!.stacktrace ?? []).filter((s) => s.includes('simulated database fault during the scheduled run'))).toHaveLength(1);
    const invoices = await c.deps.db('invoices').where('period', DEMO_PERIOD).orderBy('number').select<{ number: string; billing_run_id: string }[]>('number', 'billing_run_id');
    expect(invoices.map((i) => [i.number, Number(i.billing_run_id)])).toEqual([['INV-2026-000001', runs[0]!.id], ['INV-2026-000002', runs[0]!.id]]);
  });

  it('while the run of a scheduled job is running, the reconciler finds its job and enqueues no second one', { timeout: 60_000 }, async () => {
    const c = await createTestContext({ clock: fixedClock('2026-11-02T06:00:00Z') });
    contexts.push(c);
    await importDemoPartnerships(c.deps);
    await ingestDemoFeeds(c.deps);
    const { db } = c.deps;
    // The run stops at its first invoice: another transaction holds every partnership's row lock.
    const blocker = await db.transaction();
    try {
      await blocker('partnerships').forUpdate().select('id');
      const queue = c.deps.queues.get('billing-run');
      const scheduled = await queue.add('billing-run', SCHEDULED);
      c.workers();
      await expect.poll(async () => (await runsOf(c)).map((r) => r.status), { timeout: 30_000 }).toEqual(['running']);
      const [run] = await runsOf(c);
      // Running, and waiting for the lock: in the middle of its work.
      await expect.poll(async () => (await db.raw<{ rows: unknown[] }>(
        `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows.length, { timeout: 30_000 }).toBe(1);

      expect(await reconcile(c.deps)).toMatchObject({ billingRunsQueued: 0, awaitingOperator: [] });
      // One job that names the run, the scheduler's own job aside.
      const jobs = await queue.getJobs(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'completed', 'failed']);
      expect(jobs.filter((j) => j.id !== scheduled.id).map((j): [string | undefined, unknown] => [j.id, j.data])).toEqual([[`billing-run-${run!.id}`, { billingRunId: run!.id, requestedBy: 'scheduler' }]]);
    } finally {
      await blocker.commit();
    }
    await expect.poll(async () => (await runsOf(c)).map((r) => r.status), { timeout: 30_000 }).toEqual(['completed']);
    expect(await db('invoices').where('period', DEMO_PERIOD).count<{ count: string }[]>('* as count')).toEqual([{ count: '2' }]);
  });

  it('firings at once share the run; a firing on a later day carries it on for a partnership whose files were still in flight', async () => {
    let now = '2026-11-02T06:00:00Z';
    const c = await createTestContext({ clock: { now: () => Temporal.Instant.from(now) } });
    contexts.push(c);
    await importDemoPartnerships(c.deps);
    // The demo feeds, except that one ACME file is parsed but not rated yet on day 2.
    await dropDemoFeedsSettled(c);
    const registered = await scanInbox(c.deps);
    const files = await c.deps.db('usage_files as f').join('partners as p', 'p.id', 'f.partner_id').whereIn('f.id', registered.map((r) => r.fileId)).orderBy('f.id')
      .select<{ id: string; code: string }[]>('f.id', 'p.code');
    for (const f of files) expect((await ingestFile(c.deps, Number(f.id))).kind).toBe('parsed');
    const late = Number(files.find((f) => f.code === 'ACME')!.id);
    for (const f of files) if (Number(f.id) !== late) expect((await rateFile(c.deps, Number(f.id))).kind).toBe('rated');

    // Day 2: the job twice at the same moment (say, two workers after a lost lock).
    const [a, b] = await Promise.all([runBillingPeriod(c.deps, SCHEDULED), runBillingPeriod(c.deps, SCHEDULED)]);
    expect(b.billingRunId).toBe(a.billingRunId);
    const outcomes = (r: typeof a) => r.partnerships.map((p) => [p.partnership, p.outcome]);
    // Whichever ran the partnerships reports what it did; both agree that ACME waits for its files.
    expect([outcomes(a), outcomes(b)]).toContainEqual([['NRF-ACME', 'files_in_progress'], ['NRF-JSMITH', 'invoiced']]);
    expect(await runsOf(c)).toEqual([{ id: a.billingRunId, period: DEMO_PERIOD, status: 'completed', request_key: `schedule:${DEMO_PERIOD}`, invoices_created: 1, error: null }]);

    // Day 3: the file is rated; the next firing carries the same run on and invoices ACME.
    expect((await rateFile(c.deps, late)).kind).toBe('rated');
    now = '2026-11-03T06:00:00Z';
    const day3 = await runBillingPeriod(c.deps, SCHEDULED);
    expect(day3.billingRunId).toBe(a.billingRunId);
    expect(outcomes(day3)).toEqual([['NRF-ACME', 'invoiced'], ['NRF-JSMITH', 'already_invoiced']]);
    expect(day3.invoicesCreated).toBe(2);
    expect(await runsOf(c)).toEqual([{ id: a.billingRunId, period: DEMO_PERIOD, status: 'completed', request_key: `schedule:${DEMO_PERIOD}`, invoices_created: 2, error: null }]);

    // Day 4: nothing is left; the run is reported as it stands and nothing is recorded or issued.
    now = '2026-11-04T06:00:00Z';
    const day4 = await runBillingPeriod(c.deps, SCHEDULED);
    expect(day4).toMatchObject({ billingRunId: a.billingRunId, invoicesCreated: 2 });
    // The same request made through requestBillingRun gets the same run, and no second job for it.
    const again = await requestBillingRun(c.deps, { period: DEMO_PERIOD, requestedBy: 'ops', requestKey: scheduledRunKey(DEMO_PERIOD) });
    expect(again).toEqual({ billingRunId: a.billingRunId, created: false });
    expect(await runsOf(c)).toHaveLength(1);
    expect(await c.deps.db('invoices').where('period', DEMO_PERIOD).count<{ count: string }[]>('* as count')).toEqual([{ count: '2' }]);

    // A run asked for by a person is a run of its own, as before: the key is the scheduler's.
    const manual = await requestBillingRun(c.deps, { period: DEMO_PERIOD, requestedBy: 'ops' });
    expect(manual.created).toBe(true);
    expect((await runsOf(c)).map((r) => [r.id, r.request_key])).toEqual([[a.billingRunId, `schedule:${DEMO_PERIOD}`], [manual.billingRunId, null]]);
  });

  it('the guarantee is a unique index; the migration gives the key to the first scheduled run of each period already recorded', async () => {
    const c = await createTestContext();
    contexts.push(c);
    const { db } = c.deps;
    await db.migrate.down({ name: '0009-billing-run-request-keys' });
    const insert = async (period: string, requestedBy: string) =>
      Number((await db('billing_runs').insert({ period, status: 'completed', requested_by: requestedBy }).returning<{ id: string }[]>('id'))[0]!.id);
    const sept = [await insert('2026-09', 'scheduler'), await insert('2026-09', 'scheduler')];
    const manual = await insert('2026-09', 'ops');
    const oct = await insert('2026-10', 'scheduler');
    await migrateLatest(db);

    const keys = await db('billing_runs').orderBy('id').select<{ id: string; request_key: string | null }[]>('id', 'request_key');
    expect(keys.map((k) => [Number(k.id), k.request_key])).toEqual([[sept[0], 'schedule:2026-09'], [sept[1], null], [manual, null], [oct, 'schedule:2026-10']]);
    await expect(db('billing_runs').insert({ period: '2026-10', status: 'queued', requested_by: 'scheduler', request_key: 'schedule:2026-10' })).rejects.toMatchObject({
      code: '23505',
      constraint: 'billing_runs_one_per_request_key',
    });
  });
});

/** The demo feeds dropped into the inbox, settled, without being scanned. */
async function dropDemoFeedsSettled(c: TestContext): Promise<void> {
  const feeds = path.join(DEMO_DIR, 'feeds');
  for (const partner of await readdir(feeds)) {
    for (const name of await readdir(path.join(feeds, partner))) await dropSettled(c.deps, partner, name, await readFile(path.join(feeds, partner, name)));
  }
}

/**
 * A PostgreSQL outage while a delivery records what the SMTP server answered. The answer is known
 * (a 451: the server did not take the message; a 250: it did), so the delivery must not be left
 * `sending` to become `unknown` later: recording is retried with backoff until the database is back.
 * The outage is real: a trigger on the recording statement terminates its own backend
 * (pg_terminate_backend, as a server shutdown or a dropped connection does), for as long as the
 * test keeps a row in test_outage.
 */
describe('a database outage while recording the SMTP reply', () => {
  let sink: SmtpSink;
  let c: TestContext;
  let invoices: { acme: IssuedInvoice; jsmith: IssuedInvoice };

  beforeAll(async () => {
    sink = await startSmtpSink();
    c = await createTestContext({ env: { SMTP_URL: sink.url, MAIL_FROM: 'Northbridge Billing <billing@northbridge.example>' } });
    await importDemoPartnerships(c.deps);
    await ingestDemoFeeds(c.deps);
    invoices = await issueDemoInvoices(c.deps);
    await c.deps.db.raw(`CREATE TABLE test_outage (outcome text NOT NULL)`);
    await c.deps.db.raw(`CREATE SEQUENCE test_outage_drops`);
    await c.deps.db.raw(`CREATE FUNCTION test_outage() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF EXISTS (SELECT 1 FROM test_outage WHERE outcome = NEW.outcome) THEN
          PERFORM nextval('test_outage_drops');
          PERFORM pg_terminate_backend(pg_backend_pid());
        END IF;
        RETURN NEW;
      END $$`);
    await c.deps.db.raw(`CREATE TRIGGER test_outage BEFORE UPDATE ON email_attempts FOR EACH ROW EXECUTE FUNCTION test_outage()`);
  });

  afterAll(async () => {
    await c?.close();
    await sink?.close();
  });

  const drops = async () => Number((await c.deps.db.raw<{ rows: { n: string }[] }>(`SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM test_outage_drops`)).rows[0]!.n);
  const delivery = (id: number) => c.deps.db('email_deliveries').where('id', id).first<{ status: string; attempts: number; last_error: string | null }>('status', 'attempts', 'last_error');
  const attempts = async (id: number) =>
    (await c.deps.db('email_attempts').where('delivery_id', id).orderBy('attempt').select<{ attempt: number; outcome: string | null; reply_code: number | null }[]>('attempt', 'outcome', 'reply_code'))
      .map((a) => [a.attempt, a.outcome, a.reply_code]);

  /** Starts the outage for statements recording `outcome`, runs `send`, and ends the outage after the connection was dropped `times` times. */
  async function throughOutage<T>(outcome: string, times: number, send: () => Promise<T>): Promise<PromiseSettledResult<T>> {
    const before = await drops();
    await c.deps.db('test_outage').insert({ outcome });
    const settled = Promise.allSettled([send()]);
    try {
      await expect.poll(drops, { timeout: 15_000, interval: 50 }).toBeGreaterThanOrEqual(before + times);
    } finally {
      await c.deps.db('test_outage').del();
    }
    return (await settled)[0];
  }

  it('a 451 is recorded as a transient failure once the database is back: the delivery is pending, not left sending', async () => {
    const id = invoices.acme.deliveryId;
    sink.respondWith((e) => (e.stage === 'data' ? { code: 451, message: '4.3.0 Temporary local problem, try again' } : null));
    const result = await throughOutage('transient_failure', 2, () => deliverInvoice(c.deps, id, { finalAttempt: false }));
    expect(result.status).toBe('rejected');
    const err = (result as PromiseRejectedResult).reason as Error;
    expect(err).toBeInstanceOf(RetryableError);
    expect(err.message).toMatch(/451/);
    expect(await delivery(id)).toMatchObject({ status: 'pending', attempts: 1, last_error: expect.stringMatching(/451/) as string });
    expect(await attempts(id)).toEqual([[1, 'transient_failure', 451]]);
    expect(sink.messages).toHaveLength(0);

    // The next attempt (the job's retry) sends it, once.
    sink.respondWith(null);
    expect((await deliverInvoice(c.deps, id, { finalAttempt: false })).kind).toBe('sent');
    expect(await delivery(id)).toMatchObject({ status: 'sent', attempts: 2 });
    expect(await attempts(id)).toEqual([[1, 'transient_failure', 451], [2, 'sent', 250]]);
    expect(sink.messages.map((m) => m.parsed.subject)).toEqual([expect.stringContaining(invoices.acme.number)]);
  });

  it('a 250 is recorded as sent once the database is back: the delivery is sent, not unknown, and goes out once', async () => {
    const id = invoices.jsmith.deliveryId;
    const before = sink.messages.length;
    const result = await throughOutage('sent', 2, () => deliverInvoice(c.deps, id, { finalAttempt: false }));
    expect(result).toMatchObject({ status: 'fulfilled', value: { kind: 'sent', deliveryId: id } });
    expect(await delivery(id)).toMatchObject({ status: 'sent', attempts: 1, last_error: null });
    expect(await attempts(id)).toEqual([[1, 'sent', 250]]);
    // A duplicate job finds it sent and does nothing.
    expect(await deliverInvoice(c.deps, id, { finalAttempt: false })).toEqual({ kind: 'unchanged', deliveryId: id, status: 'sent' });
    expect(sink.messages.slice(before).map((m) => m.parsed.subject)).toEqual([expect.stringContaining(invoices.jsmith.number)]);
  });
});
