import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Temporal } from 'temporal-polyfill';
import type { Knex } from 'knex';
import { adapterForFormat } from '../../adapters/formats/registry';
import { FeedFileError, type FeedItem, type RangeToRead } from '../../adapters/formats/types';
import { CopyWriter, copyNumber, copyText } from '../../adapters/db/copy-text';
import { type ChunkRow, markRejecting, prefixOf, rangeOf, rejectingBefore, releaseClaim, renewClaim } from '../../adapters/db/ingest-chunks';
import { loadPartnershipsOfCustomer, loadProducts } from '../../adapters/db/partnership-repository';
import { locateStored, resolveInside } from '../../adapters/inbox/inbox-store';
import { type Decimal, type DecimalParseResult, parseDecimal, toDecimalString } from '../core/decimal';
import { DEFAULT_FEED_PROFILE, type FeedProfile, feedProfileSchema } from '../core/feed-profile';
import { normalizeRow } from '../core/normalize-row';
import type { UtcTimestamp } from '../core/period';
import { type FieldError, type ValidationContext, checkUsage } from '../core/validate-usage';
import type { Deps } from '../deps';
import { PermanentError, RetryableError } from './errors';
import { type ControlTotals, type Finish, type IngestingFile, lockPartnerIngest, markParsed, refusalOf, rejectFile, safeText } from './finish-file';
import { type Supersession, resolveSupersession } from './supersede';

/**
 * One chunk of a file, start to end, by whichever worker claimed it, in one transaction:
 *
 * 1. read: the chunk's byte range is read by the format adapter and every row normalised and
 *    validated; good rows stream into a temporary table with COPY while the file is still being
 *    read (the database takes rows while JavaScript parses the next ones), bad rows are collected;
 * 2. write: set-based SQL moves the rows into product_usages (the costly part, with its indexes and
 *    constraints), side by side with other chunks of the same file;
 * 3. wait for its turn, then commit: chunks commit in file order, so the file ends exactly as if one
 *    worker had read it from start to end (the first occurrence of a usage id in the file wins, a
 *    correction is staged row by row in order, the first error in the file is the one that rejects
 *    it). Usage ids already taken are reported per row as duplicates, the row errors and the file's
 *    counters recorded, and the chunk marked committed.
 *
 * Waiting for the turn is waiting for the previous chunk's transaction to end, on a lock: if a later
 * chunk holds a usage id an earlier one needs (or any such cycle, across files too), PostgreSQL
 * sees the cycle and breaks it, and the chunk that lost starts again. After the last chunk, the
 * file is finished in a transaction of its own. A chunk that finds a whole-file error rejects the
 * file when its turn comes, and says so while it waits (markRejecting): the chunks after it, whose
 * turn will not come, let go of their transactions, and of the partner's lock the rejection needs.
 *
 * A crash anywhere before the commit loses only this chunk's work: its claim runs out and another
 * worker does it again. The commit checks, with the file row locked, that the chunk is still
 * pending and the one before committed, so it takes effect exactly once, in order.
 */

// How far in the future a usage may start (clock skew between upstream and us) and how far back.
const FUTURE_TOLERANCE = Temporal.Duration.from({ hours: 24 });
const EARLIEST_START = Temporal.Instant.from('2000-01-01T00:00:00Z');
/** The shortest and the longest wait between two looks at whether the chunk before has committed. */
const MIN_TURN_POLL_MS = 5;
const MAX_TURN_POLL_MS = 200;
/**
 * How many times a chunk whose transaction the database broke (to end a lock cycle) is tried again
 * at once, keeping its claim, before it is let go. Keeping it matters: a later chunk waiting for this
 * one would otherwise see it unclaimed and let go of its own chunk too, and the two would meet in the
 * same cycle again when both are claimed anew, each time.
 */
const DEADLOCK_RETRIES = 3;
/** How many times a transaction that takes the partner's ingest lock exclusively is tried again after the database broke a lock cycle with it. */
const EXCLUSIVE_RETRIES = 10;

export interface IngestContext extends ValidationContext {
  profile: FeedProfile;
}

export type ChunkResult =
  /** Committed by this worker; `finish` when that finished the file (its last chunk, or a whole-file error that rejected it). */
  | { kind: 'committed'; records: number; finish: Finish | undefined }
  /** Nothing to do any more: the file is no longer being ingested, or another worker committed the chunk. */
  | { kind: 'gone' }
  /** Let go to be claimed again: the chunk before it was abandoned by its worker, or the database broke a lock cycle. */
  | { kind: 'stalled' };

