import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/clock';
import { ingestThroughInbox } from '../src/cli/demo';
import { previewCommand, quoteCommand, rerateCommand } from '../src/cli/commands/rating';
import { importPartnerships, readImportFile } from '../src/use-cases/import-partnerships';
import { type TestContext, createTestContext } from './support/test-context';

/** The operator's commands for rules: quotes, dry runs and drafts, on the period-close fixtures. */
const SCENARIO = path.resolve(import.meta.dirname, '../fixtures/scenarios/period-close');
let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext({ clock: fixedClock('2026-11-21T10:00:00Z') });
  await importPartnerships(ctx.deps, await readImportFile(path.join(SCENARIO, 'partnerships.yaml')), 'test');
  ctx.workers();
  await ingestThroughInbox(ctx.deps, path.join(SCENARIO, 'feeds'), new Date(0));
});
afterAll(async () => {
  await ctx?.close();
});

async function run(command: (out: (line: string) => void) => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  await command((l) => lines.push(l));
  return lines;
}

describe('billing quote', () => {
  it('prices a usage at its place in the period: 540 units came before, so 100 more are in the top volume tier', async () => {
    expect(await run((out) => quoteCommand(ctx.deps, { partnership: 'NRF-VOL', product: 'CPU_HOUR', quantity: '100', at: '2026-10-10T00:00:00Z' }, out))).toEqual([
      '100 CPU_HOUR for NRF-VOL in 2026-10, after 540 already used this period',
      'rules effective 2026-01-01; volume tiers: provisional until the period closes',
      '  VO-LAB (100 %): £90.00',
      '    charge            £100.00  HPC CPU core-hours: 100 core-hour at 1 (provisional volume tier)',
      '    discount          -£10.00  10% discount on HPC CPU core-hours',
      'total £90.00',
    ]);
  });

  it('charges the account asked for, and refuses what it cannot rate with a clear message', async () => {
    const lines = await run((out) => quoteCommand(ctx.deps, { partnership: 'NRF-MIN', product: 'STORAGE_TB_DAY', quantity: '10', account: 'MI-B', at: '2026-10-10T00:00:00Z' }, out));
    expect(lines.slice(2)).toEqual(['  MI-B (100 %): £12.50', '    charge             £12.50  Research storage: 10 TB-day at 1.25', 'total £12.50']);
    await expect(quoteCommand(ctx.deps, { partnership: 'NRF-MIN', product: 'STORAGE_TB_DAY', quantity: '1e3' }, () => undefined)).rejects.toThrow('quantity "1e3"');
    await expect(quoteCommand(ctx.deps, { partnership: 'NRF-MIN', product: 'SEQ_RUN', quantity: '1' }, () => undefined)).rejects.toThrow('no price for product SEQ_RUN');
    await expect(quoteCommand(ctx.deps, { partnership: 'NRF-NONE', product: 'SEQ_RUN', quantity: '1' }, () => undefined)).rejects.toThrow('no partnership NRF-NONE');
  });
});

describe('billing rerate --dry-run', () => {
  it('prints old and new totals per account under proposed rules and writes nothing', async () => {
    const count = async () => (await ctx.deps.db('transactions').count<{ count: string }[]>('* as count'))[0]!.count;
    const before = await count();
    const lines = await run((out) =>
      rerateCommand(ctx.deps, { partnership: 'NRF-CAP', period: '2026-10', dryRun: true, rulesFile: path.resolve(import.meta.dirname, '../fixtures/scenarios/period-close/proposed-rules.yaml') }, out),
    );
    expect(lines).toEqual([
      `NRF-CAP 2026-10 (EUR): dry run with the rules in ${path.resolve(import.meta.dirname, '../fixtures/scenarios/period-close/proposed-rules.yaml')}, nothing written`,
      'usages: 2 replaced (not invoiced), 0 adjusted on the next invoice, 0 unchanged',
      'account  old total  new total  difference',
      'CA-1       €233.75    €220.00     -€13.75',
    ]);
    expect(await count()).toBe(before);
  });
});

describe('billing preview', () => {
  it('shows the draft with its settlement lines and leaves the number free', async () => {
    const lines = await run((out) => previewCommand(ctx.deps, { partnership: 'NRF-FEE', period: '2026-10' }, out));
    expect(lines[0]).toBe('DRAFT (not issued): INV-2026-000001 would be NRF-FEE 2026-10, GBP');
    expect(lines.slice(2)).toEqual([
      'FE-1     Sequencing run                 1      300.00  £300.00',
      'FE-1     Platform fee (2026-10)         1               £25.00',
      'FE-1     Welcome voucher                1              -£10.00',
      'total £315.00',
    ]);
    expect(await ctx.deps.db('invoices').count<{ count: string }[]>('* as count')).toEqual([{ count: '0' }]);
  });
});
