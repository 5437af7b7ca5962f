import { createReadStream } from 'node:fs';
import { Temporal } from 'temporal-polyfill';
import type { Knex } from 'knex';
import { adapterForFormat } from '../../adapters/formats/registry';
import { FeedFileError, type FeedItem } from '../../adapters/formats/types';
import { locateStored, moveInto, resolveInside, storedPath } from '../../adapters/inbox/inbox-store';
import { loadPartnershipsOfCustomer, loadProducts } from '../../adapters/db/partnership-repository';
import { type Decimal, ZERO, add, compare, decimal, mul, parseDecimal, toDecimalString } from '../core/decimal';
import { DEFAULT_FEED_PROFILE, type FeedProfile, feedProfileSchema } from '../core/feed-profile';
import { normalizeRow } from '../core/normalize-row';
import { type FieldError, type ValidUsage, type ValidationContext, validateUsage } from '../core/validate-usage';
import type { Deps } from '../deps';
import { PermanentError, RetryableError } from './errors';
import { type Supersession, applySupersession, resolveSupersession, stageSupersedingRows } from './supersede';
import { bindings } from '../../adapters/db/bindings';

interface FileRow {
  id: string;
  partner_id: string;
  partner_code: string;
  name: string;
  format: string;
  status: string;
  stored_path: string;
  records_committed: number;
  supersedes_file_id: string | null;
}

interface RowError {
  record: number;
  line: number | null;
  field: string | null;
  code: string;
  message: string;
  raw: string | null;
}

interface PendingUsage extends ValidUsage {
  record: number;
  line: number | null;
}

interface Chunk {
  firstRecord: number;
  lastRecord: number;
  usages: PendingUsage[];
  errors: RowError[];
  /** Sum of every readable quantity in the chunk, good rows and bad, for control totals. */
  quantitySum: Decimal;
}

interface IngestContext extends ValidationContext {
  profile: FeedProfile;
}

export type IngestOutcome =
  | { kind: 'parsed'; fileId: number; read: number; accepted: number; rejected: number; duplicate: number }
  | { kind: 'rejected'; fileId: number; error: string }
  | { kind: 'skipped'; fileId: number; status: string };

// How far in the future a usage may start (clock skew between upstream and us) and how far back.
const FUTURE_TOLERANCE = Temporal.Duration.from({ hours: 24 });
const EARLIEST_START = Temporal.Instant.from('2000-01-01T00:00:00Z');

/**
 * Parses a claimed file into usages. Rows are validated one by one (a bad row is recorded with
 * its record, line and field, the good rows are kept) and committed in chunks: each chunk's
 * usages, errors and the file's progress commit in one transaction, so a crash resumes after the
 * last committed chunk and every row lands exactly once. A problem with the file as a whole
 * rejects it and removes what it had added (nothing of it has been rated yet).
 */
