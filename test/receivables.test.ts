import path from 'node:path';
import { Temporal } from 'temporal-polyfill';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/api/app';
import { DEMO_DIR, billPeriodThroughQueue, ingestThroughInbox } from '../src/cli/demo';
import { agingCommand, openAmountsCommand, payCommand } from '../src/cli/commands/receivables';
import type { Clock } from '../src/clock';
import { importPartnerships, readImportFile } from '../src/use-cases/import-partnerships';
import { agingReport, applyCredit, customerCredits, openAmounts, ReceivablesRefusal } from '../src/use-cases/receivables';
import { recordPayment } from '../src/use-cases/record-payment';
import { voidInvoice } from '../src/use-cases/void-invoice';
import { type TestInvoice, importReceivablesPartnerships, issueTestInvoice } from './support/invoices';
import { type SmtpSink, startSmtpSink } from './support/smtp-sink';
import { type TestContext, TEST_TOKEN, createTestContext } from './support/test-context';

/** A clock the test moves: bill on 21 November, record payments at the end of December. */
function settableClock(iso: string): Clock & { set(iso: string): void } {
  let at = Temporal.Instant.from(iso);
  return { now: () => at, set: (next) => void (at = Temporal.Instant.from(next)) };
}

const auth = { Authorization: `Bearer ${TEST_TOKEN}` };
const postJson = (body: unknown) => ({ method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

// Asymmetric matchers are typed any; named once here so the assertions below stay typed.
const anyNumber = expect.any(Number) as unknown as number;
const anyString = expect.any(String) as unknown as string;
const apiActor = expect.stringMatching(/^api:token-[0-9a-f]{12}$/) as unknown as string;

async function refusal(promise: Promise<unknown>): Promise<{ status: number; message: string }> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof ReceivablesRefusal) return { status: err.status, message: err.message };
    throw err;
  }
  throw new Error('expected a refusal, but the change was made');
}

