import type { Knex } from 'knex';
import type { ByteRange, FeedRange, FeedSplit } from '../formats/types';
import type { Db } from './database';

/**
 * The ingest_chunks table: a file's plan (byte ranges of whole records), who is working on which
 * chunk (a lease that runs out if the worker dies), and which are committed.
 */

export interface ChunkRow {
  file_id: string;
  chunk: number;
  start_byte: string;
  end_byte: string;
  first_record: number;
  records: number;
  start_line: number;
  prefix_start: string | null;
  prefix_end: string | null;
  status: 'pending' | 'committed';
  claimed_by: string | null;
  attempts: number;
}

/** A chunk as the format adapter reads it. */
export function rangeOf(row: ChunkRow): FeedRange {
  return {
    startByte: Number(row.start_byte),
    endByte: Number(row.end_byte),
    firstRecord: row.first_record,
    records: row.records,
    startLine: row.start_line,
  };
}

export function prefixOf(row: ChunkRow): ByteRange | undefined {
  return row.prefix_start === null || row.prefix_end === null ? undefined : { startByte: Number(row.prefix_start), endByte: Number(row.prefix_end) };
}

/**
 * Records a file's plan once. Two workers that planned the same file at the same time found the
 * same ranges (the pre-pass is deterministic); the second one's rows are no-ops.
 */
export async function savePlan(db: Db, fileId: number, split: FeedSplit): Promise<void> {
  await db.transaction(async (tx) => {
    const { ranges, prefix } = split;
    await tx.raw(
      `INSERT INTO ingest_chunks (file_id, chunk, start_byte, end_byte, first_record, records, start_line, prefix_start, prefix_end)
       SELECT ?, c.chunk, c.start_byte, c.end_byte, c.first_record, c.records, c.start_line, ?, ?
       FROM unnest(?::int[], ?::bigint[], ?::bigint[], ?::int[], ?::int[], ?::int[]) AS c(chunk, start_byte, end_byte, first_record, records, start_line)
       ON CONFLICT (file_id, chunk) DO NOTHING`,
      [
        fileId,
        prefix?.startByte ?? null,
        prefix?.endByte ?? null,
        ranges.map((_, i) => i + 1),
        ranges.map((r) => r.startByte),
        ranges.map((r) => r.endByte),
        ranges.map((r) => r.firstRecord),
        ranges.map((r) => r.records),
        ranges.map((r) => r.startLine),
      ],
    );
    await tx('usage_files')
      .where('id', fileId)
      .whereNull('chunks_total')
      .update({ chunks_total: ranges.length, records_total: split.records, updated_at: tx.fn.now() });
  });
}

export async function chunksOf(db: Db | Knex.Transaction, fileId: number): Promise<ChunkRow[]> {
  return db('ingest_chunks').where('file_id', fileId).orderBy('chunk').select<ChunkRow[]>('*');
}

/**
 * Claims the lowest pending chunk nobody holds (or whose holder's claim ran out). Lowest first, so
 * that chunks commit in order with as little waiting as possible.
 */
export async function claimChunk(db: Db, fileId: number, worker: string, leaseMs: number): Promise<ChunkRow | undefined> {
  const { rows } = await db.raw<{ rows: ChunkRow[] }>(
    `UPDATE ingest_chunks c SET claimed_by = :worker, claimed_until = now() + make_interval(secs => :lease / 1000.0), attempts = c.attempts + 1
     WHERE (c.file_id, c.chunk) = (
       SELECT file_id, chunk FROM ingest_chunks
       WHERE file_id = :fileId AND status = 'pending' AND (claimed_until IS NULL OR claimed_until < now())
       ORDER BY chunk
       LIMIT 1
       FOR UPDATE SKIP LOCKED)
     RETURNING c.*`,
    { worker, lease: leaseMs, fileId },
  );
  return rows[0];
}

/** Keeps a claim alive while the chunk is worked on. False if the claim was lost (taken over after it ran out). */
export async function renewClaim(db: Db, fileId: number, chunk: number, worker: string, leaseMs: number): Promise<boolean> {
  const n = await db('ingest_chunks')
    .where({ file_id: fileId, chunk, claimed_by: worker, status: 'pending' })
    .update({ claimed_until: db.raw('now() + make_interval(secs => ? / 1000.0)', [leaseMs]) });
  return n > 0;
}

/** Gives a claim up at once (after a failure), so that the chunk need not wait for the lease to run out. */
export async function releaseClaim(db: Db, fileId: number, chunk: number, worker: string): Promise<void> {
  await db('ingest_chunks').where({ file_id: fileId, chunk, claimed_by: worker, status: 'pending' }).update({ claimed_until: null, claimed_by: null });
}

/** Whether any chunk of the file could be claimed now. */
export async function hasClaimableChunk(db: Db, fileId: number): Promise<boolean> {
  const row = await db('ingest_chunks')
    .where({ file_id: fileId, status: 'pending' })
    .where((q) => void q.whereNull('claimed_until').orWhere('claimed_until', '<', db.fn.now()))
    .first<{ chunk: number } | undefined>('chunk');
  return row !== undefined;
}

/**
 * Says, for as long as the caller's transaction lasts, that chunk `chunk` of the file is rejecting
 * the file (a whole-file fault was found in it) and is waiting for its turn to do so. The chunks
 * after it, which can never commit now, see this while they wait for their turn and let go of
 * the partner's ingest lock, which the rejection needs exclusively (see rejectingBefore). An
 * advisory lock rather than a row: it is gone with the transaction, whatever becomes of its worker.
 */
export async function markRejecting(tx: Knex.Transaction, fileId: string | number, chunk: number): Promise<void> {
  await tx.raw('SELECT pg_advisory_xact_lock(hashtext(?), ?)', [rejectLockName(fileId), chunk]);
}

/** Whether a chunk of the file before `chunk` is rejecting it (see markRejecting). */
export async function rejectingBefore(db: Db | Knex.Transaction, fileId: string | number, chunk: number): Promise<boolean> {
  // The two-key form of an advisory lock shows in pg_locks as classid (the first key, as an unsigned
  // 32-bit number), objid (the second) and objsubid 2.
  const { rows } = await db.raw<{ rows: Array<{ rejecting: boolean }> }>(
    `SELECT EXISTS (
       SELECT 1 FROM pg_locks
       WHERE locktype = 'advisory' AND granted AND objsubid = 2
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND classid = (hashtext(?)::bigint & 4294967295)::oid AND objid < ?::bigint::oid
     ) AS rejecting`,
    [rejectLockName(fileId), chunk],
  );
  return rows[0]?.rejecting === true;
}

function rejectLockName(fileId: string | number): string {
  return `ingest-reject:${fileId}`;
}
