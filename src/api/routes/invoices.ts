import { createRoute, z } from '@hono/zod-openapi';
import {
  creditNotesOf,
  deliveriesOfInvoice,
  getInvoiceSummary,
  listInvoices,
  loadInvoiceDocument,
  loadInvoiceRecords,
} from '../../../adapters/db/invoice-repository';
import { renderInvoicePdf } from '../../../adapters/render/invoice-pdf';
import { INVOICE_KINDS, INVOICE_STATUSES, groupByAccount, linesInOrder } from '../../core/invoice-document';
import { renderInvoiceCsv, safeFileStem } from '../../core/invoice-email';
import { type Pennies, formatAmount } from '../../core/money';
import type { Deps } from '../../deps';
import { IdParam, Paging, errorResponse, newRouter } from '../common';
import { DeliverySummarySchema } from './deliveries';

// Money in JSON is exact decimal text in major units beside the integer pennies as text: never a
// JSON number, which a client would read as a float.
const Money = z.string().openapi({ example: '291.64', description: 'major units, exact decimal text' });
const MoneyPennies = z.string().openapi({ example: '29164', description: 'integer minor units, as text' });

const PartyRef = z.object({ code: z.string(), name: z.string() });
const Party = PartyRef.extend({ email: z.string().nullable(), address: z.string().nullable() });

const InvoiceSummarySchema = z
  .object({
    id: z.number(),
    number: z.string().openapi({ example: 'INV-2026-000001' }),
    kind: z.enum(INVOICE_KINDS),
    status: z.enum(INVOICE_STATUSES),
    partnership: z.string(),
    issuer: PartyRef,
    customer: PartyRef,
    period: z.string().openapi({ example: '2026-10' }),
    currency: z.string(),
    issueDate: z.string(),
    dueDate: z.string(),
    total: Money,
    totalPennies: MoneyPennies,
    creditsInvoice: z.object({ id: z.number(), number: z.string() }).nullable().openapi({ description: 'for a credit note, the invoice it corrects' }),
    reason: z.string().nullable(),
    voidedAt: z.string().nullable(),
    createdAt: z.string(),
  })
  .openapi('InvoiceSummary');

const InvoiceLineSchema = z
  .object({
    position: z.number(),
    accountCode: z.string(),
    accountName: z.string(),
    accountKind: z.string(),
    productCode: z.string().nullable().openapi({ description: 'null for a period-close settlement line (fee, true-up, cap, voucher)' }),
    productName: z.string().nullable(),
    unit: z.string().nullable(),
    usagePeriod: z.string(),
    kind: z.string(),
    description: z.string(),
    quantity: z.string().openapi({ description: 'exact decimal text' }),
    unitPrice: z.string().nullable().openapi({ description: 'exact decimal text; null when the line mixes prices' }),
    amount: Money,
    amountPennies: MoneyPennies,
  })
  .openapi('InvoiceLine');

const InvoiceDetailSchema = InvoiceSummarySchema.extend({
  issuer: Party,
  customer: Party,
  paymentTermsDays: z.number(),
  recipients: z.array(z.string()),
  lines: z.array(InvoiceLineSchema),
  subtotals: z.array(z.object({ accountCode: z.string(), accountName: z.string(), accountKind: z.string(), amount: Money, amountPennies: MoneyPennies })),
  deliveries: z.array(DeliverySummarySchema),
  creditNotes: z.array(z.object({ id: z.number(), number: z.string(), total: Money, issueDate: z.string() })),
}).openapi('Invoice');

const page = <T extends z.ZodTypeAny>(item: T) => z.object({ items: z.array(item), total: z.number(), page: z.number(), pageSize: z.number() });

const NOT_FOUND = { error: 'not_found', message: 'no such invoice' } as const;

const InvoiceFilter = Paging.extend({
  partnership: z.string().optional().openapi({ example: 'NRF-ACME' }),
  customer: z.string().optional().openapi({ example: 'ACME', description: 'customer partner code' }),
  period: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'must be a month as YYYY-MM').optional().openapi({ example: '2026-10' }),
  status: z.enum(INVOICE_STATUSES).optional(),
  kind: z.enum(INVOICE_KINDS).optional(),
});

