import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/clock';
import { createApp } from '../src/api/app';
import { runBillingPeriod } from '../src/use-cases/run-billing-period';
import { pipelineIsIdle, waitUntilSettled } from '../src/use-cases/wait-for-pipeline';
import { actualUsageCharges } from './support/golden';
import { importDemoPartnerships } from './support/inbox-drops';
import { findInvariantViolations } from './support/invariants';
import { type TestContext, TEST_TOKEN, createTestContext } from './support/test-context';

const auth = { Authorization: `Bearer ${TEST_TOKEN}` };
const header = 'usage_id,product,user,account,quantity,start_time';
// ACME prices: CONFOCAL_HOUR 42.50, CPU_HOUR 0.045; r.okafor's usage goes to the default account ACME-OPS.
const original = [header,
  'S-A,CONFOCAL_HOUR,r.okafor,,2,2026-10-02T09:00:00Z', //   8500
  'S-B,CONFOCAL_HOUR,r.okafor,,1,2026-10-03T09:00:00Z', //   4250
  'S-C,CPU_HOUR,r.okafor,,100,2026-10-04T09:00:00Z', //       450
  'S-D,CPU_HOUR,r.okafor,,10,2026-10-05T09:00:00Z', //         45
].join('\n');
const corrected = [header,
  'S-A,CONFOCAL_HOUR,r.okafor,,2,2026-10-02T09:00:00Z', //   unchanged
  'S-B,CONFOCAL_HOUR,r.okafor,,1.5,2026-10-03T09:00:00Z', // 1 -> 1.5 h: 4250 -> 6375
  'S-D,CPU_HOUR,r.okafor,,10,2026-10-05T09:00:00Z', //         unchanged; S-C withdrawn
  'S-E,CPU_HOUR,r.okafor,,20,2026-10-06T09:00:00Z', //         new: 90
].join('\n');

