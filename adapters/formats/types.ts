import type { Readable } from 'node:stream';

import type { FeedProfile } from '../../src/core/feed-profile';
import type { RawUsageFields } from '../../src/core/usage-fields';

export { CANONICAL_FIELDS, REQUIRED_FIELDS } from '../../src/core/usage-fields';
export type { CanonicalField, RawUsageFields } from '../../src/core/usage-fields';

/** Where a row sits in its file: `record` counts data records from 1; `line` is the physical line where it starts, when the format knows it. */
export interface RowPosition {
  record: number;
  line?: number;
}

/** One item a format adapter yields, in file order. Row-level problems are values, never thrown. */
export type FeedItem =
  | ({ kind: 'row'; fields: RawUsageFields } & RowPosition)
  | ({ kind: 'row-error'; field?: string; message: string; raw?: string } & RowPosition)
  /**
   * Control totals the file declares about itself (a CSV trailer row, XML root attributes), as raw
   * strings; the ingest compares them with what it read and rejects the file on a mismatch. Yielded
   * once, at the point the format reveals them (a trailer comes last, root attributes first).
   */
  | { kind: 'control'; recordCount?: string; quantitySum?: string; line?: number };

export interface FeedHeader {
  /** Partner code declared inside the file (the XML `partner` attribute), if the format carries one. */
  partner?: string;
}

export interface FeedReadContext {
  /** The file's name, for error messages. */
  fileName: string;
  /** The partner's feed profile (column/element names, delimiter, trailer...). Absent: the canonical format. */
  profile?: FeedProfile;
  /**
   * Longest single record accepted, in characters (a CSV row; an XML record from its start tag to its
   * end tag). A longer one rejects the file as soon as the limit is passed, so one runaway record
   * cannot make the reader buffer the rest of the file. Absent: the adapter's own default.
   */
  maxRecordChars?: number;
}

/** The record limit when neither the caller nor the adapter's options set one (MAX_RECORD_CHARS's default). */
export const DEFAULT_MAX_RECORD_CHARS = 1 << 20;

/**
 * A feed format. `read` streams the file and yields items in order; it must never hold the whole
 * file in memory. A problem with the file as a whole (bad header, not well-formed XML, a DOCTYPE)
 * throws a FeedFileError; the items yielded before it stay valid.
 */
export interface FeedAdapter {
  readonly format: string;
  /** File name extensions (lower case, without the dot) this adapter claims. */
  readonly extensions: readonly string[];
  read(input: Readable, ctx: FeedReadContext): AsyncIterable<FeedItem>;
  /** Reads just enough of the start of the file to find header facts such as the declared partner. */
  sniff?(input: Readable, ctx: FeedReadContext): Promise<FeedHeader>;
}

/** A problem with a file as a whole: permanent, reported to the operator, never retried. */
export class FeedFileError extends Error {
  override readonly name = 'FeedFileError';
  constructor(
    readonly fileName: string,
    readonly detail: string,
    readonly position?: RowPosition,
  ) {
    super(`${fileName}${position ? ` ${describePosition(position)}` : ''}: ${detail}`);
  }
}

export function describePosition(p: RowPosition): string {
  return p.line !== undefined ? `line ${p.line} (record ${p.record})` : `record ${p.record}`;
}
