import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Job, QueueEvents } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../src/clock';
import type { RawUsageFields } from '../src/core/usage-fields';
import type { Deps } from '../src/deps';
import { type IngestOutcome, ingestFile } from '../src/use-cases/ingest-file';
import { rateFile } from '../src/use-cases/rate-file';
import { scanInbox } from '../src/use-cases/scan-inbox';
import { counts, fileRow } from './support/file-rows';
import { dropSettled, importDemoPartnerships } from './support/inbox-drops';
import { findInvariantViolations } from './support/invariants';
import { type TestContext, createTestContext } from './support/test-context';
import { type ValidateRowsRequest, type ValidateRowsResult, validateRows } from './support/validate-rows';

/**
 * Every ingestion case of /work/shared/reliability.md (1-15), each through the real use cases on the
 * demo partnerships: a file is dropped into the inbox, claimed by scanInbox, ingested and rated, and
 * the test checks what an operator would: the file's status and counts, the exact error text, the
 * usages stored, and that nothing of a bad row or a bad file was billed.
 *
 * Demo facts used below (fixtures/demo/partnerships.yaml): ACME's partnership NRF-ACME, GBP half-up,
 * Europe/London; CONFOCAL_HOUR 42.50 (quantity scale 2), CPU_HOUR 0.045 (scale 6), STORAGE_TB_DAY
 * 1.3333 (scale 6); m.chen is split 60/40 over GRANT-4471 and GRANT-5120, everyone else goes to
 * ACME-OPS; no credits. JSMITH's NRF-JSMITH: EUR half-even, Europe/Berlin, CONFOCAL_HOUR 39.90,
 * CPU_HOUR 0.0525, default account JS-LAB. The clock reads 2026-11-21T10:00:00Z.
 */

const HEADER = 'usage_id,product,user,quantity,start_time';
const EXPECTED_COLUMNS =
  'Expected columns, in any order: usage_id, product, user, quantity, start_time (required) and account, end_time, description (optional).';
const DOCTYPE_REFUSED = 'a DOCTYPE is not allowed in a feed (no DTDs or entity definitions)';
const NOT_UTF8 = 'byte 0xA3 is not valid UTF-8: feeds must be UTF-8 (was it saved as Latin-1 or Windows-1252?)';

/** A CSV feed; cells are written as given (quote them yourself). */
function csv(rows: readonly string[][], header = HEADER, eol = '\n'): string {
  return [header, ...rows.map((r) => r.join(','))].join(eol) + eol;
}

/** An XML feed of ACME (or `partner`) around records written out in full, one per line from line 3. */
function xml(records: readonly string[], partner = 'ACME'): string {
  return ['<?xml version="1.0" encoding="UTF-8"?>', `<usageFeed partner="${partner}">`, ...records.map((r) => `  ${r}`), '</usageFeed>', ''].join('\n');
}

/** What the books hold, all partners together: a bad file or row must leave every figure as it was. */
async function ledger(deps: Deps) {
  const { rows } = await deps.db.raw<{ rows: Array<{ usages: number; records: number; transactions: number; pennies: string }> }>(`
    SELECT (SELECT count(*)::int FROM product_usages) AS usages,
           (SELECT count(*)::int FROM billing_records) AS records,
           (SELECT count(*)::int FROM transactions) AS transactions,
           (SELECT coalesce(sum(amount_pennies), 0)::text FROM transactions) AS pennies`);
  return rows[0]!;
}

interface UsageRow {
  external_id: string;
  product: string;
  user_ref: string;
  account: string | null;
  quantity: string;
  started_at: string;
  ended_at: string | null;
  period: string;
  description: string | null;
  source_record: number;
  source_line: number | null;
}

async function usagesOf(deps: Deps, fileId: number): Promise<UsageRow[]> {
  const rows = await deps.db('product_usages as u')
    .join('products as p', 'p.id', 'u.product_id')
    .leftJoin('accounts as a', 'a.id', 'u.account_id')
    .where('u.source_file_id', fileId)
    .orderBy('u.source_record')
    .select<Array<Omit<UsageRow, 'started_at' | 'ended_at'> & { started_at: Date; ended_at: Date | null }>>(
      'u.external_id', 'p.code as product', 'u.user_ref', 'a.code as account', 'u.quantity', 'u.started_at', 'u.ended_at', 'u.period',
      'u.description', 'u.source_record', 'u.source_line',
    );
  return rows.map((r) => ({ ...r, started_at: r.started_at.toISOString(), ended_at: r.ended_at?.toISOString() ?? null }));
}

type ErrorRow = [record: number | null, line: number | null, field: string | null, code: string, message: string, raw: string | null];

async function errorsOf(deps: Deps, fileId: number): Promise<ErrorRow[]> {
  const rows = await deps.db('usage_file_errors').where('file_id', fileId).orderBy(['record', 'id'])
    .select<Array<{ record: number | null; line: number | null; field: string | null; code: string; message: string; raw_value: string | null }>>(
      'record', 'line', 'field', 'code', 'message', 'raw_value');
  return rows.map((e) => [e.record, e.line, e.field, e.code, e.message, e.raw_value]);
}

/** Charge per usage and account, in pennies, from the transactions the rating wrote. */
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

/** Drops one file into a partner's inbox folder and claims it; it must be received. */
async function receive(deps: Deps, partner: string, name: string, content: string | Buffer): Promise<number> {
  await dropSettled(deps, partner, name, content);
  const registered = await scanInbox(deps);
  expect(registered, `${name} is claimed and received`).toEqual([{ fileId: expect.any(Number) as number, status: 'received' }]);
  return registered[0]!.fileId;
}

/** Ingests a received file and, when it parsed, rates it, as the two jobs would. */
async function ingestAndRate(deps: Deps, fileId: number): Promise<IngestOutcome> {
  const outcome = await ingestFile(deps, fileId);
  if (outcome.kind === 'parsed') expect(await rateFile(deps, fileId)).toMatchObject({ kind: 'rated', fileId });
  return outcome;
}

/** The whole story for one file: drop, scan, ingest, rate. */
async function feed(deps: Deps, name: string, content: string | Buffer, partner = 'ACME'): Promise<{ fileId: number; outcome: IngestOutcome }> {
  const fileId = await receive(deps, partner, name, content);
  return { fileId, outcome: await ingestAndRate(deps, fileId) };
}

/** A file rejected as a whole: failed, the reason recorded once, nothing of it kept, moved to failed/. */
async function expectRejected(deps: Deps, file: { fileId: number; outcome: IngestOutcome }, name: string, error: string, partner = 'ACME'): Promise<void> {
  const { fileId, outcome } = file;
  expect(outcome).toEqual({ kind: 'rejected', fileId, error });
  expect(await fileRow(deps, fileId)).toMatchObject({
    status: 'failed',
    error,
    rows_read: 0,
    rows_accepted: 0,
    rows_rejected: 0,
    rows_duplicate: 0,
    records_committed: 0,
    stored_path: `failed/${partner}/${fileId}__${name}`,
  });
  expect(await errorsOf(deps, fileId)).toEqual([[null, null, null, 'file_rejected', error, null]]);
  expect(await usagesOf(deps, fileId)).toEqual([]);
  // Failed for good: asking again does nothing.
  expect(await ingestFile(deps, fileId)).toEqual({ kind: 'skipped', fileId, status: 'failed' });
  expect(await rateFile(deps, fileId)).toEqual({ kind: 'skipped', fileId, status: 'failed' });
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(() => true, () => false);
}

/** Every invariant query returns no rows. */
async function expectInvariants(deps: Deps): Promise<void> {
  const violations = await findInvariantViolations(deps.db);
  expect(violations).toEqual(Object.fromEntries(Object.keys(violations).map((k) => [k, []])));
}

let ctx: TestContext;
let deps: Deps;

beforeAll(async () => {
  // Two rows per chunk, so that files of a few rows already span several chunks and transactions.
  ctx = await createTestContext({ env: { INGEST_CHUNK_ROWS: '2' } });
  deps = ctx.deps;
  await importDemoPartnerships(deps);
});

afterAll(async () => {
  await ctx?.close();
});

