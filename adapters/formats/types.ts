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
  /**
   * A streaming pre-pass that finds where the file can be cut into ranges of about
   * `recordsPerRange` records that read on their own, so that several workers can share a big file.
   * It never fails: where it cannot follow the file (it is malformed), it stops cutting and leaves
   * the rest to one range, whose reading reports the problem exactly as `read` would.
   */
  split?(input: Readable, ctx: FeedReadContext, recordsPerRange: number): Promise<FeedSplit>;
  /**
   * Reads one range of a split file: the same items, with the same record and line numbers, that
   * `read` yields for that stretch of the file, in batches (one await per batch, not per row: that
   * matters at a million rows). `open` reads bytes [start, end) of the file.
   */
  readRange?(open: (start: number, end: number) => Readable, ctx: FeedReadContext, part: RangeToRead): AsyncIterable<FeedItem[]>;
}

/** A stretch of a file: bytes [startByte, endByte). */
export interface ByteRange {
  startByte: number;
  endByte: number;
}

/** A range of whole records found by a split pre-pass. */
export interface FeedRange extends ByteRange {
  /** The number of its first record in the file (records count from 1). */
  firstRecord: number;
  /** How many records it holds, by the pre-pass. */
  records: number;
  /** The line its first byte is on. */
  startLine: number;
}

export interface FeedSplit {
  /**
   * What every range but the first needs read in front of it, which the first holds itself: the
   * CSV header row, the XML root's start tag.
   */
  prefix: ByteRange | undefined;
  /** In file order; the first starts at byte 0 and the last ends at the end of the file. */
  ranges: FeedRange[];
  /** Records in the file, by the pre-pass: the total that progress counts towards. */
  records: number;
}

/** One range of a split file, with what reading it on its own needs to know. */
export interface RangeToRead {
  range: FeedRange;
  prefix: ByteRange | undefined;
  /** 0 for the first range. */
  index: number;
  last: boolean;
  /** The line the next range starts on, when there is one (a trailer must be the last row of a file). */
  nextLine: number | undefined;
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
