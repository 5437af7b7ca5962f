import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunksOf, claimChunk, savePlan } from '../adapters/db/ingest-chunks';
import { xmlAdapter } from '../adapters/formats/xml';
import { createApp } from '../src/api/app';
import type { Deps } from '../src/deps';
import { type IngestingFile, ingestFile } from '../src/use-cases/ingest-file';
import { openStoredFile, processChunk } from '../src/use-cases/ingest-chunk';
import { rateFile } from '../src/use-cases/rate-file';
import { scanInbox } from '../src/use-cases/scan-inbox';
import { pipelineIsIdle, waitUntilSettled } from '../src/use-cases/wait-for-pipeline';
import { counts, fileRow } from './support/file-rows';
import { dropSettled, importDemoPartnerships } from './support/inbox-drops';
import { findInvariantViolations } from './support/invariants';
import { TEST_TOKEN, type TestContext, createTestContext } from './support/test-context';

/**
 * Big files are split into chunks (ingest_chunks) that any worker may claim; chunks commit in file
 * order, exactly once, and the file finishes with its last chunk. These tests use chunks of a few
 * rows so that small files span many of them.
 */

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HEADER = 'usage_id,product,user,quantity,start_time,description';

/** n rows of ACME; every third has a description with a quoted line break, so chunk boundaries meet quotes. */
function rows(prefix: string, n: number, from = 1): string[] {
  return Array.from({ length: n }, (_, i) => {
    const k = from + i;
    const description = k % 3 === 0 ? `"run ${k}\nsecond line, with a comma"` : `run ${k}`;
    return `${prefix}-${k},CPU_HOUR,r.okafor,${k},2026-10-${String(1 + (k % 28)).padStart(2, '0')}T09:00:00Z,${description}`;
  });
}

function csv(lines: string[]): string {
  return [HEADER, ...lines].join('\n') + '\n';
}

async function receive(deps: Deps, name: string, content: string | Buffer, partner = 'ACME'): Promise<number> {
  await dropSettled(deps, partner, name, content);
  const registered = await scanInbox(deps);
  expect(registered).toEqual([{ fileId: expect.any(Number) as number, status: 'received' }]);
  return registered[0]!.fileId;
}

async function usagesOf(deps: Deps, fileId: number) {
  return deps.db('product_usages').where('source_file_id', fileId).whereNull('superseded_at').orderBy('source_record')
    .select<Array<{ external_id: string; quantity: string; source_record: number; source_line: number }>>('external_id', 'quantity', 'source_record', 'source_line');
}

async function errorsOf(deps: Deps, fileId: number) {
  return deps.db('usage_file_errors').where('file_id', fileId).orderBy(['record', 'id'])
    .select<Array<{ record: number | null; code: string; message: string }>>('record', 'code', 'message');
}

async function chunks(deps: Deps, fileId: number) {
  return deps.db('ingest_chunks').where('file_id', fileId).orderBy('chunk')
    .select<Array<{ chunk: number; first_record: number; records: number; start_line: number; status: string; claimed_by: string | null; attempts: number }>>(
      'chunk', 'first_record', 'records', 'start_line', 'status', 'claimed_by', 'attempts');
}

async function expectInvariants(deps: Deps): Promise<void> {
  const violations = await findInvariantViolations(deps.db);
  expect(violations).toEqual(Object.fromEntries(Object.keys(violations).map((k) => [k, []])));
}