/** What a worker needs to work on one claimed chunk. */
export interface ChunkWork {
  file: IngestingFile;
  chunk: ChunkRow;
  /** Every chunk of the file (for the next one's first line). */
  chunks: readonly ChunkRow[];
  /** The claim's holder, as written in ingest_chunks.claimed_by. */
  worker: string;
  /** True: give the chunk up before committing it (a loop of the same worker failed at an earlier chunk). */
  stopped?: () => boolean;
  /** Awaited once the chunk's turn has come, just before it commits (see CommitGate). */
  beforeCommit?: () => Promise<void>;
}

export async function loadIngestContext(deps: Deps, file: IngestingFile): Promise<IngestContext> {
  const [partnerships, productsByCode, partner] = await Promise.all([
    loadPartnershipsOfCustomer(deps.db, Number(file.partner_id)),
    loadProducts(deps.db),
    deps.db('partners').where('id', file.partner_id).first<{ feed_profile: unknown }>('feed_profile'),
  ]);
  const now = deps.clock.now();
  return {
    profile: partner.feed_profile ? feedProfileSchema.parse(partner.feed_profile) : DEFAULT_FEED_PROFILE,
    partnerCode: file.partner_code,
    partnerships,
    productsByCode,
    latestStart: now.add(FUTURE_TOLERANCE),
    earliestStart: EARLIEST_START,
  };
}

/** Opens byte ranges of the stored file. */
export async function openStoredFile(deps: Deps, file: IngestingFile): Promise<((start: number, end: number) => Readable) | undefined> {
  const relative = await locateStored(deps.config.inboxDir, file.stored_path, file.partner_code, Number(file.id), file.name);
  if (!relative) return undefined;
  const absolute = resolveInside(deps.config.inboxDir, relative);
  return (start, end) => (end <= start ? Readable.from([]) : createReadStream(absolute, { start, end: end - 1, highWaterMark: 64 * 1024 }));
}

/** Reads, stages and commits one claimed chunk. The claim is given up if anything fails. */
export async function processChunk(deps: Deps, work: ChunkWork): Promise<ChunkResult> {
  const { db, config } = deps;
  const { file, chunk, worker } = work;
  const fileId = Number(file.id);
  const leaseMs = config.ingestChunkLeaseMs;
  let leaseLost = false;
  const renewal = setInterval(() => {
    renewClaim(db, fileId, chunk.chunk, worker, leaseMs).then(
      (held) => (leaseLost ||= !held),
      () => undefined, // a missed renewal is retried at the next tick; the lease is three ticks long
    );
  }, Math.max(50, Math.floor(leaseMs / 3)));
  try {
    let outcome = await stageAndCommit(deps, work);
    for (let retry = 1; outcome.kind === 'deadlocked' && retry <= DEADLOCK_RETRIES; retry += 1) outcome = await stageAndCommit(deps, work);
    const result: ChunkResult = outcome.kind === 'deadlocked' ? { kind: 'stalled' } : outcome;
    if (result.kind !== 'committed') await releaseClaim(db, fileId, chunk.chunk, worker);
    return result;
  } catch (error) {
    await releaseClaim(db, fileId, chunk.chunk, worker).catch(() => undefined);
    if (leaseLost) deps.logger.warn({ fileId, chunk: chunk.chunk }, 'chunk lease was lost while it was being worked on');
    throw error;
  } finally {
    clearInterval(renewal);
  }
}

/**
 * What one attempt at a chunk came to: a ChunkResult, or its transaction was broken by the database to
 * end a lock cycle (tried again), or a chunk before it is rejecting the file (waited for, outside).
 */
type Attempt = ChunkResult | { kind: 'deadlocked' } | { kind: 'rejecting' };

/** Thrown inside the chunk's transaction to roll it back and report an outcome that is not a failure. */
class Abandon extends Error {
  constructor(readonly result: Exclude<Attempt, { kind: 'deadlocked' }>) {
    super(result.kind);
  }
}

