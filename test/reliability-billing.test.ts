import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/clock';
import { DEMO_PERIOD } from '../src/cli/demo';
import { ingestFile } from '../src/use-cases/ingest-file';
import { rateFile } from '../src/use-cases/rate-file';
import { runBillingPeriod } from '../src/use-cases/run-billing-period';
import { scanInbox } from '../src/use-cases/scan-inbox';
import { dropSettled, importDemoPartnerships, ingestDemoFeeds } from './support/inbox-drops';
import { findInvariantViolations } from './support/invariants';
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