export async function ingestFile(deps: Deps, fileId: number, onProgress?: (records: number) => void): Promise<IngestOutcome> {
  const { db, config, logger } = deps;
  const file = await startParsing(db, fileId);
  if (!file) {
    const row = await db('usage_files').where('id', fileId).first<{ status: string } | undefined>('status');
    if (!row) throw new PermanentError(`file ${fileId} does not exist`);
    return { kind: 'skipped', fileId, status: row.status };
  }
  const log = logger.child({ fileId, partner: file.partner_code });

  const relative = await locateStored(config.inboxDir, file.stored_path, file.partner_code, fileId, file.name);
  if (!relative) return reject(deps, file, `the stored file ${file.stored_path} is missing from the inbox`);

  const ctx = await validationContext(deps, file);
  const supersession = await resolveSupersession(db, file, ctx.profile);
  let chunk = newChunk(file.records_committed + 1);
  let control: Extract<FeedItem, { kind: 'control' }> | undefined;
  try {
    const input = createReadStream(resolveInside(config.inboxDir, relative));
    const adapter = adapterForFormat(file.format);
    if (adapter.sniff) await checkDeclaredPartner(deps, file, relative, ctx.profile);
    for await (const item of adapter.read(input, { fileName: file.name, profile: ctx.profile, maxRecordChars: config.limits.maxRecordChars })) {
      if (item.kind === 'control') {
        control = item;
        continue;
      }
      if (item.record <= file.records_committed) continue; // committed before a crash
      addItem(chunk, item, ctx);
      if (chunk.usages.length + chunk.errors.length >= config.ingestChunkRows) {
        await commitChunk(db, file, chunk, supersession);
        onProgress?.(chunk.lastRecord);
        chunk = newChunk(chunk.lastRecord + 1);
      }
    }
    await commitChunk(db, file, chunk, supersession);
    onProgress?.(chunk.lastRecord);
  } catch (err) {
    if (err instanceof FeedFileError) return reject(deps, file, err.message);
    throw err;
  }
  const refusal = await checkWholeFile(db, file, ctx.profile, control);
  if (refusal) return reject(deps, file, refusal);

  // Applying a correction and marking the file parsed commit together, so neither happens twice or alone.
  const done = await db.transaction(async (tx) => {
    const locked = await tx('usage_files').where('id', fileId).forUpdate().first<{ status: string }>('status');
    if (locked.status !== 'parsing') return [];
    if (supersession) await applySupersession(tx, file, supersession);
    return tx('usage_files')
      .where({ id: fileId, status: 'parsing' })
      .update({ status: 'parsed', parsed_at: tx.fn.now(), updated_at: tx.fn.now() })
      .returning<{ rows_read: number; rows_accepted: number; rows_rejected: number; rows_duplicate: number }[]>([
        'rows_read', 'rows_accepted', 'rows_rejected', 'rows_duplicate',
      ]);
  });
  const counts = done[0];
  if (!counts) throw new RetryableError(`file ${fileId} left the parsing state while being parsed`);
  await archive(deps, file, relative, 'archive');
  await deps.queues.enqueue('rate-file', { fileId });
  log.info(counts, 'file parsed');
  return {
    kind: 'parsed',
    fileId,
    read: counts.rows_read,
    accepted: counts.rows_accepted,
    rejected: counts.rows_rejected,
    duplicate: counts.rows_duplicate,
  };
}

async function startParsing(db: Knex, fileId: number): Promise<FileRow | undefined> {
  const rows = await db('usage_files')
    .where('id', fileId)
    .whereIn('status', ['received', 'parsing'])
    .update({ status: 'parsing', parse_started_at: db.raw('coalesce(parse_started_at, now())'), updated_at: db.fn.now() })
    .returning<FileRow[]>(['id', 'partner_id', 'partner_code', 'name', 'format', 'status', 'stored_path', 'records_committed', 'supersedes_file_id']);
  return rows[0];
}

