import path from 'node:path';
import { Temporal } from 'temporal-polyfill';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/api/app';
import { DEMO_DIR, billPeriodThroughQueue, ingestThroughInbox } from '../src/cli/demo';
import { creditNoteCommand, voidCommand } from '../src/cli/commands/receivables';
import type { Clock } from '../src/clock';
import { waitUntilSettled } from '../src/use-cases/wait-for-pipeline';
import { importPartnerships, readImportFile } from '../src/use-cases/import-partnerships';
import { issueCreditNote } from '../src/use-cases/issue-credit-note';
import { agingReport, applyCredit, customerCredits, openAmounts, ReceivablesRefusal } from '../src/use-cases/receivables';
import { recordPayment } from '../src/use-cases/record-payment';
import { runBillingPeriod } from '../src/use-cases/run-billing-period';
import { voidInvoice } from '../src/use-cases/void-invoice';
import { findInvariantViolations } from './support/invariants';
import { importReceivablesPartnerships, issueTestInvoice } from './support/invoices';
import { type SmtpSink, startSmtpSink } from './support/smtp-sink';
import { type TestContext, TEST_TOKEN, createTestContext } from './support/test-context';

function settableClock(iso: string): Clock & { set(iso: string): void } {
  let at = Temporal.Instant.from(iso);
  return { now: () => at, set: (next) => void (at = Temporal.Instant.from(next)) };
}

// Asymmetric matchers are typed any; named once here so the assertions below stay typed.
const anyNumber = expect.any(Number) as unknown as number;

async function refusal(promise: Promise<unknown>): Promise<{ status: number; message: string }> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof ReceivablesRefusal) return { status: err.status, message: err.message };
    throw err;
  }
  throw new Error('expected a refusal, but the change was made');
}

interface LineRow { account_id: string; product_id: string | null; usage_period: string; kind: string; description: string; quantity: string; unit_price: string | null; amount_pennies: string }