describe('1. the same file again, under any name', () => {
  it('records the same bytes as a duplicate and changes nothing, also after the ingest queue has forgotten every job', async () => {
    const content = csv([
      ['R1-1', 'CONFOCAL_HOUR', 'a.patel', '1', '2026-10-02T09:00:00Z'],
      ['R1-2', 'CPU_HOUR', 'r.okafor', '12', '2026-10-02T10:00:00Z'],
      ['R1-3', 'STORAGE_TB_DAY', 'a.patel', '1', '2026-10-02T11:00:00Z'],
    ]);
    const first = await feed(deps, 'week-40.csv', content);
    expect(first.outcome).toEqual({ kind: 'parsed', fileId: first.fileId, read: 3, accepted: 3, rejected: 0, duplicate: 0 });
    // 1 x 42.50; 12 x 0.045 = 0.54; 1 x 1.3333 = 1.3333 -> 1.33
    expect(await chargesOf(deps, first.fileId)).toEqual({ 'R1-1/ACME-OPS': 4250, 'R1-2/ACME-OPS': 54, 'R1-3/ACME-OPS': 133 });
    const books = await ledger(deps);
    const queue = deps.queues.get('ingest-file');

    const expectDuplicate = async (name: string): Promise<void> => {
      await dropSettled(deps, 'ACME', name, content);
      const registered = await scanInbox(deps);
      expect(registered).toEqual([{ fileId: expect.any(Number) as number, status: 'duplicate', duplicateOf: first.fileId }]);
      const again = registered[0]!.fileId;
      expect(await fileRow(deps, again)).toMatchObject({
        name,
        status: 'duplicate',
        duplicate_of_file_id: String(first.fileId),
        error: `same content as file ${first.fileId} (week-40.csv)`,
        stored_path: `archive/ACME/${again}__${name}`,
        rows_read: 0,
        rows_accepted: 0,
        records_committed: 0,
      });
      expect(await exists(path.join(ctx.inboxDir, 'archive', 'ACME', `${again}__${name}`))).toBe(true);
      // Not queued, and nothing happens even when a job for it is run anyway.
      expect(await queue.getJob(`ingest-file-${again}`)).toBeUndefined();
      expect(await ingestFile(deps, again)).toEqual({ kind: 'skipped', fileId: again, status: 'duplicate' });
      expect(await rateFile(deps, again)).toEqual({ kind: 'skipped', fileId: again, status: 'duplicate' });
      expect(await usagesOf(deps, again)).toEqual([]);
      expect(await errorsOf(deps, again)).toEqual([]);
      expect(await ledger(deps)).toEqual(books);
    };

    await expectDuplicate('week-40 (copy).csv');
    // Redis forgets every ingest job; the duplicate is still recognised, by PostgreSQL.
    expect(await queue.getJob(`ingest-file-${first.fileId}`)).toBeDefined();
    await queue.obliterate({ force: true });
    expect(await queue.getJob(`ingest-file-${first.fileId}`)).toBeUndefined();
    await expectDuplicate('RESENT.CSV');
    expect(await queue.getJobCounts('waiting', 'active', 'delayed')).toEqual({ waiting: 0, active: 0, delayed: 0 });
    expect(counts(await fileRow(deps, first.fileId))).toEqual({ status: 'rated', read: 3, accepted: 3, rejected: 0, duplicate: 0, committed: 3 });
    expect(await chargesOf(deps, first.fileId)).toEqual({ 'R1-1/ACME-OPS': 4250, 'R1-2/ACME-OPS': 54, 'R1-3/ACME-OPS': 133 });
  });
});

describe('2. the same usage id in two files, or twice in one', () => {
  it('keeps the first occurrence, bills it once and reports every repeat as duplicate_usage', async () => {
    const books = await ledger(deps);
    // Two rows per chunk: the first repeat is in the same chunk as the original, the second in a later one.
    const a = await feed(deps, 'ids-a.csv', csv([
      ['R2-1', 'CONFOCAL_HOUR', 'a.patel', '1', '2026-10-05T09:00:00Z'],
      ['R2-1', 'CONFOCAL_HOUR', 'a.patel', '9', '2026-10-05T09:00:00Z'],
      ['R2-2', 'CONFOCAL_HOUR', 'a.patel', '2', '2026-10-06T09:00:00Z'],
      ['R2-1', 'CPU_HOUR', 'm.chen', '5', '2026-10-07T09:00:00Z'],
    ]));
    expect(a.outcome).toEqual({ kind: 'parsed', fileId: a.fileId, read: 4, accepted: 2, rejected: 0, duplicate: 2 });
    const b = await feed(deps, 'ids-b.xml', xml([
      '<usage id="R2-2"><product>CONFOCAL_HOUR</product><user>a.patel</user><quantity>7</quantity><start>2026-10-06T09:00:00Z</start></usage>',
      '<usage id="R2-3"><product>CONFOCAL_HOUR</product><user>a.patel</user><quantity>3</quantity><start>2026-10-08T09:00:00Z</start></usage>',
    ]));
    expect(b.outcome).toEqual({ kind: 'parsed', fileId: b.fileId, read: 2, accepted: 1, rejected: 0, duplicate: 1 });

    expect(counts(await fileRow(deps, a.fileId))).toEqual({ status: 'rated', read: 4, accepted: 2, rejected: 0, duplicate: 2, committed: 4 });
    expect(counts(await fileRow(deps, b.fileId))).toEqual({ status: 'rated', read: 2, accepted: 1, rejected: 0, duplicate: 1, committed: 2 });
    const first = (id: string, record: number) => `usage id "${id}" was already received in file ${a.fileId} (ids-a.csv) record ${record}; not billed again`;
    expect(await errorsOf(deps, a.fileId)).toEqual([
      [2, 3, 'usage_id', 'duplicate_usage', first('R2-1', 1), 'R2-1'],
      [4, 5, 'usage_id', 'duplicate_usage', first('R2-1', 1), 'R2-1'],
    ]);
    expect(await errorsOf(deps, b.fileId)).toEqual([[1, 3, 'usage_id', 'duplicate_usage', first('R2-2', 3), 'R2-2']]);

    // One usage per id, the first occurrence's values, each charged once.
    const kept = await deps.db('product_usages').where('external_id', 'like', 'R2-%').orderBy('external_id')
      .select<Array<{ external_id: string; quantity: string; source_file_id: string; source_record: number }>>('external_id', 'quantity', 'source_file_id', 'source_record');
    expect(kept.map((u) => [u.external_id, u.quantity, Number(u.source_file_id), u.source_record])).toEqual([
      ['R2-1', '1', a.fileId, 1],
      ['R2-2', '2', a.fileId, 3],
      ['R2-3', '3', b.fileId, 2],
    ]);
    expect(await chargesOf(deps, a.fileId)).toEqual({ 'R2-1/ACME-OPS': 4250, 'R2-2/ACME-OPS': 8500 });
    expect(await chargesOf(deps, b.fileId)).toEqual({ 'R2-3/ACME-OPS': 12750 });
    expect(await ledger(deps)).toEqual({
      usages: books.usages + 3,
      records: books.records + 3,
      transactions: books.transactions + 3,
      pennies: String(BigInt(books.pennies) + 4250n + 8500n + 12750n),
    });
    await expectInvariants(deps);
  });
});

describe('3. UTF-8 BOM, CRLF and LF, quoted fields with delimiters, quotes and newlines', () => {
  /** One feed in four spellings; ids carry the variant's prefix (the same id twice would be a repeat). */
  function variant(prefix: string, eol: '\n' | '\r\n', bom: boolean): Buffer {
    const text = [
      'usage_id,product,user,quantity,start_time,description',
      `"${prefix}E,1",CONFOCAL_HOUR,a.patel,1.25,2026-10-06T09:00:00Z,"Imaging, batch 1"`,
      `${prefix}E-2,CPU_HOUR,"o""neill",10,2026-10-06T10:00:00Z,"He said ""re-run"", twice"`,
      `${prefix}E-3,STORAGE_TB_DAY,r.okafor,2,2026-10-06T11:00:00Z,"first line${eol}second line"`,
      `${prefix}E-4,CPU_HOUR,m.chen,3,2026-10-06T12:00:00Z,plain`,
    ].join(eol) + eol;
    return Buffer.concat([Buffer.from(bom ? [0xef, 0xbb, 0xbf] : []), Buffer.from(text)]);
  }
  const unprefixed = (rows: UsageRow[], prefix: string) => rows.map((r) => ({ ...r, external_id: r.external_id.slice(prefix.length) }));
  const unprefixedCharges = (charges: Record<string, number>, prefix: string) =>
    Object.fromEntries(Object.entries(charges).map(([k, v]) => [k.slice(prefix.length), v]));

  it('reads the same usages from every spelling, the first header matching despite the BOM', async () => {
    const spellings = [
      { prefix: 'LF-', eol: '\n', bom: false },
      { prefix: 'CRLF-', eol: '\r\n', bom: false },
      { prefix: 'BOM-', eol: '\n', bom: true },
      { prefix: 'BOMCRLF-', eol: '\r\n', bom: true },
    ] as const;
    const results = [];
    for (const s of spellings) {
      const file = await feed(deps, `${s.prefix.slice(0, -1).toLowerCase()}.csv`, variant(s.prefix, s.eol, s.bom));
      expect(file.outcome).toEqual({ kind: 'parsed', fileId: file.fileId, read: 4, accepted: 4, rejected: 0, duplicate: 0 });
      expect(await errorsOf(deps, file.fileId)).toEqual([]);
      results.push({
        eol: s.eol,
        usages: unprefixed(await usagesOf(deps, file.fileId), s.prefix),
        charges: unprefixedCharges(await chargesOf(deps, file.fileId), s.prefix),
      });
    }
    const usage = (external_id: string, product: string, user_ref: string, quantity: string, started_at: string, description: string, source_record: number, source_line: number): UsageRow => ({
      external_id, product, user_ref, account: null, quantity, started_at, ended_at: null, period: '2026-10', description, source_record, source_line,
    });
    const expected = () => [
      usage('E,1', 'CONFOCAL_HOUR', 'a.patel', '1.25', '2026-10-06T09:00:00.000Z', 'Imaging, batch 1', 1, 2),
      usage('E-2', 'CPU_HOUR', 'o"neill', '10', '2026-10-06T10:00:00.000Z', 'He said "re-run", twice', 2, 3),
      // A line break inside quotes is data, and reads as LF whatever the file used.
      usage('E-3', 'STORAGE_TB_DAY', 'r.okafor', '2', '2026-10-06T11:00:00.000Z', 'first line\nsecond line', 3, 4),
      usage('E-4', 'CPU_HOUR', 'm.chen', '3', '2026-10-06T12:00:00.000Z', 'plain', 4, 6),
    ];
    for (const r of results) expect(r.usages).toEqual(expected());
    // 1.25 x 42.50 = 53.125 -> 53.13; 10 x 0.045 = 0.45; 2 x 1.3333 = 2.6666 -> 2.67; 3 x 0.045 = 0.135 -> 0.14, 60/40.
    for (const r of results) {
      expect(r.charges).toEqual({ 'E,1/ACME-OPS': 5313, 'E-2/ACME-OPS': 45, 'E-3/ACME-OPS': 267, 'E-4/GRANT-4471': 8, 'E-4/GRANT-5120': 6 });
    }
  });
});