async function stageAndCommit(deps: Deps, work: ChunkWork): Promise<Exclude<Attempt, { kind: 'rejecting' }>> {
  const { db } = deps;
  const { file, chunk, chunks } = work;
  const open = await openStoredFile(deps, file);
  if (!open) throw new RetryableError(`the stored file ${file.stored_path} of file ${file.id} is missing from the inbox`);
  const ctx = await loadIngestContext(deps, file);
  const supersession = await resolveSupersession(db, file, ctx.profile);
  const last = chunk.chunk === chunks.length;
  const part: RangeToRead = {
    range: rangeOf(chunk),
    prefix: prefixOf(chunk),
    index: chunk.chunk - 1,
    last,
    nextLine: chunks[chunk.chunk]?.start_line,
  };
  const started = performance.now();
  const timings = { stageMs: 0, writeMs: 0, waitMs: 0, commitMs: 0 };
  const lap = (key: keyof typeof timings) => (timings[key] = performance.now() - started - Object.values(timings).reduce((a, b) => a + b, 0));
  let fileError: FeedFileError | undefined;
  let committed: ChunkResult;
  try {
    committed = await db.transaction(async (tx) => {
      // Held until this transaction ends: the next chunk waits for it (see waitForTurn).
      await tx.raw('SELECT pg_advisory_xact_lock(hashtextextended(?, 0))', [chunkLockKey(file.id, chunk.chunk)]);
      const staged = await stage(deps, tx, file, open, part, ctx);
      lap('stageMs');
      if (staged.fileError) {
        fileError = staged.fileError;
        throw new Abandon({ kind: 'gone' });
      }
      if (staged.records !== chunk.records) {
        // Record numbers of later chunks come from the pre-pass: reading must agree with it exactly.
        throw new PermanentError(`file ${file.id} chunk ${chunk.chunk}: the pre-pass counted ${chunk.records} records, reading found ${staged.records}`);
      }
      // Deciding duplicates against other files: not while one of them is being rejected (see lockPartnerIngest).
      await lockPartnerIngest(tx, file.partner_id, 'shared');
      const written = await writeUsages(tx, file, staged, supersession);
      lap('writeMs');
      await waitForTurn(tx, work);
      await work.beforeCommit?.();
      if (work.stopped?.()) throw new Abandon({ kind: 'gone' });
      lap('waitMs');
      return commit(tx, work, staged, written);
    });
  } catch (error) {
    if (error instanceof Abandon && fileError !== undefined) return rejectInTurn(deps, work, fileError);
    if (error instanceof Abandon) return error.result.kind === 'rejecting' ? untilRejectionSettles(deps, work) : error.result;
    // The database broke a lock cycle by failing this transaction: try again (see DEADLOCK_RETRIES).
    if (isDeadlock(error)) return { kind: 'deadlocked' };
    // The file finished meanwhile (rejected for an earlier chunk's fault, its stored file moved away
    // while this one was reading it): nothing is left to do, and nothing failed.
    const now = await db('usage_files').where('id', file.id).first<{ status: string } | undefined>('status').catch(() => undefined);
    if (now !== undefined && now.status !== 'parsing') return { kind: 'gone' };
    // A failure surfaces in file order, as it would if one worker read the file from start to end:
    // the chunks before this one commit first, and a retry resumes after them.
    await untilPredecessorSettles(deps, work);
    throw error;
  }
  lap('commitMs');
  deps.logger.debug({ fileId: Number(file.id), chunk: chunk.chunk, records: chunk.records, ...roundAll(timings) }, 'chunk committed');
  if (!last || committed.kind !== 'committed') return committed;
  return { ...committed, finish: await finishInOwnTransaction(deps, file, ctx.profile, supersession) };
}

/** The lock a chunk's transaction holds, and the next chunk waits on. */
function chunkLockKey(fileId: string, chunk: number): string {
  return `ingest-chunk:${fileId}:${chunk}`;
}

function isDeadlock(error: unknown): boolean {
  return (error as { code?: string } | null)?.code === '40P01';
}

/**
 * The file's last chunk has committed: finish it. The whole-file checks decide; a file that passes
 * is marked parsed (a correction applied with it); one refused is rejected, with the partner's
 * ingest lock held exclusively (see lockPartnerIngest). Exactly once: only while the file is still
 * being parsed with every chunk committed, checked with the file row locked. If this worker dies
 * first, whoever waits for the file finishes it (see ingest-file.ts).
 */
