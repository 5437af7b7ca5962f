import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/clock';
import { ingestThroughInbox } from '../src/cli/demo';
import { importPartnerships, readImportFile } from '../src/use-cases/import-partnerships';
import { reratePeriod } from '../src/use-cases/rerate-period';
import { waitUntilSettled } from '../src/use-cases/wait-for-pipeline';
import { previewInvoice, runBillingPeriod } from '../src/use-cases/run-billing-period';
import { actualUsageCharges } from './support/golden';
import { findInvariantViolations } from './support/invariants';
import { type TestContext, createTestContext } from './support/test-context';

/**
 * Period-close settlement after the fact: late usage in a settled and invoiced period, re-rating
 * after a rule change (dry run, then for real, then again), and previews that write nothing. The
 * partnerships and October feeds are fixtures/scenarios/period-close (worked by hand in its
 * expected.yaml); the clock stands in December so that November has closed too.
 */
const SCENARIO = path.resolve(import.meta.dirname, '../fixtures/scenarios/period-close');

let ctx: TestContext;
afterEach(async () => {
  await ctx?.close();
});

async function setUp(): Promise<void> {
  ctx = await createTestContext({ clock: fixedClock('2026-12-02T10:00:00Z') });
  await importPartnerships(ctx.deps, await readImportFile(path.join(SCENARIO, 'partnerships.yaml')), 'test');
  ctx.workers();
  await ingestThroughInbox(ctx.deps, path.join(SCENARIO, 'feeds'), new Date(0));
}

/** Drops one more feed for a partner through the inbox and waits until it is rated. */
async function lateFeed(partner: string, name: string, csv: string): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'late-feed-'));
  await mkdir(path.join(dir, partner));
  await writeFile(path.join(dir, partner, name), csv);
  await ingestThroughInbox(ctx.deps, dir, new Date(0));
  // Wait for this very file (the count of files received is already met by the earlier ones).
  await waitUntilSettled(ctx.deps, ['inbox-scan', 'ingest-file', 'rate-file'], async () => {
    const file = await ctx.deps.db('usage_files').where('name', name).first<{ status: string } | undefined>('status');
    return file !== undefined && ['rated', 'failed', 'duplicate'].includes(file.status);
  });
  const file = await ctx.deps.db('usage_files').where('name', name).first<{ status: string }>('status');
  expect(file.status).toBe('rated');
}

async function invoiceOf(partnership: string, period: string): Promise<{ total: number; lines: Array<{ kind: string; description: string; amount: number }> }> {
  const inv = await ctx.deps.db('invoices as i').join('partnerships as p', 'p.id', 'i.partnership_id')
    .where({ 'p.code': partnership, 'i.period': period }).first<{ id: string; total_pennies: string }>('i.id', 'i.total_pennies');
  const lines = await ctx.deps.db('invoice_lines').where('invoice_id', inv.id).orderBy('position')
    .select<{ kind: string; description: string; amount_pennies: string }[]>('kind', 'description', 'amount_pennies');
  return { total: Number(inv.total_pennies), lines: lines.map((l) => ({ kind: l.kind, description: l.description, amount: Number(l.amount_pennies) })) };
}

const count = async (table: string): Promise<number> => Number((await ctx.deps.db(table).count<{ count: string }[]>('* as count'))[0]!.count);