describe('4. an unterminated quote', () => {
  it('fails the file naming the line where the quoted field opened, and keeps nothing from the chunks committed before', async () => {
    const books = await ledger(deps);
    const good = Array.from({ length: 5 }, (_, i) => [`R4-${i + 1}`, 'CONFOCAL_HOUR', 'a.patel', '1', `2026-10-0${i + 1}T09:00:00Z`]);
    // Line 7 opens a quote that never closes; with two rows per chunk, rows 1-4 were committed by then.
    const content = csv([...good, ['R4-6', 'CONFOCAL_HOUR', '"a.patel', '1', '2026-10-07T09:00:00Z'], ['R4-7', 'CONFOCAL_HOUR', 'a.patel', '1', '2026-10-08T09:00:00Z']]);
    const file = await feed(deps, 'unterminated.csv', content);
    await expectRejected(deps, file, 'unterminated.csv', 'unterminated.csv: line 7: unterminated quoted field: the quote that opens on this line is never closed');
    expect(await deps.db('product_usages').where('external_id', 'like', 'R4-%').count<{ count: string }[]>('* as count')).toEqual([{ count: '0' }]);
    expect(await ledger(deps)).toEqual(books);
  });
});

describe('5. rows with too many or too few columns', () => {
  it('rejects exactly those rows, never padded or truncated, and keeps and bills the others', async () => {
    const books = await ledger(deps);
    const header = `${HEADER},description`;
    const file = await feed(deps, 'ragged.csv', csv([
      ['R5-1', 'CONFOCAL_HOUR', 'a.patel', '1', '2026-10-07T09:00:00Z', 'ok'],
      ['R5-2', 'CONFOCAL_HOUR', 'a.patel', '2', '2026-10-07T10:00:00Z', 'desc', 'extra'],
      // Short by the optional description only: padding it with '' would have made a valid row.
      ['R5-3', 'CONFOCAL_HOUR', 'a.patel', '3', '2026-10-07T11:00:00Z'],
      ['R5-4', 'CPU_HOUR', 'r.okafor', '4', '2026-10-07T12:00:00Z', ''],
      ['R5-5', 'CPU_HOUR'],
    ], header));
    expect(file.outcome).toEqual({ kind: 'parsed', fileId: file.fileId, read: 5, accepted: 2, rejected: 3, duplicate: 0 });
    expect(counts(await fileRow(deps, file.fileId))).toEqual({ status: 'rated', read: 5, accepted: 2, rejected: 3, duplicate: 0, committed: 5 });
    expect(await errorsOf(deps, file.fileId)).toEqual([
      [2, 3, null, 'malformed_row', 'has 7 columns, the header has 6', null],
      [3, 4, null, 'malformed_row', 'has 5 columns, the header has 6', null],
      [5, 6, null, 'malformed_row', 'has 2 columns, the header has 6', null],
    ]);
    expect((await usagesOf(deps, file.fileId)).map((u) => [u.external_id, u.quantity, u.description, u.source_line])).toEqual([
      ['R5-1', '1', 'ok', 2],
      ['R5-4', '4', null, 5],
    ]);
    // 1 x 42.50; 4 x 0.045 = 0.18
    expect(await chargesOf(deps, file.fileId)).toEqual({ 'R5-1/ACME-OPS': 4250, 'R5-4/ACME-OPS': 18 });
    expect(await ledger(deps)).toEqual({
      usages: books.usages + 2,
      records: books.records + 2,
      transactions: books.transactions + 2,
      pennies: String(BigInt(books.pennies) + 4268n),
    });
  });
});

describe('6. a wrong delimiter, or unknown, missing, duplicate or empty headers', () => {
  const row = 'R6-1,CONFOCAL_HOUR,a.patel,1,2026-10-09T09:00:00Z\n';
  it.each<[string, string, string, string]>([
    [
      'a semicolon-delimited file without a profile',
      'semicolons.csv',
      'usage_id;product;user;quantity;start_time\nR6-1;CONFOCAL_HOUR;a.patel;1;2026-10-09T09:00:00Z\n',
      'semicolons.csv: line 1: the header row does not match the feed format: missing required columns usage_id, product, user, quantity, start_time; ' +
        'unknown column "usage_id;product;user;quantity;start_time". The header is one column containing ";": columns must be separated by ",". ' +
        `${EXPECTED_COLUMNS} Found: "usage_id;product;user;quantity;start_time".`,
    ],
    [
      'an unknown header',
      'unknown-header.csv',
      `usage_id,product,user,qty,start_time\n${row}`,
      'unknown-header.csv: line 1: the header row does not match the feed format: missing required column quantity; unknown column "qty". ' +
        `${EXPECTED_COLUMNS} Found: "usage_id", "product", "user", "qty", "start_time".`,
    ],
    [
      'a missing header',
      'missing-header.csv',
      'usage_id,product,user,start_time\nR6-1,CONFOCAL_HOUR,a.patel,2026-10-09T09:00:00Z\n',
      'missing-header.csv: line 1: the header row does not match the feed format: missing required column quantity. ' +
        `${EXPECTED_COLUMNS} Found: "usage_id", "product", "user", "start_time".`,
    ],
    [
      'a duplicate header (after trimming and case-folding)',
      'duplicate-header.csv',
      `usage_id,product,user,quantity,start_time, User \n${row.trimEnd()},a.patel\n`,
      'duplicate-header.csv: line 1: the header row does not match the feed format: duplicate column user (columns 3 and 6). ' +
        `${EXPECTED_COLUMNS} Found: "usage_id", "product", "user", "quantity", "start_time", " User ".`,
    ],
    [
      'an empty header',
      'empty-header.csv',
      `usage_id,product,user,quantity,start_time,\n${row.trimEnd()},x\n`,
      'empty-header.csv: line 1: the header row does not match the feed format: empty column name at position 6. ' +
        `${EXPECTED_COLUMNS} Found: "usage_id", "product", "user", "quantity", "start_time", "".`,
    ],
    [
      'a file with no header at all',
      'no-header.csv',
      '\n\n',
      'no-header.csv: the file is empty: expected a header row with usage_id, product, user, quantity, start_time (required) and account, end_time, description (optional)',
    ],
  ])('fails the file for %s, listing the expected and found headers', async (_case, name, content, error) => {
    const books = await ledger(deps);
    await expectRejected(deps, await feed(deps, name, content), name, error);
    expect(await deps.db('product_usages').where('external_id', 'R6-1').first()).toBeUndefined();
    expect(await ledger(deps)).toEqual(books);
  });
});