export async function finishInOwnTransaction(deps: Deps, file: IngestingFile, profile: FeedProfile, supersession: Supersession | undefined): Promise<Finish | undefined> {
  const ready = async (tx: Knex.Transaction) => {
    const locked = await tx('usage_files').where('id', file.id).forNoKeyUpdate().first<{ status: string; chunks_committed: number; chunks_total: number | null }>(
      'status', 'chunks_committed', 'chunks_total',
    );
    return locked.status === 'parsing' && locked.chunks_committed === locked.chunks_total;
  };
  const decided = await deps.db.transaction(async (tx): Promise<Finish | { kind: 'refused'; error: string } | undefined> => {
    if (!(await ready(tx))) return undefined;
    const refusal = await refusalOf(tx, file, profile);
    return refusal === undefined ? markParsed(tx, file, supersession) : { kind: 'refused', error: safeText(refusal) };
  });
  if (decided?.kind !== 'refused') return decided;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await deps.db.transaction(async (tx) => {
        await lockPartnerIngest(tx, file.partner_id, 'exclusive');
        if (!(await ready(tx))) return undefined;
        return { kind: 'rejected', error: decided.error, rerate: await rejectFile(tx, file, decided.error) } as const;
      });
    } catch (error) {
      if (!isDeadlock(error) || attempt >= 5) throw error;
    }
  }
}

/**
 * After a failure, waits until the chunk before this one has committed, or nobody works on it any
 * more, or the file is no longer being parsed. It waits in a transaction that holds this chunk's
 * lock, as its own transaction did, so that a later chunk waiting for this one waits where the
 * database sees it (see awaitPredecessor).
 */
async function untilPredecessorSettles(deps: Deps, work: ChunkWork): Promise<void> {
  if (work.chunk.chunk === 1) return;
  try {
    await deps.db.transaction(async (tx) => {
      await tx.raw('SELECT pg_advisory_xact_lock(hashtextextended(?, 0))', [chunkLockKey(work.file.id, work.chunk.chunk)]);
      await awaitPredecessor(tx, work);
    });
  } catch (error) {
    // Broken to end a lock cycle: stop waiting; the failure is reported all the same.
    if (!isDeadlock(error)) throw error;
  }
}

/**
 * A chunk before this one is rejecting the file (see markRejecting): this one let go of its
 * transaction, and with it the partner's lock the rejection needs, and waits, keeping its claim,
 * until the file is rejected (gone) or the rejection is given up (let go, to be claimed again).
 */
async function untilRejectionSettles(deps: Deps, work: ChunkWork): Promise<ChunkResult> {
  const { file, chunk } = work;
  for (let pause = MIN_TURN_POLL_MS; ; pause = Math.min(pause * 2, MAX_TURN_POLL_MS)) {
    const rejecting = await rejectingBefore(deps.db, file.id, chunk.chunk);
    const row = await deps.db('usage_files').where('id', file.id).first<{ status: string }>('status');
    if (row.status !== 'parsing' || work.stopped?.()) return { kind: 'gone' };
    if (!rejecting) return { kind: 'stalled' };
    await sleep(pause);
  }
}

/**
 * A whole-file error was found in this chunk: once every chunk before it has committed (an earlier
 * error would have rejected the file first), the file is rejected. One transaction does both: it
 * says first that this chunk is rejecting the file (see markRejecting), so that the chunks after
 * it stop holding the partner's lock while they wait for a turn that will not come, then waits for
 * the chunks before it, then takes that lock exclusively and rejects the file.
 */
async function rejectInTurn(deps: Deps, work: ChunkWork, fileError: FeedFileError): Promise<ChunkResult> {
  const { file, chunk } = work;
  for (let attempt = 1; ; attempt += 1) {
    try {
      const outcome = await deps.db.transaction(async (tx): Promise<Exclude<Attempt, { kind: 'deadlocked' }>> => {
        await markRejecting(tx, file.id, chunk.chunk);
        const before = await awaitPredecessor(tx, work);
        if (before === 'gone') return { kind: 'gone' };
        if (before === 'abandoned') return { kind: 'stalled' };
        if (before === 'rejecting') return { kind: 'rejecting' };
        await lockPartnerIngest(tx, file.partner_id, 'exclusive');
        const locked = await tx('usage_files').where('id', file.id).forNoKeyUpdate().first<{ status: string; chunks_committed: number }>('status', 'chunks_committed');
        if (locked.status !== 'parsing' || locked.chunks_committed !== chunk.chunk - 1) return { kind: 'gone' };
        const error = safeText(fileError.message);
        return { kind: 'committed', records: 0, finish: { kind: 'rejected', error, rerate: await rejectFile(tx, file, error) } };
      });
      // An earlier chunk is rejecting the file: it will be rejected for that chunk's fault, not this one's.
      return outcome.kind === 'rejecting' ? untilRejectionSettles(deps, work) : outcome;
    } catch (error) {
      if (!isDeadlock(error) || attempt >= EXCLUSIVE_RETRIES) throw error;
      await sleep(MIN_TURN_POLL_MS * attempt);
    }
  }
}

