import type { Knex } from 'knex';
import type { FeedProfile } from '../core/feed-profile';
import { PermanentError, RetryableError } from './errors';

/**
 * Superseding: a corrected file replaces an earlier one of the same partner, named explicitly
 * (upload or CLI) or by the partner's profile rule (same file name). Rows that are the same as
 * before change nothing; rows that changed replace the old usage (which is reversed by compensating
 * transactions, never deleted); usages the correction leaves out are withdrawn (reversed too).
 * While the file is read, its rows whose usage id is live in the corrected files are set aside in
 * superseding_rows (by each chunk's commit, see ingest-chunk.ts), and applied once it is whole.
 */
export interface Supersession {
  /** The file being corrected. */
  fileId: number;
  /** It and every file it corrected in turn: their live usages are what this file replaces. */
  chain: number[];
}

interface FileForSupersession {
  id: string;
  partner_id: string;
  name: string;
  supersedes_file_id: string | null;
}

/** Finds which file this one supersedes, if any, and checks that it can be superseded now. */
export async function resolveSupersession(db: Knex, file: FileForSupersession, profile: FeedProfile): Promise<Supersession | undefined> {
  let target = file.supersedes_file_id === null ? undefined : Number(file.supersedes_file_id);
  if (target === undefined && profile.supersede_same_name) {
    const previous = await db('usage_files')
      .where({ partner_id: file.partner_id, name: file.name })
      .whereIn('status', ['received', 'parsing', 'parsed', 'rated'])
      .where('id', '<', file.id)
      .orderBy('id', 'desc')
      .first<{ id: string } | undefined>('id');
    if (previous) {
      target = Number(previous.id);
      await db('usage_files').where('id', file.id).update({ supersedes_file_id: target });
    }
  }
  if (target === undefined) return undefined;
  const old = await db('usage_files').where('id', target).first<{ partner_id: string | null; status: string } | undefined>('partner_id', 'status');
  if (!old || old.partner_id !== file.partner_id) throw new PermanentError(`file ${file.id} cannot supersede file ${target}: it is not a file of the same partner`);
  // Its usages must be rated first, so the reversals reverse what was actually charged.
  if (['received', 'parsing', 'parsed'].includes(old.status)) throw new RetryableError(`file ${target}, which file ${file.id} supersedes, is still being ingested or rated`);
  if (old.status !== 'rated') throw new PermanentError(`file ${file.id} cannot supersede file ${target}: that file is ${old.status}`);
  const { rows } = await db.raw<{ rows: { id: string }[] }>(
    `WITH RECURSIVE chain(id) AS (SELECT ?::bigint UNION SELECT f.id FROM usage_files f JOIN chain c ON f.id = (SELECT supersedes_file_id FROM usage_files WHERE id = c.id))
     SELECT id FROM chain`,
    [target],
  );
  return { fileId: target, chain: rows.map((r) => Number(r.id)) };
}

export interface SupersessionCounts {
  unchanged: number;
  replaced: number;
  withdrawn: number;
}

/**
 * Applies a superseding file in one transaction (the caller's, which also marks the file parsed,
 * so a crash can never apply it twice or half): unchanged rows are dropped, changed ones replace
 * their old usage, usages the file left out are withdrawn, and the old file becomes superseded.
 */
export async function applySupersession(
  tx: Knex.Transaction,
  file: { id: string; partner_id: string; name: string },
  supersession: Supersession,
): Promise<SupersessionCounts> {
  const q = async <T>(sql: string, values: readonly Knex.RawBinding[]) => (await tx.raw<{ rows: T[] }>(sql, values)).rows;
  // The live usage each staged row corresponds to, and whether anything billable or descriptive differs.
  const matches = await q<{ external_id: string; usage_id: string; same: boolean }>(
    `SELECT s.external_id, u.id AS usage_id,
            (u.partnership_id, u.product_id, u.user_ref, u.quantity, u.started_at, u.period)
              = (s.partnership_id, s.product_id, s.user_ref, s.quantity, s.started_at, s.period)
            AND u.account_id IS NOT DISTINCT FROM s.account_id AND u.ended_at IS NOT DISTINCT FROM s.ended_at
            AND u.description IS NOT DISTINCT FROM s.description AS same
     FROM superseding_rows s
     JOIN product_usages u ON u.partner_id = ? AND u.external_id = s.external_id AND u.superseded_at IS NULL AND u.source_file_id = ANY(?::bigint[])
     WHERE s.file_id = ?`,
    [file.partner_id, supersession.chain, file.id],
  );
  const changed = matches.filter((m) => !m.same).map((m) => m.usage_id);
  const withdrawn = (
    await q<{ id: string }>(
      `SELECT u.id FROM product_usages u
       WHERE u.partner_id = ? AND u.superseded_at IS NULL AND u.source_file_id = ANY(?::bigint[])
         AND NOT EXISTS (SELECT 1 FROM superseding_rows s WHERE s.file_id = ? AND s.external_id = u.external_id)`,
      [file.partner_id, supersession.chain, file.id],
    )
  ).map((r) => r.id);

  const reversed = [...changed, ...withdrawn];
  if (reversed.length > 0) {
    await tx.raw(
      `UPDATE product_usages SET superseded_at = now(), superseded_by_file_id = ? WHERE id = ANY(?::bigint[]) AND superseded_at IS NULL`,
      [file.id, reversed],
    );
    // One reversal per billing record: minus what the record has been charged so far.
    await tx.raw(
      `INSERT INTO transactions (billing_record_id, kind, amount_pennies, description)
       SELECT r.id, 'adjustment', -sum(t.amount_pennies),
              'Reversal of usage ' || u.external_id || CASE WHEN u.id = ANY(?::bigint[]) THEN ', corrected' ELSE ', withdrawn' END
                || ' by file ' || ? || ' (' || ? || ')'
       FROM billing_records r JOIN transactions t ON t.billing_record_id = r.id JOIN product_usages u ON u.id = r.usage_id
       WHERE r.usage_id = ANY(?::bigint[])
       GROUP BY r.id, u.id, u.external_id
       HAVING sum(t.amount_pennies) <> 0`,
      [changed, file.id, file.name, reversed],
    );
  }
  // Changed rows become new usages of this file, rated like any other.
  await tx.raw(
    `INSERT INTO product_usages (partner_id, partnership_id, external_id, product_id, user_ref, account_id, quantity,
        started_at, ended_at, period, description, source_file_id, source_record, source_line)
     SELECT ?, s.partnership_id, s.external_id, s.product_id, s.user_ref, s.account_id, s.quantity, s.started_at, s.ended_at,
            s.period, s.description, s.file_id, s.record, s.line
     FROM superseding_rows s WHERE s.file_id = ? AND s.external_id = ANY(?::text[])`,
    [file.partner_id, file.id, matches.filter((m) => !m.same).map((m) => m.external_id)],
  );
  await tx('superseding_rows').where('file_id', file.id).delete();
  await tx('usage_files').where('id', supersession.fileId).update({ status: 'superseded', updated_at: tx.fn.now() });
  const counts = { unchanged: matches.length - changed.length, replaced: changed.length, withdrawn: withdrawn.length };
  await tx('usage_files').where('id', file.id).update({
    rows_unchanged: counts.unchanged,
    rows_replaced: counts.replaced,
    rows_withdrawn: counts.withdrawn,
    rows_accepted: tx.raw('rows_accepted + ?', [counts.replaced + counts.unchanged]),
  });
  return counts;
}
