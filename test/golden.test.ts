import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { billPeriodThroughQueue, ingestThroughInbox } from '../src/cli/demo';
import { importPartnerships, readImportFile } from '../src/use-cases/import-partnerships';
import { actualFiles, actualInvoices, actualSettlements, actualUsageCharges, type Expected, readExpected } from './support/golden';
import { findInvariantViolations } from './support/invariants';
import { type TestContext, createTestContext } from './support/test-context';

/**
 * Golden scenarios: each folder under fixtures/scenarios/ holds a partnerships file, feeds per
 * partner and expected.yaml with the figures worked out by hand. A new partnership or rule kind is
 * a new folder; this runner takes each through the inbox, the real queues and the billing run.
 */
const SCENARIOS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/scenarios');
const scenarios = readdirSync(SCENARIOS, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);

describe.each(scenarios)('golden scenario %s', (scenario) => {
  const dir = path.join(SCENARIOS, scenario);
  let ctx: TestContext;
  let expected: Expected;

  beforeAll(async () => {
    expected = await readExpected(dir);
    ctx = await createTestContext();
    await importPartnerships(ctx.deps, await readImportFile(path.join(dir, 'partnerships.yaml')), 'test');
    ctx.workers();
    await ingestThroughInbox(ctx.deps, path.join(dir, 'feeds'), new Date(0));
  });
  afterAll(async () => {
    await ctx?.close();
  });

  it('ingests every feed with the expected counts', async () => {
    expect(await actualFiles(ctx.deps.db)).toEqual(expected.files);
  });

  it("rates every usage to its hand-worked charge", async () => {
    expect(await actualUsageCharges(ctx.deps.db)).toEqual(expected.usage_charges);
  });

  it('issues the hand-worked invoices, and the invariants hold', async () => {
    await billPeriodThroughQueue(ctx.deps, expected.period, 'test');
    expect(await actualInvoices(ctx.deps.db, expected.period)).toEqual(expected.invoices);
    expect(Object.values(await findInvariantViolations(ctx.deps.db)).flat()).toEqual([]);
  });

  it('settles the period at close to the hand-worked figures', async () => {
    expect(await actualUsageCharges(ctx.deps.db)).toEqual(expected.settled_usage_charges ?? expected.usage_charges);
    expect(await actualSettlements(ctx.deps.db, expected.period)).toEqual(expected.settlements ?? {});
  });

  it('finds nothing to do when the period is billed again', async () => {
    const before = await ctx.deps.db('transactions').count<{ count: string }[]>('* as count');
    const again = await billPeriodThroughQueue(ctx.deps, expected.period, 'test');
    expect(again.invoicesCreated).toBe(0);
    expect(again.partnerships.every((p) => p.outcome === 'already_invoiced')).toBe(true);
    expect(await ctx.deps.db('transactions').count<{ count: string }[]>('* as count')).toEqual(before);
    expect(await actualInvoices(ctx.deps.db, expected.period)).toEqual(expected.invoices);
  });
});