async function validationContext(deps: Deps, file: FileRow): Promise<IngestContext> {
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

/** An XML feed names its partner; a file dropped in another partner's folder is refused. */
async function checkDeclaredPartner(deps: Deps, file: FileRow, relative: string, profile: FeedProfile): Promise<void> {
  const adapter = adapterForFormat(file.format);
  const header = await adapter.sniff!(createReadStream(resolveInside(deps.config.inboxDir, relative)), {
    fileName: file.name,
    profile,
    maxRecordChars: deps.config.limits.maxRecordChars,
  });
  if (header.partner !== undefined && header.partner !== file.partner_code) {
    throw new FeedFileError(file.name, `the feed declares partner "${header.partner}" but was received for partner "${file.partner_code}"`);
  }
}

function newChunk(firstRecord: number): Chunk {
  return { firstRecord, lastRecord: firstRecord - 1, usages: [], errors: [], quantitySum: ZERO };
}

function addItem(chunk: Chunk, item: Exclude<FeedItem, { kind: 'control' }>, ctx: IngestContext): void {
  chunk.lastRecord = item.record;
  const line = item.line ?? null;
  const pushErrors = (errors: FieldError[]) => {
    for (const e of errors) chunk.errors.push({ record: item.record, line, field: e.field, code: e.code, message: e.message, raw: e.raw ?? null });
  };
  if (item.kind === 'row-error') {
    chunk.errors.push({ record: item.record, line, field: item.field ?? null, code: 'malformed_row', message: item.message, raw: item.raw ?? null });
    return;
  }
  const normalized = normalizeRow(item.fields, ctx.profile);
  if (!normalized.ok) return pushErrors(normalized.errors);
  const quantity = parseDecimal(normalized.fields.quantity ?? '');
  if (quantity.ok) chunk.quantitySum = add(chunk.quantitySum, quantity.value);
  const result = validateUsage(normalized.fields, ctx, item.fields);
  if (result.ok) chunk.usages.push({ ...result.usage, record: item.record, line });
  else pushErrors(result.errors);
}

/**
 * Checks that need the whole file: the control totals it declares about itself, and the partner's
 * tolerance for bad rows. Returns why the file is refused, or undefined.
 */
async function checkWholeFile(
  db: Knex,
  file: FileRow,
  profile: FeedProfile,
  control: Extract<FeedItem, { kind: 'control' }> | undefined,
): Promise<string | undefined> {
  const row = await db('usage_files').where('id', file.id).first<{ rows_read: number; rows_rejected: number; quantity_read: string }>(
    'rows_read', 'rows_rejected', 'quantity_read',
  );
  const where = control?.line !== undefined ? ` (line ${control.line})` : '';
  if (control?.recordCount !== undefined && control.recordCount.trim() !== String(row.rows_read)) {
    return `${file.name}: control total mismatch${where}: the file declares ${control.recordCount.trim()} records, ${row.rows_read} were read`;
  }
  if (control?.quantitySum !== undefined) {
    const normalized = normalizeRow({ quantity: control.quantitySum.trim() }, profile);
    const declared = normalized.ok ? parseDecimal(normalized.fields.quantity ?? '') : undefined;
    if (!declared?.ok) return `${file.name}: control total${where}: the declared quantity sum "${control.quantitySum}" is not a number`;
    if (compare(declared.value, decimal(row.quantity_read)) !== 0) {
      return `${file.name}: control total mismatch${where}: the file declares a quantity sum of ${control.quantitySum.trim()}, the rows add up to ${toDecimalString(decimal(row.quantity_read))}`;
    }
  }
  if (row.rows_rejected > 0 && profile.reject_file_on_any_error) {
    return `${file.name}: ${row.rows_rejected} of ${row.rows_read} rows have errors and the partner's profile rejects a file with any error`;
  }
  if (profile.max_error_rate !== undefined && row.rows_read > 0) {
    // rejected / read > rate, compared exactly as rejected > rate x read.
    const rate = decimal(profile.max_error_rate);
    if (compare(decimal(BigInt(row.rows_rejected)), mul(rate, decimal(BigInt(row.rows_read)))) > 0) {
      return `${file.name}: ${row.rows_rejected} of ${row.rows_read} rows have errors, above the partner's limit of ${profile.max_error_rate}`;
    }
  }
  return undefined;
}

/**
 * Commits one chunk exactly once. The file row is locked and its cursor checked, so if a second
 * worker is parsing the same file (a lost lock), whichever commits a chunk second skips it.
 */
async function commitChunk(db: Knex, file: FileRow, chunk: Chunk, supersession: Supersession | undefined): Promise<void> {
  if (chunk.lastRecord < chunk.firstRecord) return;
  await db.transaction(async (tx) => {
    const locked = await tx('usage_files').where('id', file.id).forUpdate().first<{ records_committed: number; status: string }>('records_committed', 'status');
    if (locked.status !== 'parsing') throw new RetryableError(`file ${file.id} is ${locked.status}, no longer parsing`);
    if (locked.records_committed >= chunk.lastRecord) return;
    if (locked.records_committed !== chunk.firstRecord - 1) {
      throw new RetryableError(`file ${file.id} is committed to record ${locked.records_committed}, expected ${chunk.firstRecord - 1}`);
    }

    // Within the chunk the first occurrence of a usage id wins; the database decides against other files.
    const seen = new Map<string, PendingUsage>();
    const repeats: PendingUsage[] = [];
    for (const u of chunk.usages) (seen.has(u.externalId) ? repeats : (seen.set(u.externalId, u), [])).push(u);
    const firsts = [...seen.values()];
    // Rows that correct the superseded file's usages wait until the whole file is read; one already
    // set aside by an earlier chunk of this file is a repeat.
    const staging = supersession ? await stageSupersedingRows(tx, file, supersession, firsts) : undefined;
    const candidates = staging ? firsts.filter((u) => !staging.staged.has(u.externalId) && !staging.repeats.has(u.externalId)) : firsts;
    const inserted = new Set(await insertUsages(tx, file, candidates));
    const rejectedByDb = candidates.filter((u) => !inserted.has(u.externalId));
    const repeatedCorrections = staging ? firsts.filter((u) => staging.repeats.has(u.externalId)) : [];
    const duplicates = [...rejectedByDb, ...repeatedCorrections, ...repeats];
    const duplicateErrors = await describeDuplicates(tx, file, duplicates);

    await insertErrors(tx, file, [...chunk.errors, ...duplicateErrors]);
    const rejectedRecords = new Set(chunk.errors.map((e) => e.record)).size;
    await tx('usage_files')
      .where('id', file.id)
      .update({
        records_committed: chunk.lastRecord,
        rows_read: tx.raw('rows_read + ?', [chunk.lastRecord - chunk.firstRecord + 1]),
        rows_accepted: tx.raw('rows_accepted + ?', [inserted.size]),
        rows_rejected: tx.raw('rows_rejected + ?', [rejectedRecords]),
        rows_duplicate: tx.raw('rows_duplicate + ?', [duplicates.length]),
        quantity_read: tx.raw('quantity_read + ?::numeric', [toDecimalString(chunk.quantitySum)]),
        updated_at: tx.fn.now(),
      });
  });
}

/** One statement per chunk: arrays in, unnest, conflicts on (partner, usage id) skipped. */
async function insertUsages(tx: Knex.Transaction, file: FileRow, usages: PendingUsage[]): Promise<string[]> {
  if (usages.length === 0) return [];
  const { rows } = await tx.raw<{ rows: { external_id: string }[] }>(
    `INSERT INTO product_usages (partner_id, partnership_id, external_id, product_id, user_ref, account_id, quantity,
        started_at, ended_at, period, description, source_file_id, source_record, source_line)
     SELECT ?, u.partnership_id, u.external_id, u.product_id, u.user_ref, u.account_id, u.quantity,
        u.started_at, u.ended_at, u.period, u.description, ?, u.source_record, u.source_line
     FROM unnest(?::bigint[], ?::text[], ?::bigint[], ?::text[], ?::bigint[], ?::numeric[], ?::timestamptz[],
                 ?::timestamptz[], ?::text[], ?::text[], ?::int[], ?::int[])
       AS u(partnership_id, external_id, product_id, user_ref, account_id, quantity, started_at, ended_at, period,
            description, source_record, source_line)
     ON CONFLICT (partner_id, external_id) WHERE superseded_at IS NULL DO NOTHING
     RETURNING external_id`,
    bindings(
      file.partner_id,
      file.id,
      usages.map((u) => u.partnershipId),
      usages.map((u) => u.externalId),
      usages.map((u) => u.productId),
      usages.map((u) => u.userRef),
      usages.map((u) => u.accountId),
      usages.map((u) => toDecimalString(u.quantity)),
      usages.map((u) => u.startedAt.toString()),
      usages.map((u) => u.endedAt?.toString() ?? null),
      usages.map((u) => u.period),
      usages.map((u) => u.description),
      usages.map((u) => u.record),
      usages.map((u) => u.line),
    ),
  );
  return rows.map((r) => r.external_id);
}

/** A repeated usage id is reported where it was first received, so the operator can see both. */
async function describeDuplicates(tx: Knex.Transaction, file: FileRow, duplicates: PendingUsage[]): Promise<RowError[]> {
  if (duplicates.length === 0) return [];
  const firsts = await tx('product_usages as u')
    .join('usage_files as f', 'f.id', 'u.source_file_id')
    .where('u.partner_id', file.partner_id)
    .whereIn('u.external_id', [...new Set(duplicates.map((d) => d.externalId))])
    .select<{ external_id: string; file_id: string; file_name: string; source_record: number }[]>(
      'u.external_id', 'f.id as file_id', 'f.name as file_name', 'u.source_record',
    );
  const where = new Map(firsts.map((f) => [f.external_id, f]));
  return duplicates.map((d) => {
    const first = where.get(d.externalId);
    const at = first ? `file ${first.file_id} (${first.file_name}) record ${first.source_record}` : 'an earlier row';
    return {
      record: d.record,
      line: d.line,
      field: 'usage_id',
      code: 'duplicate_usage',
      message: `usage id "${d.externalId}" was already received in ${at}; not billed again`,
      raw: d.externalId,
    };
  });
}

async function insertErrors(tx: Knex.Transaction, file: FileRow, errors: RowError[]): Promise<void> {
  if (errors.length === 0) return;
  await tx.raw(
    `INSERT INTO usage_file_errors (file_id, record, line, field, code, message, raw_value)
     SELECT ?, * FROM unnest(?::int[], ?::int[], ?::text[], ?::text[], ?::text[], ?::text[])`,
    bindings(
      file.id,
      errors.map((e) => e.record),
      errors.map((e) => e.line),
      errors.map((e) => e.field),
      errors.map((e) => e.code),
      errors.map((e) => e.message),
      errors.map((e) => (e.raw === null ? null : e.raw.slice(0, 1000))),
    ),
  );
}

/** Rejects the whole file: its usages (none rated yet) are removed and the reason recorded. */
async function reject(deps: Deps, file: FileRow, error: string): Promise<IngestOutcome> {
  const { db } = deps;
  await db.transaction(async (tx) => {
    await tx('usage_file_errors').where('file_id', file.id).delete();
    await tx('superseding_rows').where('file_id', file.id).delete();
    await tx('product_usages').where('source_file_id', file.id).delete();
    await tx('usage_file_errors').insert({ file_id: file.id, code: 'file_rejected', message: error });
    await tx('usage_files').where('id', file.id).update({
      status: 'failed',
      error,
      failed_at: tx.fn.now(),
      updated_at: tx.fn.now(),
      rows_accepted: 0,
      rows_duplicate: 0,
      rows_rejected: 0,
      rows_read: 0,
      records_committed: 0,
      quantity_read: 0,
    });
  });
  const relative = await locateStored(deps.config.inboxDir, file.stored_path, file.partner_code, Number(file.id), file.name);
  if (relative) await archive(deps, file, relative, 'failed');
  deps.logger.warn({ fileId: Number(file.id), partner: file.partner_code }, `file rejected: ${error}`);
  return { kind: 'rejected', fileId: Number(file.id), error };
}

async function archive(deps: Deps, file: FileRow, relative: string, stage: 'archive' | 'failed'): Promise<void> {
  const target = storedPath(stage, file.partner_code, Number(file.id), file.name);
  if (relative === target) return;
  await moveInto(deps.config.inboxDir, resolveInside(deps.config.inboxDir, relative), target);
  await deps.db('usage_files').where('id', file.id).update({ stored_path: target });
}