describe('7. one enormous line, or a file larger than the limit', () => {
  const MAX_FILE_BYTES = 20_000;
  let limits: TestContext;
  let ld: Deps;

  beforeAll(async () => {
    limits = await createTestContext({ env: { MAX_RECORD_CHARS: '1000', MAX_FILE_BYTES: String(MAX_FILE_BYTES) } });
    ld = limits.deps;
    await importDemoPartnerships(ld);
  });

  afterAll(async () => {
    await limits?.close();
  });

  it.each<[string, string, string, string]>([
    [
      'a CSV record longer than MAX_RECORD_CHARS',
      'enormous-line.csv',
      csv([
        ['R7-1', 'CONFOCAL_HOUR', 'a.patel', '1', '2026-10-09T09:00:00Z', 'ok'],
        ['R7-2', 'CONFOCAL_HOUR', 'a.patel', '1', '2026-10-09T10:00:00Z', 'x'.repeat(5000)],
        ['R7-3', 'CONFOCAL_HOUR', 'a.patel', '1', '2026-10-09T11:00:00Z', 'ok'],
      ], `${HEADER},description`),
      'enormous-line.csv: line 3: the record starting on this line is longer than 1000 characters',
    ],
    [
      'a quote left open for more than MAX_RECORD_CHARS',
      'open-quote.csv',
      csv([
        ['R7-1', 'CONFOCAL_HOUR', 'a.patel', '1', '2026-10-09T09:00:00Z'],
        ['R7-2', 'CONFOCAL_HOUR', '"a.patel', '1', '2026-10-09T10:00:00Z'],
        ...Array.from({ length: 100 }, (_, i) => [`R7-${i + 3}`, 'CONFOCAL_HOUR', 'a.patel', '1', '2026-10-09T11:00:00Z']),
      ]),
      'open-quote.csv: line 3: a quoted field opened on this line is still open after 1000 characters: is its closing quote missing?',
    ],
    [
      'an XML record longer than MAX_RECORD_CHARS',
      'enormous-record.xml',
      xml([
        '<usage id="R7-1"><product>CONFOCAL_HOUR</product><user>a.patel</user><quantity>1</quantity><start>2026-10-09T09:00:00Z</start></usage>',
        `<usage id="R7-2"><product>CONFOCAL_HOUR</product><user>a.patel</user><quantity>1</quantity><start>2026-10-09T10:00:00Z</start><description>${'x'.repeat(5000)}</description></usage>`,
      ]),
      'enormous-record.xml: line 4: the record starting on this line is longer than 1000 characters',
    ],
  ])('fails the file for %s, with the line where the record started', async (_case, name, content, error) => {
    const books = await ledger(ld);
    await expectRejected(ld, await feed(ld, name, content), name, error);
    expect(await ledger(ld)).toEqual(books);
  });

  it('refuses a file larger than MAX_FILE_BYTES when it is claimed, before reading it, and takes one of exactly the limit', async () => {
    const books = await ledger(ld);
    /** A valid feed of exactly `size` bytes: rows of at most ~80 characters, the last padded by its description. */
    const feedOfSize = (prefix: string, size: number): string => {
      let text = `${HEADER},description\n`;
      for (let i = 1; ; i += 1) {
        const line = `${prefix}-${i},CPU_HOUR,r.okafor,1,2026-10-10T09:00:00Z,`;
        if (Buffer.byteLength(text) + line.length + 200 > size) {
          const fill = size - Buffer.byteLength(text) - line.length - 1;
          return `${text}${line}${'p'.repeat(fill)}\n`;
        }
        text += `${line}row ${i}\n`;
      }
    };
    const tooBig = feedOfSize('BIG', MAX_FILE_BYTES + 1);
    const atLimit = feedOfSize('FIT', MAX_FILE_BYTES);
    expect([Buffer.byteLength(tooBig), Buffer.byteLength(atLimit)]).toEqual([MAX_FILE_BYTES + 1, MAX_FILE_BYTES]);

    await dropSettled(ld, 'ACME', 'too-big.csv', tooBig);
    const [big] = await scanInbox(ld);
    const error = `too-big.csv: the file is ${MAX_FILE_BYTES + 1} bytes, larger than the limit of ${MAX_FILE_BYTES}`;
    expect(big).toEqual({ fileId: expect.any(Number) as number, status: 'failed', error });
    expect(await fileRow(ld, big!.fileId)).toMatchObject({ name: 'too-big.csv', status: 'failed', error, rows_read: 0, stored_path: `failed/ACME/${big!.fileId}__too-big.csv` });
    expect(await exists(path.join(limits.inboxDir, 'failed', 'ACME', `${big!.fileId}__too-big.csv`))).toBe(true);
    expect(await ld.queues.get('ingest-file').getJob(`ingest-file-${big!.fileId}`)).toBeUndefined();
    expect(await ingestFile(ld, big!.fileId)).toEqual({ kind: 'skipped', fileId: big!.fileId, status: 'failed' });
    expect(await ledger(ld)).toEqual(books);

    const fit = await feed(ld, 'at-limit.csv', atLimit);
    const rows = atLimit.trimEnd().split('\n').length - 1;
    expect(fit.outcome).toEqual({ kind: 'parsed', fileId: fit.fileId, read: rows, accepted: rows, rejected: 0, duplicate: 0 });
  });
});

describe('8. invalid UTF-8, such as a Latin-1 pound sign', () => {
  const latin1 = (before: string, after: string) => Buffer.concat([Buffer.from(before), Buffer.from([0xa3]), Buffer.from(after)]);

  it.each<[string, string, Buffer, string]>([
    [
      'CSV',
      'latin1.csv',
      latin1(`${HEADER},description\nR8-1,CONFOCAL_HOUR,a.patel,1,2026-10-09T09:00:00Z,ok\nR8-2,CONFOCAL_HOUR,a.patel,1,2026-10-09T10:00:00Z,Printing `, '5\n'),
      `latin1.csv: line 3: ${NOT_UTF8}`,
    ],
    [
      'XML',
      'latin1.xml',
      latin1(
        xml(['<usage id="R8-3"><product>CONFOCAL_HOUR</product><user>a.patel</user><quantity>1</quantity><start>2026-10-09T09:00:00Z</start></usage>']).replace(
          '</usageFeed>\n',
          '  <usage id="R8-4"><product>CONFOCAL_HOUR</product><user>a.patel</user><quantity>1</quantity><start>2026-10-09T10:00:00Z</start>\n    <description>Printing ',
        ),
        '5</description></usage>\n</usageFeed>\n',
      ),
      `latin1.xml: line 5: ${NOT_UTF8}`,
    ],
  ])('fails a %s file naming the line, never replacing the byte with U+FFFD', async (_case, name, content, error) => {
    const books = await ledger(deps);
    await expectRejected(deps, await feed(deps, name, content), name, error);
    expect(await ledger(deps)).toEqual(books);
    const replaced = await deps.db.raw<{ rows: { n: number }[] }>(
      `SELECT (SELECT count(*)::int FROM product_usages WHERE description LIKE '%' || chr(65533) || '%')
            + (SELECT count(*)::int FROM usage_file_errors WHERE message LIKE '%' || chr(65533) || '%' OR raw_value LIKE '%' || chr(65533) || '%') AS n`,
    );
    expect(replaced.rows).toEqual([{ n: 0 }]);
  });

  it('takes the same pound sign written in UTF-8', async () => {
    const file = await feed(deps, 'utf8-pound.csv', `${HEADER},description\nR8-5,CONFOCAL_HOUR,a.patel,1,2026-10-09T09:00:00Z,Printing £5\n`);
    expect(file.outcome).toEqual({ kind: 'parsed', fileId: file.fileId, read: 1, accepted: 1, rejected: 0, duplicate: 0 });
    expect((await usagesOf(deps, file.fileId)).map((u) => u.description)).toEqual(['Printing £5']);
  });
});

describe('9. XML with a DOCTYPE, entity definitions, external or parameter entities', () => {
  let server: Server;
  let requests: string[];
  let base: string;

  beforeAll(async () => {
    // Anything that fetched a DTD or an entity would show up here.
    requests = [];
    server = createServer((req, res) => {
      requests.push(req.url ?? '');
      res.end('<!ENTITY leak "fetched">');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  });

  const record = '<usage id="R9-1"><product>CONFOCAL_HOUR</product><user>a.patel</user><quantity>1</quantity><start>2026-10-09T09:00:00Z</start></usage>';
  const lol = ['<!ENTITY lol0 "lol">', ...Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i};`.repeat(10)}">`)].join('');
  const cases: Array<[string, string, (base: string) => string, number]> = [
    ['an internal entity', 'internal-entity.xml', () => `<?xml version="1.0"?>\n<!DOCTYPE usageFeed [<!ENTITY p "ACME">]>\n<usageFeed partner="&p;">${record}</usageFeed>`, 2],
    ['a billion laughs', 'billion-laughs.xml', () => `<?xml version="1.0"?>\n<!DOCTYPE usageFeed [${lol}]>\n<usageFeed partner="ACME"><usage id="&lol9;"/></usageFeed>`, 2],
    [
      'an external entity naming a file that does not exist',
      'external-file.xml',
      () => `<!DOCTYPE usageFeed [<!ENTITY x SYSTEM "file:///nonexistent/billing-test/secret.txt">]>\n<usageFeed partner="ACME"><usage id="&x;"/></usageFeed>`,
      1,
    ],
    [
      'an external entity on a URL',
      'external-url.xml',
      (url) => `<!DOCTYPE usageFeed [<!ENTITY x SYSTEM "${url}/entity.txt">]>\n<usageFeed partner="ACME"><usage id="&x;"/></usageFeed>`,
      1,
    ],
    [
      'a parameter entity on a URL',
      'parameter-entity.xml',
      (url) => `<!DOCTYPE usageFeed [<!ENTITY % p SYSTEM "${url}/evil.dtd"> %p;]>\n<usageFeed partner="ACME">${record}</usageFeed>`,
      1,
    ],
    ['an external DTD', 'external-dtd.xml', (url) => `<!DOCTYPE usageFeed SYSTEM "${url}/feed.dtd">\n<usageFeed partner="ACME">${record}</usageFeed>`, 1],
  ];

  it.each(cases)('rejects %s in well under a second, reading nothing from disk or network', async (_case, name, content, line) => {
    const books = await ledger(deps);
    const fileId = await receive(deps, 'ACME', name, content(base));
    const started = performance.now();
    const outcome = await ingestAndRate(deps, fileId);
    expect(performance.now() - started).toBeLessThan(1000);
    // Had the file: URL been opened the error would be ENOENT, not the refusal.
    await expectRejected(deps, { fileId, outcome }, name, `${name}: line ${line}: ${DOCTYPE_REFUSED}`);
    expect(requests).toEqual([]);
    expect(await ledger(deps)).toEqual(books);
  });
});

