import { createRoute, z } from '@hono/zod-openapi';
import { AGING_BUCKETS, type AgingRow, type AgingTotals, type BucketAmounts } from '../../core/aging';
import { type Pennies, formatAmount, formatMoney } from '../../core/money';
import type { Deps } from '../../deps';
import { ReceivablesRefusal, agingReport, customerCredits, openAmounts } from '../../use-cases/receivables';
import { type ErrorSchema, errorResponse, newRouter } from '../common';

/**
 * Money in JSON: the exact number of minor units as a string (never a JavaScript number, which
 * loses pennies above 2^53), the plain decimal, and the amount formatted for people.
 */
export const MoneySchema = z
  .object({
    pennies: z.string().openapi({ example: '29164', description: 'minor units (pennies, cents), exact, as a string' }),
    amount: z.string().openapi({ example: '291.64', description: 'major units, plain decimal' }),
    formatted: z.string().openapi({ example: '£291.64' }),
    currency: z.string().openapi({ example: 'GBP' }),
  })
  .openapi('Money');

export function money(p: Pennies, currency: string): z.infer<typeof MoneySchema> {
  return { pennies: p.toString(), amount: formatAmount(p, currency), formatted: formatMoney(p, currency), currency };
}

/** A refusal from a receivables use case as the API's error body and status, or undefined for any other error. */
export function refusalResponse(err: unknown): { status: 400 | 404 | 409; body: z.infer<typeof ErrorSchema> } | undefined {
  if (!(err instanceof ReceivablesRefusal)) return undefined;
  const error = { 400: 'bad_request', 404: 'not_found', 409: 'conflict' }[err.status];
  return { status: err.status, body: { error, message: err.message } };
}

export const DateString = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'must be a date, YYYY-MM-DD');

const CustomerCode = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be a partner code').openapi({ param: { name: 'code', in: 'path' }, example: 'ACME' });

const OpenAmountRow = z
  .object({
    customer: z.object({ code: z.string(), name: z.string() }),
    currency: z.string(),
    openInvoices: z.number(),
    open: MoneySchema,
    credit: MoneySchema.openapi({ description: 'unapplied credit balance' }),
    net: MoneySchema.openapi({ description: 'open - credit' }),
    invoices: z.array(z.object({ id: z.number(), number: z.string(), issueDate: z.string(), dueDate: z.string(), total: MoneySchema, open: MoneySchema })),
  })
  .openapi('OpenAmountRow');

const Totals = z.object({ currency: z.string(), open: MoneySchema, credit: MoneySchema, net: MoneySchema });

const Buckets = z.object(Object.fromEntries(AGING_BUCKETS.map((b) => [b, MoneySchema])) as Record<(typeof AGING_BUCKETS)[number], typeof MoneySchema>);

const AgingRowSchema = z
  .object({
    customer: z.object({ code: z.string(), name: z.string() }),
    currency: z.string(),
    buckets: Buckets,
    total: MoneySchema,
    credit: MoneySchema,
    net: MoneySchema,
  })
  .openapi('AgingRow');

const AgingTotalsSchema = z.object({ currency: z.string(), buckets: Buckets, total: MoneySchema, credit: MoneySchema, net: MoneySchema });

const CreditEntrySchema = z
  .object({
    id: z.number(),
    kind: z.enum(['overpayment', 'credit_note_excess', 'applied']),
    amount: MoneySchema.openapi({ description: 'positive: credit added; negative: credit used' }),
    effectiveOn: z.string(),
    invoice: z.object({ id: z.number(), number: z.string() }),
    paymentReference: z.string().nullable(),
    creditNote: z.string().nullable(),
    createdBy: z.string(),
    createdAt: z.string(),
  })
  .openapi('CustomerCreditEntry');

const bucketsJson = (b: BucketAmounts, currency: string) => Object.fromEntries(AGING_BUCKETS.map((k) => [k, money(b[k], currency)])) as Record<(typeof AGING_BUCKETS)[number], z.infer<typeof MoneySchema>>;

const agingRowJson = (r: AgingRow) => ({
  customer: { code: r.customerCode, name: r.customerName },
  currency: r.currency,
  buckets: bucketsJson(r.buckets, r.currency),
  total: money(r.total, r.currency),
  credit: money(r.credit, r.currency),
  net: money(r.net, r.currency),
});

const agingTotalsJson = (t: AgingTotals) => ({
  currency: t.currency,
  buckets: bucketsJson(t.buckets, t.currency),
  total: money(t.total, t.currency),
  credit: money(t.credit, t.currency),
  net: money(t.net, t.currency),
});

