import { access } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Deps } from '../src/deps';
import { RetryableError } from '../src/use-cases/errors';
import { ingestFile } from '../src/use-cases/ingest-file';
import { rateFile } from '../src/use-cases/rate-file';
import type { RegisteredFile } from '../src/use-cases/register-file';
import { scanInbox } from '../src/use-cases/scan-inbox';
import { counts, fileRow } from './support/file-rows';
import { dropSettled, importDemoPartnerships } from './support/inbox-drops';
import { findInvariantViolations } from './support/invariants';
import { type TestContext, createTestContext } from './support/test-context';

const HEADER = 'usage_id,product,user,quantity,start_time';

/** A CSV feed with the required columns; cells are written as given (quote them yourself). */
function csv(rows: string[][], header = HEADER): string {
  return [header, ...rows.map((r) => r.join(','))].join('\n') + '\n';
}

function xml(usages: Array<{ id: string; product: string; user: string; quantity: string; start: string }>): string {
  const records = usages.map(
    (u) => `  <usage id="${u.id}"><product>${u.product}</product><user>${u.user}</user><quantity>${u.quantity}</quantity><start>${u.start}</start></usage>`,
  );
  return ['<?xml version="1.0" encoding="UTF-8"?>', '<usageFeed partner="ACME">', ...records, '</usageFeed>', ''].join('\n');
}

async function countOf(deps: Deps, table: string): Promise<number> {
  const [row] = await deps.db(table).count<{ count: string }[]>('* as count');
  return Number(row?.count);
}

/** Scans the inbox and expects exactly the given number of newly claimed files. */
async function scanExpecting(deps: Deps, n: number): Promise<RegisteredFile[]> {
  const registered = await scanInbox(deps);
  expect(registered, 'files claimed by the scan').toHaveLength(n);
  return registered;
}

async function usagesOf(deps: Deps, fileId: number) {
  return deps.db('product_usages as u')
    .join('products as p', 'p.id', 'u.product_id')
    .leftJoin('accounts as a', 'a.id', 'u.account_id')
    .where('u.source_file_id', fileId)
    .orderBy('u.source_record')
    .select<Array<{ external_id: string; product: string; user_ref: string; account: string | null; quantity: string; started_at: Date; period: string; source_record: number; source_line: number | null }>>(
      'u.external_id', 'p.code as product', 'u.user_ref', 'a.code as account', 'u.quantity', 'u.started_at', 'u.period', 'u.source_record', 'u.source_line',
    );
}

async function errorsOf(deps: Deps, fileId: number) {
  const rows = await deps.db('usage_file_errors').where('file_id', fileId).orderBy(['record', 'id'])
    .select<Array<{ record: number | null; line: number | null; field: string | null; code: string; message: string; raw_value: string | null }>>(
      'record', 'line', 'field', 'code', 'message', 'raw_value');
  return rows;
}

/** Charge per usage and account, from the transactions the rating wrote. */
async function chargesOf(deps: Deps, fileId: number): Promise<Record<string, number>> {
  const rows = await deps.db('billing_records as r')
    .join('product_usages as u', 'u.id', 'r.usage_id')
    .join('accounts as a', 'a.id', 'r.account_id')
    .join('transactions as t', 't.billing_record_id', 'r.id')
    .where('u.source_file_id', fileId)
    .groupBy('u.external_id', 'a.code')
    .select<Array<{ external_id: string; code: string; charge: string }>>('u.external_id', 'a.code', deps.db.raw('sum(t.amount_pennies)::text AS charge'));
  return Object.fromEntries(rows.map((r) => [`${r.external_id}/${r.code}`, Number(r.charge)]));
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(() => true, () => false);
}

