import { createHash } from 'node:crypto';
import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { listPayments, settlementOf } from '../../../adapters/db/receivables-repository';
import { ZERO_PENNIES } from '../../core/money';
import { openAmount } from '../../core/receivables';
import type { Deps } from '../../deps';
import { issueCreditNote } from '../../use-cases/issue-credit-note';
import { recordPayment } from '../../use-cases/record-payment';
import { type InvoiceBalance, applyCredit, requireInvoice } from '../../use-cases/receivables';
import { voidInvoice } from '../../use-cases/void-invoice';
import { IdParam, errorResponse, newRouter } from '../common';
import { DateString, MoneySchema, money, refusalResponse } from './receivables';

/**
 * Who made a change through the API, for the audit log: the token is never written down, only a
 * short fingerprint of it (the first 12 hex digits of its SHA-256), which tells tokens apart and
 * identifies the holder to whoever issued them without revealing the token.
 */
export function apiActor(c: Context): string {
  const token = /^Bearer (\S+)$/.exec(c.req.header('authorization') ?? '')?.[1] ?? '';
  return `api:token-${createHash('sha256').update(token, 'utf8').digest('hex').slice(0, 12)}`;
}

/** An amount typed by a person, in the invoice's currency: a string, so no float ever touches it. */
const AmountText = z.string().min(1).max(40).openapi({ example: '120.50', description: 'major units as a plain decimal string, no more decimals than the currency has' });

const InvoiceBalanceSchema = z
  .object({ id: z.number(), number: z.string(), status: z.string(), total: MoneySchema, open: MoneySchema })
  .openapi('InvoiceBalance');

const PaymentSchema = z
  .object({ id: z.number(), amount: MoneySchema, receivedOn: z.string(), reference: z.string(), recordedBy: z.string().nullable(), createdAt: z.string() })
  .openapi('Payment');

const balanceJson = (b: InvoiceBalance) => ({
  id: b.id,
  number: b.number,
  status: b.status,
  total: money(b.total, b.currency),
  open: money(b.open, b.currency),
});

const refusals = {
  400: errorResponse('Bad input: the amount, currency, date, reference or reason'),
  404: errorResponse('No such invoice'),
  409: errorResponse("The invoice's state does not allow it"),
};

const jsonBody = <T extends z.ZodTypeAny>(schema: T) => ({ body: { content: { 'application/json': { schema } }, required: true } });

