import path from 'node:path';
import { readFile, readdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/api/app';
import { DEMO_DIR } from '../src/cli/demo';
import { importPartnerships, readImportFile } from '../src/use-cases/import-partnerships';
import { pipelineIsIdle, waitUntilSettled } from '../src/use-cases/wait-for-pipeline';
import { type TestContext, TEST_TOKEN, createTestContext } from './support/test-context';

const auth = { Authorization: `Bearer ${TEST_TOKEN}` };

describe('uploading feeds and reading their status through the admin API', () => {
  let ctx: TestContext;
  let app: ReturnType<typeof createApp>;
  let csv: Buffer;

  beforeAll(async () => {
    ctx = await createTestContext({ env: { MAX_FILE_BYTES: '4096' } });
    await importPartnerships(ctx.deps, await readImportFile(path.join(DEMO_DIR, 'partnerships.yaml')), 'test');
    app = createApp(ctx.deps);
    csv = await readFile(path.join(DEMO_DIR, 'feeds/ACME/acme-usage-2026-10.csv'));
    ctx.workers();
  });
  afterAll(async () => {
    await ctx?.close();
  });

  const settle = () => waitUntilSettled(ctx.deps, ['ingest-file', 'rate-file'], () => pipelineIsIdle(ctx.deps));

  it('stores a raw upload as an inbox drop, ingests it and reports counts and row errors', async () => {
    const res = await app.request('/files?partner=ACME&name=acme-usage-2026-10.csv', { method: 'POST', headers: auth, body: csv });
    expect(res.status).toBe(201);
    const { fileId, status } = (await res.json()) as { fileId: number; status: string };
    expect(status).toBe('received');
    expect(res.headers.get('location')).toBe(`/files/${fileId}`);
    await settle();

    const file = (await (await app.request(`/files/${fileId}`, { headers: auth })).json()) as Record<string, unknown>;
    expect(file).toMatchObject({ id: fileId, partner: 'ACME', name: 'acme-usage-2026-10.csv', source: 'api', status: 'rated', counts: { read: 7, accepted: 6, rejected: 1, duplicate: 0 }, progress: { recordsCommitted: 7 }, error: null });
    expect(await readdir(path.join(ctx.inboxDir, 'archive/ACME'))).toEqual([`${fileId}__acme-usage-2026-10.csv`]);

    const errors = (await (await app.request(`/files/${fileId}/errors?pageSize=10`, { headers: auth })).json()) as { items: unknown[]; total: number };
    expect(errors).toEqual({
      items: [{ record: 7, line: 8, field: 'product', code: 'unknown_product', message: 'unknown product "LASER_HOUR"', rawValue: 'LASER_HOUR' }],
      total: 1,
      page: 1,
      pageSize: 10,
    });
  });

  it('records the same bytes again, under another name and as multipart, as a duplicate', async () => {
    const form = new FormData();
    form.set('partner', 'ACME');
    form.set('file', new File([new Uint8Array(csv)], 'renamed.csv', { type: 'text/csv' }));
    const res = await app.request('/files', { method: 'POST', headers: auth, body: form });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { fileId: number; status: string; duplicateOf: number };
    expect(body.status).toBe('duplicate');
    const list = (await (await app.request('/files?status=duplicate', { headers: auth })).json()) as { items: Array<{ id: number; name: string; duplicateOf: number }>; total: number };
    expect(list.total).toBe(1);
    expect(list.items[0]).toMatchObject({ id: body.fileId, name: 'renamed.csv', duplicateOf: body.duplicateOf });
  });

  it('refuses an upload over the limit with 413, with or without Content-Length, and keeps nothing', async () => {
    const big = Buffer.alloc(5000, 'a');
    const withLength = await app.request('/files?partner=ACME&name=big.csv', { method: 'POST', headers: { ...auth, 'content-length': String(big.length) }, body: big });
    expect(withLength.status).toBe(413);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 5; i += 1) controller.enqueue(new Uint8Array(1000).fill(97));
        controller.close();
      },
    });
    const chunked = await app.request('/files?partner=ACME&name=big.csv', { method: 'POST', headers: auth, body: stream, duplex: 'half' });
    expect(chunked.status).toBe(413);
    expect(await chunked.json()).toEqual({ error: 'payload_too_large', message: 'upload is larger than the limit of 4096 bytes' });
    const processing = await readdir(path.join(ctx.inboxDir, 'processing/ACME')).catch(() => []);
    expect(processing).toEqual([]);
  });

  it.each([
    ['../../etc/passwd'],
    ['%2e%2e%2fpasswd.csv'],
    ['/etc/passwd.csv'],
    ['a%00b.csv'],
    ['.hidden.csv'],
  ])('refuses the file name %s with 400 and writes nothing outside the inbox', async (name) => {
    const res = await app.request(`/files?partner=ACME&name=${name}`, { method: 'POST', headers: auth, body: csv });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toMatch(/^file name .* is not allowed/);
  });

  it('answers 404 for an unknown partner and 415 for an unknown format', async () => {
    expect((await app.request('/files?partner=NOPE&name=a.csv', { method: 'POST', headers: auth, body: csv })).status).toBe(404);
    expect((await app.request('/files?partner=ACME&name=a.txt', { method: 'POST', headers: auth, body: csv })).status).toBe(415);
  });

  it.each(['abc', '0', '..%2f..%2fetc', '1%00'])('refuses the file id %s with 400', async (id) => {
    const res = await app.request(`/files/${id}`, { headers: auth });
    expect(res.status).toBe(400);
  });

  it('answers 404 for a file that does not exist', async () => {
    expect((await app.request('/files/999999', { headers: auth })).status).toBe(404);
    expect((await app.request('/files/999999/errors', { headers: auth })).status).toBe(404);
  });

  it('publishes an OpenAPI document that lists the routes', async () => {
    const doc = (await (await app.request('/openapi.json', { headers: auth })).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/files', '/files/{id}', '/files/{id}/errors', '/health', '/queues']));
  });
});