function roundAll(t: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, Math.trunc(v)]));
}

/**
 * A running sum of decimals, kept at the largest scale seen rather than normalised after each
 * addition (that divides a BigInt per trailing zero, on every row).
 */
class DecimalSum {
  private coefficient = 0n;
  private scale = 0;

  add(d: Decimal): void {
    if (d.scale > this.scale) {
      this.coefficient *= 10n ** BigInt(d.scale - this.scale);
      this.scale = d.scale;
    }
    this.coefficient += d.scale === this.scale ? d.coefficient : d.coefficient * 10n ** BigInt(this.scale - d.scale);
  }

  value(): Decimal {
    return { coefficient: this.coefficient, scale: this.scale };
  }
}

/** What reading a chunk found, apart from the good rows (which are in the temporary table ingest_rows). */
interface Staged {
  records: number;
  rows: number;
  rejectedRecords: number;
  quantitySum: DecimalSum;
  /** usage_file_errors lines, in COPY text. */
  errorLines: string[];
  control: ControlTotals | undefined;
  /** A problem with the file as a whole: it is rejected when its turn comes. */
  fileError: FeedFileError | undefined;
}

const STAGING_COLUMNS = 'record, line, external_id, partnership_id, product_id, user_ref, account_id, quantity, started_at, ended_at, period, description';

async function stage(
  deps: Deps,
  tx: Knex.Transaction,
  file: IngestingFile,
  open: (start: number, end: number) => Readable,
  part: RangeToRead,
  ctx: IngestContext,
): Promise<Staged> {
  // Sorting a chunk's rows by record must not spill to disk.
  await tx.raw(`SET LOCAL work_mem = '64MB'`);
  await tx.raw(
    `CREATE TEMP TABLE ingest_rows (
       record integer NOT NULL, line integer, external_id text NOT NULL, partnership_id bigint NOT NULL, product_id bigint NOT NULL,
       user_ref text NOT NULL, account_id bigint, quantity numeric NOT NULL, started_at timestamptz NOT NULL, ended_at timestamptz,
       period char(7) NOT NULL, description text, outcome text
     ) ON COMMIT DROP`,
  );
  const staged: Staged = { records: 0, rows: 0, rejectedRecords: 0, quantitySum: new DecimalSum(), errorLines: [], control: undefined, fileError: undefined };
  const fileIdText = String(file.id);
  const addError = (record: number, line: number | null, e: { field: string | null; code: string; message: string; raw: string | null | undefined }) => {
    staged.errorLines.push(
      `${fileIdText}\t${record}\t${copyNumber(line)}\t${copyText(e.field)}\t${copyText(e.code)}\t${copyText(safeText(e.message))}\t${copyText(e.raw === null || e.raw === undefined ? null : safeText(e.raw.slice(0, 1000)))}\n`,
    );
  };
  const addFieldErrors = (record: number, line: number | null, errors: FieldError[]) => {
    for (const e of errors) addError(record, line, e);
  };

  const { profile } = ctx;
  const copy = await CopyWriter.start(tx, `COPY ingest_rows (${STAGING_COLUMNS}) FROM STDIN`);
  const adapter = adapterForFormat(file.format);
  const readCtx = { fileName: file.name, profile, maxRecordChars: deps.config.limits.maxRecordChars };
  const take = (item: FeedItem) => {
    if (item.kind === 'control') {
      staged.control = { ...(item.recordCount !== undefined ? { recordCount: item.recordCount } : {}), ...(item.quantitySum !== undefined ? { quantitySum: item.quantitySum } : {}), ...(item.line !== undefined ? { line: item.line } : {}) };
      return;
    }
    staged.records += 1;
    const { record } = item;
    const line = item.line ?? null;
    if (item.kind === 'row-error') {
      staged.rejectedRecords += 1;
      addError(record, line, { field: item.field ?? null, code: 'malformed_row', message: item.message, raw: item.raw ?? null });
      return;
    }
    const normalized = normalizeRow(item.fields, profile);
    if (!normalized.ok) {
      staged.rejectedRecords += 1;
      addFieldErrors(record, line, normalized.errors);
      return;
    }
    // Control totals add up every readable quantity, good rows and bad.
    const quantityText = normalized.fields.quantity;
    const quantity: DecimalParseResult | undefined = quantityText === undefined ? undefined : parseDecimal(quantityText);
    if (quantity?.ok) staged.quantitySum.add(quantity.value);
    const result = checkUsage(normalized.fields, ctx, item.fields, quantity);
    if (!result.ok) {
      staged.rejectedRecords += 1;
      addFieldErrors(record, line, result.errors);
      return;
    }
    const u = result.usage;
    staged.rows += 1;
    copy.add(
      `${record}\t${copyNumber(line)}\t${copyText(u.externalId)}\t${u.partnershipId}\t${u.productId}\t${copyText(u.userRef)}\t${copyNumber(u.accountId)}\t` +
        `${toDecimalString(u.quantity)}\t${copyTimestamp(u.startedAt)}\t${u.endedAt === null ? '\\N' : copyTimestamp(u.endedAt)}\t${u.period}\t${copyText(u.description)}\n`,
    );
  };
  try {
    for await (const batch of adapter.readRange!(open, readCtx, part)) {
      for (const item of batch) take(item);
      await copy.flush();
    }
  } catch (error) {
    if (!(error instanceof FeedFileError)) {
      copy.abort(error as Error);
      throw error;
    }
    staged.fileError = error;
  }
  await copy.end();
  return staged;
}

