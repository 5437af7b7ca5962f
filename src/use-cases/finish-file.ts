import type { Knex } from 'knex';
import { locateStored, moveInto, resolveInside, storedPath } from '../../adapters/inbox/inbox-store';
import { compare, decimal, mul, parseDecimal, toDecimalString } from '../core/decimal';
import type { FeedProfile } from '../core/feed-profile';
import { normalizeRow } from '../core/normalize-row';
import type { Deps } from '../deps';
import { type Supersession, applySupersession } from './supersede';

/** A file being ingested, as the ingest steps read its row. */
export interface IngestingFile {
  id: string;
  partner_id: string;
  partner_code: string;
  name: string;
  format: string;
  status: string;
  stored_path: string;
  supersedes_file_id: string | null;
}

export interface FileCounts {
  rows_read: number;
  rows_accepted: number;
  rows_rejected: number;
  rows_duplicate: number;
}

/** How a file ended, decided in the transaction that committed its last chunk. */
export type Finish =
  | { kind: 'parsed'; counts: FileCounts }
  | { kind: 'rejected'; error: string; rerate: number[] };

/** The control totals a file declared about itself (a CSV trailer row, XML root attributes), as written. */
export interface ControlTotals {
  recordCount?: string;
  quantitySum?: string;
  line?: number;
}

/**
 * The lock that orders a partner's chunk commits (shared: they run side by side) against a file of
 * that partner finishing or being rejected (exclusive). A rejected file takes its usages back; a row
 * another file reported as their duplicate must then become the usage. Holding the lock exclusively
 * while that happens means no other chunk of the partner is half-way through deciding it has a
 * duplicate (see promoteHeldDuplicates).
 */
export async function lockPartnerIngest(tx: Knex.Transaction, partnerId: string, mode: 'shared' | 'exclusive'): Promise<void> {
  const fn = mode === 'shared' ? 'pg_advisory_xact_lock_shared' : 'pg_advisory_xact_lock';
  await tx.raw(`SELECT ${fn}(hashtextextended(?, 0))`, [`ingest-partner:${partnerId}`]);
}

/**
 * The file's last chunk has committed (this transaction holds the file row locked): marks it parsed,
 * applying a correction with it. Rows held as duplicates of its usages are duplicates for good now.
 */
export async function markParsed(tx: Knex.Transaction, file: IngestingFile, supersession: Supersession | undefined): Promise<Finish> {
  if (supersession) await applySupersession(tx, file, supersession);
  await tx('held_duplicate_rows').where('original_file_id', file.id).delete();
  const [counts] = await tx('usage_files')
    .where({ id: file.id, status: 'parsing' })
    .update({ status: 'parsed', parsed_at: tx.fn.now(), updated_at: tx.fn.now() })
    .returning<FileCounts[]>(['rows_read', 'rows_accepted', 'rows_rejected', 'rows_duplicate']);
  if (!counts) throw new Error(`file ${file.id} left the parsing state while it was being finished`);
  return { kind: 'parsed', counts };
}

/** Why the whole file is refused (control totals, the partner's tolerance for bad rows), or undefined. */
export async function refusalOf(tx: Knex.Transaction, file: IngestingFile, profile: FeedProfile): Promise<string | undefined> {
  const controls = await tx('ingest_chunks').where('file_id', file.id).whereNotNull('control').orderBy('chunk').pluck<ControlTotals[]>('control');
  return checkWholeFile(tx, file, profile, controls[0]);
}

/**
 * Checks that need the whole file: the control totals it declares about itself, and the partner's
 * tolerance for bad rows. Returns why the file is refused, or undefined.
 */
async function checkWholeFile(tx: Knex.Transaction, file: IngestingFile, profile: FeedProfile, control: ControlTotals | undefined): Promise<string | undefined> {
  const row = await tx('usage_files').where('id', file.id).first<{ rows_read: number; rows_rejected: number; quantity_read: string }>(
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
 * Text as PostgreSQL can store it: it refuses a NUL character in text (and in COPY), so one that a
 * message or a raw value quotes from a feed is written as the escape \u0000 instead.
 */
export function safeText(text: string): string {
  return text.includes('\u0000') ? text.replaceAll('\u0000', '\\u0000') : text;
}

/**
 * Rejects the whole file in the caller's transaction (partner lock held exclusively): its usages
 * (none rated yet) are removed and the reason recorded, and rows that other files reported as
 * duplicates of those usages take their place. Returns the files that gained usages and must be
 * rated again.
 */
export async function rejectFile(tx: Knex.Transaction, file: IngestingFile, reason: string): Promise<number[]> {
  const error = safeText(reason);
  await tx('usage_file_errors').where('file_id', file.id).delete();
  await tx('superseding_rows').where('file_id', file.id).delete();
  await tx('held_duplicate_rows').where('file_id', file.id).delete();
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
    chunks_committed: 0,
    quantity_read: 0,
  });
  return promoteHeldDuplicates(tx, file);
}

/**
 * A rejected file's usages are gone, so the rows that other files reported as their duplicates
 * while it was being ingested are not duplicates after all: for each usage id, the earliest such
 * row (by file, then record) becomes the usage, in its own file, and its duplicate report is
 * withdrawn; the other repeats now point at it. Without this, a usage id sent twice (say, a file
 * re-sent with a fix while the broken one was still being read) would be billed nowhere.
 */