describe('a file in chunks, through the use cases', () => {
  let ctx: TestContext;
  let deps: Deps;

  beforeAll(async () => {
    ctx = await createTestContext({ env: { INGEST_CHUNK_ROWS: '4', INGEST_CHUNK_LEASE_MS: '1500' } });
    deps = ctx.deps;
    await importDemoPartnerships(deps);
  });
  afterAll(async () => {
    await ctx?.close();
  });

  it('plans chunks at record boundaries, never inside a quoted line break, and reports rows done of total as it goes', async () => {
    const fileId = await receive(deps, 'planned.csv', csv(rows('PL', 18)));
    const seen: Array<[number, number]> = [];
    expect(await ingestFile(deps, fileId, (done, total) => seen.push([done, total]))).toEqual({ kind: 'parsed', fileId, read: 18, accepted: 18, rejected: 0, duplicate: 0 });

    // 18 rows in chunks of 4: records 1, 5, 9, 13, 17; lines count the quoted line breaks (one every third row).
    expect((await chunks(deps, fileId)).map((c) => [c.chunk, c.first_record, c.records, c.start_line, c.status])).toEqual([
      [1, 1, 4, 1, 'committed'],
      [2, 5, 4, 7, 'committed'],
      [3, 9, 4, 12, 'committed'],
      [4, 13, 4, 18, 'committed'],
      [5, 17, 2, 23, 'committed'],
    ]);
    // Every row read as a single pass would: record k on line k + 1 + the quoted breaks before it.
    expect((await usagesOf(deps, fileId)).map((u) => [u.external_id, u.source_record, u.source_line])).toEqual(
      Array.from({ length: 18 }, (_, i) => [`PL-${i + 1}`, i + 1, i + 2 + Math.floor(i / 3)]),
    );
    // Progress only grows, and ends at the whole file.
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.every(([, total]) => total === 18)).toBe(true);
    expect(seen.map(([done]) => done)).toEqual([...seen.map(([done]) => done)].sort((a, b) => a - b));
    expect(await fileRow(deps, fileId)).toMatchObject({ records_committed: 18 });

    const app = createApp(deps);
    const res = await app.request(`/files/${fileId}`, { headers: { Authorization: `Bearer ${TEST_TOKEN}` } });
    expect(((await res.json()) as { progress: unknown }).progress).toEqual({ recordsCommitted: 18, recordsTotal: 18, chunksCommitted: 5, chunksTotal: 5 });
  });

  it('shows partial progress while a file is being read, and resumes after a crash at the first chunk not committed', async () => {
    const fileId = await receive(deps, 'resumed.csv', csv(rows('RS', 10)));
    const crash = new Error('worker killed after its first commit');
    await expect(ingestFile(deps, fileId, () => { throw crash; })).rejects.toBe(crash);

    const app = createApp(deps);
    const during = (await (await app.request(`/files/${fileId}`, { headers: { Authorization: `Bearer ${TEST_TOKEN}` } })).json()) as { status: string; progress: unknown };
    expect(during).toMatchObject({ status: 'parsing', progress: { recordsCommitted: 4, recordsTotal: 10, chunksCommitted: 1, chunksTotal: 3 } });

    expect(await ingestFile(deps, fileId)).toEqual({ kind: 'parsed', fileId, read: 10, accepted: 10, rejected: 0, duplicate: 0 });
    expect((await usagesOf(deps, fileId)).map((u) => u.external_id)).toEqual(Array.from({ length: 10 }, (_, i) => `RS-${i + 1}`));
    expect((await chunks(deps, fileId)).map((c) => c.status)).toEqual(['committed', 'committed', 'committed']);
  });

  it("takes over a chunk whose worker died holding it, once the worker's claim has run out", async () => {
    const fileId = await receive(deps, 'orphaned.csv', csv(rows('OR', 12)));
    const crash = new Error('killed');
    await expect(ingestFile(deps, fileId, () => { throw crash; })).rejects.toBe(crash);
    // A worker on another machine claimed chunk 2 and died: its claim stays until it runs out.
    await deps.db('ingest_chunks').where({ file_id: fileId, chunk: 2 }).update({ claimed_by: 'elsewhere:4242:dead:1', claimed_until: deps.db.raw(`now() + interval '1 second'`) });

    expect(await ingestFile(deps, fileId)).toEqual({ kind: 'parsed', fileId, read: 12, accepted: 12, rejected: 0, duplicate: 0 });
    const second = (await chunks(deps, fileId))[1]!;
    expect(second.status).toBe('committed');
    expect(second.claimed_by).toContain(`:${process.pid}:`);
    expect((await usagesOf(deps, fileId)).map((u) => u.external_id)).toEqual(Array.from({ length: 12 }, (_, i) => `OR-${i + 1}`));
  });

  it('keeps the first occurrence of a usage id repeated across chunks, whichever chunk is written first', async () => {
    // Chunks of four: X in chunks 1 and 3, Y in chunks 2 and 3 and 4, Z in chunk 4 before its repeat.
    const line = (id: string, q: number) => `${id},CPU_HOUR,r.okafor,${q},2026-10-0${1 + (q % 9)}T09:00:00Z,q${q}`;
    const lines = [
      line('A1', 1), line('X', 2), line('A3', 3), line('A4', 4),
      line('Y', 5), line('A6', 6), line('A7', 7), line('A8', 8),
      line('Y', 9), line('A10', 10), line('X', 11), line('A12', 12),
      line('Z', 13), line('Y', 14), line('Z', 15), line('A16', 16),
    ];
    const fileId = await receive(deps, 'repeats.csv', csv(lines));
    // Two workers at once: four loops, each writing its chunk's rows before its turn to commit.
    const outcomes = await Promise.all([ingestFile(deps, fileId), ingestFile(deps, fileId)]);
    expect(outcomes).toEqual([
      { kind: 'parsed', fileId, read: 16, accepted: 12, rejected: 0, duplicate: 4 },
      { kind: 'parsed', fileId, read: 16, accepted: 12, rejected: 0, duplicate: 4 },
    ]);
    const kept = await usagesOf(deps, fileId);
    expect(kept.filter((u) => ['X', 'Y', 'Z'].includes(u.external_id)).map((u) => [u.external_id, u.source_record, u.quantity])).toEqual([
      ['X', 2, '2'],
      ['Y', 5, '5'],
      ['Z', 13, '13'],
    ]);
    expect((await errorsOf(deps, fileId)).map((e) => [e.record, e.message])).toEqual([
      [9, `usage id "Y" was already received in file ${fileId} (repeats.csv) record 5; not billed again`],
      [11, `usage id "X" was already received in file ${fileId} (repeats.csv) record 2; not billed again`],
      [14, `usage id "Y" was already received in file ${fileId} (repeats.csv) record 5; not billed again`],
      [15, `usage id "Z" was already received in file ${fileId} (repeats.csv) record 13; not billed again`],
    ]);
  });

  it('rejects a file exactly once when two workers race through it and its totals do not add up at the end', async () => {
    await deps.db('partners').where('code', 'JSMITH').update({ feed_profile: JSON.stringify({ csv: { trailer: { marker: 'TOTAL', record_count_column: 'quantity' } } }) });
    try {
      const lines = rows('TT', 9).map((l) => l.replace('r.okafor', 'jsmith').replace('2026-10-', '2026-09-'));
      // The trailer says 8 records (in the quantity column); there are 9. It is on line 14: three rows span two lines.
      const fileId = await receive(deps, 'bad-total.csv', csv([...lines, 'TOTAL,,,8,,']), 'JSMITH');
      const outcomes = await Promise.all([ingestFile(deps, fileId), ingestFile(deps, fileId)]);
      const error = 'bad-total.csv: control total mismatch (line 14): the file declares 8 records, 9 were read';
      expect(outcomes).toEqual([{ kind: 'rejected', fileId, error }, { kind: 'rejected', fileId, error }]);
      expect(await fileRow(deps, fileId)).toMatchObject({ status: 'failed', error, rows_read: 0, records_committed: 0 });
      expect(await errorsOf(deps, fileId)).toEqual([{ record: null, code: 'file_rejected', message: error }]);
      expect(await usagesOf(deps, fileId)).toEqual([]);
    } finally {
      await deps.db('partners').where('code', 'JSMITH').update({ feed_profile: null });
    }
  });
});

