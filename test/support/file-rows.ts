import type { Deps } from '../../src/deps';

/** A usage_files row as tests read it. */
export interface FileRow {
  id: string;
  partner_id: string | null;
  name: string;
  status: string;
  duplicate_of_file_id: string | null;
  stored_path: string;
  records_committed: number;
  rows_read: number;
  rows_accepted: number;
  rows_rejected: number;
  rows_duplicate: number;
  error: string | null;
}

export function fileRow(deps: Deps, fileId: number): Promise<FileRow> {
  return deps.db('usage_files').where('id', fileId).first<FileRow>('*');
}

/** A file's status and counters, in one comparable object. */
export function counts(f: FileRow) {
  return { status: f.status, read: f.rows_read, accepted: f.rows_accepted, rejected: f.rows_rejected, duplicate: f.rows_duplicate, committed: f.records_committed };
}