describe('accounts receivable', () => {
  const clock = settableClock('2026-11-21T10:00:00Z');
  let sink: SmtpSink;
  let ctx: TestContext;
  let app: ReturnType<typeof createApp>;
  /** The demo's October invoices, issued by the real billing run: ACME in GBP, JSMITH in EUR. */
  let acme: { id: number; number: string };
  let jsmith: { id: number; number: string };

  const invoiceRow = (id: number) => ctx.deps.db('invoices').where('id', id).first<{ status: string; total_pennies: string; number: string; issue_date: string }>('status', 'total_pennies', 'number', 'issue_date');
  const payments = (id: number) => ctx.deps.db('payments').where('invoice_id', id).orderBy('id').select<{ amount_pennies: string; reference: string; received_on: string; recorded_by: string }[]>('amount_pennies', 'reference', 'received_on', 'recorded_by');
  const audits = (id: number, action: string) =>
    ctx.deps.db('audit_log').where({ entity: 'invoice', entity_id: String(id), action }).orderBy('id').select<{ actor: string; before: Record<string, unknown>; after: Record<string, unknown> }[]>('actor', 'before', 'after');

  beforeAll(async () => {
    sink = await startSmtpSink();
    ctx = await createTestContext({ clock, env: { SMTP_URL: sink.url } });
    app = createApp(ctx.deps);
    await importPartnerships(ctx.deps, await readImportFile(path.join(DEMO_DIR, 'partnerships.yaml')), 'test');
    await importReceivablesPartnerships(ctx.deps);
    ctx.workers();
    await ingestThroughInbox(ctx.deps, path.join(DEMO_DIR, 'feeds'), new Date(0));
    await billPeriodThroughQueue(ctx.deps, '2026-10', 'test');
    const issued = await ctx.deps.db('invoices as i').join('partnerships as p', 'p.id', 'i.partnership_id').whereIn('p.code', ['NRF-ACME', 'NRF-JSMITH'])
      .orderBy('i.number').select<{ id: string; number: string; code: string }[]>('i.id', 'i.number', 'p.code');
    acme = { id: Number(issued.find((i) => i.code === 'NRF-ACME')!.id), number: issued.find((i) => i.code === 'NRF-ACME')!.number };
    jsmith = { id: Number(issued.find((i) => i.code === 'NRF-JSMITH')!.id), number: issued.find((i) => i.code === 'NRF-JSMITH')!.number };
    clock.set('2026-12-31T12:00:00Z');
  });

  afterAll(async () => {
    await ctx?.close();
    await sink?.close();
  });

  it('starts from the invoices of a real billing run', async () => {
    expect(acme.number).toBe('INV-2026-000001');
    expect(jsmith.number).toBe('INV-2026-000002');
    expect(await invoiceRow(acme.id)).toMatchObject({ status: 'issued', total_pennies: '29164', issue_date: '2026-11-21' });
    expect(await invoiceRow(jsmith.id)).toMatchObject({ status: 'issued', total_pennies: '147260' });
  });

  describe('payments', () => {
    it('takes an invoice from issued to partially paid to paid', async () => {
      const first = await recordPayment(ctx.deps, { invoiceId: acme.id, amount: '100.00', currency: 'GBP', receivedOn: '2026-11-30', reference: 'BACS 0001', actor: 'test:alice' });
      expect(first).toMatchObject({ outcome: 'recorded', invoice: { status: 'partially_paid', open: 19164n, total: 29164n }, excess: 0n, payment: { amount: 10000n, receivedOn: '2026-11-30', reference: 'BACS 0001' } });
      expect((await invoiceRow(acme.id)).status).toBe('partially_paid');

      const second = await recordPayment(ctx.deps, { invoiceId: acme.id, amount: '191.64', receivedOn: '2026-12-15', reference: 'BACS 0002', actor: 'test:alice' });
      expect(second).toMatchObject({ outcome: 'recorded', invoice: { status: 'paid', open: 0n }, excess: 0n });
      expect(await invoiceRow(acme.id)).toMatchObject({ status: 'paid', total_pennies: '29164', number: 'INV-2026-000001' });
      expect(await payments(acme.id)).toEqual([
        { amount_pennies: '10000', reference: 'BACS 0001', received_on: '2026-11-30', recorded_by: 'test:alice' },
        { amount_pennies: '19164', reference: 'BACS 0002', received_on: '2026-12-15', recorded_by: 'test:alice' },
      ]);
      expect(await audits(acme.id, 'payment.recorded')).toEqual([
        {
          actor: 'test:alice',
          before: { number: 'INV-2026-000001', status: 'issued', open: '29164' },
          after: { number: 'INV-2026-000001', status: 'partially_paid', open: '19164', payment: { id: anyNumber, amount: '10000', currency: 'GBP', receivedOn: '2026-11-30', reference: 'BACS 0001' } },
        },
        {
          actor: 'test:alice',
          before: { number: 'INV-2026-000001', status: 'partially_paid', open: '19164' },
          after: { number: 'INV-2026-000001', status: 'paid', open: '0', payment: { id: anyNumber, amount: '19164', currency: 'GBP', receivedOn: '2026-12-15', reference: 'BACS 0002' } },
        },
      ]);
    });

    it('records the same payment once and says so; a different payment under the same reference is refused', async () => {
      const again = await recordPayment(ctx.deps, { invoiceId: acme.id, amount: '100', receivedOn: '2026-11-30', reference: ' BACS 0001 ', actor: 'test:bob' });
      expect(again).toMatchObject({ outcome: 'already_recorded', payment: { amount: 10000n, reference: 'BACS 0001', recordedBy: 'test:alice' }, invoice: { status: 'paid', open: 0n } });
      expect(await refusal(recordPayment(ctx.deps, { invoiceId: acme.id, amount: '100.01', receivedOn: '2026-11-30', reference: 'BACS 0001', actor: 'test:bob' }))).toEqual({
        status: 409,
        message: 'INV-2026-000001 already has payment "BACS 0001" of £100.00 received on 2026-11-30; a different payment needs its own reference',
      });
      expect(await payments(acme.id)).toHaveLength(2);
      expect(await audits(acme.id, 'payment.recorded')).toHaveLength(2);
    });

    it("turns an overpayment into the customer's credit, visible in open amounts", async () => {
      const r = await recordPayment(ctx.deps, { invoiceId: jsmith.id, amount: '1500.00', currency: 'EUR', receivedOn: '2026-12-01', reference: 'SEPA-77', actor: 'test:alice' });
      expect(r).toMatchObject({ outcome: 'recorded', invoice: { status: 'paid', open: 0n }, excess: 2740n });
      const credits = await customerCredits(ctx.deps, 'JSMITH');
      expect(credits.balances).toEqual([{ customerCode: 'JSMITH', customerName: 'Dr Jane Smith', currency: 'EUR', balance: 2740n }]);
      expect(credits.entries).toMatchObject([{ kind: 'overpayment', amount: 2740n, currency: 'EUR', effectiveOn: '2026-12-01', invoiceNumber: 'INV-2026-000002', paymentReference: 'SEPA-77', createdBy: 'test:alice' }]);
      const open = await openAmounts(ctx.deps, { customer: 'JSMITH' });
      expect(open.rows).toEqual([{ customerCode: 'JSMITH', customerName: 'Dr Jane Smith', currency: 'EUR', openInvoices: 0, open: 0n, credit: 2740n, net: -2740n, invoices: [] }]);
      expect((await audits(jsmith.id, 'payment.recorded'))[0]!.after).toMatchObject({ status: 'paid', open: '0', creditedToCustomer: '2740', customer: 'JSMITH' });
    });

    it('refuses, with a clear message and without writing anything, what cannot be a payment of this invoice', async () => {
      const voided = await issueTestInvoice(ctx.deps, { partnership: 'LAB-AGECO', period: '2026-06', issueDate: '2026-07-01', dueDate: '2026-07-31', lines: [{ account: 'AGECO-OPS', amount: 5000n }] });
      await voidInvoice(ctx.deps, { invoiceId: voided.id, reason: 'issued twice by mistake', actor: 'test:alice' });
      const open = await issueTestInvoice(ctx.deps, { partnership: 'LAB-AGECO', period: '2026-07', issueDate: '2026-08-01', dueDate: '2026-08-31', lines: [{ account: 'AGECO-OPS', amount: 5000n }] });
      const base = { invoiceId: open.id, amount: '10.00', receivedOn: '2026-12-01', reference: 'R-1', actor: 'test:alice' };
      const cases: Array<[Parameters<typeof recordPayment>[1], number, string]> = [
        [{ ...base, currency: 'EUR' }, 400, `a payment in EUR cannot settle ${open.number}, which is in GBP; record it in GBP`],
        [{ ...base, invoiceId: voided.id }, 409, `${voided.number} is void (issued twice by mistake); no payment can be recorded against it`],
        [{ ...base, amount: '10.001' }, 400, 'amount "10.001" has 3 decimal places; GBP has 2'],
        [{ ...base, amount: '0' }, 400, 'amount "0" must be more than zero'],
        [{ ...base, amount: '1,000.00' }, 400, 'amount "1,000.00" has thousands or decimal separators other than a single "."'],
        [{ ...base, receivedOn: '2027-01-01' }, 400, 'payment date 2027-01-01 is in the future (today is 2026-12-31 in Europe/London)'],
        [{ ...base, receivedOn: '2026-07-31' }, 400, `payment date 2026-07-31 is before ${open.number} was issued (2026-08-01)`],
        [{ ...base, receivedOn: '2026-02-30' }, 400, 'payment date "2026-02-30" is not a real calendar date'],
        [{ ...base, receivedOn: '30/11/2026' }, 400, 'payment date "30/11/2026" is not a date; expected YYYY-MM-DD, e.g. 2026-11-30'],
        [{ ...base, reference: '  ' }, 400, 'payment reference is required'],
        [{ ...base, reference: 'a\nb' }, 400, 'payment reference must not contain control characters or line breaks'],
        [{ ...base, invoiceId: 999999 }, 404, 'invoice 999999 does not exist'],
      ];
      for (const [input, status, message] of cases) {
        expect(await refusal(recordPayment(ctx.deps, input)), message).toEqual({ status, message });
      }
      expect(await payments(open.id)).toEqual([]);
      expect(await payments(voided.id)).toEqual([]);
      expect(await invoiceRow(open.id)).toMatchObject({ status: 'issued' });
    });

    it('applies concurrent payments on one invoice one after the other: never more than it owes, the excess to credit', async () => {
      const inv = await issueTestInvoice(ctx.deps, { partnership: 'LAB-EUROCO', period: '2026-08', issueDate: '2026-09-01', dueDate: '2026-10-01', lines: [{ account: 'EUROCO-OPS', amount: 10000n }] });
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => recordPayment(ctx.deps, { invoiceId: inv.id, amount: '15.00', receivedOn: '2026-12-01', reference: `RACE-${i + 1}`, actor: 'test:race' })),
      );
      expect(results.every((r) => r.outcome === 'recorded')).toBe(true);
      const excess = results.reduce((a, r) => a + r.excess, 0n);
      expect(excess).toBe(8n * 1500n - 10000n);
      expect(await invoiceRow(inv.id)).toMatchObject({ status: 'paid' });
      const ledger = await ctx.deps.db('customer_credit_entries').where('invoice_id', inv.id).select<{ amount_pennies: string }[]>('amount_pennies');
      expect(ledger.reduce((a, e) => a + BigInt(e.amount_pennies), 0n)).toBe(2000n);
      // Serialised by the row lock: each payment saw exactly what the one before it left open.
      const trail = await audits(inv.id, 'payment.recorded');
      expect(trail).toHaveLength(8);
      let open = '10000';
      for (const a of trail) {
        expect(a.before.open).toBe(open);
        open = String(a.after.open);
      }
      expect(open).toBe('0');
    });

    it('records the same payment racing with itself exactly once', async () => {
      const inv = await issueTestInvoice(ctx.deps, { partnership: 'LAB-EUROCO', period: '2026-09', issueDate: '2026-10-01', dueDate: '2026-10-31', lines: [{ account: 'EUROCO-OPS', amount: 10000n }] });
      const results = await Promise.all(
        Array.from({ length: 6 }, () => recordPayment(ctx.deps, { invoiceId: inv.id, amount: '40', receivedOn: '2026-12-02', reference: 'DOUBLE-CLICK', actor: 'test:race' })),
      );
      expect(results.map((r) => r.outcome).sort()).toEqual(['already_recorded', 'already_recorded', 'already_recorded', 'already_recorded', 'already_recorded', 'recorded']);
      expect(await payments(inv.id)).toHaveLength(1);
      expect(results.every((r) => r.invoice.open === 6000n && r.invoice.status === 'partially_paid')).toBe(true);
    });

    it("applies a customer's credit to an open invoice, never more than the credit or what is open", async () => {
      // EUROCO has EUR 20.00 of credit from the race above, and EUR 60.00 open on the double-clicked invoice.
      const target = (await ctx.deps.db('invoices as i').join('payments as p', 'p.invoice_id', 'i.id').where('p.reference', 'DOUBLE-CLICK').first<{ id: string }>('i.id')).id;
      expect(await refusal(applyCredit(ctx.deps, { invoiceId: Number(target), amount: '20.01', actor: 'test:alice' }))).toEqual({ status: 409, message: 'EUROCO has €20.00 of credit; €20.01 cannot be applied' });
      const r = await applyCredit(ctx.deps, { invoiceId: Number(target), actor: 'test:alice' });
      expect(r).toMatchObject({ amount: 2000n, remainingCredit: 0n, invoice: { status: 'partially_paid', open: 4000n } });
      expect(await refusal(applyCredit(ctx.deps, { invoiceId: Number(target), actor: 'test:alice' }))).toEqual({ status: 409, message: 'EUROCO has no EUR credit to apply' });
      const credits = await customerCredits(ctx.deps, 'EUROCO');
      expect(credits.balances).toEqual([]);
      // Six payments of 15.00 settled 90.00; the seventh overpaid by 5.00, the eighth by all of its 15.00.
      expect(credits.entries.map((e) => [e.kind, e.amount, e.effectiveOn])).toEqual([['overpayment', 500n, '2026-12-01'], ['overpayment', 1500n, '2026-12-01'], ['applied', -2000n, '2026-12-31']]);
      expect((await audits(Number(target), 'credit.applied'))[0]).toMatchObject({ actor: 'test:alice', before: { open: '6000', customerCredit: '2000' }, after: { open: '4000', applied: '2000', customerCredit: '0' } });
    });
  });

  describe('aging', () => {
    it('buckets by days past due at every boundary: 0, 1, 30, 31, 60, 61, 90, 91', async () => {
      const asOf = Temporal.PlainDate.from('2026-12-31');
      const days = [0, 1, 30, 31, 60, 61, 90, 91];
      for (const [i, d] of days.entries()) {
        const due = asOf.subtract({ days: d });
        await issueTestInvoice(ctx.deps, {
          partnership: 'LAB-OLDCO', period: `2025-${String(i + 1).padStart(2, '0')}`, issueDate: due.subtract({ days: 30 }).toString(), dueDate: due.toString(),
          // 1, 2, 4, ... pounds: each bucket's sum shows exactly which invoices are in it
          lines: [{ account: 'OLDCO-OPS', amount: 100n << BigInt(i) }],
        });
      }
      const report = await agingReport(ctx.deps, { asOf: '2026-12-31' });
      expect(report.rows.find((r) => r.customerCode === 'OLDCO')).toEqual({
        customerCode: 'OLDCO', customerName: 'OLDCO Ltd', currency: 'GBP',
        buckets: { current: 100n, '1-30': 200n + 400n, '31-60': 800n + 1600n, '61-90': 3200n + 6400n, over_90: 12800n },
        total: 25500n, credit: 0n, net: 25500n,
      });
      // A day later every invoice moves on: 1, 2, 31, 32, 61, 62, 91, 92 days.
      const next = await agingReport(ctx.deps, { asOf: '2027-01-01' });
      expect(next.rows.find((r) => r.customerCode === 'OLDCO')?.buckets).toEqual({ current: 0n, '1-30': 300n, '31-60': 400n + 800n, '61-90': 1600n + 3200n, over_90: 6400n + 12800n });
    });

    it('counts only what was received by the as-of date, whenever it was recorded', async () => {
      const inv = await issueTestInvoice(ctx.deps, { partnership: 'LAB-PAYCO', period: '2026-09', issueDate: '2026-10-01', dueDate: '2026-10-31', lines: [{ account: 'PAYCO-OPS', amount: 30000n }, { account: 'PAYCO-RND', amount: 20000n }] });
      // Both recorded now (31 December), received earlier.
      await recordPayment(ctx.deps, { invoiceId: inv.id, amount: '200', receivedOn: '2026-11-15', reference: 'P1', actor: 'test:alice' });
      await recordPayment(ctx.deps, { invoiceId: inv.id, amount: '300', receivedOn: '2026-12-20', reference: 'P2', actor: 'test:alice' });
      const payco = async (asOf: string) => (await agingReport(ctx.deps, { asOf })).rows.find((r) => r.customerCode === 'PAYCO');
      expect(await payco('2026-09-30')).toBeUndefined(); // not issued yet
      expect((await payco('2026-10-31'))?.buckets).toMatchObject({ current: 50000n, '1-30': 0n });
      expect((await payco('2026-11-14'))?.buckets).toMatchObject({ current: 0n, '1-30': 50000n });
      expect((await payco('2026-11-15'))?.buckets).toMatchObject({ '1-30': 30000n });
      expect((await payco('2026-12-19'))?.buckets).toMatchObject({ '1-30': 0n, '31-60': 30000n });
      expect(await payco('2026-12-20')).toBeUndefined(); // paid
      expect((await openAmounts(ctx.deps, { asOf: '2026-11-20', customer: 'PAYCO' })).rows.map((r) => r.open)).toEqual([30000n]);
      expect((await openAmounts(ctx.deps, { customer: 'PAYCO' })).rows).toEqual([]);
    });

    it('never adds different currencies together', async () => {
      const report = await agingReport(ctx.deps, { asOf: '2026-12-31' });
      expect(report.totals.map((t) => t.currency)).toEqual(['EUR', 'GBP']);
      for (const t of report.totals) {
        const rows = report.rows.filter((r) => r.currency === t.currency);
        expect(t.total).toBe(rows.reduce((a, r) => a + r.total, 0n));
      }
    });
  });

  describe('CLI', () => {
    it('records a payment by invoice number and asks which issuer when two used the number', async () => {
      // LAB's first invoice of 2026 is also INV-2026-000001.
      const lines: string[] = [];
      expect(await refusal(payCommand(ctx.deps, { invoiceNumber: 'INV-2026-000001', amount: '1', date: '2026-12-01', reference: 'X', actor: 'cli:test' }, (l) => lines.push(l)))).toEqual({
        status: 400,
        message: 'INV-2026-000001 was issued by 2 issuers (LAB, NRF); say which with --issuer',
      });
      const number = (await ctx.deps.db('invoices as i').join('partners as p', 'p.id', 'i.issuer_partner_id').where({ 'p.code': 'LAB', 'i.status': 'issued' }).orderBy('i.number').first<{ number: string }>('i.number')).number;
      await payCommand(ctx.deps, { invoiceNumber: number, issuer: 'LAB', amount: '20.00', date: '2026-12-30', reference: 'CLI-1', actor: 'cli:test' }, (l) => lines.push(l));
      expect(lines).toEqual([`recorded payment "CLI-1" of £20.00 received 2026-12-30 on ${number}`, `${number}: partially_paid, £30.00 open of £50.00`]);
      expect((await ctx.deps.db('audit_log').where('action', 'payment.recorded').orderBy('id', 'desc').first<{ actor: string }>('actor')).actor).toBe('cli:test');
    });

    it('prints open amounts and aging as tables, one row per customer and currency, totals per currency', async () => {
      const open: string[] = [];
      await openAmountsCommand(ctx.deps, { customer: 'OLDCO' }, (l) => open.push(l));
      expect(open).toEqual([
        'open amounts now',
        'customer   currency  open invoices     open  credit      net',
        '---------  --------  -------------  -------  ------  -------',
        'OLDCO      GBP                   8  £255.00   £0.00  £255.00',
        '---------  --------  -------------  -------  ------  -------',
        'total GBP  GBP                      £255.00   £0.00  £255.00',
      ]);
      const aging: string[] = [];
      await agingCommand(ctx.deps, { asOf: '2026-12-31' }, (l) => aging.push(l));
      expect(aging[0]).toBe('aging as of 2026-12-31 (days past due)');
      expect(aging[1]).toMatch(/^customer\s+currency\s+current\s+1-30\s+31-60\s+61-90\s+over 90\s+total\s+credit\s+net$/);
      expect(aging.find((l) => l.startsWith('OLDCO'))).toMatch(/^OLDCO\s+GBP\s+£1\.00\s+£6\.00\s+£24\.00\s+£96\.00\s+£128\.00\s+£255\.00\s+£0\.00\s+£255\.00$/);
      expect(aging.find((l) => l.startsWith('JSMITH'))).toMatch(/^JSMITH\s+EUR\s+€0\.00\s+€0\.00\s+€0\.00\s+€0\.00\s+€0\.00\s+€0\.00\s+€27\.40\s+-€27\.40$/);
      expect(aging.filter((l) => l.startsWith('total '))).toHaveLength(2);
    });
  });

  describe('admin API', () => {
    let inv: TestInvoice;
    beforeAll(async () => {
      inv = await issueTestInvoice(ctx.deps, { partnership: 'LAB-AGECO', period: '2026-10', issueDate: '2026-11-01', dueDate: '2026-12-01', lines: [{ account: 'AGECO-OPS', amount: 12345n }, { account: 'AGECO-RND', amount: 655n }] });
    });

    it('records a payment (201), answers 200 for the same one again, money as strings of pennies', async () => {
      const body = { amount: '30.00', currency: 'GBP', receivedOn: '2026-12-10', reference: 'API-1' };
      const res = await app.request(`/invoices/${inv.id}/payments`, postJson(body));
      expect(res.status).toBe(201);
      expect(await res.json()).toEqual({
        outcome: 'recorded',
        payment: { id: anyNumber, amount: { pennies: '3000', amount: '30.00', formatted: '£30.00', currency: 'GBP' }, receivedOn: '2026-12-10', reference: 'API-1', recordedBy: apiActor, createdAt: anyString },
        invoice: { id: inv.id, number: inv.number, status: 'partially_paid', total: { pennies: '13000', amount: '130.00', formatted: '£130.00', currency: 'GBP' }, open: { pennies: '10000', amount: '100.00', formatted: '£100.00', currency: 'GBP' } },
        creditedToCustomer: { pennies: '0', amount: '0.00', formatted: '£0.00', currency: 'GBP' },
      });
      const again = await app.request(`/invoices/${inv.id}/payments`, postJson(body));
      expect(again.status).toBe(200);
      expect(await again.json()).toMatchObject({ outcome: 'already_recorded' });
      const list = await app.request(`/invoices/${inv.id}/payments`, { headers: auth });
      expect(list.status).toBe(200);
      expect(await list.json()).toMatchObject({ invoice: { status: 'partially_paid', open: { pennies: '10000' } }, items: [{ reference: 'API-1', amount: { pennies: '3000' } }] });
    });

    it('refuses money as a JSON number, the wrong currency and unknown invoices with the error body', async () => {
      const asNumber = await app.request(`/invoices/${inv.id}/payments`, postJson({ amount: 30, currency: 'GBP', receivedOn: '2026-12-10', reference: 'API-2' }));
      expect(asNumber.status).toBe(400);
      expect(await asNumber.json()).toEqual({ error: 'bad_request', message: 'amount: Invalid input: expected string, received number' });
      const euro = await app.request(`/invoices/${inv.id}/payments`, postJson({ amount: '30.00', currency: 'EUR', receivedOn: '2026-12-10', reference: 'API-2' }));
      expect(euro.status).toBe(400);
      expect(await euro.json()).toEqual({ error: 'bad_request', message: `a payment in EUR cannot settle ${inv.number}, which is in GBP; record it in GBP` });
      const missing = await app.request('/invoices/987654/payments', postJson({ amount: '1', currency: 'GBP', receivedOn: '2026-12-10', reference: 'x' }));
      expect(missing.status).toBe(404);
      expect(await missing.json()).toEqual({ error: 'not_found', message: 'invoice 987654 does not exist' });
      const noToken = await app.request(`/invoices/${inv.id}/payments`, { method: 'POST', body: '{}' });
      expect(noToken.status).toBe(401);
      expect(await payments(inv.id)).toHaveLength(1);
    });

    it('serves open amounts, aging and customer credits', async () => {
      const open = await app.request('/receivables/open-amounts?customer=AGECO', { headers: auth });
      expect(open.status).toBe(200);
      const body = (await open.json()) as { customers: Array<{ customer: { code: string }; open: { pennies: string }; invoices: Array<{ number: string }> }> };
      expect(body.customers.map((c) => c.customer.code)).toEqual(['AGECO']);
      expect(body.customers[0]!.invoices.map((i) => i.number)).toContain(inv.number);

      const aging = await app.request('/receivables/aging?asOf=2026-12-31', { headers: auth });
      expect(aging.status).toBe(200);
      const agingBody = (await aging.json()) as { asOf: string; buckets: string[]; customers: Array<{ customer: { code: string }; buckets: Record<string, { pennies: string }> }> };
      expect(agingBody.asOf).toBe('2026-12-31');
      expect(agingBody.buckets).toEqual(['current', '1-30', '31-60', '61-90', 'over_90']);
      expect(agingBody.customers.find((c) => c.customer.code === 'OLDCO')?.buckets).toEqual({
        current: { pennies: '100', amount: '1.00', formatted: '£1.00', currency: 'GBP' },
        '1-30': { pennies: '600', amount: '6.00', formatted: '£6.00', currency: 'GBP' },
        '31-60': { pennies: '2400', amount: '24.00', formatted: '£24.00', currency: 'GBP' },
        '61-90': { pennies: '9600', amount: '96.00', formatted: '£96.00', currency: 'GBP' },
        over_90: { pennies: '12800', amount: '128.00', formatted: '£128.00', currency: 'GBP' },
      });
      const badDate = await app.request('/receivables/aging?asOf=2026-02-30', { headers: auth });
      expect(badDate.status).toBe(400);
      expect(await badDate.json()).toEqual({ error: 'bad_request', message: 'as-of date "2026-02-30" is not a real calendar date' });

      const credits = await app.request('/customers/JSMITH/credits', { headers: auth });
      expect(credits.status).toBe(200);
      expect(await credits.json()).toMatchObject({ customer: { code: 'JSMITH' }, balances: [{ pennies: '2740', currency: 'EUR' }], entries: [{ kind: 'overpayment', amount: { pennies: '2740' }, paymentReference: 'SEPA-77' }] });
      expect((await app.request('/customers/NOBODY/credits', { headers: auth })).status).toBe(404);
    });

    it('documents the receivables routes in /openapi.json, money as a string schema', async () => {
      const res = await app.request('/openapi.json', { headers: auth });
      expect(res.status).toBe(200);
      const doc = (await res.json()) as { paths: Record<string, Record<string, unknown>>; components: { schemas: Record<string, { properties?: Record<string, { type?: string }> }> } };
      for (const [p, method] of [
        ['/invoices/{id}/payments', 'post'], ['/invoices/{id}/payments', 'get'], ['/invoices/{id}/credit-notes', 'post'], ['/invoices/{id}/void', 'post'],
        ['/invoices/{id}/credit-applications', 'post'], ['/receivables/open-amounts', 'get'], ['/receivables/aging', 'get'], ['/customers/{code}/credits', 'get'],
        ['/billing-runs', 'get'], ['/billing-runs/{id}', 'get'], ['/audit', 'get'],
      ] as const) {
        expect(doc.paths[p]?.[method], `${method.toUpperCase()} ${p}`).toBeDefined();
      }
      expect(doc.components.schemas.Money?.properties?.pennies?.type).toBe('string');
    });

    it('shows billing runs and the audit log, paged', async () => {
      const runs = await app.request('/billing-runs?period=2026-10', { headers: auth });
      expect(runs.status).toBe(200);
      const runsBody = (await runs.json()) as { items: Array<{ id: number; status: string; period: string; invoicesCreated: number; requestedBy: string; queuedAt: string; finishedAt: string | null; summary: unknown }>; total: number };
      expect(runsBody.total).toBe(1);
      expect(runsBody.items[0]).toMatchObject({ status: 'completed', period: '2026-10', invoicesCreated: 2, requestedBy: 'test', finishedAt: anyString });
      const one = await app.request(`/billing-runs/${runsBody.items[0]!.id}`, { headers: auth });
      expect(one.status).toBe(200);
      const oneBody = (await one.json()) as { id: number; summary: Array<{ partnership: string; outcome: string }> };
      expect(oneBody.id).toBe(runsBody.items[0]!.id);
      expect(oneBody.summary.map((s) => [s.partnership, s.outcome])).toContainEqual(['NRF-ACME', 'invoiced']);
      expect((await app.request('/billing-runs/424242', { headers: auth })).status).toBe(404);
      expect((await app.request('/billing-runs?status=bogus', { headers: auth })).status).toBe(400);

      const audit = await app.request(`/audit?entity=invoice&entityId=${inv.id}&pageSize=1`, { headers: auth });
      expect(audit.status).toBe(200);
      const auditBody = (await audit.json()) as { items: Array<{ action: string; actor: string; after: { open: string } }>; total: number; pageSize: number };
      expect(auditBody.total).toBe(1);
      expect(auditBody.items[0]).toMatchObject({ action: 'payment.recorded', actor: apiActor, after: { open: '10000' } });
    });
  });
});