const DAY_MS = 86_400_000;
let lastDay = Number.NaN;
let lastDayText = '';

/**
 * A UTC instant as PostgreSQL reads it, to the microsecond. Usages of a feed cluster in a few days,
 * so the date part is remembered and only the time of day is written out (this runs twice a row).
 */
function copyTimestamp(t: UtcTimestamp): string {
  const day = Math.floor(t.epochMs / DAY_MS);
  if (day !== lastDay) {
    lastDay = day;
    lastDayText = new Date(day * DAY_MS).toISOString().slice(0, 11);
  }
  let ms = t.epochMs - day * DAY_MS;
  const hours = Math.floor(ms / 3_600_000);
  ms -= hours * 3_600_000;
  const minutes = Math.floor(ms / 60_000);
  ms -= minutes * 60_000;
  const seconds = Math.floor(ms / 1000);
  ms -= seconds * 1000;
  const time = `${hours < 10 ? '0' : ''}${hours}:${minutes < 10 ? '0' : ''}${minutes}:${seconds < 10 ? '0' : ''}${seconds}`;
  if (ms === 0 && t.micros === 0) return `${lastDayText}${time}Z`;
  return `${lastDayText}${time}.${String(ms * 1000 + t.micros).padStart(6, '0')}Z`;
}

/**
 * Waits, in the chunk's transaction, until the chunk before this one has committed. If nobody holds
 * that chunk any more (its worker died or failed), this chunk is let go, so that the worker can take
 * that one first; if the file stops being parsed, or a chunk before this one is rejecting it, this
 * chunk's turn will not come, and it lets go of its transaction (and the partner's lock) at once.
 */
async function waitForTurn(tx: Knex.Transaction, work: ChunkWork): Promise<void> {
  const before = await awaitPredecessor(tx, work);
  if (before === 'gone') throw new Abandon({ kind: 'gone' });
  if (before === 'abandoned') throw new Abandon({ kind: 'stalled' });
  if (before === 'rejecting') throw new Abandon({ kind: 'rejecting' });
}

/**
 * In `tx`, waits until the chunk before this one has committed ('committed'), nobody holds it any more
 * ('abandoned'), the file is no longer being parsed or this worker stops ('gone'), or a chunk before
 * this one is rejecting the file ('rejecting'; see markRejecting).
 *
 * While the chunk before is in its transaction, this waits for that to end by taking (and at once
 * giving back) the lock it holds, on this transaction's own connection, so that the database sees
 * the wait and can break a cycle it is part of. Between its transactions (before its worker has begun
 * one, or after the database broke one and it is tried again) it looks again shortly, and more
 * often right after one ended, so as to be waiting again when the next begins: then, if the two meet
 * in a lock cycle again, this one, the later, has waited longer, and is the one the database breaks.
 */
