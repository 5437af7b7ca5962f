import path from 'node:path';
import { formatForFileName } from '../../adapters/formats/registry';
import { hashFile, moveInto, resolveInside, safeFileName, storedPath } from '../../adapters/inbox/inbox-store';
import type { Deps } from '../deps';

export type FileSource = 'inbox' | 'api' | 'cli';

export interface RegisteredFile {
  fileId: number;
  status: 'received' | 'duplicate' | 'failed';
  duplicateOf?: number;
  error?: string;
}

/** Reserves a file id before the file is moved, so its stored name carries the id. */
export async function reserveFileId(deps: Deps): Promise<number> {
  const { rows } = await deps.db.raw<{ rows: { id: string }[] }>(`SELECT nextval('usage_files_id_seq') AS id`);
  return Number(rows[0]!.id);
}

/**
 * Records a claimed file (already at `relative` under processing/) and queues its ingest.
 * The same bytes from the same partner are a duplicate: recorded, archived, nothing else happens.
 * That check is the partial unique index on (partner, sha256), so it holds across workers and
 * after the queue has forgotten everything.
 */
export async function registerFile(
  deps: Deps,
  input: { fileId: number; partnerCode: string; name: string; relative: string; source: FileSource; enqueue?: boolean; supersedes?: number },
): Promise<RegisteredFile> {
  const { db, config, logger } = deps;
  const existing = await db('usage_files').where('id', input.fileId).first<{ status: RegisteredFile['status'] } | undefined>('status');
  if (existing) return { fileId: input.fileId, status: existing.status };

  const absolute = resolveInside(config.inboxDir, input.relative);
  const { sha256, size } = await hashFile(absolute);
  const partner = await db('partners').where('code', input.partnerCode).first<{ id: string } | undefined>('id');
  const format = formatForFileName(input.name);
  const base = {
    id: input.fileId,
    partner_code: input.partnerCode,
    name: safeFileName(input.name),
    sha256,
    size_bytes: size,
    format: format ?? path.extname(input.name).slice(1).toLowerCase(),
    source: input.source,
    stored_path: input.relative,
    supersedes_file_id: input.supersedes ?? null,
  };

  const rejection = !partner
    ? `${base.name}: unknown partner "${input.partnerCode}": no partner has that code`
    : !format
      ? `${base.name}: unsupported file type "${path.extname(input.name) || '(none)'}"; expected .csv or .xml`
      : size > config.limits.maxFileBytes
        ? `${base.name}: the file is ${size} bytes, larger than the limit of ${config.limits.maxFileBytes}`
        : undefined;
  if (rejection) {
    const failedPath = storedPath('failed', input.partnerCode, input.fileId, input.name);
    await db('usage_files').insert({ ...base, partner_id: partner?.id ?? null, status: 'failed', error: rejection, failed_at: db.fn.now(), stored_path: failedPath });
    await moveInto(config.inboxDir, absolute, failedPath);
    logger.warn({ fileId: input.fileId, partner: input.partnerCode }, `file rejected: ${rejection}`);
    return { fileId: input.fileId, status: 'failed', error: rejection };
  }

  const inserted = await db.raw<{ rows: { id: string }[] }>(
    `INSERT INTO usage_files (id, partner_id, partner_code, name, sha256, size_bytes, format, source, stored_path, supersedes_file_id, status)
     VALUES (:id, :partner_id, :partner_code, :name, :sha256, :size_bytes, :format, :source, :stored_path, :supersedes_file_id, 'received')
     ON CONFLICT (partner_id, sha256) WHERE status NOT IN ('duplicate', 'failed') DO NOTHING
     RETURNING id`,
    { ...base, partner_id: partner!.id },
  );
  if (inserted.rows.length === 0) {
    const original = await db('usage_files')
      .where({ partner_id: partner!.id, sha256 })
      .whereNotIn('status', ['duplicate', 'failed'])
      .first<{ id: string; name: string }>('id', 'name');
    const archived = storedPath('archive', input.partnerCode, input.fileId, input.name);
    await db('usage_files').insert({
      ...base,
      partner_id: partner!.id,
      status: 'duplicate',
      duplicate_of_file_id: original.id,
      error: `same content as file ${original.id} (${original.name})`,
      stored_path: archived,
    });
    await moveInto(config.inboxDir, absolute, archived);
    logger.info({ fileId: input.fileId, duplicateOf: Number(original.id) }, 'duplicate file recorded; nothing ingested');
    return { fileId: input.fileId, status: 'duplicate', duplicateOf: Number(original.id) };
  }

  if (input.enqueue !== false) await deps.queues.enqueue('ingest-file', { fileId: input.fileId });
  logger.info({ fileId: input.fileId, partner: input.partnerCode, name: base.name, size }, 'file received');
  return { fileId: input.fileId, status: 'received' };
}