async function promoteHeldDuplicates(tx: Knex.Transaction, file: IngestingFile): Promise<number[]> {
  const { rows: promoted } = await tx.raw<{ rows: { file_id: string; record: number; external_id: string; file_name: string; status: string }[] }>(
    `WITH candidates AS (
       SELECT DISTINCT ON (h.external_id) h.*
       FROM held_duplicate_rows h JOIN usage_files f ON f.id = h.file_id
       WHERE h.original_file_id = ? AND f.status IN ('parsing', 'parsed', 'rated')
       ORDER BY h.external_id, h.file_id, h.record
     ), inserted AS (
       INSERT INTO product_usages (partner_id, partnership_id, external_id, product_id, user_ref, account_id, quantity,
           started_at, ended_at, period, description, source_file_id, source_record, source_line)
       SELECT partner_id, partnership_id, external_id, product_id, user_ref, account_id, quantity,
           started_at, ended_at, period, description, file_id, record, line
       FROM candidates ORDER BY file_id, record
       ON CONFLICT (partner_id, external_id) WHERE superseded_at IS NULL DO NOTHING
       RETURNING source_file_id AS file_id, source_record AS record, external_id
     )
     SELECT i.file_id, i.record, i.external_id, f.name AS file_name, f.status
     FROM inserted i JOIN usage_files f ON f.id = i.file_id`,
    [file.id],
  );
  if (promoted.length > 0) {
    await tx.raw(
      `DELETE FROM usage_file_errors e USING unnest(?::bigint[], ?::int[]) AS p(file_id, record)
       WHERE e.file_id = p.file_id AND e.record = p.record AND e.code = 'duplicate_usage'`,
      [promoted.map((p) => p.file_id), promoted.map((p) => p.record)],
    );
    await tx.raw(
      `DELETE FROM held_duplicate_rows h USING unnest(?::bigint[], ?::int[]) AS p(file_id, record)
       WHERE h.file_id = p.file_id AND h.record = p.record`,
      [promoted.map((p) => p.file_id), promoted.map((p) => p.record)],
    );
    // The other repeats of those usage ids now repeat the promoted row: say so, and follow its file.
    await tx.raw(
      `UPDATE usage_file_errors e
       SET message = format('usage id "%s" was already received in file %s (%s) record %s; not billed again', p.external_id, p.file_id, p.file_name, p.record)
       FROM held_duplicate_rows h, unnest(?::text[], ?::bigint[], ?::text[], ?::int[]) AS p(external_id, file_id, file_name, record)
       WHERE h.original_file_id = ? AND h.external_id = p.external_id AND e.file_id = h.file_id AND e.record = h.record AND e.code = 'duplicate_usage'`,
      [promoted.map((p) => p.external_id), promoted.map((p) => p.file_id), promoted.map((p) => p.file_name), promoted.map((p) => p.record), file.id],
    );
    await tx.raw(
      `UPDATE held_duplicate_rows h SET original_file_id = p.file_id
       FROM unnest(?::text[], ?::bigint[]) AS p(external_id, file_id)
       WHERE h.original_file_id = ? AND h.external_id = p.external_id`,
      [promoted.map((p) => p.external_id), promoted.map((p) => p.file_id), file.id],
    );
    const perFile = new Map<string, number>();
    for (const p of promoted) perFile.set(p.file_id, (perFile.get(p.file_id) ?? 0) + 1);
    for (const [fileId, n] of perFile) {
      await tx('usage_files')
        .where('id', fileId)
        .update({
          rows_accepted: tx.raw('rows_accepted + ?', [n]),
          rows_duplicate: tx.raw('rows_duplicate - ?', [n]),
          // A file already rated has a usage to rate now.
          status: tx.raw(`CASE WHEN status = 'rated' THEN 'parsed' ELSE status END`),
          updated_at: tx.fn.now(),
        });
    }
  }
  // Repeats that now point at a finished file, or at nothing (every candidate's file was rejected
  // too), are duplicates for good.
  await tx('held_duplicate_rows').where('original_file_id', file.id).delete();
  const repointed = [...new Set(promoted.map((p) => p.file_id))];
  if (repointed.length > 0) {
    await tx.raw(
      `DELETE FROM held_duplicate_rows h USING usage_files f
       WHERE h.original_file_id = ANY(?::bigint[]) AND f.id = h.original_file_id AND f.status <> 'parsing'`,
      [repointed],
    );
  }
  return [...new Set(promoted.filter((p) => p.status !== 'parsing').map((p) => Number(p.file_id)))];
}

/** After the commit that finished a file: file moved out of processing/, rating queued. Safe to repeat. */
export async function afterFinish(deps: Deps, file: IngestingFile, finish: Finish): Promise<void> {
  await moveStoredFile(deps, file, finish.kind === 'parsed' ? 'archive' : 'failed');
  if (finish.kind === 'parsed') {
    await deps.queues.enqueue('rate-file', { fileId: Number(file.id) });
  } else {
    for (const fileId of finish.rerate) {
      // A fresh job id: the file's earlier rating job may still be kept as completed.
      await deps.queues.enqueue('rate-file', { fileId }, { jobId: `rate-file-${fileId}-after-${file.id}` });
    }
  }
}

/** Moves the stored file out of processing/ to where a finished file belongs. Safe to repeat. */
export async function moveStoredFile(deps: Deps, file: IngestingFile, stage: 'archive' | 'failed'): Promise<void> {
  const relative = await locateStored(deps.config.inboxDir, file.stored_path, file.partner_code, Number(file.id), file.name);
  if (!relative) return;
  const target = storedPath(stage, file.partner_code, Number(file.id), file.name);
  if (relative === target) return;
  await moveInto(deps.config.inboxDir, resolveInside(deps.config.inboxDir, relative), target);
  await deps.db('usage_files').where('id', file.id).update({ stored_path: target });
}
