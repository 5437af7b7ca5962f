import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { FILE_STATUSES, getFile, listFileErrors, listFiles } from '../../../adapters/db/file-repository';
import type { Deps } from '../../deps';
import { UploadRefused, receiveUpload } from '../../use-cases/receive-upload';
import { IdParam, Paging, errorResponse, newRouter } from '../common';

/** Multipart bodies are parsed in memory by the platform's FormData, so they get a tighter cap than raw uploads, which stream to disk. */
const MULTIPART_MAX_BYTES = 256 * 1024 ** 2;

const FileSummary = z
  .object({
    id: z.number(),
    partner: z.string(),
    name: z.string(),
    format: z.string(),
    source: z.string(),
    status: z.enum(FILE_STATUSES),
    sha256: z.string(),
    sizeBytes: z.number(),
    duplicateOf: z.number().nullable(),
    supersedes: z.number().nullable(),
    counts: z.object({
      read: z.number(),
      accepted: z.number(),
      rejected: z.number(),
      duplicate: z.number(),
      unchanged: z.number().openapi({ description: 'rows of a correcting file identical to the usage they correct' }),
      replaced: z.number(),
      withdrawn: z.number().openapi({ description: 'usages of the corrected file that this file leaves out' }),
    }),
    progress: z.object({
      recordsCommitted: z.number().openapi({ description: 'rows done' }),
      recordsTotal: z.number().nullable().openapi({ description: 'rows in the file, counted when its chunks were planned; null before' }),
      chunksCommitted: z.number(),
      chunksTotal: z.number().nullable().openapi({ description: 'chunks the file was split into, which workers share' }),
    }),
    error: z.string().nullable(),
    timings: z.object({
      receivedAt: z.string(),
      parseStartedAt: z.string().nullable(),
      parsedAt: z.string().nullable(),
      ratedAt: z.string().nullable(),
      failedAt: z.string().nullable(),
    }),
  })
  .openapi('UsageFile');

const FileError = z
  .object({
    record: z.number().nullable(),
    line: z.number().nullable(),
    field: z.string().nullable(),
    code: z.string(),
    message: z.string(),
    rawValue: z.string().nullable(),
  })
  .openapi('UsageFileError');

const page = <T extends z.ZodTypeAny>(item: T) => z.object({ items: z.array(item), total: z.number(), page: z.number(), pageSize: z.number() });

const uploadRoute = createRoute({
  method: 'post',
  path: '/files',
  summary: 'Upload a usage feed (raw body, or multipart with a "file" field)',
  description:
    'The feed is stored exactly as an inbox drop would be, then ingested by the workers. Raw bodies stream to disk; ' +
    'the same bytes again for the same partner are recorded as a duplicate.',
  request: {
    query: z.object({
      partner: z.string().optional().openapi({ example: 'ACME' }),
      format: z.string().optional().openapi({ example: 'csv' }),
      name: z.string().optional().openapi({ example: 'usage-2026-10.csv' }),
      supersedes: z.string().regex(/^[1-9]\d{0,17}$/).optional().openapi({ description: 'id of an earlier file of the same partner that this one corrects', example: '41' }),
    }),
  },
  responses: {
    201: {
      content: { 'application/json': { schema: z.object({ fileId: z.number(), status: z.string(), duplicateOf: z.number().optional(), error: z.string().optional() }) } },
      description: 'Recorded; see GET /files/{id}',
    },
    400: errorResponse('Missing partner, or a file name with a path or control characters'),
    404: errorResponse('Unknown partner'),
    413: errorResponse('Larger than the limit'),
    415: errorResponse('Unknown format'),
  },
});

