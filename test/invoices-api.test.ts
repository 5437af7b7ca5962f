import { parseString } from 'fast-csv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadInvoiceDocument } from '../adapters/db/invoice-repository';
import { renderInvoicePdf } from '../adapters/render/invoice-pdf';
import { pdfText } from '../adapters/render/pdf-text';
import { createApp } from '../src/api/app';
import { INVOICE_CSV_HEADER } from '../src/core/invoice-email';
import { deliverInvoice } from '../src/use-cases/deliver-invoice';
import { type IssuedInvoice, importDemoPartnerships, ingestDemoFeeds, issueDemoInvoices } from './support/inbox-drops';
import { type SmtpSink, startSmtpSink } from './support/smtp-sink';
import { TEST_TOKEN, type TestContext, createTestContext } from './support/test-context';

const auth = { Authorization: `Bearer ${TEST_TOKEN}` };

interface Page<T> {
  items: T[];
  total: number;
  page: number;
  pageSize: number;
}

interface InvoiceJson {
  id: number;
  number: string;
  kind: string;
  status: string;
  partnership: string;
  customer: { code: string; name: string; address?: string | null };
  period: string;
  currency: string;
  total: string;
  totalPennies: string;
  creditsInvoice: { id: number; number: string } | null;
  lines: Array<{ accountCode: string; productCode: string | null; description: string; amount: string; amountPennies: string }>;
  subtotals: Array<{ accountCode: string; amount: string; amountPennies: string }>;
  deliveries: Array<{ id: number; status: string; messageId: string }>;
  creditNotes: Array<{ id: number; number: string; total: string }>;
}

interface DeliveryJson {
  id: number;
  invoiceNumber: string;
  status: string;
  attempts: number;
  messageId: string;
  attemptLog?: Array<{ attempt: number; trigger: string; outcome: string | null; replyCode: number | null; sender: string; recipients: string[] }>;
}

function csvRows(csv: string): Promise<Record<string, string>[]> {
  return new Promise((resolve, reject) => {
    const rows: Record<string, string>[] = [];
    parseString<Record<string, string>, Record<string, string>>(csv, { headers: true, strictColumnHandling: true })
      .on('error', reject)
      .on('data', (row: Record<string, string>) => rows.push(row))
      .on('end', () => resolve(rows));
  });
}

