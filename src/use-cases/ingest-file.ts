import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Knex } from 'knex';
import { adapterForFormat } from '../../adapters/formats/registry';
import { FeedFileError, type FeedSplit } from '../../adapters/formats/types';
import { type ChunkRow, chunksOf, claimChunk, hasClaimableChunk, savePlan } from '../../adapters/db/ingest-chunks';
import { DEFAULT_FEED_PROFILE, type FeedProfile, feedProfileSchema } from '../core/feed-profile';
import type { Deps } from '../deps';
import { PermanentError } from './errors';
import { type Finish, type IngestingFile, afterFinish, lockPartnerIngest, moveStoredFile, rejectFile, safeText } from './finish-file';
import { type ChunkResult, finishInOwnTransaction, openStoredFile, processChunk } from './ingest-chunk';
import { resolveSupersession } from './supersede';

export type { IngestingFile } from './finish-file';

export type IngestOutcome =
  | { kind: 'parsed'; fileId: number; read: number; accepted: number; rejected: number; duplicate: number }
  | { kind: 'rejected'; fileId: number; error: string }
  | { kind: 'skipped'; fileId: number; status: string };

/** Rows done of rows in the file (the pre-pass's count), for progress lines. */
export type IngestProgress = (done: number, total: number) => void;

// Each chunk-working loop claims chunks under its own name, so that two loops of one process (an
// ingest-file job and an ingest-chunk job) never take each other's claims for their own.
const PROCESS = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
let loops = 0;
const claimant = () => `${PROCESS}:${(loops += 1)}`;

/** Helper jobs queued per file at most: each works through chunks until none is left to claim. */
const MAX_HELPERS = 64;
/** How often a worker that has nothing left to claim looks at whether the file has finished. */
const WAIT_POLL_MS = 100;

const FILE_COLUMNS = ['id', 'partner_id', 'partner_code', 'name', 'format', 'status', 'stored_path', 'supersedes_file_id'];

/**
 * Ingests a claimed file: the `ingest-file` job. Reads the file once quickly to plan it (chunks of
 * INGEST_CHUNK_ROWS records, by byte ranges that respect quoting and XML records), queues helper
 * jobs so that other workers share the chunks, and works through chunks itself until none is left
 * to claim; then waits for the chunks others hold, and returns how the file ended. Whoever commits
 * the last chunk finishes the file (control totals, error rate, correction applied, or the file
 * rejected and its usages removed), in the same transaction, so that happens exactly once.
 * A crash resumes at the first chunk not committed: committed chunks stay committed.
 */
export async function ingestFile(deps: Deps, fileId: number, onProgress?: IngestProgress): Promise<IngestOutcome> {
  const { db } = deps;
  const file = await startParsing(db, fileId);
  if (!file) return skipped(deps, fileId);

  const plan = await planFile(deps, file);
  if (plan.kind === 'rejected') return plan;
  await queueHelpers(deps, fileId, plan.chunks);

  return workUntilFinished(deps, file, plan.chunks, 2, onProgress);
}

/**
 * An `ingest-chunk` job: helps with a file being ingested, working through its chunks (each loop
 * takes the lowest chunk free) until the file has finished. The chunk number in the payload only
 * tells helper jobs apart.
 */
export async function ingestFileChunks(deps: Deps, fileId: number): Promise<IngestOutcome> {
  const file = await deps.db('usage_files').where('id', fileId).first<IngestingFile | undefined>(FILE_COLUMNS);
  if (!file) throw new PermanentError(`file ${fileId} does not exist`);
  if (file.status !== 'parsing') return { kind: 'skipped', fileId, status: file.status };
  const chunks = await chunksOf(deps.db, fileId);
  if (chunks.length === 0) return { kind: 'skipped', fileId, status: 'parsing, not planned yet' };
  return workUntilFinished(deps, file, chunks, 1);
}

/**
 * Works through the file's chunks with `loops` loops until none is left to claim, then waits for
 * the chunks other workers hold (taking over any whose worker died, once its claim runs out) until
 * the file has finished; returns how it ended.
 */