export function receivablesRoutes(deps: Deps) {
  return newRouter()
    .openapi(
      createRoute({
        method: 'get',
        path: '/receivables/open-amounts',
        summary: 'Open amounts per customer and currency: open invoices, credit balance, net',
        description: 'Now, or as of a date (only payments, credit notes and credits dated on or before it count). Currencies are never added together.',
        request: { query: z.object({ asOf: DateString.optional().openapi({ example: '2026-12-31' }), customer: z.string().optional().openapi({ example: 'ACME' }) }) },
        responses: {
          200: { content: { 'application/json': { schema: z.object({ asOf: z.string().nullable(), customers: z.array(OpenAmountRow), totals: z.array(Totals) }) } }, description: 'Open amounts' },
          400: errorResponse('Not a real date'),
        },
      }),
      async (c) => {
        const q = c.req.valid('query');
        try {
          const report = await openAmounts(deps, { ...(q.asOf ? { asOf: q.asOf } : {}), ...(q.customer ? { customer: q.customer } : {}) });
          return c.json(
            {
              asOf: report.asOf,
              customers: report.rows.map((r) => ({
                customer: { code: r.customerCode, name: r.customerName },
                currency: r.currency,
                openInvoices: r.openInvoices,
                open: money(r.open, r.currency),
                credit: money(r.credit, r.currency),
                net: money(r.net, r.currency),
                invoices: r.invoices.map((i) => ({ id: i.invoiceId, number: i.number, issueDate: i.issueDate, dueDate: i.dueDate, total: money(i.total, r.currency), open: money(i.open, r.currency) })),
              })),
              totals: report.totals.map((t) => ({ currency: t.currency, open: money(t.open, t.currency), credit: money(t.credit, t.currency), net: money(t.net, t.currency) })),
            },
            200,
          );
        } catch (err) {
          const refusal = refusalResponse(err);
          if (refusal?.status === 400) return c.json(refusal.body, 400);
          throw err;
        }
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/receivables/aging',
        summary: 'Aging report as of a date: open amounts by days past due (current, 1-30, 31-60, 61-90, over 90)',
        description: 'Per customer and currency, with totals per currency. Without asOf: today (UTC). Payments received after the date do not count.',
        request: { query: z.object({ asOf: DateString.optional().openapi({ example: '2026-12-31' }) }) },
        responses: {
          200: { content: { 'application/json': { schema: z.object({ asOf: z.string(), buckets: z.array(z.string()), customers: z.array(AgingRowSchema), totals: z.array(AgingTotalsSchema) }) } }, description: 'The aging report' },
          400: errorResponse('Not a real date'),
        },
      }),
      async (c) => {
        const asOf = c.req.valid('query').asOf ?? deps.clock.now().toZonedDateTimeISO('UTC').toPlainDate().toString();
        try {
          const report = await agingReport(deps, { asOf });
          return c.json({ asOf: report.asOf, buckets: [...AGING_BUCKETS], customers: report.rows.map(agingRowJson), totals: report.totals.map(agingTotalsJson) }, 200);
        } catch (err) {
          const refusal = refusalResponse(err);
          if (refusal?.status === 400) return c.json(refusal.body, 400);
          throw err;
        }
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/customers/{code}/credits',
        summary: "A customer's credit balances per currency and the ledger behind them",
        request: { params: z.object({ code: CustomerCode }) },
        responses: {
          200: {
            content: {
              'application/json': {
                schema: z.object({ customer: z.object({ code: z.string(), name: z.string() }), balances: z.array(MoneySchema), entries: z.array(CreditEntrySchema) }),
              },
            },
            description: 'Credit balances and entries, oldest first',
          },
          404: errorResponse('No such partner'),
        },
      }),
      async (c) => {
        try {
          const credits = await customerCredits(deps, c.req.valid('param').code);
          return c.json(
            {
              customer: credits.customer,
              balances: credits.balances.map((b) => money(b.balance, b.currency)),
              entries: credits.entries.map((e) => ({
                id: e.id,
                kind: e.kind,
                amount: money(e.amount, e.currency),
                effectiveOn: e.effectiveOn,
                invoice: { id: e.invoiceId, number: e.invoiceNumber },
                paymentReference: e.paymentReference,
                creditNote: e.creditNoteNumber,
                createdBy: e.createdBy,
                createdAt: e.createdAt,
              })),
            },
            200,
          );
        } catch (err) {
          const refusal = refusalResponse(err);
          if (refusal?.status === 404) return c.json(refusal.body, 404);
          throw err;
        }
      },
    );
}
