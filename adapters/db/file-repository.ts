import type { Db } from './database';

export const FILE_STATUSES = ['received', 'parsing', 'parsed', 'rated', 'failed', 'duplicate', 'superseded'] as const;
export type FileStatus = (typeof FILE_STATUSES)[number];

export interface FileSummary {
  id: number;
  partner: string;
  name: string;
  format: string;
  source: string;
  status: FileStatus;
  sha256: string;
  sizeBytes: number;
  duplicateOf: number | null;
  supersedes: number | null;
  counts: { read: number; accepted: number; rejected: number; duplicate: number; unchanged: number; replaced: number; withdrawn: number };
  /** Rows done of rows in the file (counted by the pre-pass that planned its chunks; null until then). */
  progress: { recordsCommitted: number; recordsTotal: number | null; chunksCommitted: number; chunksTotal: number | null };
  error: string | null;
  timings: { receivedAt: string; parseStartedAt: string | null; parsedAt: string | null; ratedAt: string | null; failedAt: string | null };
}

interface FileRow {
  id: string; partner_code: string; name: string; format: string; source: string; status: FileStatus; sha256: string;
  size_bytes: string; duplicate_of_file_id: string | null; supersedes_file_id: string | null; rows_read: number; rows_accepted: number; rows_rejected: number;
  rows_duplicate: number; rows_unchanged: number; rows_replaced: number; rows_withdrawn: number; records_committed: number;
  records_total: number | null; chunks_committed: number; chunks_total: number | null; error: string | null; received_at: Date; parse_started_at: Date | null;
  parsed_at: Date | null; rated_at: Date | null; failed_at: Date | null;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

function toSummary(r: FileRow): FileSummary {
  return {
    id: Number(r.id),
    partner: r.partner_code,
    name: r.name,
    format: r.format,
    source: r.source,
    status: r.status,
    sha256: r.sha256,
    sizeBytes: Number(r.size_bytes),
    duplicateOf: r.duplicate_of_file_id === null ? null : Number(r.duplicate_of_file_id),
    supersedes: r.supersedes_file_id === null ? null : Number(r.supersedes_file_id),
    counts: {
      read: r.rows_read,
      accepted: r.rows_accepted,
      rejected: r.rows_rejected,
      duplicate: r.rows_duplicate,
      unchanged: r.rows_unchanged,
      replaced: r.rows_replaced,
      withdrawn: r.rows_withdrawn,
    },
    progress: { recordsCommitted: r.records_committed, recordsTotal: r.records_total, chunksCommitted: r.chunks_committed, chunksTotal: r.chunks_total },
    error: r.error,
    timings: { receivedAt: r.received_at.toISOString(), parseStartedAt: iso(r.parse_started_at), parsedAt: iso(r.parsed_at), ratedAt: iso(r.rated_at), failedAt: iso(r.failed_at) },
  };
}

export async function listFiles(
  db: Db,
  filter: { status?: string; partner?: string; page: number; pageSize: number },
): Promise<{ items: FileSummary[]; total: number }> {
  const base = db('usage_files').modify((q) => {
    if (filter.status) void q.where('status', filter.status);
    if (filter.partner) void q.where('partner_code', filter.partner);
  });
  const [rows, count] = await Promise.all([
    base.clone().orderBy('id', 'desc').limit(filter.pageSize).offset((filter.page - 1) * filter.pageSize).select<FileRow[]>('*'),
    base.clone().count<{ count: string }[]>('* as count'),
  ]);
  return { items: rows.map(toSummary), total: Number(count[0]?.count ?? 0) };
}

export async function getFile(db: Db, id: number): Promise<FileSummary | undefined> {
  const row = await db('usage_files').where('id', id).first<FileRow | undefined>('*');
  return row ? toSummary(row) : undefined;
}

export interface FileErrorRow {
  record: number | null;
  line: number | null;
  field: string | null;
  code: string;
  message: string;
  rawValue: string | null;
}

export async function listFileErrors(db: Db, fileId: number, page: number, pageSize: number): Promise<{ items: FileErrorRow[]; total: number }> {
  const [rows, count] = await Promise.all([
    db('usage_file_errors').where('file_id', fileId).orderBy(['record', 'id']).limit(pageSize).offset((page - 1) * pageSize)
      .select<{ record: number | null; line: number | null; field: string | null; code: string; message: string; raw_value: string | null }[]>(
        'record', 'line', 'field', 'code', 'message', 'raw_value'),
    db('usage_file_errors').where('file_id', fileId).count<{ count: string }[]>('* as count'),
  ]);
  return {
    items: rows.map((r) => ({ record: r.record, line: r.line, field: r.field, code: r.code, message: r.message, rawValue: r.raw_value })),
    total: Number(count[0]?.count ?? 0),
  };
}
