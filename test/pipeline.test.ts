import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_DIR, billPeriodThroughQueue, ingestThroughInbox } from '../src/cli/demo';
import { importPartnerships, readImportFile } from '../src/use-cases/import-partnerships';
import { type Expected, actualUsageCharges, readExpected } from './support/golden';
import { findInvariantViolations } from './support/invariants';
import { type SmtpSink, startSmtpSink } from './support/smtp-sink';
import { type TestContext, createTestContext } from './support/test-context';

/**
 * The golden scenario: the fixture feeds go into the inbox, through the real queues, workers,
 * PostgreSQL and an SMTP server, and the invoices that come out by email carry the totals worked
 * out by hand in fixtures/demo/expected.yaml.
 */
describe('the whole pipeline on the demo fixtures', () => {
  let sink: SmtpSink;
  let ctx: TestContext;
  let expected: Expected;

  beforeAll(async () => {
    expected = await readExpected(DEMO_DIR);
    sink = await startSmtpSink();
    ctx = await createTestContext({ env: { SMTP_URL: sink.url, MAIL_FROM: 'Northbridge Billing <billing@northbridge.example>' } });
    await importPartnerships(ctx.deps, await readImportFile(path.join(DEMO_DIR, 'partnerships.yaml')), 'test');
    ctx.workers();
  });

  afterAll(async () => {
    await ctx?.close();
    await sink?.close();
  });

  it('ingests and rates every feed with the expected counts and row errors', async () => {
    const dropped = await ingestThroughInbox(ctx.deps, path.join(DEMO_DIR, 'feeds'), new Date(0));
    expect(dropped).toHaveLength(4);
    const files = await ctx.deps.db('usage_files').orderBy('id')
      .select<{ name: string; status: string; rows_read: number; rows_accepted: number; rows_rejected: number; rows_duplicate: number; stored_path: string }[]>(
        'name', 'status', 'rows_read', 'rows_accepted', 'rows_rejected', 'rows_duplicate', 'stored_path');
    expect(Object.fromEntries(files.map((f) => [f.name, { status: f.status, read: f.rows_read, accepted: f.rows_accepted, rejected: f.rows_rejected, duplicate: f.rows_duplicate }])))
      .toEqual(expected.files);
    for (const f of files) expect(f.stored_path).toMatch(/^archive\/(ACME|JSMITH)\/\d+__/);

    const errors = await ctx.deps.db('usage_file_errors as e').join('usage_files as f', 'f.id', 'e.file_id').orderBy(['f.name', 'e.record'])
      .select<{ name: string; record: number; line: number | null; field: string; code: string; message: string; raw_value: string | null }[]>(
        'f.name', 'e.record', 'e.line', 'e.field', 'e.code', 'e.message', 'e.raw_value');
    expect(errors.map((e) => [e.name, e.record, e.field, e.code, e.message, e.raw_value])).toEqual([
      ['acme-usage-2026-10.csv', 2, 'usage_id', 'duplicate_usage', expect.stringMatching(/^usage id "ACME-0002" was already received in file \d+ \(acme-cluster-2026-10\.xml\) record 4; not billed again$/), 'ACME-0002'],
      ['acme-usage-2026-10.csv', 7, 'product', 'unknown_product', 'unknown product "LASER_HOUR"', 'LASER_HOUR'],
      ['smith-hpc-2026-10.xml', 3, 'product', 'no_price', 'partnership NRF-JSMITH has no price for STORAGE_TB_DAY in rules effective 2026-06-01', 'STORAGE_TB_DAY'],
      ['smith-lab-2026-10.csv', 5, 'quantity', 'invalid_quantity', expect.stringContaining('quantity "1,5"'), '1,5'],
    ]);
  });

  it('rates each usage to its hand-worked charge, split records adding up to it', async () => {
    expect(await actualUsageCharges(ctx.deps.db)).toEqual(expected.usage_charges);
  });

  it('issues one invoice per partnership with the hand-worked totals and emails it with its CSV', async () => {
    const run = await billPeriodThroughQueue(ctx.deps, expected.period, 'test');
    expect(run.invoicesCreated).toBe(2);

    for (const [code, want] of Object.entries(expected.invoices)) {
      const invoice = await ctx.deps.db('invoices as i').join('partnerships as p', 'p.id', 'i.partnership_id').where('p.code', code)
        .first<{ id: string; number: string; currency: string; total_pennies: string; status: string }>('i.id', 'i.number', 'i.currency', 'i.total_pennies', 'i.status');
      expect({ number: invoice.number, currency: invoice.currency, total: Number(invoice.total_pennies), status: invoice.status })
        .toEqual({ number: want.number, currency: want.currency, total: want.total, status: 'issued' });
      const perAccount = await ctx.deps.db('invoice_lines as l').join('accounts as a', 'a.id', 'l.account_id').where('l.invoice_id', invoice.id)
        .groupBy('a.code').select<{ code: string; amount: string }[]>('a.code', ctx.deps.db.raw('sum(l.amount_pennies)::text AS amount'));
      expect(Object.fromEntries(perAccount.map((a) => [a.code, Number(a.amount)]))).toEqual(want.accounts);

      const mail = sink.messages.find((m) => m.parsed.subject?.includes(want.number));
      expect(mail, `an email for ${want.number}`).toBeDefined();
      expect(mail!.envelope.rcptTo).toEqual(want.recipients);
      const delivery = await ctx.deps.db('email_deliveries').where('invoice_id', invoice.id).first<{ status: string; message_id: string; attempts: number }>('status', 'message_id', 'attempts');
      expect(delivery).toMatchObject({ status: 'sent', attempts: 1 });
      expect(mail!.parsed.messageId).toBe(delivery.message_id);
      expect(mail!.parsed.text).toContain(want.number);
      expect(mail!.parsed.html).toContain(want.number);

      const csv = mail!.parsed.attachments.find((a) => a.contentType.startsWith('text/csv'));
      expect(csv?.filename).toBe(`${want.number}.csv`);
      const [header, ...body] = csv!.content.toString('utf8').trim().split('\r\n');
      const columns = header!.split(',');
      const amountAt = columns.indexOf('amount');
      const accountAt = columns.indexOf('account_code');
      // The CSV's amounts (major units, plain numbers) add up per account to the hand-worked figures.
      const csvAccounts: Record<string, number> = {};
      for (const line of body) {
        const cells = line.split(',');
        const amount = cells[amountAt]!;
        expect(amount).toMatch(/^-?\d+\.\d{2}$/);
        csvAccounts[cells[accountAt]!] = (csvAccounts[cells[accountAt]!] ?? 0) + Number(amount.replace('.', ''));
      }
      expect(csvAccounts).toEqual(want.accounts);
    }
    expect(sink.messages).toHaveLength(2);
  });

  it('leaves every bookkeeping invariant true', async () => {
    const violations = await findInvariantViolations(ctx.deps.db);
    expect(violations).toEqual(Object.fromEntries(Object.keys(violations).map((k) => [k, []])));
  });

  it('bills nothing twice when the same feeds and the same period come again', async () => {
    const before = await snapshot(ctx);
    const again = new Date();
    await ingestThroughInbox(ctx.deps, path.join(DEMO_DIR, 'feeds'), again);
    const repeats = await ctx.deps.db('usage_files').where('received_at', '>=', again).select<{ status: string; stored_path: string }[]>('status', 'stored_path');
    expect(repeats.map((r) => r.status)).toEqual(['duplicate', 'duplicate', 'duplicate', 'duplicate']);

    const run = await billPeriodThroughQueue(ctx.deps, expected.period, 'test');
    expect(run.invoicesCreated).toBe(0);
    expect(run.partnerships.map((p) => p.outcome)).toEqual(['already_invoiced', 'already_invoiced']);
    expect(await snapshot(ctx)).toEqual(before);
    expect(sink.messages).toHaveLength(2);
    const violations = await findInvariantViolations(ctx.deps.db);
    expect(Object.values(violations).flat()).toEqual([]);
  });
});

async function snapshot(ctx: TestContext): Promise<unknown> {
  const { db } = ctx.deps;
  return {
    usages: await db('product_usages').orderBy('id').select('id', 'external_id', 'quantity'),
    records: await db('billing_records').orderBy('id').select('id', 'usage_id', 'account_id'),
    transactions: await db('transactions').orderBy('id').select('id', 'amount_pennies', 'invoice_id'),
    invoices: await db('invoices').orderBy('id').select('id', 'number', 'total_pennies'),
    deliveries: await db('email_deliveries').orderBy('id').select('id', 'status', 'attempts'),
  };
}
