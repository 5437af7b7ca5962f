import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importPartnerships, readImportFile } from '../src/use-cases/import-partnerships';
import { waitUntilSettled } from '../src/use-cases/wait-for-pipeline';
import { dropSettled } from './support/inbox-drops';
import { findInvariantViolations } from './support/invariants';
import {
  FIXTURES_DIR,
  FUZZ_MAX_RECORD_CHARS,
  type Mutation,
  describeMutation,
  distinctUsageIds,
  fuzzSeed,
  loadFixtureFeeds,
  mutate,
} from './support/feed-mutations';
import { type TestContext, createTestContext } from './support/test-context';

/**
 * Bad input through the whole ingest (reliability cases 3-15 and 29 under fuzzing): a few hundred
 * seeded mutations of the fixture feeds are dropped into the inbox of one database, claimed by the
 * real inbox-scan job and ingested and rated by real workers. Every file must end clean or with a
 * clear error naming it, never through a retried infrastructure error, and never half-billed:
 * a rated file has every accepted row as a usage with its billing records, a failed file has no
 * usages at all. FUZZ_DB_CASES sets the number (default 300), FUZZ_SEED replays a seed.
 */

const CASES = Number(process.env.FUZZ_DB_CASES ?? 300);
const SEED = fuzzSeed();
const STALL_MS = 45_000;

interface FileRow {
  id: string;
  name: string;
  partner_code: string;
  status: string;
  error: string | null;
  rows_read: number;
  rows_accepted: number;
  rows_rejected: number;
  rows_duplicate: number;
  duplicate_of_file_id: string | null;
  usages: number;
  unrated: number;
}