async function workUntilFinished(deps: Deps, file: IngestingFile, chunks: readonly ChunkRow[], loops: number, onProgress?: IngestProgress): Promise<IngestOutcome> {
  const { db } = deps;
  const fileId = Number(file.id);
  const report = onProgress ? () => reportProgress(deps, fileId, onProgress) : undefined;
  for (;;) {
    const outcome = await workOnChunksSideBySide(deps, file, chunks, loops, report);
    if (outcome) return outcome;
    // Nothing left to claim: other workers hold the remaining chunks. The file finishes when the last
    // of them commits; a chunk whose worker died is claimable again once its claim runs out.
    let seen = -1;
    for (;;) {
      const row = await db('usage_files').where('id', fileId).first<{ status: string; records_committed: number; records_total: number | null; chunks_committed: number; chunks_total: number | null }>(
        'status', 'records_committed', 'records_total', 'chunks_committed', 'chunks_total',
      );
      if (row.status !== 'parsing') return outcomeOf(deps, file);
      if (row.chunks_committed === row.chunks_total) {
        // Every chunk is in, but the worker that committed the last one died before finishing the file.
        const profile = await profileOf(deps, file);
        const finish = await finishInOwnTransaction(deps, file, profile, await resolveSupersession(db, file, profile));
        if (finish) return finished(deps, file, finish);
        continue;
      }
      if (onProgress && row.records_committed !== seen) onProgress((seen = row.records_committed), row.records_total ?? row.records_committed);
      if (await hasClaimableChunk(db, fileId)) break;
      await sleep(WAIT_POLL_MS);
    }
  }
}

/**
 * Loops over the file's chunks side by side: with two, one chunk's rows are read and checked in
 * JavaScript while the database writes the one before, so the two halves of the work use both
 * cores. If one fails, the others stop before their next commit and the failure is what this returns.
 */
async function workOnChunksSideBySide(
  deps: Deps,
  file: IngestingFile,
  chunks: readonly ChunkRow[],
  count: number,
  onCommitted?: () => unknown,
): Promise<IngestOutcome | undefined> {
  // When a loop fails at a chunk (or right after committing it), the others give up the chunks after
  // it, as a crash there would lose them, and finish those before it.
  const stop = { after: Infinity };
  const gate = new CommitGate();
  const loops = Array.from({ length: count }, () => workOnChunks(deps, file, chunks, gate, stop, onCommitted));
  const settled = await Promise.allSettled(loops);
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
  for (const s of settled) if (s.status === 'fulfilled' && s.value !== undefined) return s.value;
  return undefined;
}

/**
 * Claims and processes chunks, lowest first, until none is left to claim (or `stop` says a loop failed).
 * Returns the file's outcome if this loop finished it (or found it finished), else undefined.
 */
async function workOnChunks(
  deps: Deps,
  file: IngestingFile,
  chunks: readonly ChunkRow[],
  gate: CommitGate,
  stop: { after: number },
  onCommitted?: () => unknown,
): Promise<IngestOutcome | undefined> {
  const worker = claimant();
  const fileId = Number(file.id);
  for (;;) {
    if (stop.after !== Infinity) return undefined;
    const chunk = await claimChunk(deps.db, fileId, worker, deps.config.ingestChunkLeaseMs);
    if (!chunk) return undefined;
    const pass = gate.pass();
    let result: ChunkResult;
    try {
      result = await processChunk(deps, { file, chunk, chunks, worker, beforeCommit: pass.enter, stopped: () => chunk.chunk > stop.after });
      if (result.kind === 'committed') {
        const outcome = result.finish ? await finished(deps, file, result.finish) : undefined;
        if (result.finish?.kind !== 'rejected') await onCommitted?.();
        if (outcome) return outcome;
      }
    } catch (error) {
      stop.after = Math.min(stop.after, chunk.chunk);
      throw error;
    } finally {
      pass.leave();
    }
    if (result.kind === 'gone') {
      const status = await deps.db('usage_files').where('id', fileId).first<{ status: string }>('status');
      if (status.status !== 'parsing') return outcomeOf(deps, file);
    }
    // 'stalled': the chunk before was abandoned; the next claim is that one (lowest first).
  }
}