describe('ingesting feed files through the use cases', () => {
  let ctx: TestContext;
  let deps: Deps;

  beforeAll(async () => {
    // Two rows per chunk, so that files of a few rows already span several chunks.
    ctx = await createTestContext({ env: { INGEST_CHUNK_ROWS: '2' } });
    deps = ctx.deps;
    await importDemoPartnerships(deps);
  });

  afterAll(async () => {
    await ctx?.close();
  });

  it('records the same bytes under another name as a duplicate, also after the ingest queue was emptied', async () => {
    const content = csv([
      ['DUP-1', 'CONFOCAL_HOUR', 'a.patel', '1', '2026-10-02T09:00:00Z'],
      ['DUP-2', 'CPU_HOUR', 'r.okafor', '12', '2026-10-02T10:00:00Z'],
      ['DUP-3', 'STORAGE_TB_DAY', 'a.patel', '1', '2026-10-02T11:00:00Z'],
    ]);
    await dropSettled(deps, 'ACME', 'cluster-week-40.csv', content);
    const [first] = await scanExpecting(deps, 1);
    expect(first).toMatchObject({ status: 'received' });
    expect((await ingestFile(deps, first!.fileId)).kind).toBe('parsed');
    expect((await rateFile(deps, first!.fileId)).kind).toBe('rated');
    const usages = await countOf(deps, 'product_usages');
    const records = await countOf(deps, 'billing_records');

    const expectDuplicate = async (name: string): Promise<void> => {
      await dropSettled(deps, 'ACME', name, content);
      const [again] = await scanExpecting(deps, 1);
      expect(again).toEqual({ fileId: again!.fileId, status: 'duplicate', duplicateOf: first!.fileId });
      expect(again!.fileId).not.toBe(first!.fileId);
      const row = await fileRow(deps, again!.fileId);
      expect(row).toMatchObject({
        name,
        status: 'duplicate',
        duplicate_of_file_id: String(first!.fileId),
        error: `same content as file ${first!.fileId} (cluster-week-40.csv)`,
        stored_path: `archive/ACME/${again!.fileId}__${name}`,
        rows_read: 0,
      });
      expect(await exists(path.join(ctx.inboxDir, row.stored_path))).toBe(true);
      // Nothing is ingested for it, even if asked to.
      expect(await ingestFile(deps, again!.fileId)).toEqual({ kind: 'skipped', fileId: again!.fileId, status: 'duplicate' });
      expect(await countOf(deps, 'product_usages')).toBe(usages);
      expect(await countOf(deps, 'billing_records')).toBe(records);
    };

    await expectDuplicate('cluster-week-40 (copy).csv');

    // Redis forgets every ingest job; the duplicate is still recognised, from PostgreSQL.
    const queue = deps.queues.get('ingest-file');
    expect(await queue.getJob(`ingest-file-${first!.fileId}`)).toBeDefined();
    await queue.obliterate({ force: true });
    expect(await queue.getJob(`ingest-file-${first!.fileId}`)).toBeUndefined();
    await expectDuplicate('resent-by-upstream.csv');
    expect(await queue.getJobCounts('waiting', 'active', 'delayed')).toEqual({ waiting: 0, active: 0, delayed: 0 });
  });

  it('keeps one usage per usage id, reporting repeats in the same file and in another file', async () => {
    await dropSettled(deps, 'ACME', 'repeats-a.csv', csv([
      ['REP-1', 'CONFOCAL_HOUR', 'a.patel', '1', '2026-10-05T09:00:00Z'],
      ['REP-1', 'CONFOCAL_HOUR', 'a.patel', '9', '2026-10-05T09:00:00Z'], // same chunk as the first
      ['REP-2', 'CONFOCAL_HOUR', 'a.patel', '2', '2026-10-06T09:00:00Z'],
      ['REP-3', 'CONFOCAL_HOUR', 'a.patel', '3', '2026-10-07T09:00:00Z'],
      ['REP-1', 'CONFOCAL_HOUR', 'a.patel', '5', '2026-10-05T09:00:00Z'], // a later chunk
    ]));
    const [a] = await scanExpecting(deps, 1);
    expect(await ingestFile(deps, a!.fileId)).toEqual({ kind: 'parsed', fileId: a!.fileId, read: 5, accepted: 3, rejected: 0, duplicate: 2 });

    await dropSettled(deps, 'ACME', 'repeats-b.xml', xml([
      { id: 'REP-2', product: 'CONFOCAL_HOUR', user: 'a.patel', quantity: '7', start: '2026-10-06T09:00:00Z' },
      { id: 'REP-4', product: 'CONFOCAL_HOUR', user: 'a.patel', quantity: '4', start: '2026-10-08T09:00:00Z' },
    ]));
    const [b] = await scanExpecting(deps, 1);
    expect(await ingestFile(deps, b!.fileId)).toEqual({ kind: 'parsed', fileId: b!.fileId, read: 2, accepted: 1, rejected: 0, duplicate: 1 });
    expect((await rateFile(deps, a!.fileId)).kind).toBe('rated');
    expect((await rateFile(deps, b!.fileId)).kind).toBe('rated');

    expect(counts(await fileRow(deps, a!.fileId))).toEqual({ status: 'rated', read: 5, accepted: 3, rejected: 0, duplicate: 2, committed: 5 });
    expect(counts(await fileRow(deps, b!.fileId))).toEqual({ status: 'rated', read: 2, accepted: 1, rejected: 0, duplicate: 1, committed: 2 });

    // The first occurrence wins and is billed once.
    const kept = await deps.db('product_usages').where('external_id', 'like', 'REP-%').orderBy('external_id')
      .select<Array<{ external_id: string; quantity: string; source_file_id: string; source_record: number }>>('external_id', 'quantity', 'source_file_id', 'source_record');
    expect(kept.map((u) => [u.external_id, u.quantity, Number(u.source_file_id), u.source_record])).toEqual([
      ['REP-1', '1', a!.fileId, 1],
      ['REP-2', '2', a!.fileId, 3],
      ['REP-3', '3', a!.fileId, 4],
      ['REP-4', '4', b!.fileId, 2],
    ]);
    expect(await chargesOf(deps, a!.fileId)).toEqual({ 'REP-1/ACME-OPS': 4250, 'REP-2/ACME-OPS': 8500, 'REP-3/ACME-OPS': 12750 });
    expect(await chargesOf(deps, b!.fileId)).toEqual({ 'REP-4/ACME-OPS': 17000 });

    const reported = (fileId: number) => errorsOf(deps, fileId).then((rows) => rows.map((e) => [e.record, e.line, e.field, e.code, e.message, e.raw_value]));
    expect(await reported(a!.fileId)).toEqual([
      [2, 3, 'usage_id', 'duplicate_usage', `usage id "REP-1" was already received in file ${a!.fileId} (repeats-a.csv) record 1; not billed again`, 'REP-1'],
      [5, 6, 'usage_id', 'duplicate_usage', `usage id "REP-1" was already received in file ${a!.fileId} (repeats-a.csv) record 1; not billed again`, 'REP-1'],
    ]);
    expect(await reported(b!.fileId)).toEqual([
      [1, expect.any(Number), 'usage_id', 'duplicate_usage', `usage id "REP-2" was already received in file ${a!.fileId} (repeats-a.csv) record 3; not billed again`, 'REP-2'],
    ]);
  });

  it('fails a file whose header lacks the quantity column, naming the file and the expected and found columns', async () => {
    await dropSettled(deps, 'ACME', 'no-quantity.csv', csv(
      [['NQ-1', 'CONFOCAL_HOUR', 'a.patel', '2026-10-09T09:00:00Z'], ['NQ-2', 'CPU_HOUR', 'a.patel', '2026-10-09T10:00:00Z']],
      'usage_id,product,user,start_time',
    ));
    const [file] = await scanExpecting(deps, 1);
    const error =
      'no-quantity.csv: line 1: the header row does not match the feed format: missing required column quantity. ' +
      'Expected columns, in any order: usage_id, product, user, quantity, start_time (required) and account, end_time, description (optional). ' +
      'Found: "usage_id", "product", "user", "start_time".';
    expect(await ingestFile(deps, file!.fileId)).toEqual({ kind: 'rejected', fileId: file!.fileId, error });

    const row = await fileRow(deps, file!.fileId);
    expect(row).toMatchObject({ status: 'failed', error, rows_read: 0, rows_accepted: 0, records_committed: 0 });
    expect(await usagesOf(deps, file!.fileId)).toEqual([]);
    expect(await errorsOf(deps, file!.fileId)).toEqual([{ record: null, line: null, field: null, code: 'file_rejected', message: error, raw_value: null }]);
    expect(row.stored_path).toBe(`failed/ACME/${file!.fileId}__no-quantity.csv`);
    expect(await exists(path.join(ctx.inboxDir, row.stored_path))).toBe(true);
    expect(await exists(path.join(ctx.inboxDir, 'processing', 'ACME', `${file!.fileId}__no-quantity.csv`))).toBe(false);
    // Failed for good: asking again does nothing.
    expect(await ingestFile(deps, file!.fileId)).toEqual({ kind: 'skipped', fileId: file!.fileId, status: 'failed' });
  });

  it('fails files from an unknown partner folder and files of an unsupported type, without queueing them', async () => {
    const line = [['UNK-1', 'CONFOCAL_HOUR', 'a.patel', '1', '2026-10-09T09:00:00Z']];
    await dropSettled(deps, 'ACME', 'notes.txt', csv(line));
    await dropSettled(deps, 'NOBODY', 'usage.csv', csv(line));
    const registered = await scanExpecting(deps, 2);
    const byName = new Map<string, RegisteredFile>();
    for (const r of registered) byName.set((await fileRow(deps, r.fileId)).name, r);

    const txt = byName.get('notes.txt')!;
    expect(txt).toEqual({ fileId: txt.fileId, status: 'failed', error: 'notes.txt: unsupported file type ".txt"; expected .csv or .xml' });
    const unknown = byName.get('usage.csv')!;
    expect(unknown).toEqual({ fileId: unknown.fileId, status: 'failed', error: 'usage.csv: unknown partner "NOBODY": no partner has that code' });

    const txtRow = await fileRow(deps, txt.fileId);
    expect(txtRow).toMatchObject({ status: 'failed', error: txt.error, stored_path: `failed/ACME/${txt.fileId}__notes.txt` });
    const unknownRow = await fileRow(deps, unknown.fileId);
    expect(unknownRow).toMatchObject({ status: 'failed', partner_id: null, error: unknown.error, stored_path: `failed/NOBODY/${unknown.fileId}__usage.csv` });
    for (const row of [txtRow, unknownRow]) expect(await exists(path.join(ctx.inboxDir, row.stored_path))).toBe(true);
    expect(await exists(path.join(ctx.inboxDir, 'ACME', 'notes.txt'))).toBe(false);
    expect(await exists(path.join(ctx.inboxDir, 'NOBODY', 'usage.csv'))).toBe(false);

    const queue = deps.queues.get('ingest-file');
    for (const r of [txt, unknown]) {
      expect(await queue.getJob(`ingest-file-${r.fileId}`)).toBeUndefined();
      expect(await ingestFile(deps, r.fileId)).toEqual({ kind: 'skipped', fileId: r.fileId, status: 'failed' });
    }
    expect(await deps.db('product_usages').where('external_id', 'UNK-1').first()).toBeUndefined();
  });

  it('takes every row exactly once when two ingests of the same file run at the same time', async () => {
    const rows = Array.from({ length: 7 }, (_, i) => [`CON-${i + 1}`, 'CPU_HOUR', 'r.okafor', String(10 * (i + 1)), `2026-10-1${i}T08:00:00Z`]);
    await dropSettled(deps, 'ACME', 'concurrent.csv', csv(rows));
    const [file] = await scanExpecting(deps, 1);

    const results = await Promise.allSettled([ingestFile(deps, file!.fileId), ingestFile(deps, file!.fileId)]);
    // The loser may be told to retry; nothing else is an acceptable failure.
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(RetryableError);
    for (let attempt = 0; attempt < 5 && (await fileRow(deps, file!.fileId)).status === 'parsing'; attempt += 1) {
      await ingestFile(deps, file!.fileId).catch((err: unknown) => expect(err).toBeInstanceOf(RetryableError));
    }

    const row = await fileRow(deps, file!.fileId);
    expect(counts(row)).toEqual({ status: 'parsed', read: 7, accepted: 7, rejected: 0, duplicate: 0, committed: 7 });
    expect(row.stored_path).toBe(`archive/ACME/${file!.fileId}__concurrent.csv`);
    const usages = await usagesOf(deps, file!.fileId);
    expect(usages.map((u) => [u.external_id, u.quantity, u.source_record, u.source_line])).toEqual(
      rows.map((r, i) => [r[0], r[3], i + 1, i + 2]),
    );
    expect(await errorsOf(deps, file!.fileId)).toEqual([]);
  });

  it('rates each usage once per account when rating runs twice at the same time and again afterwards', async () => {
    await dropSettled(deps, 'ACME', 'rate-me.csv', csv([
      ['RATE-1', 'CONFOCAL_HOUR', 'a.patel', '2', '2026-10-20T09:00:00Z'],
      ['RATE-2', 'CPU_HOUR', 'm.chen', '100', '2026-10-20T10:00:00Z'], // split 60/40
      ['RATE-3', 'STORAGE_TB_DAY', 'r.okafor', '3', '2026-10-20T11:00:00Z'],
    ]));
    const [file] = await scanExpecting(deps, 1);
    expect((await ingestFile(deps, file!.fileId)).kind).toBe('parsed');

    const together = await Promise.all([rateFile(deps, file!.fileId), rateFile(deps, file!.fileId)]);
    const later = await rateFile(deps, file!.fileId);
    expect(later).toEqual({ kind: 'skipped', fileId: file!.fileId, status: 'rated' });
    const rated = [...together, later].flatMap((o) => (o.kind === 'rated' ? [o] : []));
    expect(rated.reduce((n, o) => n + o.usages, 0)).toBe(3);
    expect(rated.reduce((n, o) => n + o.records, 0)).toBe(4);

    expect((await fileRow(deps, file!.fileId)).status).toBe('rated');
    expect(await chargesOf(deps, file!.fileId)).toEqual({
      'RATE-1/ACME-OPS': 8500, // 2 x 42.50
      'RATE-2/GRANT-4471': 270, // 100 x 0.045 = 4.50, 60%
      'RATE-2/GRANT-5120': 180, // 40%
      'RATE-3/ACME-OPS': 400, // 3 x 1.3333 = 3.9999
    });
    const records = await deps.db('billing_records as r').join('product_usages as u', 'u.id', 'r.usage_id').where('u.source_file_id', file!.fileId)
      .count<{ count: string }[]>('* as count');
    expect(Number(records[0]?.count)).toBe(4);
    const violations = await findInvariantViolations(deps.db);
    expect(violations).toEqual(Object.fromEntries(Object.keys(violations).map((k) => [k, []])));
  });
});