describe(`${CASES} mutated feeds through the inbox, the queue and the database (seed ${SEED})`, () => {
  let ctx: TestContext;
  const cases = new Map<string, Mutation>();
  /** Ingest and rating jobs that failed with something other than a permanent error: bad input retried as if infrastructure. */
  const retriedFailures: string[] = [];
  const workerErrors: string[] = [];

  beforeAll(async () => {
    // Three records per chunk (FUZZ_CHUNK_ROWS), so even small files are shared out in several chunks; a small record limit.
    ctx = await createTestContext({ env: { INGEST_CHUNK_ROWS: process.env.FUZZ_CHUNK_ROWS ?? '3', MAX_RECORD_CHARS: String(FUZZ_MAX_RECORD_CHARS) } });
    const partnerships = [path.join(FIXTURES_DIR, 'demo', 'partnerships.yaml')];
    for (const s of await readdir(path.join(FIXTURES_DIR, 'scenarios'))) partnerships.push(path.join(FIXTURES_DIR, 'scenarios', s, 'partnerships.yaml'));
    for (const file of partnerships) await importPartnerships(ctx.deps, await readImportFile(file), 'fuzz');
    const partners = new Set(await ctx.deps.db('partners').pluck<string[]>('code'));
    const feeds = (await loadFixtureFeeds()).filter((f) => partners.has(f.partner));
    expect(feeds.length).toBeGreaterThanOrEqual(8);
    for (let i = 0; i < CASES; i += 1) {
      const m = mutate(feeds, SEED, i, distinctUsageIds);
      const name = `fuzz-${i}-${m.source.name}`;
      cases.set(name, m);
      await dropSettled(ctx.deps, m.source.partner, name, m.bytes);
    }
  });

  afterAll(async () => {
    await ctx?.close();
  }, 120_000);

  it('ends every file rated, rejected with a clear error, or a duplicate; never half-billed, never retried as an infrastructure fault', { timeout: Math.max(180_000, CASES * 1500) }, async () => {
    const { deps } = ctx;
    const running = ctx.workers();
    for (const w of running.workers) {
      w.on('error', (err) => workerErrors.push(`${w.name}: ${err.message}`));
      w.on('failed', (job, err) => {
        if (err.name !== 'UnrecoverableError' && (w.name === 'ingest-file' || w.name === 'ingest-chunk' || w.name === 'rate-file')) {
          retriedFailures.push(`${w.name} ${job?.id} (${JSON.stringify(job?.data)}): ${err.name}: ${err.message}`);
        }
      });
    }
    await deps.queues.get('inbox-scan').add('inbox-scan', {});
    // Settled: every dropped file registered and finished, or stuck behind a failure already recorded.
    // A file that stops moving for STALL_MS with nothing failing is a hang, reported as such.
    let fingerprint = '';
    let lastChange = Date.now();
    await waitUntilSettled(deps, ['inbox-scan', 'ingest-file', 'ingest-chunk', 'rate-file'], async () => {
      const rows = await deps.db('usage_files').orderBy('id').select<{ id: string; status: string; error: string | null; records_committed: number }[]>('id', 'status', 'error', 'records_committed');
      const stuck = new Set(retriedFailures.map((f) => /"fileId":(\d+)/.exec(f)?.[1]));
      const open = rows.filter((r) => !stuck.has(r.id) && (r.status === 'received' || r.status === 'parsing' || (r.status === 'parsed' && r.error === null)));
      const now = JSON.stringify(rows.map((r) => [r.status, r.records_committed]));
      if (now !== fingerprint) [fingerprint, lastChange] = [now, Date.now()];
      if (open.length > 0 && Date.now() - lastChange > STALL_MS) throw new Error(`no file has moved for ${STALL_MS} ms`);
      return rows.length === CASES && open.length === 0;
    }, Math.max(120_000, CASES * 1000)).catch(async (err: unknown) => {
      // What an operator would look at: the unfinished files, the mutations that made them, their chunks.
      const open = await deps.db('usage_files').whereIn('status', ['received', 'parsing', 'parsed']).whereNull('error')
        .select<{ id: string; name: string; status: string; records_committed: number }[]>('id', 'name', 'status', 'records_committed');
      const chunks = await deps.db('ingest_chunks').whereIn('file_id', open.map((o) => o.id)).select<Array<Record<string, unknown>>>('*');
      const described = open.filter((o) => o.status !== 'received').map((o) => `${o.status} file ${o.id}, ${cases.has(o.name) ? describeMutation(cases.get(o.name)!) : o.name}`);
      throw new Error(`${(err as Error).message}: ${open.length} unfinished file(s); not waiting to be started: ${JSON.stringify(described)}; their chunks: ${JSON.stringify(chunks)}; retried failures: ${JSON.stringify(retriedFailures)}`);
    });

    const { rows: files } = await deps.db.raw<{ rows: FileRow[] }>(`
      SELECT f.id, f.name, f.partner_code, f.status, f.error, f.rows_read, f.rows_accepted, f.rows_rejected, f.rows_duplicate, f.duplicate_of_file_id,
             (SELECT count(*)::int FROM product_usages u WHERE u.source_file_id = f.id) AS usages,
             (SELECT count(*)::int FROM product_usages u WHERE u.source_file_id = f.id AND NOT EXISTS (SELECT 1 FROM billing_records r WHERE r.usage_id = u.id)) AS unrated
      FROM usage_files f ORDER BY f.id`);
    const problems: string[] = [];
    const tally: Record<string, number> = {};
    for (const f of files) {
      const m = cases.get(f.name);
      const where = m ? describeMutation(m) : f.name;
      const say = (p: string) => problems.push(`${where}: file ${f.id} ${f.status}: ${p}`);
      const kind = f.status === 'parsed' && f.error ? 'rating refused' : f.status;
      tally[kind] = (tally[kind] ?? 0) + 1;
      switch (kind) {
        case 'rated':
          if (f.usages !== f.rows_accepted) say(`${f.usages} usages stored but ${f.rows_accepted} rows accepted`);
          if (f.unrated > 0) say(`${f.unrated} usages without billing records`);
          if (f.rows_read !== f.rows_accepted + f.rows_rejected + f.rows_duplicate) {
            say(`read ${f.rows_read} != accepted ${f.rows_accepted} + rejected ${f.rows_rejected} + duplicate ${f.rows_duplicate}`);
          }
          break;
        case 'failed':
          if (f.usages > 0) say(`${f.usages} usages left behind by a rejected file`);
          if (!f.error?.includes(f.name)) say(`the error does not name the file: ${f.error}`);
          break;
        case 'duplicate':
          if (f.usages > 0 || f.duplicate_of_file_id === null) say('a duplicate with usages of its own, or of no file');
          break;
        case 'rating refused':
          // Left parsed, visibly, for an operator: the error names the usage by its id in the feed (which
          // may hold spaces), its row id and its record: "usage <external_id> (id N, file record M)".
          if (!/usage .+ \(id \d+, file record \d+\)/.test(f.error ?? '')) say(`the rating error names no usage: ${f.error}`);
          break;
        default:
          say(`not finished (error: ${f.error})`);
      }
    }
    const rowErrors = await deps.db('usage_file_errors as e').join('usage_files as f', 'f.id', 'e.file_id')
      .whereNot('e.code', 'file_rejected').where((q) => void q.whereNull('e.record').orWhereNull('e.line').orWhere('e.message', ''))
      .select<{ name: string; record: number | null; line: number | null; code: string; message: string }[]>('f.name', 'e.record', 'e.line', 'e.code', 'e.message');
    for (const e of rowErrors) problems.push(`${e.name}: row error without its record or line: ${JSON.stringify(e)}`);
    const violations = Object.entries(await findInvariantViolations(deps.db)).filter(([, rows]) => rows.length > 0);

    console.log(`fuzz ingest, seed ${SEED}: ${JSON.stringify(tally)}`);
    const byId = new Map(files.map((f) => [f.id, cases.get(f.name)]));
    const retried = [...new Set(retriedFailures)].map((r) => {
      const m = byId.get(/"fileId":(\d+)/.exec(r)?.[1] ?? '');
      return m ? `${describeMutation(m)}: ${r}` : r;
    });
    expect(retried, 'bad input must fail as UnrecoverableError (or a rejected file), never be retried').toEqual([]);
    expect(workerErrors).toEqual([]);
    expect(problems).toEqual([]);
    expect(violations).toEqual([]);
    expect(tally.rated ?? 0).toBeGreaterThan(0);
    expect(tally.failed ?? 0).toBeGreaterThan(0);
  });
});