/**
 * Lets one loop of a worker at a time commit a chunk and report it, so that what follows a commit
 * (the progress callback, which may fail) happens before any other commit of this worker: a worker
 * that fails after a commit stops with exactly that chunk committed, as a crash there would.
 * Commits of one file are one after the other in the database anyway.
 */
class CommitGate {
  private tail: Promise<void> = Promise.resolve();

  pass(): { enter: () => Promise<void>; leave: () => void } {
    let leave: () => void = () => undefined;
    let entered = false;
    return {
      enter: async () => {
        entered = true;
        const before = this.tail;
        this.tail = new Promise<void>((resolve) => (leave = resolve));
        await before;
      },
      leave: () => {
        if (entered) leave();
      },
    };
  }
}

async function finished(deps: Deps, file: IngestingFile, finish: Finish): Promise<IngestOutcome> {
  const fileId = Number(file.id);
  await afterFinish(deps, file, finish);
  if (finish.kind === 'rejected') {
    deps.logger.warn({ fileId, partner: file.partner_code }, `file rejected: ${finish.error}`);
    return { kind: 'rejected', fileId, error: finish.error };
  }
  const c = finish.counts;
  deps.logger.info({ fileId, partner: file.partner_code, ...c }, 'file parsed');
  return { kind: 'parsed', fileId, read: c.rows_read, accepted: c.rows_accepted, rejected: c.rows_rejected, duplicate: c.rows_duplicate };
}

/** The outcome of a file another worker finished; the steps after finishing are repeated (they are idempotent). */
async function outcomeOf(deps: Deps, file: IngestingFile): Promise<IngestOutcome> {
  const row = await deps.db('usage_files').where('id', file.id).first<{ status: string; error: string | null; stored_path: string; rows_read: number; rows_accepted: number; rows_rejected: number; rows_duplicate: number }>(
    'status', 'error', 'stored_path', 'rows_read', 'rows_accepted', 'rows_rejected', 'rows_duplicate',
  );
  const current = { ...file, stored_path: row.stored_path };
  if (row.status === 'failed') {
    await afterFinish(deps, current, { kind: 'rejected', error: row.error ?? '', rerate: [] });
    return { kind: 'rejected', fileId: Number(file.id), error: row.error ?? '' };
  }
  if (row.status === 'parsed') await afterFinish(deps, current, { kind: 'parsed', counts: row });
  else await moveStoredFile(deps, current, 'archive');
  return { kind: 'parsed', fileId: Number(file.id), read: row.rows_read, accepted: row.rows_accepted, rejected: row.rows_rejected, duplicate: row.rows_duplicate };
}

/**
 * Asked to ingest a file that is not waiting for it. One that was ingested (perhaps by the helpers of
 * an earlier attempt of this very job, which then failed) answers with its counts, as the attempt
 * that finished it would have; any other (failed, a duplicate) is skipped.
 */
async function skipped(deps: Deps, fileId: number): Promise<IngestOutcome> {
  const row = await deps.db('usage_files').where('id', fileId).first<(IngestingFile & { status: string }) | undefined>(FILE_COLUMNS);
  if (!row) throw new PermanentError(`file ${fileId} does not exist`);
  if (!['parsed', 'rated', 'superseded'].includes(row.status)) return { kind: 'skipped', fileId, status: row.status };
  // The steps after finishing are repeated in case the worker that finished it died before them.
  return outcomeOf(deps, row);
}

async function startParsing(db: Knex, fileId: number): Promise<IngestingFile | undefined> {
  const rows = await db('usage_files')
    .where('id', fileId)
    .whereIn('status', ['received', 'parsing'])
    .update({ status: 'parsing', parse_started_at: db.raw('coalesce(parse_started_at, now())'), updated_at: db.fn.now() })
    .returning<IngestingFile[]>(FILE_COLUMNS);
  return rows[0];
}

async function profileOf(deps: Deps, file: IngestingFile): Promise<FeedProfile> {
  const partner = await deps.db('partners').where('id', file.partner_id).first<{ feed_profile: unknown }>('feed_profile');
  return partner.feed_profile ? feedProfileSchema.parse(partner.feed_profile) : DEFAULT_FEED_PROFILE;
}