describe('late usage in a settled, invoiced period', () => {
  it('revises the minimum commitment true-up on the next invoice, beside the late item', async () => {
    await setUp();
    await runBillingPeriod(ctx.deps, { period: '2026-10', requestedBy: 'test' });
    expect((await invoiceOf('NRF-MIN', '2026-10')).total).toBe(50000);

    // 200 TB-days in October at 1.25 = 25000: usage is now 43750, still under the 50000 minimum.
    await lateFeed('MINCO', 'late-storage.csv', 'usage_id,product,user,quantity,start_time\nM-3,STORAGE_TB_DAY,m.min,200,2026-10-20T00:00:00Z\n');
    await runBillingPeriod(ctx.deps, { period: '2026-11', requestedBy: 'test' });
    const november = await invoiceOf('NRF-MIN', '2026-11');
    // October: the late 25000 and the true-up revised from 31250 to 6250 (-25000). November: no usage, true-up 50000.
    expect(november.lines).toEqual([
      { kind: 'charge', description: 'Research storage (usage in 2026-10, late)', amount: 25000 },
      { kind: 'adjustment', description: 'Revised: Minimum commitment 500.00 for 2026-10: usage came to 437.50', amount: -25000 },
      { kind: 'adjustment', description: 'Minimum commitment 500.00 for 2026-11: usage came to 0.00', amount: 50000 },
    ]);
    expect(november.total).toBe(50000);
    expect(Object.values(await findInvariantViolations(ctx.deps.db)).flat()).toEqual([]);
  });

  it('moves invoiced volume-tier usages back and forth to their final tier, netting the period to its settled price', async () => {
    await setUp();
    await runBillingPeriod(ctx.deps, { period: '2026-10', requestedBy: 'test' });
    expect((await invoiceOf('NRF-VOL', '2026-10')).total).toBe(48600);

    // V-0 comes before every October usage. Rated on arrival: 50 reached -> 2.00, 10000 - 1000 = 9000;
    // V-1 and V-2 move up (to 1.50: +2700, +3600, adjustments as they are invoiced).
    await lateFeed('VOLCO', 'late-cpu.csv', 'usage_id,product,user,quantity,start_time\nV-0,CPU_HOUR,a.vole,50,2026-10-01T09:00:00Z\n');
    expect(await actualUsageCharges(ctx.deps.db)).toMatchObject({ 'V-0': 9000, 'V-1': 8100, 'V-2': 10800, 'V-3': 36000 });

    // November's run settles October again: 590 units, all at 1.00 after the 10 % discount.
    await runBillingPeriod(ctx.deps, { period: '2026-11', requestedBy: 'test' });
    expect(await actualUsageCharges(ctx.deps.db)).toMatchObject({ 'V-0': 4500, 'V-1': 5400, 'V-2': 7200, 'V-3': 36000 });
    // V-0 4500, V-1 +2700 - 2700, V-2 +3600 - 3600: October's usage now 53100 = 590 x 1.00 x 0.9.
    expect((await invoiceOf('NRF-VOL', '2026-11')).total).toBe(4500);
    expect(Object.values(await findInvariantViolations(ctx.deps.db)).flat()).toEqual([]);
  });
});

