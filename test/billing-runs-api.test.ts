import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createApp } from '../src/api/app';
import { ingestThroughInbox } from '../src/cli/demo';
import { waitUntilSettled } from '../src/use-cases/wait-for-pipeline';
import { importPartnerships, readImportFile } from '../src/use-cases/import-partnerships';
import { TEST_TOKEN, type TestContext, createTestContext } from './support/test-context';

/** A billing run requested through the API is a queued job whose status the API reports as it goes. */
const SCENARIO = path.resolve(import.meta.dirname, '../fixtures/scenarios/period-close');
let ctx: TestContext;
const auth = { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' };

beforeAll(async () => {
  ctx = await createTestContext();
  await importPartnerships(ctx.deps, await readImportFile(path.join(SCENARIO, 'partnerships.yaml')), 'test');
  ctx.workers();
  await ingestThroughInbox(ctx.deps, path.join(SCENARIO, 'feeds'), new Date(0));
});
afterAll(async () => {
  await ctx?.close();
});

it('previews a draft with its settlement lines before the run, writing nothing', async () => {
  const app = createApp(ctx.deps);
  const res = await app.request('/billing-runs/preview?partnership=NRF-FEE&period=2026-10', { headers: auth });
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({
    outcome: 'invoiced',
    draft: {
      wouldBeNumber: 'INV-2026-000001',
      totalPennies: '31500',
      lines: [
        { description: 'Sequencing run', amountPennies: '30000' },
        { description: 'Platform fee (2026-10)', kind: 'fee', amountPennies: '2500' },
        { description: 'Welcome voucher', kind: 'credit', amountPennies: '-1000' },
      ],
    },
  });
  expect(await ctx.deps.db('invoices').count<{ count: string }[]>('* as count')).toEqual([{ count: '0' }]);
  expect((await app.request('/billing-runs/preview?partnership=NOPE&period=2026-10', { headers: auth })).status).toBe(404);
});

it('queues the run, runs it on a worker, and shows it completed with what it did per partnership', async () => {
  const app = createApp(ctx.deps);
  const posted = await app.request('/billing-runs', { method: 'POST', headers: auth, body: JSON.stringify({ period: '2026-10' }) });
  expect(posted.status).toBe(202);
  const { id, status } = (await posted.json()) as { id: number; status: string };
  expect(status).toBe('queued');

  let run: { status: string; invoicesCreated: number; summary: Array<{ partnership: string; outcome: string; invoiceNumber?: string }> } | undefined;
  await waitUntilSettled(ctx.deps, ['billing-run', 'deliver-email'], async () => {
    run = (await (await app.request(`/billing-runs/${id}`, { headers: auth })).json()) as typeof run;
    return run?.status === 'completed';
  });
  expect(run!.invoicesCreated).toBe(6);
  expect(run!.summary.map((p) => [p.partnership, p.outcome, p.invoiceNumber])).toEqual([
    ['NRF-CAP', 'invoiced', 'INV-2026-000001'],
    ['NRF-FEE', 'invoiced', 'INV-2026-000002'],
    ['NRF-IDLE', 'invoiced', 'INV-2026-000003'],
    ['NRF-MIN', 'invoiced', 'INV-2026-000004'],
    ['NRF-SUR', 'invoiced', 'INV-2026-000005'],
    ['NRF-VOL', 'invoiced', 'INV-2026-000006'],
  ]);

  // Asking again is safe: the second run finds everything invoiced.
  const again = (await (await app.request('/billing-runs', { method: 'POST', headers: auth, body: JSON.stringify({ period: '2026-10' }) })).json()) as { id: number };
  await waitUntilSettled(ctx.deps, ['billing-run'], async () => {
    run = (await (await app.request(`/billing-runs/${again.id}`, { headers: auth })).json()) as typeof run;
    return run?.status === 'completed';
  });
  expect(run!.invoicesCreated).toBe(0);
  expect(run!.summary.every((p) => p.outcome === 'already_invoiced')).toBe(true);
});

it('refuses a body that is not a period', async () => {
  const res = await createApp(ctx.deps).request('/billing-runs', { method: 'POST', headers: auth, body: JSON.stringify({ period: '2026-13' }) });
  expect(res.status).toBe(400);
});