describe('10. XML nested absurdly deep, or with names like __proto__ or constructor', () => {
  const good = '<usage id="R10-1"><product>CONFOCAL_HOUR</product><user>a.patel</user><quantity>1</quantity><start>2026-10-09T09:00:00Z</start></usage>';
  it.each<[string, string, string, string]>([
    ['nesting 33 deep', 'deep.xml', xml([good, `<usage id="R10-2"><product>${'<x>'.repeat(30)}${'</x>'.repeat(30)}</product></usage>`]), 'line 4: elements are nested more than 32 deep'],
    ['nesting 100 000 deep', 'deeper.xml', xml([good, '<usage>'.repeat(100_000)]), 'line 4: elements are nested more than 32 deep'],
    ['an element named __proto__', 'proto-element.xml', xml([good, '<usage id="R10-3"><__proto__><polluted>yes</polluted></__proto__></usage>']), 'line 4: element name "__proto__" is not allowed'],
    ['an element named constructor', 'constructor-element.xml', xml([good, '<constructor><prototype><polluted>yes</polluted></prototype></constructor>']), 'line 4: element name "constructor" is not allowed'],
    ['an attribute named constructor', 'constructor-attribute.xml', xml([good, '<usage id="R10-4" constructor="x" product="CONFOCAL_HOUR"/>']), 'line 4: attribute name "constructor" is not allowed'],
    ['a root attribute named __proto__', 'proto-root.xml', xml([good]).replace('partner="ACME"', 'partner="ACME" __proto__="polluted"'), 'line 2: attribute name "__proto__" is not allowed'],
    ['a namespace prefix named __proto__', 'proto-prefix.xml', xml([good, '<usage id="R10-5" xmlns:__proto__="urn:polluted"/>']), 'line 4: attribute name "xmlns:__proto__" is not allowed'],
  ])('fails the file for %s and pollutes nothing', async (_case, name, content, error) => {
    const books = await ledger(deps);
    await expectRejected(deps, await feed(deps, name, content), name, `${name}: ${error}`);
    expect(await ledger(deps)).toEqual(books);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(Object.prototype)).toEqual([]);
    expect(Object.getOwnPropertyNames(Object.prototype)).not.toContain('polluted');
  });
});

describe('11. XML namespaces, CDATA, attributes vs elements, one record vs many', () => {
  /** The three usages of this case; every spelling below must come out as these. */
  const CSV_FEED = csv(
    [
      ['CSV.X-1', 'CONFOCAL_HOUR', 'a.patel', '1.5', '2026-10-12T09:00:00Z', '2026-10-12T10:30:00Z', 'Imaging & <analysis>'],
      ['CSV.X-2', 'CPU_HOUR', 'r.okafor', '0.000123', '2026-10-13T08:00:00Z', '', '"Say ""hi"", ]]> & 0x1A"'],
      ['CSV.X-3', 'CPU_HOUR', 'm.chen', '250', '2026-10-14T07:00:00+01:00', '2026-10-14T19:00:00+01:00', ''],
    ],
    `${HEADER},end_time,description`,
  );
  const elements = xml([
    '<usage id="EL.X-1"><product>CONFOCAL_HOUR</product><user>a.patel</user><quantity>1.5</quantity><start>2026-10-12T09:00:00Z</start><end>2026-10-12T10:30:00Z</end><description>Imaging &amp; &lt;analysis&gt;</description></usage>',
    '<usage><id>EL.X-2</id><product>CPU_HOUR</product><user>r.okafor</user><quantity>0.000123</quantity><start>2026-10-13T08:00:00Z</start><description>Say "hi", ]]&gt; &amp; 0x1A</description></usage>',
    '<usage id="EL.X-3"><product>CPU_HOUR</product><user>m.chen</user><quantity>250</quantity><start>2026-10-14T07:00:00+01:00</start><end>2026-10-14T19:00:00+01:00</end><description/></usage>',
  ]);
  const namespaced = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<f:usageFeed xmlns:f="urn:nrf:usage" xmlns="urn:nrf:usage" partner="ACME">',
    '  <f:usage id="NS.X-1" product="CONFOCAL_HOUR" user="a.patel" quantity="1.5" start="2026-10-12T09:00:00Z" end="2026-10-12T10:30:00Z"><f:description><![CDATA[Imaging & <analysis>]]></f:description></f:usage>',
    '  <usage id="NS.X-2"><product><![CDATA[CPU_HOUR]]></product><user>r.okafor</user><quantity><![CDATA[0.000123]]></quantity><start>2026-10-13T08:00:00Z</start><description>Say <![CDATA["hi", ]]]]><![CDATA[>]]> &amp; 0x1A</description></usage>',
    '  <f:usage f:id="NS.X-3" f:quantity="250"><f:product>CPU_HOUR</f:product><f:user>m.chen</f:user><f:start>2026-10-14T07:00:00+01:00</f:start><f:end>2026-10-14T19:00:00+01:00</f:end></f:usage>',
    '</f:usageFeed>',
    '',
  ].join('\n');
  const singles = [
    xml(['<usage id="ONE.X-1" product="CONFOCAL_HOUR" user="a.patel" quantity="1.5" start="2026-10-12T09:00:00Z" end="2026-10-12T10:30:00Z" description="Imaging &amp; &lt;analysis&gt;"/>']),
    xml(['<usage id="ONE.X-2"><product>CPU_HOUR</product><user>r.okafor</user><quantity>0.000123</quantity><start>2026-10-13T08:00:00Z</start><description><![CDATA[Say "hi", ]]]]><![CDATA[> & 0x1A]]></description></usage>']),
    '<usageFeed partner="ACME"><usage id="ONE.X-3"><product>CPU_HOUR</product><user>m.chen</user><quantity>250</quantity><start>2026-10-14T07:00:00+01:00</start><end>2026-10-14T19:00:00+01:00</end></usage></usageFeed>',
  ];
  /** JSMITH's own spelling, through a feed profile: other element names, a prefix, ids in an attribute. */
  const JSMITH_PROFILE = { xml: { root_element: 'feed', record_element: 'entry', fields: { usage_id: '@ref', quantity: 'amount', start_time: 'from', end_time: 'to', description: 'note' } } };
  const profiled = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<n:feed xmlns:n="urn:nrf:usage:2" partner="JSMITH">',
    '  <n:entry ref="PRO.X-1"><n:product>CONFOCAL_HOUR</n:product><n:user>a.patel</n:user><n:amount>1.5</n:amount><n:from>2026-10-12T09:00:00Z</n:from><n:to>2026-10-12T10:30:00Z</n:to><n:note><![CDATA[Imaging & <analysis>]]></n:note></n:entry>',
    '  <n:entry ref="PRO.X-2" product="CPU_HOUR" user="r.okafor"><n:amount>0.000123</n:amount><n:from>2026-10-13T08:00:00Z</n:from><n:note>Say &quot;hi&quot;, ]]&gt; &amp; 0x1A</n:note></n:entry>',
    '  <n:entry ref="PRO.X-3"><n:product>CPU_HOUR</n:product><n:user>m.chen</n:user><n:amount>250</n:amount><n:from>2026-10-14T07:00:00+01:00</n:from><n:to>2026-10-14T19:00:00+01:00</n:to><n:note/></n:entry>',
    '</n:feed>',
    '',
  ].join('\n');

  /** The rows an operator compares, the spelling's prefix taken off the usage id. */
  const canonical = (rows: UsageRow[]) =>
    rows.map((u) => [u.external_id.replace(/^[A-Z]+\./, ''), u.product, u.user_ref, u.account, u.quantity, u.started_at, u.ended_at, u.period, u.description]);
  const canonicalCharges = (charges: Record<string, number>) => Object.fromEntries(Object.entries(charges).map(([k, v]) => [k.replace(/^[A-Z]+\./, ''), v]));

  afterAll(async () => {
    await deps.db('partners').where('code', 'JSMITH').update({ feed_profile: null });
  });

  it('reads every spelling into the same canonical rows as the equivalent CSV, numbers never coerced', async () => {
    const expected = [
      ['X-1', 'CONFOCAL_HOUR', 'a.patel', null, '1.5', '2026-10-12T09:00:00.000Z', '2026-10-12T10:30:00.000Z', '2026-10', 'Imaging & <analysis>'],
      ['X-2', 'CPU_HOUR', 'r.okafor', null, '0.000123', '2026-10-13T08:00:00.000Z', null, '2026-10', 'Say "hi", ]]> & 0x1A'],
      ['X-3', 'CPU_HOUR', 'm.chen', null, '250', '2026-10-14T06:00:00.000Z', '2026-10-14T18:00:00.000Z', '2026-10', null],
    ];
    // 1.5 x 42.50 = 63.75; 0.000123 x 0.045 = 0.000005535 -> 0.00; 250 x 0.045 = 11.25, 60/40.
    const acmeCharges = { 'X-1/ACME-OPS': 6375, 'X-2/ACME-OPS': 0, 'X-3/GRANT-4471': 675, 'X-3/GRANT-5120': 450 };

    const reference = await feed(deps, 'x-canonical.csv', CSV_FEED);
    expect(reference.outcome).toEqual({ kind: 'parsed', fileId: reference.fileId, read: 3, accepted: 3, rejected: 0, duplicate: 0 });
    expect(canonical(await usagesOf(deps, reference.fileId))).toEqual(expected);
    expect(canonicalCharges(await chargesOf(deps, reference.fileId))).toEqual(acmeCharges);

    for (const [name, content] of [['x-elements.xml', elements], ['x-namespaced.xml', namespaced]] as const) {
      const file = await feed(deps, name, content);
      expect(file.outcome, name).toEqual({ kind: 'parsed', fileId: file.fileId, read: 3, accepted: 3, rejected: 0, duplicate: 0 });
      expect(await errorsOf(deps, file.fileId)).toEqual([]);
      const usages = await usagesOf(deps, file.fileId);
      expect(canonical(usages), name).toEqual(expected);
      expect(usages.map((u) => [u.source_record, u.source_line])).toEqual([[1, 3], [2, 4], [3, 5]]);
      expect(canonicalCharges(await chargesOf(deps, file.fileId)), name).toEqual(acmeCharges);
    }

    // One record per file reads the same as many in one.
    const one: unknown[][] = [];
    const oneCharges: Record<string, number> = {};
    for (const [i, content] of singles.entries()) {
      const file = await feed(deps, `x-single-${i + 1}.xml`, content);
      expect(file.outcome).toEqual({ kind: 'parsed', fileId: file.fileId, read: 1, accepted: 1, rejected: 0, duplicate: 0 });
      one.push(...canonical(await usagesOf(deps, file.fileId)));
      Object.assign(oneCharges, canonicalCharges(await chargesOf(deps, file.fileId)));
    }
    expect(one).toEqual(expected);
    expect(oneCharges).toEqual(acmeCharges);

    // Another partner whose feed profile renames and prefixes everything.
    await deps.db('partners').where('code', 'JSMITH').update({ feed_profile: JSON.stringify(JSMITH_PROFILE) });
    const file = await feed(deps, 'x-profiled.xml', profiled, 'JSMITH');
    expect(file.outcome).toEqual({ kind: 'parsed', fileId: file.fileId, read: 3, accepted: 3, rejected: 0, duplicate: 0 });
    expect(canonical(await usagesOf(deps, file.fileId))).toEqual(expected);
    // EUR, half-even: 1.5 x 39.90 = 59.85; 0.000123 x 0.0525 -> 0.00; 250 x 0.0525 = 13.125 -> 13.12.
    expect(canonicalCharges(await chargesOf(deps, file.fileId))).toEqual({ 'X-1/JS-LAB': 5985, 'X-2/JS-LAB': 0, 'X-3/JS-LAB': 1312 });
  });
});

