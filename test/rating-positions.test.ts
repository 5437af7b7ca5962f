import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/clock';
import { importPartnerships, readImportFile } from '../src/use-cases/import-partnerships';
import { ingestFile } from '../src/use-cases/ingest-file';
import { rateFile } from '../src/use-cases/rate-file';
import { runBillingPeriod } from '../src/use-cases/run-billing-period';
import { scanInbox } from '../src/use-cases/scan-inbox';
import { actualUsageCharges } from './support/golden';
import { dropSettled } from './support/inbox-drops';
import { findInvariantViolations } from './support/invariants';
import { type TestContext, createTestContext } from './support/test-context';

/**
 * Tiers and allowances price a usage by its place in the period. These drive the rule-kinds
 * scenario's two feeds strictly one after the other (the golden runner may interleave them), so a
 * usage that starts earlier arrives after later ones were rated, before and after they were invoiced.
 */
const SCENARIO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/scenarios/rule-kinds');

describe('rating by position in the period when an earlier usage arrives late', () => {
  let ctx: TestContext;
  afterEach(async () => {
    await ctx?.close();
  });

  const take = async (name: string) => {
    await dropSettled(ctx.deps, 'KAPPA', name, await readFile(path.join(SCENARIO, 'feeds/KAPPA', name)));
    const [file] = await scanInbox(ctx.deps);
    expect(await ingestFile(ctx.deps, file!.fileId)).toMatchObject({ kind: 'parsed' });
    expect(await rateFile(ctx.deps, file!.fileId)).toMatchObject({ kind: 'rated' });
  };
  const setUp = async () => {
    ctx = await createTestContext({ clock: fixedClock('2026-12-02T10:00:00Z') });
    await importPartnerships(ctx.deps, await readImportFile(path.join(SCENARIO, 'partnerships.yaml')), 'test');
  };
  const asFirst = { 'T-2': 18800, 'T-3': 12700, 'T-4': 78600, 'T-10': 11475, 'T-21': 0, 'T-30': 60000 };
  const final = { 'T-1': 11750, 'T-2': 17750, 'T-3': 12000, 'T-4': 76850, 'T-10': 11475, 'T-20': 0, 'T-21': 533, 'T-30': 60000 };

  it('replaces the records of later usages not yet invoiced', async () => {
    await setUp();
    await take('a-first.csv');
    expect(await actualUsageCharges(ctx.deps.db)).toEqual(asFirst);
    await take('b-late.csv');
    expect(await actualUsageCharges(ctx.deps.db)).toEqual(final);
    // Replaced, not adjusted: one charge (and for T-10 its discount) per record.
    const kinds = await ctx.deps.db('transactions').select('kind').count<{ kind: string; count: string }[]>('* as count').groupBy('kind').orderBy('kind');
    expect(kinds).toEqual([{ kind: 'charge', count: '8' }, { kind: 'discount', count: '1' }]);
    expect(Object.values(await findInvariantViolations(ctx.deps.db)).flat()).toEqual([]);
  });

  it('adjusts later usages already invoiced on the next invoice, leaving the issued one as it was', async () => {
    await setUp();
    await take('a-first.csv');
    const october = await runBillingPeriod(ctx.deps, { period: '2026-10', requestedBy: 'test' });
    expect(october.partnerships[0]).toMatchObject({ outcome: 'invoiced', totalPennies: '181575' });

    await take('b-late.csv');
    expect(await actualUsageCharges(ctx.deps.db)).toEqual(final);
    const adjustments = await ctx.deps.db('transactions').where('kind', 'adjustment').orderBy('id').select<{ amount_pennies: string; description: string }[]>('amount_pennies', 'description');
    const byDescription = (x: [number, string], y: [number, string]) => x[1].localeCompare(y[1]);
    expect(adjustments.map((a): [number, string] => [Number(a.amount_pennies), a.description]).sort(byDescription)).toEqual(([
      [-1050, 'Re-rated T-2: an earlier usage arrived after it was invoiced'],
      [-700, 'Re-rated T-3: an earlier usage arrived after it was invoiced'],
      [-1750, 'Re-rated T-4: an earlier usage arrived after it was invoiced'],
      [533, 'Re-rated T-21: an earlier usage arrived after it was invoiced'],
    ] as Array<[number, string]>).sort(byDescription));

    const november = await runBillingPeriod(ctx.deps, { period: '2026-11', requestedBy: 'test' });
    // The late usages (11750 + 0) and the adjustments (-1050 - 700 - 1750 + 533); with October, the final 190358.
    expect(november.partnerships[0]).toMatchObject({ outcome: 'invoiced', totalPennies: '8783' });
    expect(181575 + 8783).toBe(Object.values(final).reduce((a, b) => a + b, 0));
    const issued = await ctx.deps.db('invoices').where('period', '2026-10').first<{ total_pennies: string }>('total_pennies');
    expect(issued.total_pennies).toBe('181575');
    expect(Object.values(await findInvariantViolations(ctx.deps.db)).flat()).toEqual([]);
  });
});