describe('a corrected file superseding an earlier one', () => {
  let ctx: TestContext;
  let app: ReturnType<typeof createApp>;
  const upload = async (query: string, body: string) => {
    const res = await app.request(`/files?partner=ACME&${query}`, { method: 'POST', headers: auth, body });
    expect(res.status).toBe(201);
    const { fileId } = (await res.json()) as { fileId: number };
    await waitUntilSettled(ctx.deps, ['ingest-file', 'rate-file'], () => pipelineIsIdle(ctx.deps));
    return (await (await app.request(`/files/${fileId}`, { headers: auth })).json()) as { id: number; status: string; error: string | null; counts: Record<string, number>; supersedes: number | null };
  };
  const liveTotal = async () => Object.values(await actualUsageCharges(ctx.deps.db)).reduce((a, b) => a + b, 0);

  beforeAll(async () => {
    // December, so that October and November are both closed and can be invoiced.
    ctx = await createTestContext({ clock: fixedClock('2026-12-02T10:00:00Z') });
    await importDemoPartnerships(ctx.deps);
    app = createApp(ctx.deps);
    ctx.workers();
  });
  afterAll(async () => {
    await ctx?.close();
  });

  let first: Awaited<ReturnType<typeof upload>>;

  it('replaces changed usages, withdraws missing ones, keeps unchanged ones, and deletes nothing', async () => {
    first = await upload('name=acme-october.csv', original);
    expect(first).toMatchObject({ status: 'rated', counts: { read: 4, accepted: 4 } });
    const { invoicesCreated } = await runBillingPeriod(ctx.deps, { period: '2026-10', requestedBy: 'test' });
    expect(invoicesCreated).toBe(1);

    const second = await upload(`name=acme-october-v2.csv&supersedes=${first.id}`, corrected);
    expect(second).toMatchObject({ status: 'rated', supersedes: first.id, error: null, counts: { read: 4, accepted: 4, rejected: 0, duplicate: 0, unchanged: 2, replaced: 1, withdrawn: 1 } });
    expect((await (await app.request(`/files/${first.id}`, { headers: auth })).json()) as { status: string }).toMatchObject({ status: 'superseded' });

    const usages = await ctx.deps.db('product_usages').orderBy('id')
      .select<{ external_id: string; quantity: string; source_file_id: string; superseded_at: Date | null }[]>('external_id', 'quantity', 'source_file_id', 'superseded_at');
    expect(usages.map((u) => [u.external_id, Number(u.quantity), Number(u.source_file_id), u.superseded_at !== null])).toEqual([
      ['S-A', 2, first.id, false],
      ['S-B', 1, first.id, true],
      ['S-C', 100, first.id, true],
      ['S-D', 10, first.id, false],
      ['S-E', 20, second.id, false],
      ['S-B', 1.5, second.id, false],
    ]);
    // Live usages carry the corrected charges; superseded ones net to zero through reversals.
    const reversals = await ctx.deps.db('transactions').where('kind', 'adjustment').orderBy('id').select<{ amount_pennies: string; description: string }[]>('amount_pennies', 'description');
    expect(reversals.map((r) => [Number(r.amount_pennies), r.description])).toEqual([
      [-4250, `Reversal of usage S-B, corrected by file ${second.id} (acme-october-v2.csv)`],
      [-450, `Reversal of usage S-C, withdrawn by file ${second.id} (acme-october-v2.csv)`],
    ]);
    expect(await liveTotal()).toBe(8500 + 6375 + 45 + 90);
    expect(Object.values(await findInvariantViolations(ctx.deps.db)).flat()).toEqual([]);
  });

  it('puts the corrections of an invoiced period on the next invoice, leaving the issued one unchanged', async () => {
    const october = await ctx.deps.db('invoices').where('period', '2026-10').first<{ total_pennies: string }>('total_pennies');
    expect(Number(october.total_pennies)).toBe(8500 + 4250 + 450 + 45);
    const run = await runBillingPeriod(ctx.deps, { period: '2026-11', requestedBy: 'test' });
    expect(run.partnerships.find((p) => p.partnership === 'NRF-ACME')).toMatchObject({ outcome: 'invoiced', totalPennies: String(-4250 - 450 + 6375 + 90) });
    const lines = await ctx.deps.db('invoice_lines as l').join('invoices as i', 'i.id', 'l.invoice_id').where('i.period', '2026-11').orderBy('l.position')
      .select<{ usage_period: string; kind: string; description: string; amount_pennies: string }[]>('l.usage_period', 'l.kind', 'l.description', 'l.amount_pennies');
    expect(lines.map((l) => [l.usage_period, l.kind, l.description, Number(l.amount_pennies)])).toEqual([
      ['2026-10', 'charge', 'Confocal microscope time (usage in 2026-10, late)', 6375],
      ['2026-10', 'adjustment', 'Confocal microscope time adjustment (usage in 2026-10, late)', -4250],
      ['2026-10', 'charge', 'HPC CPU core-hours (usage in 2026-10, late)', 90],
      ['2026-10', 'adjustment', 'HPC CPU core-hours adjustment (usage in 2026-10, late)', -450],
    ]);
    expect(Object.values(await findInvariantViolations(ctx.deps.db)).flat()).toEqual([]);
  });

  it('treats the same corrected bytes again as a duplicate', async () => {
    const again = await upload('name=acme-october-v2-again.csv', corrected);
    expect(again.status).toBe('duplicate');
  });

  it('leaves the corrected file untouched when the correction is rejected as a whole', async () => {
    const before = await liveTotal();
    const current = await ctx.deps.db('usage_files').where('status', 'rated').orderBy('id', 'desc').first<{ id: string }>('id');
    const bad = await upload(`name=broken.csv&supersedes=${current.id}`, 'usage_id,product,user\nS-A,CPU_HOUR,x\n');
    expect(bad.status).toBe('failed');
    expect((await ctx.deps.db('usage_files').where('id', current.id).first<{ status: string }>('status')).status).toBe('rated');
    expect(await liveTotal()).toBe(before);
  });

  it("supersedes by file name when the partner's profile says so", async () => {
    await ctx.deps.db('partners').where('code', 'ACME').update({ feed_profile: JSON.stringify({ supersede_same_name: true }) });
    const v1 = await upload('name=daily.csv', [header, 'N-1,CPU_HOUR,r.okafor,,1,2026-10-10T09:00:00Z'].join('\n'));
    const v2 = await upload('name=daily.csv', [header, 'N-1,CPU_HOUR,r.okafor,,3,2026-10-10T09:00:00Z'].join('\n'));
    expect(v2).toMatchObject({ status: 'rated', supersedes: v1.id, counts: { replaced: 1, unchanged: 0, withdrawn: 0 } });
    const charges = await actualUsageCharges(ctx.deps.db);
    expect(charges['N-1']).toBe(14); // 3 x 0.045 = 0.135 -> 14 (half-up)
    expect(Object.values(await findInvariantViolations(ctx.deps.db)).flat()).toEqual([]);
  });
});