/**
 * Seven rows, two per chunk: chunks [1,2] [3,4] [5,6] [7]. Row 3 has a bad quantity, row 5 repeats
 * row 1's usage id (so the repeat is only found against what an earlier chunk committed), row 6 names
 * an unknown product.
 */
const RESUME_FILE = csv([
  ['RES-1', 'CONFOCAL_HOUR', 'a.patel', '1.5', '2026-10-01T09:00:00Z'],
  ['RES-2', 'CPU_HOUR', 'm.chen', '10', '2026-10-02T09:00:00Z'],
  ['RES-3', 'CONFOCAL_HOUR', 'a.patel', '"1,5"', '2026-10-03T09:00:00Z'],
  ['RES-4', 'STORAGE_TB_DAY', 'r.okafor', '2', '2026-10-04T09:00:00Z'],
  ['RES-1', 'CONFOCAL_HOUR', 'a.patel', '1.5', '2026-10-01T09:00:00Z'],
  ['RES-6', 'LASER_HOUR', 'a.patel', '1', '2026-10-06T09:00:00Z'],
  ['RES-7', 'CPU_HOUR', 'm.chen', '5', '2026-10-07T09:00:00Z'],
]);

describe('resuming a file after a crash part-way through', () => {
  interface World { ctx: TestContext; deps: Deps; fileId: number }
  const worlds: TestContext[] = [];
  let clean: Awaited<ReturnType<typeof endState>>;
  let killed: World;
  let faulty: World;

  /** A fresh world with two rows per chunk and the resume file claimed, not yet ingested. */
  async function claimedFile(): Promise<World> {
    const ctx = await createTestContext({ env: { INGEST_CHUNK_ROWS: '2' } });
    worlds.push(ctx);
    await importDemoPartnerships(ctx.deps);
    await dropSettled(ctx.deps, 'ACME', 'resume.csv', RESUME_FILE);
    const [file] = await scanExpecting(ctx.deps, 1);
    return { ctx, deps: ctx.deps, fileId: file!.fileId };
  }

  /** Everything an operator would compare: counts, usages, row errors and charges, file ids masked. */
  async function endState(deps: Deps, fileId: number) {
    const mask = (s: string) => s.replaceAll(`file ${fileId} (`, 'file <this> (');
    return {
      file: counts(await fileRow(deps, fileId)),
      usages: await usagesOf(deps, fileId),
      errors: (await errorsOf(deps, fileId)).map((e) => ({ ...e, message: mask(e.message) })),
      charges: await chargesOf(deps, fileId),
    };
  }

  beforeAll(async () => {
    const reference = await claimedFile();
    expect((await ingestFile(reference.deps, reference.fileId)).kind).toBe('parsed');
    expect((await rateFile(reference.deps, reference.fileId)).kind).toBe('rated');
    clean = await endState(reference.deps, reference.fileId);
    killed = await claimedFile();
    faulty = await claimedFile();
  });

  afterAll(async () => {
    for (const ctx of worlds) await ctx.close();
  });

  it('a clean run takes the good rows once and reports the bad ones', () => {
    expect(clean.file).toEqual({ status: 'rated', read: 7, accepted: 4, rejected: 2, duplicate: 1, committed: 7 });
    expect(clean.usages.map((u) => [u.external_id, u.source_record, u.source_line])).toEqual([
      ['RES-1', 1, 2], ['RES-2', 2, 3], ['RES-4', 4, 5], ['RES-7', 7, 8],
    ]);
    expect(clean.errors.map((e) => [e.record, e.line, e.field, e.code, e.raw_value])).toEqual([
      [3, 4, 'quantity', 'invalid_quantity', '1,5'],
      [5, 6, 'usage_id', 'duplicate_usage', 'RES-1'],
      [6, 7, 'product', 'unknown_product', 'LASER_HOUR'],
    ]);
    expect(clean.charges).toEqual({
      'RES-1/ACME-OPS': 6375, // 1.5 x 42.50
      'RES-2/GRANT-4471': 27, // 10 x 0.045 = 0.45, 60/40
      'RES-2/GRANT-5120': 18,
      'RES-4/ACME-OPS': 267, // 2 x 1.3333 = 2.6666
      'RES-7/GRANT-4471': 14, // 5 x 0.045 = 0.225 -> 23, 60/40 = 13.8/9.2
      'RES-7/GRANT-5120': 9,
    });
  });

  it('ends exactly as the clean run when the worker dies after the first chunk and the file is ingested again', async () => {
    const { deps, ctx, fileId } = killed;
    // The progress callback runs right after a chunk commits: dying there is a crash between chunks.
    const crash = new Error('worker killed after the first chunk');
    await expect(ingestFile(deps, fileId, () => { throw crash; })).rejects.toBe(crash);

    const halfway = await fileRow(deps, fileId);
    expect(counts(halfway)).toEqual({ status: 'parsing', read: 2, accepted: 2, rejected: 0, duplicate: 0, committed: 2 });
    expect((await usagesOf(deps, fileId)).map((u) => u.external_id)).toEqual(['RES-1', 'RES-2']);
    expect(await errorsOf(deps, fileId)).toEqual([]);
    expect(await exists(path.join(ctx.inboxDir, halfway.stored_path))).toBe(true);

    expect(await ingestFile(deps, fileId)).toEqual({ kind: 'parsed', fileId, read: 7, accepted: 4, rejected: 2, duplicate: 1 });
    expect((await rateFile(deps, fileId)).kind).toBe('rated');
    expect(await endState(deps, fileId)).toEqual(clean);
  });

  it('ends exactly as the clean run when the database fails in the middle of a chunk and the file is ingested again', async () => {
    const { deps, fileId } = faulty;
    // A real database error on the insert of the second chunk (records 3 and 4).
    await deps.db.raw(`ALTER TABLE product_usages ADD CONSTRAINT test_fault_res_4 CHECK (external_id <> 'RES-4') NOT VALID`);
    try {
      await expect(ingestFile(deps, fileId)).rejects.toThrow(/test_fault_res_4/);
    } finally {
      await deps.db.raw('ALTER TABLE product_usages DROP CONSTRAINT test_fault_res_4');
    }
    // The failed chunk rolled back whole, its row error included.
    expect(counts(await fileRow(deps, fileId))).toEqual({ status: 'parsing', read: 2, accepted: 2, rejected: 0, duplicate: 0, committed: 2 });
    expect((await usagesOf(deps, fileId)).map((u) => u.external_id)).toEqual(['RES-1', 'RES-2']);
    expect(await errorsOf(deps, fileId)).toEqual([]);

    expect(await ingestFile(deps, fileId)).toEqual({ kind: 'parsed', fileId, read: 7, accepted: 4, rejected: 2, duplicate: 1 });
    expect((await rateFile(deps, fileId)).kind).toBe('rated');
    expect(await endState(deps, fileId)).toEqual(clean);
  });
});
