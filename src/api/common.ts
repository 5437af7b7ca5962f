import { OpenAPIHono, z } from '@hono/zod-openapi';
import type { Deps } from '../deps';

// Routes answer 503 instead of hanging when a dependency does not answer in time.
export { within } from '../process';

export type ApiDeps = Pick<Deps, 'db' | 'redis' | 'queues' | 'config' | 'logger' | 'clock'>;

export const ErrorSchema = z
  .object({ error: z.string().openapi({ example: 'not_found' }), message: z.string() })
  .openapi('Error');

export const errorResponse = (description: string) => ({
  content: { 'application/json': { schema: ErrorSchema } },
  description,
});

/** Every router validates with zod and answers a bad request with the same body shape. */
export function newRouter(): OpenAPIHono {
  return new OpenAPIHono({
    defaultHook: (result, c) => {
      if (!result.success) {
        const message = result.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; ');
        return c.json({ error: 'bad_request', message }, 400);
      }
      return undefined;
    },
  });
}

export const Paging = z.object({
  page: z.coerce.number().int().min(1).default(1).openapi({ example: 1 }),
  pageSize: z.coerce.number().int().min(1).max(500).default(50).openapi({ example: 50 }),
});

export const IdParam = z.object({
  id: z.string().regex(/^[1-9]\d{0,17}$/, 'must be a positive whole number').openapi({ param: { name: 'id', in: 'path' }, example: '42' }),
});