describe('the invoices and deliveries API', () => {
  let sink: SmtpSink;
  let ctx: TestContext;
  let app: ReturnType<typeof createApp>;
  let invoices: { acme: IssuedInvoice; jsmith: IssuedInvoice };
  let creditNoteId: number;

  const get = async <T>(path: string, status = 200): Promise<T> => {
    const res = await app.request(path, { headers: auth });
    expect(res.status, `GET ${path}`).toBe(status);
    return (await res.json()) as T;
  };

  beforeAll(async () => {
    sink = await startSmtpSink();
    ctx = await createTestContext({ env: { SMTP_URL: sink.url, MAIL_FROM: 'Northbridge Billing <billing@northbridge.example>' } });
    await importDemoPartnerships(ctx.deps);
    await ingestDemoFeeds(ctx.deps);
    invoices = await issueDemoInvoices(ctx.deps);
    app = createApp(ctx.deps);

    // A credit note against the ACME invoice, as the credit-note use case records one: a negative
    // document referencing the original, here with one product line and one settlement line (no product).
    const { db } = ctx.deps;
    const acme = await db('invoices').where('id', invoices.acme.invoiceId).first<{ partnership_id: string; issuer_partner_id: string; customer_partner_id: string }>('*');
    const [cn] = await db('invoices')
      .insert({
        partnership_id: acme.partnership_id,
        issuer_partner_id: acme.issuer_partner_id,
        customer_partner_id: acme.customer_partner_id,
        period: '2026-10',
        kind: 'credit_note',
        status: 'issued',
        number: 'CN-2026-000001',
        number_year: 2026,
        number_seq: 1,
        currency: 'GBP',
        issue_date: '2026-11-22',
        due_date: '2026-11-22',
        total_pennies: -1833,
        credits_invoice_id: invoices.acme.invoiceId,
        reason: 'Storage counted twice',
      })
      .returning<{ id: string }[]>('id');
    creditNoteId = Number(cn!.id);
    const account = await db('accounts').where({ partnership_id: acme.partnership_id, code: 'ACME-OPS' }).first<{ id: string }>('id');
    const storage = await db('products').where('code', 'STORAGE_TB_DAY').first<{ id: string }>('id');
    await db('invoice_lines').insert([
      { invoice_id: creditNoteId, position: 1, account_id: account.id, product_id: storage.id, usage_period: '2026-10', kind: 'credit', description: 'Research storage credit', quantity: '-10', unit_price: '1.3333', amount_pennies: -1333 },
      { invoice_id: creditNoteId, position: 2, account_id: account.id, product_id: null, usage_period: '2026-10', kind: 'credit', description: 'Goodwill for the storage error', quantity: '1', unit_price: null, amount_pennies: -500 },
    ]);
  });

  afterAll(async () => {
    await ctx?.close();
    await sink?.close();
  });

  it('lists invoices and credit notes, newest first, with exact totals as text', async () => {
    const body = await get<Page<InvoiceJson>>('/invoices');
    expect(body).toMatchObject({ total: 3, page: 1, pageSize: 50 });
    expect(body.items.map((i) => [i.number, i.kind, i.partnership, i.total, i.totalPennies])).toEqual([
      ['CN-2026-000001', 'credit_note', 'NRF-ACME', '-18.33', '-1833'],
      [invoices.jsmith.number, 'invoice', 'NRF-JSMITH', '1472.60', '147260'],
      [invoices.acme.number, 'invoice', 'NRF-ACME', '291.64', '29164'],
    ]);
    expect(body.items[0]!.creditsInvoice).toEqual({ id: invoices.acme.invoiceId, number: invoices.acme.number });
  });

  it.each([
    ['partnership=NRF-ACME', ['CN-2026-000001', 'INV-2026-000001']],
    ['customer=JSMITH', ['INV-2026-000002']],
    ['period=2026-10&kind=invoice', ['INV-2026-000002', 'INV-2026-000001']],
    ['kind=credit_note', ['CN-2026-000001']],
    ['status=paid', []],
    ['period=2026-09', []],
    ['pageSize=1&page=2', ['INV-2026-000002']],
  ])('filters and pages with %s', async (query, numbers) => {
    const body = await get<Page<InvoiceJson>>(`/invoices?${query}`);
    expect(body.items.map((i) => i.number)).toEqual(numbers);
  });

  it.each([
    ['period=2026-13', 'period: must be a month as YYYY-MM'],
    ['status=overdue', 'status: '],
    ['kind=receipt', 'kind: '],
    ['pageSize=501', 'pageSize: '],
  ])('refuses a bad filter %s (400)', async (query, message) => {
    const body = await get<{ error: string; message: string }>(`/invoices?${query}`, 400);
    expect(body.error).toBe('bad_request');
    expect(body.message).toContain(message);
  });

  it('shows one invoice with its lines, subtotals per account that add up to the total, and its delivery', async () => {
    const body = await get<InvoiceJson>(`/invoices/${invoices.acme.invoiceId}`);
    expect(body).toMatchObject({ number: invoices.acme.number, kind: 'invoice', status: 'issued', currency: 'GBP', total: '291.64' });
    expect(body.customer).toEqual({ code: 'ACME', name: 'Acme Biosciences Ltd', email: 'finance@acme-bio.example', address: '12 Harbour Road\nBristol BS1 5TT\nUnited Kingdom\n' });
    expect(body.subtotals.map((s) => [s.accountCode, s.amount])).toEqual([
      ['ACME-OPS', '121.55'],
      ['GRANT-4471', '104.80'],
      ['GRANT-5120', '65.29'],
    ]);
    const sum = (xs: Array<{ amountPennies: string }>) => xs.reduce((a, x) => a + BigInt(x.amountPennies), 0n).toString();
    expect(sum(body.lines)).toBe(body.totalPennies);
    expect(sum(body.subtotals)).toBe(body.totalPennies);
    expect(body.lines).toHaveLength(7);
    expect(body.deliveries).toEqual([expect.objectContaining({ id: invoices.acme.deliveryId, status: 'pending' })]);
    expect(body.creditNotes).toEqual([{ id: creditNoteId, number: 'CN-2026-000001', total: '-18.33', issueDate: '2026-11-22' }]);
  });

  it('shows a credit note with its settlement line (no product) and the invoice it corrects', async () => {
    const body = await get<InvoiceJson>(`/invoices/${creditNoteId}`);
    expect(body).toMatchObject({ kind: 'credit_note', creditsInvoice: { id: invoices.acme.invoiceId, number: invoices.acme.number }, total: '-18.33' });
    expect(body.lines.map((l) => [l.productCode, l.description, l.amount])).toEqual([
      ['STORAGE_TB_DAY', 'Research storage credit', '-13.33'],
      [null, 'Goodwill for the storage error', '-5.00'],
    ]);
    expect(body.deliveries).toEqual([]);
  });

  it.each(['/invoices/999999', '/invoices/999999/pdf', '/invoices/999999/csv'])('answers 404 for %s', async (path) => {
    expect(await get(path, 404)).toEqual({ error: 'not_found', message: 'no such invoice' });
  });

  it.each(['/invoices/abc', '/invoices/0', '/invoices/..%2F..%2Fetc%2Fpasswd/pdf', '/invoices/1e3/csv'])('answers 400 for the id in %s', async (path) => {
    const res = await app.request(path, { headers: auth });
    expect(res.status).toBe(400);
  });

  it('serves the PDF the email carries: the same bytes, with the number and total in its text', async () => {
    const res = await app.request(`/invoices/${invoices.acme.invoiceId}/pdf`, { headers: auth });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/pdf');
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename="${invoices.acme.number}.pdf"`);
    const pdf = Buffer.from(await res.arrayBuffer());
    expect(pdf.equals(await renderInvoicePdf(await loadInvoiceDocument(ctx.deps.db, invoices.acme.invoiceId)))).toBe(true);
    const text = (await pdfText(pdf)).replace(/[ \t]+/g, ' ');
    expect(text).toContain(`Invoice number ${invoices.acme.number}`);
    expect(text).toContain('Total (GBP) £291.64');
  });

  it('serves a credit note PDF titled as such, naming the invoice it corrects', async () => {
    const res = await app.request(`/invoices/${creditNoteId}/pdf`, { headers: auth });
    const text = (await pdfText(Buffer.from(await res.arrayBuffer()))).replace(/[ \t]+/g, ' ');
    expect(text).toContain('CREDIT NOTE');
    expect(text).toContain(`Credits invoice ${invoices.acme.number}`);
    expect(text).toContain('Reason: Storage counted twice');
    expect(text).toContain('Goodwill for the storage error');
    expect(text).toContain('Total (GBP) -£18.33');
  });

  it('serves the CSV of the invoice transactions, adding up to the total', async () => {
    const res = await app.request(`/invoices/${invoices.jsmith.invoiceId}/csv`, { headers: auth });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename="${invoices.jsmith.number}.csv"`);
    const csv = await res.text();
    expect(csv.slice(0, csv.indexOf('\r\n'))).toBe(INVOICE_CSV_HEADER.join(','));
    const rows = await csvRows(csv);
    expect(new Set(rows.map((r) => r.currency))).toEqual(new Set(['EUR']));
    expect(rows.reduce((a, r) => a + Number(r.amount!.replace('.', '')), 0)).toBe(147260);
    // The three-way split of one sequencing run: one row per account's billing record.
    expect(rows.filter((r) => r.usage_id === 'JS-002').map((r) => r.split_percent).sort()).toEqual(['33.3333', '33.3333', '33.3334']);
  });

  it('marks a void invoice VOID in its PDF and filters it by status', async () => {
    await ctx.deps.db('invoices').where('id', invoices.jsmith.invoiceId).update({ status: 'void', voided_at: '2026-11-25T09:00:00Z', reason: 'Sent to the wrong address' });
    try {
      expect((await get<Page<InvoiceJson>>('/invoices?status=void')).items.map((i) => i.number)).toEqual([invoices.jsmith.number]);
      const res = await app.request(`/invoices/${invoices.jsmith.invoiceId}/pdf`, { headers: auth });
      const text = (await pdfText(Buffer.from(await res.arrayBuffer()))).replace(/\s+/g, ' ');
      expect(text).toContain('Nothing due');
      // Voided at 09:00 UTC is 10:00 in Berlin, the partnership's time zone: the same day.
      expect(text).toContain('This invoice was voided on 25 November 2026; it keeps its number and nothing is due on it. Reason: Sent to the wrong address');
    } finally {
      await ctx.deps.db('invoices').where('id', invoices.jsmith.invoiceId).update({ status: 'issued', voided_at: null, reason: null });
    }
  });

  it('lists deliveries by status and shows one with its communication log', async () => {
    const pending = await get<Page<DeliveryJson>>('/deliveries?status=pending');
    expect(pending.items.map((d) => d.id).sort()).toEqual([invoices.acme.deliveryId, invoices.jsmith.deliveryId].sort());
    expect(await get<Page<DeliveryJson>>('/deliveries?status=unknown')).toMatchObject({ items: [], total: 0 });
    expect((await get<Page<DeliveryJson>>(`/deliveries?invoice=${invoices.jsmith.invoiceId}`)).items.map((d) => d.id)).toEqual([invoices.jsmith.deliveryId]);

    expect((await deliverInvoice(ctx.deps, invoices.acme.deliveryId, { finalAttempt: false })).kind).toBe('sent');
    const one = await get<DeliveryJson>(`/deliveries/${invoices.acme.deliveryId}`);
    expect(one).toMatchObject({ id: invoices.acme.deliveryId, invoiceNumber: invoices.acme.number, status: 'sent', attempts: 1 });
    expect(one.attemptLog).toEqual([
      expect.objectContaining({ attempt: 1, trigger: 'automatic', outcome: 'sent', replyCode: 250, sender: 'Northbridge Billing <billing@northbridge.example>', recipients: ['accounts-payable@acme-bio.example'] }),
    ]);
    expect(await get(`/deliveries/999999`, 404)).toEqual({ error: 'not_found', message: 'no such delivery' });
    expect((await get<{ message: string }>('/deliveries?status=lost', 400)).message).toContain('status: ');
  });

  it('resends a sent delivery on request (202), and refuses a pending one (409) so a double click sends once', async () => {
    const post = (id: number) => app.request(`/deliveries/${id}/resend`, { method: 'POST', headers: auth });

    const pendingOne = await post(invoices.jsmith.deliveryId);
    expect(pendingOne.status).toBe(409);
    expect(await pendingOne.json()).toEqual({
      error: 'conflict',
      message: `email delivery ${invoices.jsmith.deliveryId} of ${invoices.jsmith.number} is pending: an attempt is already on its way, so it is not resent`,
    });

    const first = await post(invoices.acme.deliveryId);
    expect(first.status).toBe(202);
    expect(first.headers.get('location')).toBe(`/deliveries/${invoices.acme.deliveryId}`);
    const sent = await get<DeliveryJson>(`/deliveries/${invoices.acme.deliveryId}`);
    expect(await first.json()).toEqual({
      deliveryId: invoices.acme.deliveryId,
      invoiceNumber: invoices.acme.number,
      previousStatus: 'sent',
      status: 'pending',
      messageId: sent.messageId,
      jobId: `deliver-email-${invoices.acme.deliveryId}`,
    });
    expect(sent).toMatchObject({ status: 'pending', resendRequested: { by: 'admin-api' } });
    expect((await post(invoices.acme.deliveryId)).status).toBe(409);
    expect(await ctx.deps.queues.get('deliver-email').getJobCountByTypes('waiting')).toBe(2);

    expect((await post(999_999)).status).toBe(404);
  });

  it('needs the bearer token on every invoice and delivery route', async () => {
    for (const [method, path] of [
      ['GET', '/invoices'],
      ['GET', `/invoices/${invoices.acme.invoiceId}`],
      ['GET', `/invoices/${invoices.acme.invoiceId}/pdf`],
      ['GET', `/invoices/${invoices.acme.invoiceId}/csv`],
      ['GET', '/deliveries'],
      ['GET', `/deliveries/${invoices.acme.deliveryId}`],
      ['POST', `/deliveries/${invoices.acme.deliveryId}/resend`],
    ] as const) {
      const res = await app.request(path, { method });
      expect(res.status, `${method} ${path}`).toBe(401);
    }
  });
});