describe('credit notes and voids', () => {
  const clock = settableClock('2026-11-21T10:00:00Z');
  let sink: SmtpSink;
  let ctx: TestContext;
  let app: ReturnType<typeof createApp>;
  let acme: { id: number; number: string };
  let jsmith: { id: number; number: string };

  const db = () => ctx.deps.db;
  const lines = (invoiceId: number) =>
    db()('invoice_lines').where('invoice_id', invoiceId).orderBy('position')
      .select<LineRow[]>('account_id', 'product_id', 'usage_period', 'kind', 'description', 'quantity', 'unit_price', 'amount_pennies');
  const invoice = (id: number) =>
    db()('invoices').where('id', id).first<{ number: string; kind: string; status: string; total_pennies: string; issue_date: string; due_date: string; credits_invoice_id: string | null; reason: string | null; voided_at: Date | null }>(
      'number', 'kind', 'status', 'total_pennies', 'issue_date', 'due_date', 'credits_invoice_id', 'reason', 'voided_at',
    );
  /** Per issuer, kind and year: the sequence numbers in use, which must be exactly 1..n. */
  const numbering = async () =>
    (await db().raw<{ rows: Array<{ issuer: string; kind: string; year: number; seqs: number[] }> }>(
      `SELECT p.code AS issuer, i.kind, i.number_year AS year, array_agg(i.number_seq ORDER BY i.number_seq) AS seqs
       FROM invoices i JOIN partners p ON p.id = i.issuer_partner_id GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
    )).rows;

  beforeAll(async () => {
    sink = await startSmtpSink();
    ctx = await createTestContext({ clock, env: { SMTP_URL: sink.url, MAIL_FROM: 'Northbridge Billing <billing@northbridge.example>' } });
    app = createApp(ctx.deps);
    await importPartnerships(ctx.deps, await readImportFile(path.join(DEMO_DIR, 'partnerships.yaml')), 'test');
    await importReceivablesPartnerships(ctx.deps);
    ctx.workers();
    await ingestThroughInbox(ctx.deps, path.join(DEMO_DIR, 'feeds'), new Date(0));
    await billPeriodThroughQueue(ctx.deps, '2026-10', 'test');
    const issued = await db()('invoices as i').join('partnerships as p', 'p.id', 'i.partnership_id').select<{ id: string; number: string; code: string }[]>('i.id', 'i.number', 'p.code');
    const find = (code: string) => issued.find((i) => i.code === code)!;
    acme = { id: Number(find('NRF-ACME').id), number: find('NRF-ACME').number };
    jsmith = { id: Number(find('NRF-JSMITH').id), number: find('NRF-JSMITH').number };
    clock.set('2026-11-25T09:00:00Z');
  });

  afterAll(async () => {
    await ctx?.close();
    await sink?.close();
  });

  it('credits a whole invoice with a credit note mirroring its lines, in its own series, emailed like an invoice', async () => {
    const before = { row: await invoice(acme.id), lines: await lines(acme.id) };
    expect(before.row).toMatchObject({ number: 'INV-2026-000001', status: 'issued', total_pennies: '29164' });

    const r = await issueCreditNote(ctx.deps, { invoiceId: acme.id, reason: 'Confocal rates applied in error', actor: 'test:alice' });
    expect(r).toMatchObject({ creditNote: { number: 'CN-2026-000001', issueDate: '2026-11-25', total: -29164n, mirrored: true }, invoice: { status: 'paid', open: 0n }, excess: 0n });

    const cn = await invoice(r.creditNote.id);
    expect(cn).toMatchObject({ number: 'CN-2026-000001', kind: 'credit_note', status: 'issued', total_pennies: '-29164', issue_date: '2026-11-25', due_date: '2026-11-25', credits_invoice_id: String(acme.id), reason: 'Confocal rates applied in error', voided_at: null });
    const negate = (v: string) => (v.startsWith('-') ? v.slice(1) : v === '0' ? v : `-${v}`);
    expect(await lines(r.creditNote.id)).toEqual(before.lines.map((l) => ({ ...l, quantity: negate(l.quantity), amount_pennies: negate(l.amount_pennies) })));

    // The credited invoice never changes, except its payment status.
    expect(await lines(acme.id)).toEqual(before.lines);
    expect(await invoice(acme.id)).toEqual({ ...before.row, status: 'paid' });
    expect((await openAmounts(ctx.deps, { customer: 'ACME' })).rows).toEqual([]);

    // Emailed through the outbox by the real deliver-email worker, with its own Message-ID.
    await waitUntilSettled(ctx.deps, ['deliver-email'], async () => (await db()('email_deliveries').where('invoice_id', r.creditNote.id).first<{ status: string }>('status'))?.status === 'sent');
    const delivery = await db()('email_deliveries').where('invoice_id', r.creditNote.id).first<{ id: string; recipients: string[]; message_id: string; status: string }>('id', 'recipients', 'message_id', 'status');
    expect(delivery).toMatchObject({ id: String(r.deliveryId), recipients: ['accounts-payable@acme-bio.example'], status: 'sent', message_id: '<cn-2026-000001.nrf@northbridge.example>' });
    const mail = sink.messages.find((m) => m.parsed.messageId === delivery.message_id);
    expect(mail?.parsed.subject).toContain('CN-2026-000001');
    expect(mail?.envelope.rcptTo).toEqual(['accounts-payable@acme-bio.example']);

    const trail = await db()('audit_log').whereIn('entity_id', [String(acme.id), String(r.creditNote.id)]).whereIn('action', ['credit_note.issued', 'invoice.credited']).orderBy('id')
      .select<{ action: string; actor: string; entity_id: string; before: unknown; after: unknown }[]>('action', 'actor', 'entity_id', 'before', 'after');
    expect(trail).toEqual([
      { action: 'credit_note.issued', actor: 'test:alice', entity_id: String(r.creditNote.id), before: null, after: { number: 'CN-2026-000001', credits: 'INV-2026-000001', total: '-29164', currency: 'GBP', reason: 'Confocal rates applied in error', lines: before.lines.length, mirrored: true } },
      { action: 'invoice.credited', actor: 'test:alice', entity_id: String(acme.id), before: { number: 'INV-2026-000001', status: 'issued', open: '29164', credited: '0' }, after: { number: 'INV-2026-000001', status: 'paid', open: '0', credited: '29164', creditNote: 'CN-2026-000001' } },
    ]);

    expect(await refusal(issueCreditNote(ctx.deps, { invoiceId: acme.id, amount: '0.01', reason: 'again', actor: 'test:alice' }))).toEqual({
      status: 409,
      message: 'INV-2026-000001 is already credited in full (£291.64 of £291.64); nothing is left to credit',
    });
  });

  it('spreads a partial credit over the charged lines, and never lets credit notes add up to more than the invoice, even racing', async () => {
    const original = await lines(jsmith.id);
    const partial = await issueCreditNote(ctx.deps, { invoiceId: jsmith.id, amount: '100.00', reason: 'Goodwill: sequencer downtime', actor: 'test:alice' });
    expect(partial).toMatchObject({ creditNote: { number: 'CN-2026-000002', total: -10000n, mirrored: false }, invoice: { status: 'partially_paid', open: 137260n } });
    const cnLines = await lines(partial.creditNote.id);
    expect(cnLines.reduce((a, l) => a + BigInt(l.amount_pennies), 0n)).toBe(-10000n);
    for (const l of cnLines) {
      const mirrored = original.find((o) => o.account_id === l.account_id && o.product_id === l.product_id && o.kind === l.kind && o.usage_period === l.usage_period && `${o.description} (partial credit)` === l.description);
      expect(mirrored, `${l.description} mirrors a line of the invoice`).toBeDefined();
      expect(BigInt(l.amount_pennies) < 0n && -BigInt(l.amount_pennies) <= BigInt(mirrored!.amount_pennies)).toBe(true);
      expect([l.quantity, l.unit_price]).toEqual(['0', null]);
    }

    expect(await refusal(issueCreditNote(ctx.deps, { invoiceId: jsmith.id, amount: '1372.61', reason: 'too much', actor: 'test:alice' }))).toEqual({
      status: 409,
      message: 'a credit note of €1,372.61 would take the credit notes of INV-2026-000002 beyond its total of €1,472.60 (€100.00 already credited; at most €1,372.60 can still be credited)',
    });

    // Four credit notes of 500.00 at once against 1,372.60 left: two fit, two are refused, no number is skipped.
    const race = await Promise.allSettled(Array.from({ length: 4 }, () => issueCreditNote(ctx.deps, { invoiceId: jsmith.id, amount: '500', reason: 'race', actor: 'test:race' })));
    const won = race.filter((r) => r.status === 'fulfilled').map((r) => r.value.creditNote.number).sort();
    expect(won).toEqual(['CN-2026-000003', 'CN-2026-000004']);
    for (const r of race.filter((x) => x.status === 'rejected')) {
      expect(r.reason).toBeInstanceOf(ReceivablesRefusal);
      expect((r.reason as Error).message).toBe('a credit note of €500.00 would take the credit notes of INV-2026-000002 beyond its total of €1,472.60 (€1,100.00 already credited; at most €372.60 can still be credited)');
    }

    const rest = await issueCreditNote(ctx.deps, { invoiceId: jsmith.id, reason: 'Closing the account', actor: 'test:alice' });
    expect(rest).toMatchObject({ creditNote: { number: 'CN-2026-000005', total: -37260n }, invoice: { status: 'paid', open: 0n } });
    const { rows } = await db().raw<{ rows: { sum: string }[] }>(`SELECT sum(total_pennies)::text AS sum FROM invoices WHERE credits_invoice_id = ?`, [jsmith.id]);
    expect(rows[0]!.sum).toBe('-147260');
    expect(await invoice(jsmith.id)).toMatchObject({ total_pennies: '147260', status: 'paid' });
  });

  it("returns what a credit note credits beyond the open amount to the customer's credit", async () => {
    const paid = await issueTestInvoice(ctx.deps, { partnership: 'LAB-AGECO', period: '2026-09', issueDate: '2026-10-01', dueDate: '2026-10-31', lines: [{ account: 'AGECO-OPS', amount: 10000n }] });
    const next = await issueTestInvoice(ctx.deps, { partnership: 'LAB-AGECO', period: '2026-10', issueDate: '2026-11-01', dueDate: '2026-12-01', lines: [{ account: 'AGECO-OPS', amount: 2500n }] });
    await recordPayment(ctx.deps, { invoiceId: paid.id, amount: '70', receivedOn: '2026-10-20', reference: 'P-1', actor: 'test:alice' });
    // 30.00 is open; a credit note of 40.00 settles it and leaves 10.00 as credit.
    const r = await issueCreditNote(ctx.deps, { invoiceId: paid.id, amount: '40', reason: 'Price reduction agreed', actor: 'test:alice' });
    expect(r).toMatchObject({ creditNote: { number: 'CN-2026-000001', total: -4000n }, invoice: { status: 'paid', open: 0n }, excess: 1000n });
    expect((await customerCredits(ctx.deps, 'AGECO')).entries).toMatchObject([{ kind: 'credit_note_excess', amount: 1000n, effectiveOn: '2026-11-25', creditNoteNumber: 'CN-2026-000001', invoiceNumber: paid.number }]);
    expect((await openAmounts(ctx.deps, { customer: 'AGECO' })).rows).toMatchObject([{ openInvoices: 1, open: 2500n, credit: 1000n, net: 1500n }]);
    // As of the day before the credit note, the invoice still owed 30.00 and there was no credit.
    expect((await openAmounts(ctx.deps, { customer: 'AGECO', asOf: '2026-11-24' })).rows).toMatchObject([{ openInvoices: 2, open: 5500n, credit: 0n }]);

    const applied = await applyCredit(ctx.deps, { invoiceId: next.id, actor: 'test:alice' });
    expect(applied).toMatchObject({ amount: 1000n, remainingCredit: 0n, invoice: { status: 'partially_paid', open: 1500n } });
  });

  it('keeps invoice numbers and credit-note numbers each gapless per issuer and year', async () => {
    clock.set('2026-12-02T07:00:00Z');
    const november = await runBillingPeriod(ctx.deps, { period: '2026-11', requestedBy: 'test' });
    expect(november.partnerships.find((p) => p.partnership === 'NRF-ACME')).toMatchObject({ outcome: 'invoiced', invoiceNumber: 'INV-2026-000003', totalPennies: '4250' });
    for (const n of await numbering()) expect(n.seqs, `${n.issuer} ${n.kind} ${n.year}`).toEqual(n.seqs.map((_, i) => i + 1));
    expect((await numbering()).map((n) => [n.issuer, n.kind, n.year, n.seqs.length])).toEqual([
      ['LAB', 'credit_note', 2026, 1],
      ['LAB', 'invoice', 2026, 2],
      ['NRF', 'credit_note', 2026, 5],
      ['NRF', 'invoice', 2026, 3],
    ]);
  });

  describe('void', () => {
    it('voids an unpaid invoice: it keeps its number, its charges stay with it and are not billed again', async () => {
      const november = await db()('invoices').where('number', 'INV-2026-000003').first<{ id: string }>('id');
      const id = Number(november.id);
      const claimed = await db()('transactions').where('invoice_id', id).orderBy('id').select<{ id: string }[]>('id');
      expect(claimed.length).toBeGreaterThan(0);

      clock.set('2026-12-10T15:00:00Z');
      const lines: string[] = [];
      await voidCommand(ctx.deps, { invoiceNumber: 'INV-2026-000003', reason: 'Customer account closed in October', actor: 'cli:test' }, (l) => lines.push(l));
      expect(lines[0]).toBe('voided INV-2026-000003: Customer account closed in October');
      expect(await invoice(id)).toMatchObject({ number: 'INV-2026-000003', status: 'void', reason: 'Customer account closed in October', total_pennies: '4250', voided_at: new Date('2026-12-10T15:00:00Z') });

      // Its transactions stay claimed by it: the same period finds it invoiced, and later runs find nothing to bill.
      expect(await db()('transactions').where('invoice_id', id).orderBy('id').select<{ id: string }[]>('id')).toEqual(claimed);
      const again = await runBillingPeriod(ctx.deps, { period: '2026-11', requestedBy: 'test' });
      expect(again.partnerships.find((p) => p.partnership === 'NRF-ACME')?.outcome).toBe('already_invoiced');
      clock.set('2027-01-02T07:00:00Z');
      const december = await runBillingPeriod(ctx.deps, { period: '2026-12', requestedBy: 'test' });
      expect(december.partnerships.find((p) => p.partnership === 'NRF-ACME')?.outcome).toBe('nothing_to_bill');
      expect(await db()('transactions').whereNull('invoice_id').count<{ count: string }[]>('* as count')).toEqual([{ count: '0' }]);

      // It leaves the open amounts from the day it was voided, and stays in reports of the days before.
      expect((await openAmounts(ctx.deps, { customer: 'ACME' })).rows).toEqual([]);
      expect((await agingReport(ctx.deps, { asOf: '2026-12-09' })).rows.find((r) => r.customerCode === 'ACME')?.buckets.current).toBe(4250n);
      expect((await agingReport(ctx.deps, { asOf: '2026-12-10' })).rows.find((r) => r.customerCode === 'ACME')).toBeUndefined();

      expect((await db()('audit_log').where({ entity: 'invoice', entity_id: String(id), action: 'invoice.voided' }).first<{ actor: string; before: unknown; after: unknown }>('actor', 'before', 'after'))).toEqual({
        actor: 'cli:test',
        before: { number: 'INV-2026-000003', status: 'issued', voidedAt: null, open: '4250' },
        after: { number: 'INV-2026-000003', status: 'void', voidedAt: '2026-12-10T15:00:00.000Z', reason: 'Customer account closed in October', open: '0', emailStopped: false },
      });

      const twice = await voidInvoice(ctx.deps, { invoiceId: id, reason: 'double click', actor: 'test' });
      expect(twice).toMatchObject({ outcome: 'already_void', invoice: { reason: 'Customer account closed in October' } });
      expect(await refusal(issueCreditNote(ctx.deps, { invoiceId: id, reason: 'x', actor: 'test' }))).toEqual({ status: 409, message: 'INV-2026-000003 is void; there is nothing to credit' });
    });

    it('stops the email of an invoice voided before it was sent', async () => {
      const inv = await issueTestInvoice(ctx.deps, { partnership: 'LAB-OLDCO', period: '2026-11', issueDate: '2026-12-01', dueDate: '2026-12-31', lines: [{ account: 'OLDCO-OPS', amount: 999n }] });
      await db()('email_deliveries').insert({ invoice_id: inv.id, recipients: ['ap@oldco.example'], subject: `Invoice ${inv.number}`, message_id: `<${inv.number}.lab@test>`, status: 'pending' });
      const r = await voidInvoice(ctx.deps, { invoiceId: inv.id, reason: 'Wrong customer', actor: 'test:alice' });
      expect(r).toMatchObject({ outcome: 'voided', emailStopped: true });
      expect(await db()('email_deliveries').where('invoice_id', inv.id).first('status', 'last_error')).toEqual({ status: 'failed', last_error: `not sent: ${inv.number} was voided before it was sent (Wrong customer)` });
    });

    it('refuses to void what has been paid or credited, a credit note, or without a reason', async () => {
      const paid = await issueTestInvoice(ctx.deps, { partnership: 'LAB-PAYCO', period: '2026-10', issueDate: '2026-11-01', dueDate: '2026-12-01', lines: [{ account: 'PAYCO-OPS', amount: 5000n }] });
      await recordPayment(ctx.deps, { invoiceId: paid.id, amount: '10', receivedOn: '2026-11-10', reference: 'P', actor: 'test' });
      const cn = await db()('invoices').where('number', 'CN-2026-000002').first<{ id: string }>('id');
      const cases: Array<[number, string, number, string]> = [
        [paid.id, 'x', 409, `${paid.number} has 1 payment(s) totalling £10.00; an invoice with payments cannot be voided: issue a credit note instead`],
        // no payments, but credit notes
        [jsmith.id, 'x', 409, 'INV-2026-000002 has been credited by CN-2026-000002, CN-2026-000003, CN-2026-000004, CN-2026-000005; it cannot be voided: credit the rest instead'],
        [Number(cn.id), 'x', 409, 'CN-2026-000002 is a credit note; credit notes cannot be voided'],
        [paid.id, '   ', 400, 'reason is required'],
      ];
      for (const [invoiceId, reason, status, message] of cases) {
        expect(await refusal(voidInvoice(ctx.deps, { invoiceId, reason, actor: 'test' }))).toEqual({ status, message });
      }
      expect((await invoice(paid.id)).status).toBe('partially_paid');
    });
  });

  describe('admin API', () => {
    const auth = { Authorization: `Bearer ${TEST_TOKEN}`, 'Content-Type': 'application/json' };

    it('issues a credit note (201) and voids an invoice (200), answering refusals with 409 and bad input with 400', async () => {
      const inv = await issueTestInvoice(ctx.deps, { partnership: 'LAB-EUROCO', period: '2026-10', issueDate: '2026-11-01', dueDate: '2026-11-15', lines: [{ account: 'EUROCO-OPS', amount: 30000n }, { account: 'EUROCO-RND', amount: 10000n }] });
      const res = await app.request(`/invoices/${inv.id}/credit-notes`, { method: 'POST', headers: auth, body: JSON.stringify({ amount: '40.00', reason: 'Late delivery' }) });
      expect(res.status).toBe(201);
      const body = (await res.json()) as { creditNote: { id: number; number: string }; invoice: unknown; creditedToCustomer: unknown; emailDeliveryId: number | null };
      expect(body).toEqual({
        creditNote: { id: anyNumber, number: 'CN-2027-000001', issueDate: '2027-01-02', total: { pennies: '-4000', amount: '-40.00', formatted: '-€40.00', currency: 'EUR' }, lines: 2, mirrored: false },
        invoice: { id: inv.id, number: inv.number, status: 'partially_paid', total: { pennies: '40000', amount: '400.00', formatted: '€400.00', currency: 'EUR' }, open: { pennies: '36000', amount: '360.00', formatted: '€360.00', currency: 'EUR' } },
        creditedToCustomer: { pennies: '0', amount: '0.00', formatted: '€0.00', currency: 'EUR' },
        emailDeliveryId: null,
      });
      expect(res.headers.get('location')).toBe(`/invoices/${body.creditNote.id}`);
      expect((await db()('audit_log').where({ action: 'credit_note.issued', entity_id: String(body.creditNote.id) }).first<{ actor: string }>('actor')).actor).toMatch(/^api:token-[0-9a-f]{12}$/);

      const tooMuch = await app.request(`/invoices/${inv.id}/credit-notes`, { method: 'POST', headers: auth, body: JSON.stringify({ amount: '360.01', reason: 'x' }) });
      expect(tooMuch.status).toBe(409);
      expect(await tooMuch.json()).toEqual({ error: 'conflict', message: `a credit note of €360.01 would take the credit notes of ${inv.number} beyond its total of €400.00 (€40.00 already credited; at most €360.00 can still be credited)` });
      const noReason = await app.request(`/invoices/${inv.id}/credit-notes`, { method: 'POST', headers: auth, body: JSON.stringify({ amount: '1' }) });
      expect(noReason.status).toBe(400);
      const creditedVoid = await app.request(`/invoices/${inv.id}/void`, { method: 'POST', headers: auth, body: JSON.stringify({ reason: 'x' }) });
      expect(creditedVoid.status).toBe(409);

      const other = await issueTestInvoice(ctx.deps, { partnership: 'LAB-EUROCO', period: '2026-11', issueDate: '2026-12-01', dueDate: '2026-12-15', lines: [{ account: 'EUROCO-OPS', amount: 100n }] });
      const voided = await app.request(`/invoices/${other.id}/void`, { method: 'POST', headers: auth, body: JSON.stringify({ reason: 'Duplicate of an earlier invoice' }) });
      expect(voided.status).toBe(200);
      expect(await voided.json()).toEqual({ outcome: 'voided', invoice: { id: other.id, number: other.number, status: 'void', voidedAt: '2027-01-02T07:00:00.000Z', reason: 'Duplicate of an earlier invoice' }, emailStopped: false });
      expect((await app.request(`/invoices/${other.id}/void`, { method: 'POST', body: '{}' })).status).toBe(401);
    });

    it('the CLI issues a credit note by number', async () => {
      const inv = await issueTestInvoice(ctx.deps, { partnership: 'LAB-OLDCO', period: '2026-12', issueDate: '2027-01-01', dueDate: '2027-01-31', lines: [{ account: 'OLDCO-OPS', amount: 1234n }] });
      const out: string[] = [];
      await creditNoteCommand(ctx.deps, { invoiceNumber: inv.number, issuer: 'LAB', reason: 'Cancelled booking', actor: 'cli:test' }, (l) => out.push(l));
      expect(out).toEqual([
        `issued credit note CN-2027-000002 for -£12.34 against ${inv.number} (1 line(s), mirroring the invoice)`,
        `${inv.number}: paid, £0.00 open of £12.34`,
        'not emailed: no invoice recipients and no customer email: not sent',
      ]);
    });
  });

  it('leaves every bookkeeping invariant true (credit notes carry no transactions of their own)', async () => {
    const violations = await findInvariantViolations(db());
    const creditNotes = (await db()('invoices').where('kind', 'credit_note').select<{ id: string }[]>('id')).map((r) => r.id);
    // The shared checks predate credit notes: a credit note's total is not made of transactions, and
    // its numbers are their own series. Everything else must hold as it is.
    const { invoiceTotalVsTransactions, invoiceNumberGaps: _gaps, ...rest } = violations;
    expect((invoiceTotalVsTransactions as Array<{ id: string }>).filter((v) => !creditNotes.includes(v.id))).toEqual([]);
    expect(rest).toEqual(Object.fromEntries(Object.keys(rest).map((k) => [k, []])));
    for (const n of await numbering()) expect(n.seqs, `${n.issuer} ${n.kind} ${n.year}`).toEqual(n.seqs.map((_, i) => i + 1));
  });
});