describe('12. quantities: plain decimals only, exactly', () => {
  it('stores each accepted quantity as the exact decimal and refuses every other spelling with its own message', async () => {
    const books = await ledger(deps);
    const rows: Array<[id: string, product: string, quantity: string]> = [
      ['Q-12', 'CONFOCAL_HOUR', '12'],
      ['Q-MICRO', 'CPU_HOUR', '0.000001'],
      ['Q-NEG', 'CONFOCAL_HOUR', '-3'],
      ['Q-EXP', 'CONFOCAL_HOUR', '1e3'],
      ['Q-THOUSANDS', 'CONFOCAL_HOUR', '"1,000"'],
      ['Q-EURO', 'CONFOCAL_HOUR', '"1.000,50"'],
      ['Q-EMPTY', 'CONFOCAL_HOUR', ''],
      ['Q-BLANK', 'CONFOCAL_HOUR', ' '],
      ['Q-NAN', 'CONFOCAL_HOUR', 'NaN'],
      ['Q-INF', 'CONFOCAL_HOUR', 'Infinity'],
      ['Q-HEX', 'CONFOCAL_HOUR', '0x10'],
      ['Q-007', 'CONFOCAL_HOUR', '007'],
      ['Q-FINE', 'CONFOCAL_HOUR', '0.000001'],
    ];
    const file = await feed(deps, 'quantities.csv', csv(rows.map(([id, product, q]) => [id, product, 'a.patel', q, '2026-10-15T09:00:00Z'])));
    expect(file.outcome).toEqual({ kind: 'parsed', fileId: file.fileId, read: 13, accepted: 3, rejected: 10, duplicate: 0 });
    expect((await usagesOf(deps, file.fileId)).map((u) => [u.external_id, u.quantity])).toEqual([
      ['Q-12', '12'],
      ['Q-MICRO', '0.000001'],
      ['Q-007', '7'],
    ]);
    const invalid = (record: number, raw: string, reason: string): ErrorRow => [record, record + 1, 'quantity', 'invalid_quantity', `quantity "${raw}" ${reason}`, raw];
    expect(await errorsOf(deps, file.fileId)).toEqual([
      [3, 4, 'quantity', 'negative_not_allowed', 'quantity "-3" is negative and partnership NRF-ACME does not allow credits', '-3'],
      invalid(4, '1e3', 'uses an exponent; write the plain decimal'),
      invalid(5, '1,000', 'has thousands or decimal separators other than a single "."'),
      invalid(6, '1.000,50', 'has thousands or decimal separators other than a single "."'),
      [7, 8, 'quantity', 'required', 'quantity is required', ''],
      [8, 9, 'quantity', 'required', 'quantity is required', ' '],
      invalid(9, 'NaN', 'is not a finite number'),
      invalid(10, 'Infinity', 'is not a finite number'),
      invalid(11, '0x10', 'is hexadecimal, not a decimal'),
      [13, 14, 'quantity', 'too_precise', 'quantity "0.000001" has more than 2 decimal places for CONFOCAL_HOUR', '0.000001'],
    ]);
    // 12 x 42.50 = 510; 0.000001 x 0.045 -> 0.00; 7 x 42.50 = 297.50. Nothing for the refused rows.
    expect(await chargesOf(deps, file.fileId)).toEqual({ 'Q-12/ACME-OPS': 51000, 'Q-MICRO/ACME-OPS': 0, 'Q-007/ACME-OPS': 29750 });
    expect(await ledger(deps)).toEqual({
      usages: books.usages + 3,
      records: books.records + 3,
      transactions: books.transactions + 3,
      pennies: String(BigInt(books.pennies) + 51000n + 29750n),
    });
  });

  it('keeps XML quantities as text: 1e3, 0x10 and 007 read as written, never as numbers', async () => {
    const q = (id: string, quantity: string) =>
      `<usage id="${id}"><product>CONFOCAL_HOUR</product><user>a.patel</user><quantity>${quantity}</quantity><start>2026-10-15T10:00:00Z</start></usage>`;
    const file = await feed(deps, 'quantities.xml', xml([q('QX-EXP', '1e3'), q('QX-HEX', '0x10'), q('QX-007', '007'), q('QX-PAD', ' 12 ')]));
    expect(file.outcome).toEqual({ kind: 'parsed', fileId: file.fileId, read: 4, accepted: 1, rejected: 3, duplicate: 0 });
    expect((await usagesOf(deps, file.fileId)).map((u) => [u.external_id, u.quantity])).toEqual([['QX-007', '7']]);
    expect(await errorsOf(deps, file.fileId)).toEqual([
      [1, 3, 'quantity', 'invalid_quantity', 'quantity "1e3" uses an exponent; write the plain decimal', '1e3'],
      [2, 4, 'quantity', 'invalid_quantity', 'quantity "0x10" is hexadecimal, not a decimal', '0x10'],
      [4, 6, 'quantity', 'invalid_quantity', 'quantity " 12 " has leading or trailing spaces', ' 12 '],
    ]);
  });

  it('stores 34100000000000000001 exactly, beyond any JavaScript number', async () => {
    const fileId = await receive(deps, 'ACME', 'huge-quantity.csv', csv([['Q-HUGE', 'CPU_HOUR', 'a.patel', '34100000000000000001', '2026-10-15T11:00:00Z']]));
    expect(await ingestFile(deps, fileId)).toEqual({ kind: 'parsed', fileId, read: 1, accepted: 1, rejected: 0, duplicate: 0 });
    expect((await usagesOf(deps, fileId)).map((u) => [u.external_id, u.quantity])).toEqual([['Q-HUGE', '34100000000000000001']]);
    expect(Number('34100000000000000001').toString()).not.toBe('34100000000000000001');
    // Its charge (x 0.045) is beyond a bigint: refused for good, naming the usage, nothing written (reliability 19).
    const usageId = (await deps.db('product_usages').where({ source_file_id: fileId }).first<{ id: string }>('id')).id;
    await expect(rateFile(deps, fileId)).rejects.toThrow(
      `usage Q-HUGE (id ${usageId}, file record 1): the charge of 153450000000000000005 pennies for quantity 34100000000000000001 is beyond the largest amount the ledger stores`,
    );
    expect(await deps.db('billing_records').where('usage_id', usageId).count<{ count: string }[]>('* as count')).toEqual([{ count: '0' }]);
    expect(await deps.db('usage_files').where('id', fileId).first('status', 'error')).toEqual({
      status: 'parsed',
      error: `rating stopped: usage Q-HUGE (id ${usageId}, file record 1): the charge of 153450000000000000005 pennies for quantity 34100000000000000001 is beyond the largest amount the ledger stores`,
    });
  });
});