async function awaitPredecessor(tx: Knex.Transaction, work: ChunkWork): Promise<'committed' | 'abandoned' | 'gone' | 'rejecting'> {
  const { file, chunk } = work;
  if (chunk.chunk === 1) return 'committed';
  const key = chunkLockKey(file.id, chunk.chunk - 1);
  for (let pause = MIN_TURN_POLL_MS; ; pause = Math.min(pause * 2, MAX_TURN_POLL_MS)) {
    const { rows: probe } = await tx.raw<{ rows: Array<{ free: boolean }> }>('SELECT pg_try_advisory_lock_shared(hashtextextended(?, 0)) AS free', [key]);
    if (probe[0]?.free !== true) {
      await tx.raw('SELECT pg_advisory_lock_shared(hashtextextended(?, 0))', [key]);
      pause = MIN_TURN_POLL_MS;
    }
    await tx.raw('SELECT pg_advisory_unlock_shared(hashtextextended(?, 0))', [key]);
    const { rows } = await tx.raw<{ rows: Array<{ status: string; held: boolean; file_status: string }> }>(
      // clock_timestamp(): now() would be when this transaction began, and a claim would never run out.
      `SELECT c.status, coalesce(c.claimed_until > clock_timestamp(), false) AS held, f.status AS file_status
       FROM ingest_chunks c JOIN usage_files f ON f.id = c.file_id WHERE c.file_id = ? AND c.chunk = ?`,
      [file.id, chunk.chunk - 1],
    );
    const before = rows[0];
    if (before === undefined || before.status === 'committed') return 'committed';
    if (before.file_status !== 'parsing' || work.stopped?.()) return 'gone';
    if (!before.held) return 'abandoned';
    if (await rejectingBefore(tx, file.id, chunk.chunk)) return 'rejecting';
    await sleep(pause);
  }
}

async function commit(tx: Knex.Transaction, work: ChunkWork, staged: Staged, written: { count: number; duplicatesPossible: boolean }): Promise<ChunkResult> {
  const { file, chunk } = work;
  const locked = await tx('usage_files').where('id', file.id).forNoKeyUpdate().first<{ status: string; chunks_committed: number }>('status', 'chunks_committed');
  if (locked.status !== 'parsing') throw new Abandon({ kind: 'gone' });
  const mine = await tx('ingest_chunks').where({ file_id: file.id, chunk: chunk.chunk }).first<{ status: string }>('status');
  if (mine.status === 'committed') throw new Abandon({ kind: 'gone' });
  if (locked.chunks_committed !== chunk.chunk - 1) {
    throw new RetryableError(`file ${file.id} has ${locked.chunks_committed} chunks committed; chunk ${chunk.chunk} cannot commit yet`);
  }
  const duplicates = written.duplicatesPossible ? await reportDuplicates(tx, file) : 0;
  if (staged.errorLines.length > 0) {
    const errors = await CopyWriter.start(tx, 'COPY usage_file_errors (file_id, record, line, field, code, message, raw_value) FROM STDIN');
    for (const line of staged.errorLines) errors.add(line);
    await errors.end();
  }
  await tx('usage_files')
    .where('id', file.id)
    .update({
      records_committed: tx.raw('records_committed + ?', [staged.records]),
      chunks_committed: tx.raw('chunks_committed + 1'),
      rows_read: tx.raw('rows_read + ?', [staged.records]),
      rows_accepted: tx.raw('rows_accepted + ?', [written.count]),
      rows_rejected: tx.raw('rows_rejected + ?', [staged.rejectedRecords]),
      rows_duplicate: tx.raw('rows_duplicate + ?', [duplicates]),
      quantity_read: tx.raw('quantity_read + ?::numeric', [toDecimalString(staged.quantitySum.value())]),
      updated_at: tx.fn.now(),
    });
  await tx('ingest_chunks')
    .where({ file_id: file.id, chunk: chunk.chunk })
    .update({ status: 'committed', committed_at: tx.fn.now(), claimed_until: null, control: staged.control === undefined ? null : JSON.stringify(staged.control) });
  return { kind: 'committed', records: staged.records, finish: undefined };
}

/**
 * Moves the chunk's good rows into product_usages in file order. A usage id already live for the
 * partner (in an earlier file, an earlier chunk, or earlier in this chunk) is not inserted: the
 * first occurrence wins. Rows that correct a superseded file's usages are set aside until the whole
 * file has been read (superseding_rows); a second row for the same correction is a repeat.
 */