/**
 * The file's chunks: planned once, by a streaming pre-pass over the file (record boundaries and the
 * number of records, which progress counts towards). A file that is wrong before any row can be read
 * (missing, declaring another partner, not even well-formed at its root) is rejected here.
 */
async function planFile(deps: Deps, file: IngestingFile): Promise<{ kind: 'planned'; chunks: ChunkRow[] } | Extract<IngestOutcome, { kind: 'rejected' }>> {
  const { db, config } = deps;
  const fileId = Number(file.id);
  const existing = await chunksOf(db, fileId);
  if (existing.length > 0) return { kind: 'planned', chunks: existing };

  const open = await openStoredFile(deps, file);
  if (!open) return rejectBeforeReading(deps, file, `the stored file ${file.stored_path} is missing from the inbox`);
  const profile = await profileOf(deps, file);
  // A correction waits (retryably) until the file it corrects is rated, before anything is read.
  await resolveSupersession(db, file, profile);
  const adapter = adapterForFormat(file.format);
  const readCtx = { fileName: file.name, profile, maxRecordChars: config.limits.maxRecordChars };
  const whole = Number.MAX_SAFE_INTEGER;
  try {
    if (adapter.sniff) {
      const header = await adapter.sniff(open(0, whole), readCtx);
      if (header.partner !== undefined && header.partner !== file.partner_code) {
        throw new FeedFileError(file.name, `the feed declares partner "${header.partner}" but was received for partner "${file.partner_code}"`);
      }
    }
  } catch (error) {
    if (error instanceof FeedFileError) return rejectBeforeReading(deps, file, error.message);
    throw error;
  }
  const split: FeedSplit =
    adapter.split && adapter.readRange
      ? await adapter.split(open(0, whole), readCtx, config.ingestChunkRows)
      : { prefix: undefined, ranges: [{ startByte: 0, endByte: whole, firstRecord: 1, records: 0, startLine: 1 }], records: 0 };
  await savePlan(db, fileId, split);
  return { kind: 'planned', chunks: await chunksOf(db, fileId) };
}

/** Queues jobs for other workers to help with the file's chunks (each job works until none is left). */
async function queueHelpers(deps: Deps, fileId: number, chunks: readonly ChunkRow[]): Promise<void> {
  const pending = chunks.filter((c) => c.status === 'pending').slice(1, MAX_HELPERS + 1);
  for (const c of pending) await deps.queues.enqueue('ingest-chunk', { fileId, chunk: c.chunk });
}

async function rejectBeforeReading(deps: Deps, file: IngestingFile, reason: string): Promise<Extract<IngestOutcome, { kind: 'rejected' }>> {
  const error = safeText(reason);
  const reject = () =>
    deps.db.transaction(async (tx) => {
      await lockPartnerIngest(tx, file.partner_id, 'exclusive');
      const locked = await tx('usage_files').where('id', file.id).forNoKeyUpdate().first<{ status: string }>('status');
      if (locked.status !== 'parsing') return undefined;
      return rejectFile(tx, file, error);
    });
  let rerate: number[] | undefined;
  for (let attempt = 1; ; attempt += 1) {
    try {
      rerate = await reject();
      break;
    } catch (err) {
      // The database broke a lock cycle with this transaction (the exclusive lock waits for chunks of other files): again.
      if ((err as { code?: string } | null)?.code !== '40P01' || attempt >= 10) throw err;
      await sleep(5 * attempt);
    }
  }
  if (rerate === undefined) {
    const outcome = await outcomeOf(deps, file);
    if (outcome.kind === 'rejected') return outcome;
    throw new Error(`file ${file.id} finished while it was being rejected`);
  }
  return (await finished(deps, file, { kind: 'rejected', error, rerate })) as Extract<IngestOutcome, { kind: 'rejected' }>;
}

async function reportProgress(deps: Deps, fileId: number, onProgress: IngestProgress): Promise<void> {
  const row = await deps.db('usage_files').where('id', fileId).first<{ records_committed: number; records_total: number | null }>('records_committed', 'records_total');
  onProgress(row.records_committed, row.records_total ?? row.records_committed);
}