describe('13. a negative quantity where the partnership allows credits', () => {
  afterAll(async () => {
    await deps.db('partnerships').where('code', 'NRF-ACME').update({ allow_credits: false });
  });

  it('accepts it, stores it negative and rates it to a negative charge, sign kept in every transaction', async () => {
    await deps.db('partnerships').where('code', 'NRF-ACME').update({ allow_credits: true });
    const books = await ledger(deps);
    const file = await feed(deps, 'credits.csv', csv([
      ['C13-1', 'CONFOCAL_HOUR', 'a.patel', '-3', '2026-10-16T09:00:00Z'],
      ['C13-2', 'CPU_HOUR', 'm.chen', '-100', '2026-10-16T10:00:00Z'],
      ['C13-3', 'STORAGE_TB_DAY', 'r.okafor', '-0.5', '2026-10-16T11:00:00Z'],
      ['C13-4', 'CONFOCAL_HOUR', 'a.patel', '2', '2026-10-16T12:00:00Z'],
    ]));
    expect(file.outcome).toEqual({ kind: 'parsed', fileId: file.fileId, read: 4, accepted: 4, rejected: 0, duplicate: 0 });
    expect(await errorsOf(deps, file.fileId)).toEqual([]);
    expect((await usagesOf(deps, file.fileId)).map((u) => [u.external_id, u.quantity])).toEqual([
      ['C13-1', '-3'],
      ['C13-2', '-100'],
      ['C13-3', '-0.5'],
      ['C13-4', '2'],
    ]);
    // -3 x 42.50 = -127.50; -100 x 0.045 = -4.50, 60/40; -0.5 x 1.3333 = -0.66665 -> -0.67; 2 x 42.50 = 85.
    expect(await chargesOf(deps, file.fileId)).toEqual({
      'C13-1/ACME-OPS': -12750,
      'C13-2/GRANT-4471': -270,
      'C13-2/GRANT-5120': -180,
      'C13-3/ACME-OPS': -67,
      'C13-4/ACME-OPS': 8500,
    });
    const records = await deps.db('billing_records as r')
      .join('product_usages as u', 'u.id', 'r.usage_id')
      .join('accounts as a', 'a.id', 'r.account_id')
      .join('transactions as t', 't.billing_record_id', 'r.id')
      .where('u.source_file_id', file.fileId)
      .orderBy(['u.external_id', 'a.code'])
      .select<Array<{ external_id: string; code: string; quantity: string; kind: string; amount: string }>>('u.external_id', 'a.code', 'r.quantity', 't.kind', 't.amount_pennies as amount');
    expect(records.map((r) => [r.external_id, r.code, r.quantity, r.kind, r.amount])).toEqual([
      ['C13-1', 'ACME-OPS', '-3', 'charge', '-12750'],
      ['C13-2', 'GRANT-4471', '-60', 'charge', '-270'],
      ['C13-2', 'GRANT-5120', '-40', 'charge', '-180'],
      ['C13-3', 'ACME-OPS', '-0.5', 'charge', '-67'],
      ['C13-4', 'ACME-OPS', '2', 'charge', '8500'],
    ]);
    expect(await ledger(deps)).toEqual({
      usages: books.usages + 4,
      records: books.records + 5,
      transactions: books.transactions + 5,
      pennies: String(BigInt(books.pennies) - 12750n - 270n - 180n - 67n + 8500n),
    });
    await expectInvariants(deps);
  });
});

describe('14. timestamps: date only, no offset, Z, +01:00, DST gap and overlap, Feb 29, month end', () => {
  const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'support', 'validate-rows.ts');
  const row = (usage_id: string, start_time: string): RawUsageFields => ({ usage_id, product: 'CONFOCAL_HOUR', user: 'a.patel', quantity: '1', start_time });
  const toCsv = (rows: RawUsageFields[]) => csv(rows.map((r) => [r.usage_id!, r.product!, r.user!, r.quantity!, r.start_time!]));

  /** Without a profile, a timestamp must carry its offset. */
  const OFFSETS = [
    row('T-DATE', '2026-10-05'),
    row('T-NOOFFSET', '2026-10-05T09:00:00'),
    row('T-Z', '2026-10-05T09:00:00Z'),
    row('T-PLUS1', '2026-10-05T10:00:00+01:00'),
    row('T-GAP', '2026-03-29T01:30:00+00:00'),
    row('T-OVERLAP-BST', '2026-10-25T01:30:00+01:00'),
    row('T-OVERLAP-GMT', '2026-10-25T01:30:00+00:00'),
    row('T-FEB29', '2027-02-29T12:00:00Z'),
    row('T-MONTH-END', '2026-10-31T23:30:00Z'),
    row('T-MONTH-END-WEST', '2026-10-31T23:30:00-01:00'),
    // 23:30 UTC on 30 September is 00:30 on 1 October in London: the partnership's month counts.
    row('T-MONTH-START', '2026-09-30T23:30:00Z'),
  ];
  /** With a profile naming Europe/London, timestamps without an offset are read there. */
  const LONDON = [
    row('L-DATE', '2026-10-05'),
    row('L-LOCAL', '2026-10-05T09:00:00'),
    row('L-GAP', '2026-03-29T01:30:00'),
    row('L-OVERLAP', '2026-10-25T01:30:00'),
    row('L-GAP-OFFSET', '2026-03-29T01:30:00+00:00'),
    row('L-OVERLAP-OFFSET', '2026-10-25T01:30:00+00:00'),
    row('L-FEB29', '2027-02-29T12:00:00'),
    row('L-MONTH-END', '2026-10-31T23:30:00'),
    // An offset followed by a bracketed zone is not read as a London time with both dropped.
    row('L-ANNOTATED', '2026-10-05T09:00:00+05:00[Asia/Karachi]'),
    // Refused as it was written, not as the UTC instant it was read as.
    row('L-FUTURE', '2026-11-25T09:00:00'),
  ];

  const runChild = async (tz: string, request: ValidateRowsRequest): Promise<ValidateRowsResult> => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', SCRIPT, JSON.stringify(request)], {
      env: { ...process.env, TZ: tz },
      cwd: path.dirname(path.dirname(SCRIPT)),
    });
    return JSON.parse(stdout) as ValidateRowsResult;
  };

  afterAll(async () => {
    await deps.db('partners').where('code', 'ACME').update({ feed_profile: null });
  });

  it('places each usage in exactly one period, refusing what it cannot place, the same under any process TZ', async () => {
    const books = await ledger(deps);
    const plain = await feed(deps, 'timestamps.csv', toCsv(OFFSETS));
    expect(plain.outcome).toEqual({ kind: 'parsed', fileId: plain.fileId, read: 11, accepted: 8, rejected: 3, duplicate: 0 });
    expect((await usagesOf(deps, plain.fileId)).map((u) => [u.external_id, u.started_at, u.period])).toEqual([
      ['T-Z', '2026-10-05T09:00:00.000Z', '2026-10'],
      ['T-PLUS1', '2026-10-05T09:00:00.000Z', '2026-10'],
      ['T-GAP', '2026-03-29T01:30:00.000Z', '2026-03'],
      ['T-OVERLAP-BST', '2026-10-25T00:30:00.000Z', '2026-10'],
      ['T-OVERLAP-GMT', '2026-10-25T01:30:00.000Z', '2026-10'],
      ['T-MONTH-END', '2026-10-31T23:30:00.000Z', '2026-10'],
      ['T-MONTH-END-WEST', '2026-11-01T00:30:00.000Z', '2026-11'],
      ['T-MONTH-START', '2026-09-30T23:30:00.000Z', '2026-10'],
    ]);
    const refused = (record: number, raw: string, reason: string): ErrorRow => [record, record + 1, 'start_time', 'invalid_timestamp', `start_time "${raw}" ${reason}`, raw];
    expect(await errorsOf(deps, plain.fileId)).toEqual([
      refused(1, '2026-10-05', 'is a date without a time; expected e.g. 2026-10-01T09:00:00Z'),
      refused(2, '2026-10-05T09:00:00', 'has no UTC offset; expected Z or e.g. +01:00 at the end'),
      refused(8, '2027-02-29T12:00:00Z', 'is not a valid date and time'),
    ]);

    await deps.db('partners').where('code', 'ACME').update({ feed_profile: JSON.stringify({ time_zone: 'Europe/London' }) });
    const london = await feed(deps, 'timestamps-london.csv', toCsv(LONDON));
    expect(london.outcome).toEqual({ kind: 'parsed', fileId: london.fileId, read: 10, accepted: 5, rejected: 5, duplicate: 0 });
    expect((await usagesOf(deps, london.fileId)).map((u) => [u.external_id, u.started_at, u.period])).toEqual([
      ['L-DATE', '2026-10-04T23:00:00.000Z', '2026-10'],
      ['L-LOCAL', '2026-10-05T08:00:00.000Z', '2026-10'],
      ['L-GAP-OFFSET', '2026-03-29T01:30:00.000Z', '2026-03'],
      ['L-OVERLAP-OFFSET', '2026-10-25T01:30:00.000Z', '2026-10'],
      ['L-MONTH-END', '2026-10-31T23:30:00.000Z', '2026-10'],
    ]);
    const dst = 'does not exist or happens twice in Europe/London (a daylight-saving change); give it with an offset';
    expect(await errorsOf(deps, london.fileId)).toEqual([
      refused(3, '2026-03-29T01:30:00', dst),
      refused(4, '2026-10-25T01:30:00', dst),
      refused(7, '2027-02-29T12:00:00', 'is not a valid date and time'),
      refused(9, '2026-10-05T09:00:00+05:00[Asia/Karachi]', 'is not an ISO 8601 date and time'),
      [10, 11, 'start_time', 'out_of_range', 'start_time "2026-11-25T09:00:00" is in the future', '2026-11-25T09:00:00'],
    ]);
    // Only the accepted usages were billed, one CONFOCAL_HOUR each.
    expect(await ledger(deps)).toEqual({
      usages: books.usages + 13,
      records: books.records + 13,
      transactions: books.transactions + 13,
      pennies: String(BigInt(books.pennies) + 13n * 4250n),
    });

    // The pure half again, in this process and in child processes under UTC and New York: identical,
    // and identical to what the ingest stored.
    const stored = async (fileId: number) => {
      const usages = new Map((await usagesOf(deps, fileId)).map((u) => [u.external_id, u]));
      const errors = await errorsOf(deps, fileId);
      return (rows: RawUsageFields[]) =>
        rows.map((r, i) => {
          const u = usages.get(r.usage_id!);
          if (u) return { id: r.usage_id, ok: true, quantity: u.quantity, startedAt: u.started_at.replace('.000Z', 'Z'), endedAt: null, period: u.period };
          return { id: r.usage_id, ok: false, errors: errors.filter((e) => e[0] === i + 1).map((e) => [e[2], e[3], e[4], e[5]]) };
        });
    };
    const now = '2026-11-21T10:00:00Z';
    await deps.db('partners').where('code', 'ACME').update({ feed_profile: null });
    const plainRequest = { databaseUrl: ctx.databaseUrl, partnerCode: 'ACME', now, rows: OFFSETS };
    const plainRuns = await Promise.all([validateRows(plainRequest), runChild('UTC', plainRequest), runChild('America/New_York', plainRequest)]);
    await deps.db('partners').where('code', 'ACME').update({ feed_profile: JSON.stringify({ time_zone: 'Europe/London' }) });
    const londonRequest = { ...plainRequest, rows: LONDON };
    const londonRuns = await Promise.all([validateRows(londonRequest), runChild('UTC', londonRequest), runChild('America/New_York', londonRequest)]);

    expect([plainRuns[1].timeZone, plainRuns[1].offsetMinutes, plainRuns[2].timeZone, plainRuns[2].offsetMinutes]).toEqual(['UTC', 0, 'America/New_York', 240]);
    const expectPlain = (await stored(plain.fileId))(OFFSETS);
    const expectLondon = (await stored(london.fileId))(LONDON);
    for (const run of plainRuns) expect(run.verdicts).toEqual(expectPlain);
    for (const run of londonRuns) expect(run.verdicts).toEqual(expectLondon);
  });

  it('places 29 February of a leap year and the instant after it by the partnership month, once the clock has passed them', async () => {
    const later = await createTestContext({ clock: fixedClock('2028-03-10T12:00:00Z') });
    try {
      await importDemoPartnerships(later.deps);
      const file = await feed(later.deps, 'leap.csv', toCsv([
        row('LEAP-1', '2028-02-29T23:30:00Z'),
        row('LEAP-2', '2028-02-29T23:30:00-01:00'),
        row('LEAP-3', '2028-02-28T12:00:00+14:00'),
      ]));
      expect(file.outcome).toEqual({ kind: 'parsed', fileId: file.fileId, read: 3, accepted: 3, rejected: 0, duplicate: 0 });
      expect((await usagesOf(later.deps, file.fileId)).map((u) => [u.external_id, u.started_at, u.period])).toEqual([
        ['LEAP-1', '2028-02-29T23:30:00.000Z', '2028-02'],
        ['LEAP-2', '2028-03-01T00:30:00.000Z', '2028-03'],
        ['LEAP-3', '2028-02-27T22:00:00.000Z', '2028-02'],
      ]);
    } finally {
      await later.close();
    }
  });
});

