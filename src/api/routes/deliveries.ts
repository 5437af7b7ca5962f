import { createRoute, z } from '@hono/zod-openapi';
import { ATTEMPT_OUTCOMES, DELIVERY_STATUSES, attemptsOfDelivery, getDelivery, listDeliveries } from '../../../adapters/db/invoice-repository';
import type { Deps } from '../../deps';
import { ResendRefused, resendDelivery } from '../../use-cases/resend-delivery';
import { IdParam, Paging, errorResponse, newRouter } from '../common';

export const DeliverySummarySchema = z
  .object({
    id: z.number(),
    invoiceId: z.number(),
    invoiceNumber: z.string(),
    purpose: z.string(),
    recipients: z.array(z.string()),
    subject: z.string(),
    messageId: z.string().openapi({ description: 'fixed per invoice before the first attempt; a resend carries the same one' }),
    status: z.enum(DELIVERY_STATUSES).openapi({ description: 'unknown: a send was interrupted and may or may not have arrived; an operator decides' }),
    attempts: z.number(),
    lastError: z.string().nullable(),
    lastResponse: z.string().nullable(),
    transport: z.string().nullable(),
    resendRequested: z.object({ by: z.string(), at: z.string() }).nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
    sentAt: z.string().nullable(),
  })
  .openapi('EmailDelivery');

const AttemptSchema = z
  .object({
    attempt: z.number(),
    trigger: z.enum(['automatic', 'resend']),
    requestedBy: z.string().nullable(),
    transport: z.string(),
    sender: z.string(),
    recipients: z.array(z.string()),
    subject: z.string(),
    messageId: z.string(),
    attemptedAt: z.string(),
    finishedAt: z.string().nullable(),
    outcome: z.enum(ATTEMPT_OUTCOMES).nullable().openapi({ description: 'null while the attempt is in progress' }),
    replyCode: z.number().nullable(),
    reply: z.string().nullable().openapi({ description: "the SMTP server's reply, or the error" }),
    rejected: z.array(z.string()),
  })
  .openapi('EmailAttempt');

const page = <T extends z.ZodTypeAny>(item: T) => z.object({ items: z.array(item), total: z.number(), page: z.number(), pageSize: z.number() });

// The API has no per-person identity yet: a token is the operator.
const API_ACTOR = 'admin-api';

export function deliveryRoutes(deps: Deps) {
  const { db } = deps;
  return newRouter()
    .openapi(
      createRoute({
        method: 'get',
        path: '/deliveries',
        summary: 'Invoice email deliveries, newest first (status=unknown or failed: what needs an operator)',
        request: {
          query: Paging.extend({
            status: z.enum(DELIVERY_STATUSES).optional(),
            invoice: z.string().regex(/^[1-9]\d{0,17}$/, 'must be an invoice id').optional().openapi({ example: '42' }),
          }),
        },
        responses: { 200: { content: { 'application/json': { schema: page(DeliverySummarySchema) } }, description: 'A page of deliveries' } },
      }),
      async (c) => {
        const q = c.req.valid('query');
        const result = await listDeliveries(db, { page: q.page, pageSize: q.pageSize, ...(q.status ? { status: q.status } : {}), ...(q.invoice ? { invoiceId: Number(q.invoice) } : {}) });
        return c.json({ ...result, page: q.page, pageSize: q.pageSize }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/deliveries/{id}',
        summary: 'One delivery with its communication log: every attempt, its outcome and the server reply',
        request: { params: IdParam },
        responses: {
          200: { content: { 'application/json': { schema: DeliverySummarySchema.extend({ attemptLog: z.array(AttemptSchema) }).openapi('EmailDeliveryWithAttempts') } }, description: 'The delivery' },
          404: errorResponse('No such delivery'),
        },
      }),
      async (c) => {
        const id = Number(c.req.valid('param').id);
        const delivery = await getDelivery(db, id);
        if (!delivery) return c.json({ error: 'not_found', message: 'no such delivery' }, 404);
        return c.json({ ...delivery, attemptLog: await attemptsOfDelivery(db, id) }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        path: '/deliveries/{id}/resend',
        summary: 'Send a failed, unknown or sent invoice email again, on purpose, under the same Message-ID',
        description:
          'The delivery goes back to pending and a worker makes a new attempt, logged as a resend. A delivery that is pending or ' +
          'sending already has an attempt on its way: 409, so a double click sends once.',
        request: { params: IdParam },
        responses: {
          202: {
            content: {
              'application/json': {
                schema: z.object({ deliveryId: z.number(), invoiceNumber: z.string(), previousStatus: z.string(), status: z.literal('pending'), messageId: z.string(), jobId: z.string().nullable() }),
              },
            },
            description: 'Queued; see GET /deliveries/{id}',
          },
          404: errorResponse('No such delivery'),
          409: errorResponse('An attempt is already pending or sending'),
        },
      }),
      async (c) => {
        const id = Number(c.req.valid('param').id);
        try {
          const r = await resendDelivery(deps, id, { requestedBy: API_ACTOR });
          c.header('Location', `/deliveries/${id}`);
          return c.json({ deliveryId: r.deliveryId, invoiceNumber: r.invoiceNumber, previousStatus: r.previousStatus, status: 'pending' as const, messageId: r.messageId, jobId: r.jobId ?? null }, 202);
        } catch (err) {
          if (err instanceof ResendRefused) {
            return err.reason === 'not_found'
              ? c.json({ error: 'not_found', message: err.message }, 404)
              : c.json({ error: 'conflict', message: err.message }, 409);
          }
          throw err;
        }
      },
    );
}