/** n XML usages of ACME, one record per four lines plus its start tag's line. */
function xmlUsages(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) =>
    `  <usage id="${prefix}-${i + 1}">\n    <product>CPU_HOUR</product>\n    <user>r.okafor</user>\n    <quantity>${i + 1}</quantity>\n    <start>2026-10-0${1 + (i % 9)}T09:00:00Z</start>\n  </usage>`,
  );
}

function xml(records: string[]): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<usageFeed partner="ACME">\n${records.join('\n')}\n</usageFeed>\n`;
}

/** The message reading the whole file in one piece rejects it with. */
async function wholeFileError(name: string, content: string | Buffer): Promise<string> {
  try {
    for await (const item of xmlAdapter.read(Readable.from([Buffer.from(content)]), { fileName: name })) void item;
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error(`${name} reads without a fault`);
}

describe('a file rejected for a fault in one chunk while the others wait for their turn', () => {
  let ctx: TestContext;
  let deps: Deps;

  beforeAll(async () => {
    ctx = await createTestContext({ env: { INGEST_CHUNK_ROWS: '4', INGEST_CHUNK_LEASE_MS: '3000' } });
    deps = ctx.deps;
    await importDemoPartnerships(deps);
  });
  afterAll(async () => {
    await ctx?.close();
  });

  /** Registers the file and plans its chunks as ingest-file does, without working on any. */
  async function planned(name: string, content: string | Buffer) {
    const fileId = await receive(deps, name, content);
    await deps.db('usage_files').where('id', fileId).update({ status: 'parsing' });
    const file = await deps.db('usage_files').where('id', fileId)
      .first<IngestingFile>('id', 'partner_id', 'partner_code', 'name', 'format', 'status', 'stored_path', 'supersedes_file_id');
    const open = (await openStoredFile(deps, file))!;
    await savePlan(deps.db, fileId, await xmlAdapter.split!(open(0, Number.MAX_SAFE_INTEGER), { fileName: name }, deps.config.ingestChunkRows));
    return { fileId, file, chunks: await chunksOf(deps.db, fileId) };
  }

  /** Whether some transaction holds the partner's ingest lock shared (a chunk between writing its usages and committing). */
  async function partnerLockHeldShared(partnerId: string): Promise<boolean> {
    const { rows } = await deps.db.raw<{ rows: Array<{ held: boolean }> }>(
      `SELECT EXISTS (SELECT 1 FROM pg_locks, (SELECT hashtextextended(?, 0) AS k) key
         WHERE locktype = 'advisory' AND objsubid = 1 AND granted AND mode = 'ShareLock'
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND classid = ((key.k >> 32) & 4294967295)::oid AND objid = (key.k & 4294967295)::oid) AS held`,
      [`ingest-partner:${partnerId}`],
    );
    return rows[0]!.held;
  }

  function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)));
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  it('rejects it, naming the file and line, though a later chunk already holds the partner lock waiting for its turn (it never finished)', async () => {
    // fuzz-ingest seed 20261121 case 33: a second XML declaration inside the second record.
    const records = xmlUsages('DD', 6);
    records[1] = records[1]!.replace('<user>', '<?xml version="1.0" encoding="UTF-8"?>\n    <user>');
    const name = 'declared-twice.xml';
    const content = xml(records);
    const { fileId, file, chunks: plan } = await planned(name, content);
    expect(plan.map((c) => c.records)).toEqual([4, 2]);

    // Two workers: the first claims chunk 1, the second chunk 2, which it reads and writes, and then
    // waits for chunk 1 to commit, holding the partner's ingest lock (shared) as it does.
    const first = (await claimChunk(deps.db, fileId, 'test:first', deps.config.ingestChunkLeaseMs))!;
    const second = (await claimChunk(deps.db, fileId, 'test:second', deps.config.ingestChunkLeaseMs))!;
    expect([first.chunk, second.chunk]).toEqual([1, 2]);
    const waiting = processChunk(deps, { file, chunk: second, chunks: plan, worker: 'test:second' });
    const deadline = Date.now() + 10_000;
    while (!(await partnerLockHeldShared(file.partner_id))) {
      if (Date.now() > deadline) throw new Error('chunk 2 never took the partner lock');
      await new Promise((r) => setTimeout(r, 10));
    }

    // Chunk 1 finds the fault: rejecting the file needs the partner lock exclusively.
    const error = `${name}: line 11: not well-formed XML at column 10: an XML declaration must be at the start of the document.`;
    expect(await wholeFileError(name, content)).toBe(error);
    const rejected = await within(20_000, 'rejecting the file', processChunk(deps, { file, chunk: first, chunks: plan, worker: 'test:first' }));
    expect(rejected).toMatchObject({ kind: 'committed', finish: { kind: 'rejected', error } });
    expect(await within(20_000, 'the waiting chunk', waiting)).toEqual({ kind: 'gone' });
    expect(await fileRow(deps, fileId)).toMatchObject({ status: 'failed', error });
    expect(await usagesOf(deps, fileId)).toEqual([]);
    await expectInvariants(deps);
  });

  it('rejects it for its first fault in file order, as a whole read names it, however it is chunked', async () => {
    // An element not allowed in record 3 (chunk 1), a Latin-1 byte in record 6 (chunk 2).
    const records = xmlUsages('FO', 9);
    records[2] = records[2]!.replace('  <usage id="FO-3">', '  <usage id="FO-3">\n  </usage>\n  <total>9</total>\n  <usage id="FO-3b">');
    const text = xml(records);
    const at = text.indexOf('<user>r.okafor</user>', text.indexOf('FO-6'));
    const content = Buffer.concat([Buffer.from(text.slice(0, at + 8)), Buffer.from([0xa3]), Buffer.from(text.slice(at + 8))]);
    const name = 'two-faults.xml';
    const error = await wholeFileError(name, content);
    expect(error).toBe(`${name}: line 17: unexpected element <total> in <usageFeed>: a feed holds only <usage> records`);
    const fileId = await receive(deps, name, content);
    expect(await ingestFile(deps, fileId)).toEqual({ kind: 'rejected', fileId, error });
    expect((await chunks(deps, fileId)).length).toBeGreaterThan(1);
  });

  it('keeps a CSV row with a NUL character out as a row error naming its line and field, and the good rows (it used to fail the chunk in PostgreSQL)', async () => {
    const lines = rows('NU', 9);
    lines[4] = lines[4]!.replace('run 5', 'run\u00005');
    const fileId = await receive(deps, 'nul.csv', csv(lines));
    expect(await ingestFile(deps, fileId)).toEqual({ kind: 'parsed', fileId, read: 9, accepted: 8, rejected: 1, duplicate: 0 });
    expect(await deps.db('usage_file_errors').where('file_id', fileId).select('record', 'line', 'field', 'code', 'message')).toEqual([
      { record: 5, line: 7, field: 'description', code: 'malformed_row', message: 'description contains a NUL character (byte 0x00), which no value may hold' },
    ]);
    expect((await usagesOf(deps, fileId)).map((u) => u.external_id)).toEqual(['NU-1', 'NU-2', 'NU-3', 'NU-4', 'NU-6', 'NU-7', 'NU-8', 'NU-9']);
  });
});

describe('a usage id reported as a duplicate of a file that is then rejected', () => {
  let ctx: TestContext;
  let deps: Deps;

  beforeAll(async () => {
    ctx = await createTestContext({ env: { INGEST_CHUNK_ROWS: '2' } });
    deps = ctx.deps;
    await importDemoPartnerships(deps);
    // ACME's files are refused when more than a quarter of their rows are bad.
    await deps.db('partners').where('code', 'ACME').update({ feed_profile: JSON.stringify({ max_error_rate: '0.25' }) });
  });
  afterAll(async () => {
    await ctx?.close();
  });

  /** A file whose first chunk holds the usage DUP-1 and whose later rows are mostly bad: rejected at the end. */
  const doomed = (name: string) =>
    csv([
      `DUP-1,CPU_HOUR,r.okafor,10,2026-10-05T09:00:00Z,from ${name}`,
      `${name}-2,CPU_HOUR,r.okafor,1,2026-10-05T10:00:00Z,ok`,
      `${name}-3,CPU_HOUR,r.okafor,1e3,2026-10-05T11:00:00Z,bad`,
      `${name}-4,CPU_HOUR,r.okafor,1e3,2026-10-05T12:00:00Z,bad`,
    ]);

  it('bills the row in the other file instead, and says so in its counts and errors (the other file already rated)', async () => {
    const a = await receive(deps, 'a.csv', doomed('A'));
    // A commits its first chunk (DUP-1 becomes A's usage) and is interrupted.
    await expect(ingestFile(deps, a, () => { throw new Error('interrupted'); })).rejects.toThrow('interrupted');

    // Meanwhile B, with the same usage id, is ingested and rated: DUP-1 is reported as A's duplicate.
    const b = await receive(deps, 'b.csv', csv([`DUP-1,CPU_HOUR,r.okafor,10,2026-10-05T09:00:00Z,from B`, `B-2,CPU_HOUR,r.okafor,2,2026-10-06T09:00:00Z,ok`]));
    expect(await ingestFile(deps, b)).toEqual({ kind: 'parsed', fileId: b, read: 2, accepted: 1, rejected: 0, duplicate: 1 });
    expect(await errorsOf(deps, b)).toEqual([
      { record: 1, code: 'duplicate_usage', message: `usage id "DUP-1" was already received in file ${a} (a.csv) record 1; not billed again` },
    ]);
    // And C too, later: a repeat of the same id.
    const c = await receive(deps, 'c.csv', csv([`DUP-1,CPU_HOUR,r.okafor,10,2026-10-05T09:00:00Z,from C`]));
    expect(await ingestFile(deps, c)).toEqual({ kind: 'parsed', fileId: c, read: 1, accepted: 0, rejected: 0, duplicate: 1 });
    expect((await rateFile(deps, b)).kind).toBe('rated');
    expect((await rateFile(deps, c)).kind).toBe('rated');

    // A resumes, and is rejected for its error rate: its usages go, and B's row takes DUP-1's place.
    const error = 'a.csv: 2 of 4 rows have errors, above the partner\'s limit of 0.25';
    expect(await ingestFile(deps, a)).toEqual({ kind: 'rejected', fileId: a, error });
    expect(await usagesOf(deps, a)).toEqual([]);
    expect((await usagesOf(deps, b)).map((u) => [u.external_id, u.source_record])).toEqual([['DUP-1', 1], ['B-2', 2]]);
    expect(counts(await fileRow(deps, b))).toEqual({ status: 'parsed', read: 2, accepted: 2, rejected: 0, duplicate: 0, committed: 2 });
    expect(await errorsOf(deps, b)).toEqual([]);
    // C's repeat now points at B's row, which is where DUP-1 is billed.
    expect(await errorsOf(deps, c)).toEqual([
      { record: 1, code: 'duplicate_usage', message: `usage id "DUP-1" was already received in file ${b} (b.csv) record 1; not billed again` },
    ]);
    expect(await deps.db('held_duplicate_rows').count<{ count: string }[]>('* as count')).toEqual([{ count: '0' }]);

    // B went back to parsed, with a rating job queued, so the promoted row is billed.
    const job = await deps.queues.get('rate-file').getJob(`rate-file-${b}-after-${a}`);
    expect(job?.data).toEqual({ fileId: b });
    expect(await rateFile(deps, b)).toMatchObject({ kind: 'rated', usages: 1 });
    const billed = await deps.db('billing_records as r').join('product_usages as u', 'u.id', 'r.usage_id').where('u.external_id', 'DUP-1')
      .select<Array<{ source_file_id: string }>>('u.source_file_id');
    expect(billed.map((r) => Number(r.source_file_id))).toEqual([b]);
    await expectInvariants(deps);
  });

  it('promotes the row into a file that is itself still being ingested, which then finishes with it', async () => {
    const a = await receive(deps, 'a2.csv', doomed('A2').replaceAll('DUP-1', 'DUP-2'));
    await expect(ingestFile(deps, a, () => { throw new Error('interrupted'); })).rejects.toThrow('interrupted');
    const b = await receive(deps, 'b2.csv', csv([
      `B2-1,CPU_HOUR,r.okafor,1,2026-10-07T09:00:00Z,ok`,
      `DUP-2,CPU_HOUR,r.okafor,3,2026-10-07T10:00:00Z,from B2`,
      `B2-3,CPU_HOUR,r.okafor,1,2026-10-07T11:00:00Z,ok`,
    ]));
    // B2 stops after its first chunk (records 1 and 2), where DUP-2 was held as A2's duplicate.
    await expect(ingestFile(deps, b, () => { throw new Error('interrupted'); })).rejects.toThrow('interrupted');
    expect(counts(await fileRow(deps, b))).toEqual({ status: 'parsing', read: 2, accepted: 1, rejected: 0, duplicate: 1, committed: 2 });

    expect(await ingestFile(deps, a)).toMatchObject({ kind: 'rejected', fileId: a });
    expect(counts(await fileRow(deps, b))).toEqual({ status: 'parsing', read: 2, accepted: 2, rejected: 0, duplicate: 0, committed: 2 });
    expect(await ingestFile(deps, b)).toEqual({ kind: 'parsed', fileId: b, read: 3, accepted: 3, rejected: 0, duplicate: 0 });
    expect((await usagesOf(deps, b)).map((u) => [u.external_id, u.quantity])).toEqual([['B2-1', '1'], ['DUP-2', '3'], ['B2-3', '1']]);
    expect((await rateFile(deps, b)).kind).toBe('rated');
    await expectInvariants(deps);
  });
});

describe('two worker processes sharing one file', () => {
  let ctx: TestContext;
  let deps: Deps;
  let child: ChildProcess | undefined;
  const output: string[] = [];

  beforeAll(async () => {
    ctx = await createTestContext({ env: { INGEST_CHUNK_ROWS: '3', INGEST_CHUNK_LEASE_MS: '3000' } });
    deps = ctx.deps;
    await importDemoPartnerships(deps);
  });
  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await ctx?.close();
  });

  /** `billing worker` in a process of its own, on this test's database, queues and inbox. */
  function startChildWorker(): ChildProcess {
    const env = {
      ...process.env,
      DATABASE_URL: ctx.databaseUrl,
      REDIS_URL: deps.config.redisUrl,
      QUEUE_PREFIX: deps.config.queuePrefix,
      INBOX_DIR: ctx.inboxDir,
      OUTBOX_DIR: ctx.outboxDir,
      INBOX_SETTLE_MS: '0',
      LOG_LEVEL: 'warn',
      INGEST_CHUNK_ROWS: '3',
      INGEST_CHUNK_LEASE_MS: '3000',
    };
    const p = spawn(process.execPath, [path.join(REPO, 'bin', 'billing.js'), 'worker'], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout?.on('data', (b: Buffer) => output.push(b.toString()));
    p.stderr?.on('data', (b: Buffer) => output.push(b.toString()));
    return p;
  }

  /** Waits (polling PostgreSQL, with a deadline) until `check` holds. */
  async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}; child worker said:\n${output.join('').slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('lets both claim chunks; when one is killed in the middle of a chunk, the other takes it over and every row lands once', async () => {
    child = startChildWorker();
    const childPid = child.pid!;
    // The child is ready once it has run the reconcile job it queues at start.
    await until('the child worker is ready', async () => ((await deps.queues.get('reconcile').getJobCounts('completed')).completed ?? 0) > 0);
    ctx.workers();

    // Hold every chunk at its commit: a chunk commit takes the partner's ingest lock (shared), so
    // holding it exclusively here lets the workers claim and read chunks but not commit them.
    const partner = await deps.db('partners').where('code', 'ACME').first<{ id: string }>('id');
    const holder = new pg.Client({ connectionString: ctx.databaseUrl });
    await holder.connect();
    await holder.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [`ingest-partner:${partner.id}`]);
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      await holder.end();
    };
    try {
      await dropSettled(deps, 'ACME', 'shared.csv', csv(rows('SH', 30)));
      await deps.queues.enqueue('inbox-scan', {});
      const file = async () => deps.db('usage_files').where('name', 'shared.csv').first<{ id: string; status: string } | undefined>('id', 'status');
      await until('the file is planned', async () => (await file())?.status === 'parsing' && (await chunks(deps, Number((await file())!.id))).length === 10);
      const fileId = Number((await file())!.id);
      const claimedBy = async (pid: number) => (await chunks(deps, fileId)).filter((c) => c.status === 'pending' && c.claimed_by?.includes(`:${pid}:`));
      await until('both processes hold chunks', async () => (await claimedBy(childPid)).length > 0 && (await claimedBy(process.pid)).length > 0);
      const killed = (await claimedBy(childPid)).map((c) => c.chunk);

      // Killed in the middle of its chunk: read and staged, not committed.
      child.kill('SIGKILL');
      await new Promise((resolve) => child!.once('exit', resolve));
      await release();

      await waitUntilSettled(deps, ['ingest-file', 'ingest-chunk', 'rate-file'], () => pipelineIsIdle(deps), 120_000);
      expect(counts(await fileRow(deps, fileId))).toEqual({ status: 'rated', read: 30, accepted: 30, rejected: 0, duplicate: 0, committed: 30 });
      expect((await usagesOf(deps, fileId)).map((u) => u.external_id)).toEqual(Array.from({ length: 30 }, (_, i) => `SH-${i + 1}`));
      const after = await chunks(deps, fileId);
      expect(after.every((c) => c.status === 'committed')).toBe(true);
      // The dead worker's chunks were claimed again and committed by this process.
      for (const n of killed) {
        const c = after.find((x) => x.chunk === n)!;
        expect(c.attempts).toBeGreaterThanOrEqual(2);
        expect(c.claimed_by).toContain(`:${process.pid}:`);
      }
      await expectInvariants(deps);
    } finally {
      await release();
    }
  });
});