async function writeUsages(
  tx: Knex.Transaction,
  file: IngestingFile,
  staged: Staged,
  supersession: Supersession | undefined,
): Promise<{ count: number; duplicatesPossible: boolean }> {
  if (staged.rows === 0) return { count: 0, duplicatesPossible: false };
  if (supersession) {
    await tx.raw(
      `WITH colliding AS (
         SELECT r.* FROM ingest_rows r
         WHERE EXISTS (SELECT 1 FROM product_usages u WHERE u.partner_id = ? AND u.external_id = r.external_id
                       AND u.superseded_at IS NULL AND u.source_file_id = ANY(?::bigint[]))
       ), set_aside AS (
         INSERT INTO superseding_rows (file_id, external_id, record, line, partnership_id, product_id, user_ref, account_id, quantity, started_at, ended_at, period, description)
         SELECT ?, external_id, record, line, partnership_id, product_id, user_ref, account_id, quantity, started_at, ended_at, period, description
         FROM colliding ORDER BY record
         ON CONFLICT (file_id, external_id) DO NOTHING
         RETURNING record
       )
       UPDATE ingest_rows r SET outcome = CASE WHEN r.record IN (SELECT record FROM set_aside) THEN 'staged' ELSE 'repeat' END
       FROM colliding c WHERE c.record = r.record`,
      [file.partner_id, supersession.chain, file.id],
    );
  }
  const result = await tx.raw<{ rowCount: number }>(
    `INSERT INTO product_usages (partner_id, partnership_id, external_id, product_id, user_ref, account_id, quantity,
        started_at, ended_at, period, description, source_file_id, source_record, source_line)
     SELECT ?, partnership_id, external_id, product_id, user_ref, account_id, quantity, started_at, ended_at, period, description, ?, record, line
     FROM ingest_rows WHERE outcome IS NULL ORDER BY record
     ON CONFLICT (partner_id, external_id) WHERE superseded_at IS NULL DO NOTHING`,
    [file.partner_id, file.id],
  );
  const count = result.rowCount;
  return { count, duplicatesPossible: supersession !== undefined || count < staged.rows };
}

/**
 * Every staged row that did not become a usage of its own (and was not set aside as a correction) is
 * a duplicate, reported where the usage id was first received. A row whose usage id belongs to a
 * file still being ingested is also kept whole (held_duplicate_rows): if that file is then
 * rejected, the row becomes the usage instead (see promoteHeldDuplicates).
 */
async function reportDuplicates(tx: Knex.Transaction, file: IngestingFile): Promise<number> {
  await tx.raw(
    `CREATE TEMP TABLE ingest_duplicates ON COMMIT DROP AS
     SELECT r.*, u.source_file_id AS first_file_id, u.source_record AS first_record, f.name AS first_file_name, f.status AS first_file_status
     FROM ingest_rows r
     LEFT JOIN product_usages u ON u.partner_id = ? AND u.external_id = r.external_id AND u.superseded_at IS NULL
     LEFT JOIN usage_files f ON f.id = u.source_file_id
     WHERE r.outcome IS DISTINCT FROM 'staged' AND (u.id IS NULL OR u.source_file_id <> ? OR u.source_record <> r.record)`,
    [file.partner_id, file.id],
  );
  const { rowCount } = await tx.raw<{ rowCount: number }>(
    `INSERT INTO usage_file_errors (file_id, record, line, field, code, message, raw_value)
     SELECT ?, record, line, 'usage_id', 'duplicate_usage',
            format('usage id "%s" was already received in %s; not billed again', external_id,
                   CASE WHEN first_file_id IS NULL THEN 'an earlier row' ELSE format('file %s (%s) record %s', first_file_id, first_file_name, first_record) END),
            left(external_id, 1000)
     FROM ingest_duplicates ORDER BY record`,
    [file.id],
  );
  await tx.raw(
    `INSERT INTO held_duplicate_rows (file_id, record, line, original_file_id, partner_id, external_id, partnership_id, product_id, user_ref,
        account_id, quantity, started_at, ended_at, period, description)
     SELECT ?, record, line, first_file_id, ?, external_id, partnership_id, product_id, user_ref, account_id, quantity, started_at, ended_at, period, description
     FROM ingest_duplicates WHERE first_file_status = 'parsing' AND first_file_id <> ?`,
    [file.id, file.partner_id, file.id],
  );
  return rowCount;
}
