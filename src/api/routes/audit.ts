import { createRoute, z } from '@hono/zod-openapi';
import { listAudit } from '../../../adapters/db/receivables-repository';
import type { Deps } from '../../deps';
import { Paging, newRouter } from '../common';

const AuditEntrySchema = z
  .object({
    id: z.number(),
    at: z.string(),
    actor: z.string().openapi({ example: 'cli:alice' }),
    action: z.string().openapi({ example: 'payment.recorded' }),
    entity: z.string().openapi({ example: 'invoice' }),
    entityId: z.string().openapi({ example: '42' }),
    before: z.unknown(),
    after: z.unknown(),
  })
  .openapi('AuditEntry');

/** The audit log, newest first: who changed what, when, before and after. */
export function auditRoutes(deps: Pick<Deps, 'db'>) {
  return newRouter().openapi(
    createRoute({
      method: 'get',
      path: '/audit',
      summary: 'Audit log entries, newest first, optionally for one entity',
      request: {
        query: Paging.extend({
          entity: z.string().max(100).optional().openapi({ example: 'invoice' }),
          entityId: z.string().max(100).optional().openapi({ example: '42' }),
        }),
      },
      responses: {
        200: { content: { 'application/json': { schema: z.object({ items: z.array(AuditEntrySchema), total: z.number(), page: z.number(), pageSize: z.number() }) } }, description: 'A page of audit entries' },
      },
    }),
    async (c) => {
      const q = c.req.valid('query');
      const result = await listAudit(deps.db, q);
      return c.json({ ...result, page: q.page, pageSize: q.pageSize }, 200);
    },
  );
}