describe('re-rating a period after a rule change', () => {
  async function changeSeqRunPrice(price: string): Promise<void> {
    const doc = YAML.parse(await readFile(path.join(SCENARIO, 'partnerships.yaml'), 'utf8')) as { partnerships: Array<{ code: string; rules: Array<{ rules: Array<Record<string, string>> }> }> };
    const fee = doc.partnerships.find((p) => p.code === 'NRF-FEE')!;
    fee.rules[0]!.rules[0]!.price = price;
    const file = path.join(await mkdtemp(path.join(os.tmpdir(), 'rules-')), 'partnerships.yaml');
    await writeFile(file, YAML.stringify(doc));
    await importPartnerships(ctx.deps, await readImportFile(file), 'test');
  }

  it('replaces uninvoiced records, shows a dry run first, and changes nothing the second time', async () => {
    await setUp();
    await changeSeqRunPrice('280.00');
    // The old version is kept (its transactions name it) and retired; the new one is live.
    const versions = await ctx.deps.db('rule_versions as v').join('partnerships as p', 'p.id', 'v.partnership_id').where('p.code', 'NRF-FEE')
      .orderBy('v.id').select<{ superseded_at: Date | null }[]>('v.superseded_at');
    expect(versions.map((v) => v.superseded_at !== null)).toEqual([true, false]);

    const transactions = await count('transactions');
    const dry = await reratePeriod(ctx.deps, { partnership: 'NRF-FEE', period: '2026-10', dryRun: true, actor: 'test' });
    expect(dry).toMatchObject({ replaced: 1, adjusted: 0, unchanged: 0, accounts: [{ account: 'FE-1', before: '30000', after: '28000', difference: '-2000' }] });
    expect(await count('transactions')).toBe(transactions);
    expect(await actualUsageCharges(ctx.deps.db)).toMatchObject({ 'F-1': 30000 });

    const real = await reratePeriod(ctx.deps, { partnership: 'NRF-FEE', period: '2026-10', dryRun: false, actor: 'test' });
    expect(real).toMatchObject({ replaced: 1, adjusted: 0, accounts: [{ account: 'FE-1', before: '30000', after: '28000' }] });
    expect(await actualUsageCharges(ctx.deps.db)).toMatchObject({ 'F-1': 28000 });
    const again = await reratePeriod(ctx.deps, { partnership: 'NRF-FEE', period: '2026-10', dryRun: false, actor: 'test' });
    expect(again).toMatchObject({ replaced: 0, adjusted: 0, unchanged: 1 });

    await runBillingPeriod(ctx.deps, { period: '2026-10', requestedBy: 'test' });
    expect((await invoiceOf('NRF-FEE', '2026-10')).total).toBe(28000 + 2500 - 1000);
  });

  it('corrects invoiced usages with adjustments on the next invoice and never touches the issued one', async () => {
    await setUp();
    await runBillingPeriod(ctx.deps, { period: '2026-10', requestedBy: 'test' });
    const issued = await invoiceOf('NRF-FEE', '2026-10');
    await changeSeqRunPrice('310.00');
    const real = await reratePeriod(ctx.deps, { partnership: 'NRF-FEE', period: '2026-10', dryRun: false, actor: 'test' });
    expect(real).toMatchObject({ replaced: 0, adjusted: 1, accounts: [{ account: 'FE-1', before: '30000', after: '31000', difference: '1000' }] });
    expect(await reratePeriod(ctx.deps, { partnership: 'NRF-FEE', period: '2026-10', dryRun: false, actor: 'test' })).toMatchObject({ adjusted: 0, unchanged: 1 });

    await runBillingPeriod(ctx.deps, { period: '2026-11', requestedBy: 'test' });
    expect(await invoiceOf('NRF-FEE', '2026-10')).toEqual(issued);
    const november = await invoiceOf('NRF-FEE', '2026-11');
    // November: its own platform fee; October: the +1000 correction. The voucher was October's only.
    expect(november.lines).toEqual([
      { kind: 'adjustment', description: 'Sequencing run adjustment (usage in 2026-10, late)', amount: 1000 },
      { kind: 'fee', description: 'Platform fee (2026-11)', amount: 2500 },
    ]);
    expect(Object.values(await findInvariantViolations(ctx.deps.db)).flat()).toEqual([]);
  });

  it('refuses proposed rules outside a dry run', async () => {
    await setUp();
    await expect(reratePeriod(ctx.deps, { partnership: 'NRF-FEE', period: '2026-10', dryRun: false, ruleVersions: [], actor: 'test' })).rejects.toThrow(
      'proposed rules can only be tried in a dry run: import them first to re-rate for real',
    );
  });
});

describe('draft preview', () => {
  it('shows the invoice the run would issue, settlement included, and writes nothing', async () => {
    await setUp();
    const before = { transactions: await count('transactions'), records: await count('billing_records'), invoices: await count('invoices'), audit: await count('audit_log') };
    const draft = await previewInvoice(ctx.deps, { partnership: 'NRF-MIN', period: '2026-10' });
    expect(draft.outcome).toMatchObject({ outcome: 'invoiced', invoiceNumber: 'INV-2026-000001', totalPennies: '50000' });
    expect(draft.document?.lines.map((l) => l.amount)).toEqual([12500n, 31250n, 6250n]);
    expect({ transactions: await count('transactions'), records: await count('billing_records'), invoices: await count('invoices'), audit: await count('audit_log') }).toEqual(before);
    // The real run takes the same number: the preview's was rolled back.
    const run = await runBillingPeriod(ctx.deps, { period: '2026-10', requestedBy: 'test' });
    expect(run.partnerships.find((p) => p.partnership === 'NRF-CAP')).toMatchObject({ invoiceNumber: 'INV-2026-000001' });
  });
});