export function invoiceRoutes(deps: Deps) {
  const { db } = deps;
  return newRouter()
    .openapi(
      createRoute({
        method: 'get',
        path: '/invoices',
        summary: 'Invoices and credit notes, newest first',
        request: { query: InvoiceFilter },
        responses: { 200: { content: { 'application/json': { schema: page(InvoiceSummarySchema) } }, description: 'A page of invoices' } },
      }),
      async (c) => {
        const q = c.req.valid('query');
        const result = await listInvoices(db, q);
        return c.json({ ...result, page: q.page, pageSize: q.pageSize }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/invoices/{id}',
        summary: 'One invoice with its parties, lines, subtotals per account, email deliveries and credit notes',
        request: { params: IdParam },
        responses: { 200: { content: { 'application/json': { schema: InvoiceDetailSchema } }, description: 'The invoice' }, 404: errorResponse('No such invoice') },
      }),
      async (c) => {
        const id = Number(c.req.valid('param').id);
        const summary = await getInvoiceSummary(db, id);
        if (!summary) return c.json(NOT_FOUND, 404);
        const [doc, deliveries, creditNotes] = await Promise.all([loadInvoiceDocument(db, id), deliveriesOfInvoice(db, id), creditNotesOf(db, id)]);
        const money = (p: Pennies) => ({ amount: formatAmount(p, doc.currency), amountPennies: p.toString() });
        const empty = (s: string) => (s === '' ? null : s);
        return c.json(
          {
            ...summary,
            issuer: doc.issuer,
            customer: doc.customer,
            paymentTermsDays: doc.paymentTermsDays,
            recipients: doc.recipients,
            lines: linesInOrder(doc).map((l) => ({
              position: l.position,
              accountCode: l.accountCode,
              accountName: l.accountName,
              accountKind: l.accountKind,
              productCode: empty(l.productCode),
              productName: empty(l.productName),
              unit: empty(l.unit),
              usagePeriod: l.usagePeriod,
              kind: l.kind,
              description: l.description,
              quantity: l.quantity,
              unitPrice: l.unitPrice,
              ...money(l.amount),
            })),
            subtotals: groupByAccount(linesInOrder(doc)).map((g) => ({ accountCode: g.accountCode, accountName: g.accountName, accountKind: g.accountKind, ...money(g.subtotal) })),
            deliveries,
            creditNotes,
          },
          200,
        );
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/invoices/{id}/pdf',
        summary: 'The invoice as the PDF its email carries (the same bytes every time)',
        request: { params: IdParam },
        responses: {
          200: { content: { 'application/pdf': { schema: z.string().openapi({ format: 'binary' }) } }, description: 'The PDF' },
          404: errorResponse('No such invoice'),
        },
      }),
      async (c) => {
        const id = Number(c.req.valid('param').id);
        if (!(await getInvoiceSummary(db, id))) return c.json(NOT_FOUND, 404);
        const doc = await loadInvoiceDocument(db, id);
        const pdf = await renderInvoicePdf(doc);
        return c.body(new Uint8Array(pdf), 200, {
          'Content-Type': 'application/pdf',
          'Content-Disposition': `attachment; filename="${safeFileStem(doc.number)}.pdf"`,
          'Cache-Control': 'private, no-store',
        });
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/invoices/{id}/csv',
        summary: "The invoice's transactions with their billing records and usages, as the CSV its email carries",
        request: { params: IdParam },
        responses: {
          200: { content: { 'text/csv': { schema: z.string() } }, description: 'RFC 4180 CSV, formula cells escaped, money columns numeric' },
          404: errorResponse('No such invoice'),
        },
      }),
      async (c) => {
        const id = Number(c.req.valid('param').id);
        if (!(await getInvoiceSummary(db, id))) return c.json(NOT_FOUND, 404);
        const doc = await loadInvoiceDocument(db, id);
        const csv = renderInvoiceCsv(doc, await loadInvoiceRecords(db, id));
        return c.body(csv, 200, {
          'Content-Type': 'text/csv; charset=utf-8',
          'Content-Disposition': `attachment; filename="${safeFileStem(doc.number)}.csv"`,
          'Cache-Control': 'private, no-store',
        });
      },
    );
}