export function paymentRoutes(deps: Deps) {
  return newRouter()
    .openapi(
      createRoute({
        method: 'post',
        path: '/invoices/{id}/payments',
        summary: 'Record a payment against an invoice',
        description:
          'Idempotent per invoice and reference: the same payment again answers 200 with outcome already_recorded. Whatever is paid beyond ' +
          "the open amount becomes the customer's credit. Refused for a void invoice, a credit note, another currency, a future date.",
        request: {
          params: IdParam,
          ...jsonBody(
            z.object({
              amount: AmountText,
              currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as GBP').openapi({ example: 'GBP' }),
              receivedOn: DateString.openapi({ example: '2026-11-30' }),
              reference: z.string().openapi({ example: 'BACS 2026-11-30 ACME 0042' }),
            }),
          ),
        },
        responses: {
          201: { content: { 'application/json': { schema: z.object({ outcome: z.literal('recorded'), payment: PaymentSchema, invoice: InvoiceBalanceSchema, creditedToCustomer: MoneySchema }) } }, description: 'Recorded' },
          200: { content: { 'application/json': { schema: z.object({ outcome: z.literal('already_recorded'), payment: PaymentSchema, invoice: InvoiceBalanceSchema, creditedToCustomer: MoneySchema }) } }, description: 'This payment was already recorded; nothing changed' },
          ...refusals,
        },
      }),
      async (c) => {
        const body = c.req.valid('json');
        try {
          const r = await recordPayment(deps, { invoiceId: Number(c.req.valid('param').id), ...body, actor: apiActor(c) });
          const json = {
            payment: { id: r.payment.id, amount: money(r.payment.amount, r.invoice.currency), receivedOn: r.payment.receivedOn, reference: r.payment.reference, recordedBy: r.payment.recordedBy, createdAt: r.payment.createdAt },
            invoice: balanceJson(r.invoice),
            creditedToCustomer: money(r.excess, r.invoice.currency),
          };
          return r.outcome === 'recorded' ? c.json({ outcome: 'recorded' as const, ...json }, 201) : c.json({ outcome: 'already_recorded' as const, ...json }, 200);
        } catch (err) {
          const refusal = refusalResponse(err);
          if (refusal) return c.json(refusal.body, refusal.status);
          throw err;
        }
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/invoices/{id}/payments',
        summary: "An invoice's payments, oldest first, with what is still open",
        request: { params: IdParam },
        responses: {
          200: { content: { 'application/json': { schema: z.object({ invoice: InvoiceBalanceSchema, items: z.array(PaymentSchema) }) } }, description: 'Payments' },
          404: errorResponse('No such invoice'),
        },
      }),
      async (c) => {
        try {
          const invoice = await requireInvoice(deps.db, Number(c.req.valid('param').id));
          const open = invoice.status === 'void' || invoice.kind === 'credit_note' ? ZERO_PENNIES : openAmount(await settlementOf(deps.db, invoice));
          const items = await listPayments(deps.db, invoice.id);
          return c.json(
            {
              invoice: balanceJson({ ...invoice, open }),
              items: items.map((p) => ({ id: p.id, amount: money(p.amount, invoice.currency), receivedOn: p.receivedOn, reference: p.reference, recordedBy: p.recordedBy, createdAt: p.createdAt })),
            },
            200,
          );
        } catch (err) {
          const refusal = refusalResponse(err);
          if (refusal?.status === 404) return c.json(refusal.body, 404);
          throw err;
        }
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        path: '/invoices/{id}/credit-notes',
        summary: 'Issue a credit note for an invoice (the whole amount not yet credited, or the amount given)',
        description: 'A negative document (CN-YYYY-NNNNNN) referencing the invoice, emailed like an invoice. Credit notes never add up to more than the invoice.',
        request: { params: IdParam, ...jsonBody(z.object({ amount: AmountText.optional(), reason: z.string().openapi({ example: 'Instrument downtime on 14 October' }) })) },
        responses: {
          201: {
            content: {
              'application/json': {
                schema: z.object({
                  creditNote: z.object({ id: z.number(), number: z.string(), issueDate: z.string(), total: MoneySchema, lines: z.number(), mirrored: z.boolean() }),
                  invoice: InvoiceBalanceSchema,
                  creditedToCustomer: MoneySchema,
                  emailDeliveryId: z.number().nullable(),
                }),
              },
            },
            description: 'Issued',
          },
          ...refusals,
        },
      }),
      async (c) => {
        const body = c.req.valid('json');
        try {
          const r = await issueCreditNote(deps, { invoiceId: Number(c.req.valid('param').id), reason: body.reason, ...(body.amount !== undefined ? { amount: body.amount } : {}), actor: apiActor(c) });
          c.header('Location', `/invoices/${r.creditNote.id}`);
          return c.json(
            {
              creditNote: { id: r.creditNote.id, number: r.creditNote.number, issueDate: r.creditNote.issueDate, total: money(r.creditNote.total, r.invoice.currency), lines: r.creditNote.lines, mirrored: r.creditNote.mirrored },
              invoice: balanceJson(r.invoice),
              creditedToCustomer: money(r.excess, r.invoice.currency),
              emailDeliveryId: r.deliveryId ?? null,
            },
            201,
          );
        } catch (err) {
          const refusal = refusalResponse(err);
          if (refusal) return c.json(refusal.body, refusal.status);
          throw err;
        }
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        path: '/invoices/{id}/void',
        summary: 'Void an issued invoice that has no payments, credit notes or applied credit',
        description: 'It keeps its number and leaves the open amounts. Its billed transactions stay with it and are not billed again. Voiding a void invoice again answers already_void.',
        request: { params: IdParam, ...jsonBody(z.object({ reason: z.string().openapi({ example: 'Issued to the wrong customer' }) })) },
        responses: {
          200: {
            content: {
              'application/json': {
                schema: z.object({ outcome: z.enum(['voided', 'already_void']), invoice: z.object({ id: z.number(), number: z.string(), status: z.literal('void'), voidedAt: z.string(), reason: z.string() }), emailStopped: z.boolean() }),
              },
            },
            description: 'Void',
          },
          ...refusals,
        },
      }),
      async (c) => {
        try {
          const r = await voidInvoice(deps, { invoiceId: Number(c.req.valid('param').id), reason: c.req.valid('json').reason, actor: apiActor(c) });
          return c.json(r, 200);
        } catch (err) {
          const refusal = refusalResponse(err);
          if (refusal) return c.json(refusal.body, refusal.status);
          throw err;
        }
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        path: '/invoices/{id}/credit-applications',
        summary: "Apply the customer's credit balance to an open invoice (all that is open, or the amount given)",
        request: { params: IdParam, ...jsonBody(z.object({ amount: AmountText.optional() })) },
        responses: {
          201: { content: { 'application/json': { schema: z.object({ applied: MoneySchema, invoice: InvoiceBalanceSchema, remainingCredit: MoneySchema }) } }, description: 'Applied' },
          ...refusals,
        },
      }),
      async (c) => {
        const body = c.req.valid('json');
        try {
          const r = await applyCredit(deps, { invoiceId: Number(c.req.valid('param').id), ...(body.amount !== undefined ? { amount: body.amount } : {}), actor: apiActor(c) });
          return c.json({ applied: money(r.amount, r.invoice.currency), invoice: balanceJson(r.invoice), remainingCredit: money(r.remainingCredit, r.invoice.currency) }, 201);
        } catch (err) {
          const refusal = refusalResponse(err);
          if (refusal) return c.json(refusal.body, refusal.status);
          throw err;
        }
      },
    );
}