describe('15. a database error in the middle of a file', () => {
  /** Seven rows, two per chunk: [1,2] [3,4] [5,6] [7]. Row 3 is malformed, row 6 repeats row 1. */
  const CONTENT = csv([
    ['F15-1', 'CONFOCAL_HOUR', 'a.patel', '1', '2026-10-20T09:00:00Z'],
    ['F15-2', 'CPU_HOUR', 'm.chen', '10', '2026-10-20T10:00:00Z'],
    ['F15-3', 'CONFOCAL_HOUR', 'a.patel', '1e3', '2026-10-20T11:00:00Z'],
    ['F15-4', 'STORAGE_TB_DAY', 'r.okafor', '2', '2026-10-20T12:00:00Z'],
    ['F15-5', 'CONFOCAL_HOUR', 'a.patel', '2', '2026-10-20T13:00:00Z'],
    ['F15-1', 'CONFOCAL_HOUR', 'a.patel', '1', '2026-10-20T09:00:00Z'],
    ['F15-7', 'CPU_HOUR', 'r.okafor', '5', '2026-10-20T14:00:00Z'],
  ]);
  const worlds: TestContext[] = [];
  const listeners: QueueEvents[] = [];

  afterAll(async () => {
    for (const e of listeners) await e.close();
    for (const w of worlds) await w.close();
  });

  /** A fresh world with two rows per chunk and the demo partnerships. */
  async function world(): Promise<TestContext> {
    const w = await createTestContext({ env: { INGEST_CHUNK_ROWS: '2' } });
    worlds.push(w);
    await importDemoPartnerships(w.deps);
    return w;
  }

  /** What an operator compares: counts, usages, row errors, charges and the books, file ids masked. */
  async function endState(d: Deps, fileId: number) {
    const mask = (s: string) => s.replaceAll(`file ${fileId} (`, 'file <this> (');
    return {
      file: counts(await fileRow(d, fileId)),
      usages: await usagesOf(d, fileId),
      errors: (await errorsOf(d, fileId)).map((e): ErrorRow => [e[0], e[1], e[2], e[3], mask(e[4]), e[5]]),
      charges: await chargesOf(d, fileId),
      books: await ledger(d),
    };
  }

  it('rolls the failing chunk back whole; the queued job retries once the fault is gone and every row lands exactly once, as in a clean run', async () => {
    // The clean run, through the use cases.
    const clean = await world();
    const reference = await feed(clean.deps, 'faulty.csv', CONTENT);
    expect(reference.outcome).toEqual({ kind: 'parsed', fileId: reference.fileId, read: 7, accepted: 5, rejected: 1, duplicate: 1 });
    const expected = await endState(clean.deps, reference.fileId);
    expect(expected.file).toEqual({ status: 'rated', read: 7, accepted: 5, rejected: 1, duplicate: 1, committed: 7 });
    expect(expected.usages.map((u) => [u.external_id, u.source_record])).toEqual([['F15-1', 1], ['F15-2', 2], ['F15-4', 4], ['F15-5', 5], ['F15-7', 7]]);
    expect(expected.errors).toEqual([
      [3, 4, 'quantity', 'invalid_quantity', 'quantity "1e3" uses an exponent; write the plain decimal', '1e3'],
      [6, 7, 'usage_id', 'duplicate_usage', 'usage id "F15-1" was already received in file <this> (faulty.csv) record 1; not billed again', 'F15-1'],
    ]);
    // 42.50; 10 x 0.045 = 0.45, 60/40; 2 x 1.3333 = 2.6666 -> 2.67; 2 x 42.50; 5 x 0.045 = 0.225 -> 0.23.
    expect(expected.charges).toEqual({
      'F15-1/ACME-OPS': 4250,
      'F15-2/GRANT-4471': 27,
      'F15-2/GRANT-5120': 18,
      'F15-4/ACME-OPS': 267,
      'F15-5/ACME-OPS': 8500,
      'F15-7/ACME-OPS': 23,
    });
    expect(expected.books).toEqual({ usages: 5, records: 6, transactions: 6, pennies: '13085' });

    // The same file through the queue, with a real database error on the insert of the second chunk
    // (records 3 and 4): a CHECK constraint that refuses F15-4, NOT VALID so existing rows are not checked.
    const faulty = await world();
    const fd = faulty.deps;
    await fd.db.raw(`ALTER TABLE product_usages ADD CONSTRAINT test_fault_f15_4 CHECK (external_id <> 'F15-4') NOT VALID`);
    const events = (name: string) => {
      const e = new QueueEvents(name, { connection: { url: fd.config.redisUrl }, prefix: fd.config.queuePrefix });
      listeners.push(e);
      return e;
    };
    const ingestEvents = events('ingest-file');
    const rateEvents = events('rate-file');
    await Promise.all([ingestEvents.waitUntilReady(), rateEvents.waitUntilReady()]);
    const ingestWorker = faulty.workers().workers.find((w) => w.name === 'ingest-file')!;
    const firstFailure = new Promise<{ job: Job | undefined; error: Error }>((resolve) => ingestWorker.once('failed', (job, error) => resolve({ job, error })));

    const fileId = await receive(fd, 'ACME', 'faulty.csv', CONTENT);
    const failure = await firstFailure;
    expect(failure.job?.id).toBe(`ingest-file-${fileId}`);
    expect(failure.error.message).toContain('violates check constraint "test_fault_f15_4"');
    // While the fault lasts, every attempt fails the same way and leaves the same state: the first chunk
    // committed, the second rolled back whole (its row error too), nothing rated.
    expect(counts(await fileRow(fd, fileId))).toEqual({ status: 'parsing', read: 2, accepted: 2, rejected: 0, duplicate: 0, committed: 2 });
    expect((await usagesOf(fd, fileId)).map((u) => u.external_id)).toEqual(['F15-1', 'F15-2']);
    expect(await errorsOf(fd, fileId)).toEqual([]);
    expect(await ledger(fd)).toEqual({ usages: 2, records: 0, transactions: 0, pennies: '0' });
    const job = await fd.queues.get('ingest-file').getJob(`ingest-file-${fileId}`);
    // Retried with backoff, not failed for good.
    expect(['delayed', 'waiting', 'active']).toContain(await job!.getState());

    await fd.db.raw('ALTER TABLE product_usages DROP CONSTRAINT test_fault_f15_4');
    expect(await job!.waitUntilFinished(ingestEvents, 30_000)).toEqual({ kind: 'parsed', fileId, read: 7, accepted: 5, rejected: 1, duplicate: 1 });
    const rateJob = await fd.queues.get('rate-file').getJob(`rate-file-${fileId}`);
    expect(await rateJob!.waitUntilFinished(rateEvents, 30_000)).toEqual({ kind: 'rated', fileId, usages: 5, records: 6, transactions: 6 });
    expect(await endState(fd, fileId)).toEqual(expected);
    await expectInvariants(fd);
  });
});