export function fileRoutes(deps: Deps) {
  return newRouter()
    .openapi(uploadRoute, async (c) => {
      const query = c.req.valid('query');
      const multipart = (c.req.header('content-type') ?? '').toLowerCase().startsWith('multipart/form-data');
      const limit = multipart ? Math.min(MULTIPART_MAX_BYTES, deps.config.limits.maxFileBytes) : deps.config.limits.maxFileBytes;
      const declared = Number(c.req.header('content-length') ?? Number.NaN);
      if (Number.isFinite(declared) && declared > limit) return refuse(c, new UploadRefused(413, `upload of ${declared} bytes is larger than the limit of ${limit} bytes`));
      try {
        const upload = multipart ? await readMultipart(c, limit) : undefined;
        const partner = upload?.partner ?? query.partner;
        if (!partner) throw new UploadRefused(400, 'say which partner the feed belongs to: ?partner=CODE (or a "partner" form field)');
        const format = upload?.format ?? query.format;
        const name = upload?.name ?? query.name ?? `upload.${format ?? 'csv'}`;
        const body = upload?.file.stream() ?? c.req.raw.body;
        if (!body) throw new UploadRefused(400, 'the request has no body');
        const result = await receiveUpload(deps, { partnerCode: partner, name, ...(format ? { format } : {}), ...(query.supersedes ? { supersedes: Number(query.supersedes) } : {}), body, maxBytes: limit });
        c.header('Location', `/files/${result.fileId}`);
        return c.json({ fileId: result.fileId, status: result.status, ...(result.duplicateOf ? { duplicateOf: result.duplicateOf } : {}), ...(result.error ? { error: result.error } : {}) }, 201);
      } catch (err) {
        if (err instanceof UploadRefused) return refuse(c, err);
        throw err;
      }
    })
    .openapi(
      createRoute({
        method: 'get',
        path: '/files',
        summary: 'Files, newest first',
        request: { query: Paging.extend({ status: FileSummary.shape.status.optional(), partner: z.string().optional() }) },
        responses: { 200: { content: { 'application/json': { schema: page(FileSummary) } }, description: 'A page of files' } },
      }),
      async (c) => {
        const q = c.req.valid('query');
        const result = await listFiles(deps.db, q);
        return c.json({ ...result, page: q.page, pageSize: q.pageSize }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/files/{id}',
        summary: 'One file: status, counts, progress, error and timings',
        request: { params: IdParam },
        responses: { 200: { content: { 'application/json': { schema: FileSummary } }, description: 'The file' }, 404: errorResponse('No such file') },
      }),
      async (c) => {
        const file = await getFile(deps.db, Number(c.req.valid('param').id));
        return file ? c.json(file, 200) : c.json({ error: 'not_found', message: 'no such file' }, 404);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/files/{id}/errors',
        summary: "A file's row errors, in file order",
        request: { params: IdParam, query: Paging },
        responses: { 200: { content: { 'application/json': { schema: page(FileError) } }, description: 'A page of errors' }, 404: errorResponse('No such file') },
      }),
      async (c) => {
        const id = Number(c.req.valid('param').id);
        const q = c.req.valid('query');
        if (!(await getFile(deps.db, id))) return c.json({ error: 'not_found', message: 'no such file' }, 404);
        const result = await listFileErrors(deps.db, id, q.page, q.pageSize);
        return c.json({ ...result, page: q.page, pageSize: q.pageSize }, 200);
      },
    );
}

function refuse(c: Context, err: UploadRefused) {
  const code = { 400: 'bad_request', 404: 'not_found', 413: 'payload_too_large', 415: 'unsupported_media_type' }[err.status];
  return c.json({ error: code, message: err.message }, err.status);
}

/** Reads a multipart upload through a byte counter, so a body without Content-Length still stops at the limit. */
async function readMultipart(c: Context, limit: number): Promise<{ file: File; partner?: string; format?: string; name: string }> {
  const body = c.req.raw.body;
  if (!body) throw new UploadRefused(400, 'the request has no body');
  let seen = 0;
  const counted = body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        seen += chunk.byteLength;
        if (seen > limit) controller.error(new UploadRefused(413, `upload is larger than the limit of ${limit} bytes`));
        else controller.enqueue(chunk);
      },
    }),
  );
  let form: FormData;
  try {
    form = await new Request(c.req.url, { method: 'POST', headers: c.req.raw.headers, body: counted, duplex: 'half' }).formData();
  } catch (err) {
    if (err instanceof UploadRefused) throw err;
    if (seen > limit) throw new UploadRefused(413, `upload is larger than the limit of ${limit} bytes`);
    throw new UploadRefused(400, `the multipart body could not be read: ${(err as Error).message}`);
  }
  const file = form.get('file');
  if (!(file instanceof File)) throw new UploadRefused(400, 'the multipart body has no "file" field');
  const text = (key: string) => {
    const v = form.get(key);
    return typeof v === 'string' && v.length > 0 ? v : undefined;
  };
  return { file, partner: text('partner'), format: text('format'), name: text('name') ?? file.name };
}
