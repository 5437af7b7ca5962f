import { createRoute, z } from '@hono/zod-openapi';
import { getBillingRun, listBillingRuns } from '../../../adapters/db/receivables-repository';
import type { Deps } from '../../deps';
import { formatAmount } from '../../core/money';
import { PermanentError } from '../../use-cases/errors';
import { previewInvoice, requestBillingRun } from '../../use-cases/run-billing-period';
import { IdParam, Paging, errorResponse, newRouter } from '../common';
import { apiActor } from './payments';

const BillingRunSchema = z
  .object({
    id: z.number(),
    period: z.string().openapi({ example: '2026-10' }),
    status: z.enum(['queued', 'running', 'completed', 'failed']),
    requestedBy: z.string(),
    invoicesCreated: z.number(),
    summary: z.unknown().openapi({ description: "the run's outcome per partnership, as recorded" }),
    error: z.string().nullable(),
    queuedAt: z.string(),
    startedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
  })
  .openapi('BillingRun');

/** Billing runs: request one for a period, and see what was asked for, by whom, how it went. */
export function billingRunRoutes(deps: Deps) {
  return newRouter()
    .openapi(
      createRoute({
        method: 'post',
        path: '/billing-runs',
        summary: 'Queue a billing run for a period; follow it with GET /billing-runs/{id}',
        description: 'Safe to repeat: a partnership already invoiced for the period is reported as already_invoiced, never billed twice.',
        request: {
          body: {
            required: true,
            content: { 'application/json': { schema: z.object({ period: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'must be a month, YYYY-MM').openapi({ example: '2026-10' }) }).strict() } },
          },
        },
        responses: {
          202: { content: { 'application/json': { schema: z.object({ id: z.number(), status: z.literal('queued'), period: z.string() }) } }, description: 'Queued' },
          400: errorResponse('Not a period'),
        },
      }),
      async (c) => {
        const { period } = c.req.valid('json');
        const { billingRunId } = await requestBillingRun(deps, { period, requestedBy: apiActor(c) });
        return c.json({ id: billingRunId, status: 'queued' as const, period }, 202);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/billing-runs/preview',
        summary: "A draft of a partnership's invoice for a period, settlement included; nothing is written and no number is taken",
        request: {
          query: z.object({
            partnership: z.string().min(1).openapi({ example: 'NRF-ACME' }),
            period: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'must be a month, YYYY-MM').openapi({ example: '2026-10' }),
          }),
        },
        responses: {
          200: {
            content: {
              'application/json': {
                schema: z.object({
                  partnership: z.string(),
                  period: z.string(),
                  outcome: z.string(),
                  note: z.string().optional(),
                  draft: z
                    .object({
                      wouldBeNumber: z.string(),
                      currency: z.string(),
                      totalPennies: z.string(),
                      total: z.string(),
                      lines: z.array(z.object({ account: z.string(), description: z.string(), kind: z.string(), usagePeriod: z.string(), quantity: z.string(), unitPrice: z.string().nullable(), amountPennies: z.string(), amount: z.string() })),
                    })
                    .optional(),
                }),
              },
            },
            description: 'The draft, or why there would be no invoice (period open, files in flight, nothing to bill, already invoiced)',
          },
          404: errorResponse('No such partnership, or no contract in the period'),
        },
      }),
      async (c) => {
        const q = c.req.valid('query');
        try {
          const { outcome, document: doc } = await previewInvoice(deps, { partnership: q.partnership, period: q.period });
          return c.json(
            {
              partnership: q.partnership,
              period: q.period,
              outcome: outcome.outcome,
              ...(outcome.note ? { note: outcome.note } : {}),
              ...(doc
                ? {
                    draft: {
                      wouldBeNumber: doc.number,
                      currency: doc.currency,
                      totalPennies: doc.total.toString(),
                      total: formatAmount(doc.total, doc.currency),
                      lines: doc.lines.map((l) => ({
                        account: l.accountCode, description: l.description, kind: l.kind, usagePeriod: l.usagePeriod, quantity: l.quantity,
                        unitPrice: l.unitPrice, amountPennies: l.amount.toString(), amount: formatAmount(l.amount, doc.currency),
                      })),
                    },
                  }
                : {}),
            },
            200,
          );
        } catch (err) {
          if (err instanceof PermanentError) return c.json({ error: 'not_found', message: err.message }, 404);
          throw err;
        }
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/billing-runs',
        summary: 'Billing runs, newest first',
        request: {
          query: Paging.extend({
            status: BillingRunSchema.shape.status.optional(),
            period: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'must be a month, YYYY-MM').optional().openapi({ example: '2026-10' }),
          }),
        },
        responses: {
          200: { content: { 'application/json': { schema: z.object({ items: z.array(BillingRunSchema), total: z.number(), page: z.number(), pageSize: z.number() }) } }, description: 'A page of billing runs' },
        },
      }),
      async (c) => {
        const q = c.req.valid('query');
        const result = await listBillingRuns(deps.db, q);
        return c.json({ ...result, page: q.page, pageSize: q.pageSize }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/billing-runs/{id}',
        summary: 'One billing run: status, period, who asked, invoices created, summary, error, times',
        request: { params: IdParam },
        responses: { 200: { content: { 'application/json': { schema: BillingRunSchema } }, description: 'The billing run' }, 404: errorResponse('No such billing run') },
      }),
      async (c) => {
        const run = await getBillingRun(deps.db, Number(c.req.valid('param').id));
        return run ? c.json(run, 200) : c.json({ error: 'not_found', message: 'no such billing run' }, 404);
      },
    );
}
