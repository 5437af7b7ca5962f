import type { Readable } from 'node:stream';
import { columnsOfHeader, csvLayoutOf, type CsvColumns, type CsvLayout } from './csv-layout';
import { type CsvRecord, CsvScanner } from './csv-scanner';
import {
  DEFAULT_MAX_RECORD_CHARS,
  FeedFileError,
  type FeedAdapter,
  type FeedItem,
  type FeedRange,
  type FeedReadContext,
  type FeedSplit,
  type RangeToRead,
  type RawUsageFields,
} from './types';

export interface CsvAdapterOptions {
  /**
   * Longest record accepted, in characters, when the read context sets none. A record is only held
   * until it ends, so this also bounds memory: an unterminated quote early in a large file is
   * refused once it has run this long, instead of buffering the rest of the file.
   */
  maxRecordChars?: number;
}

export { DEFAULT_MAX_RECORD_CHARS };

export function createCsvAdapter(options: CsvAdapterOptions = {}): FeedAdapter {
  const fallback = options.maxRecordChars ?? DEFAULT_MAX_RECORD_CHARS;
  // The configured limit (MAX_RECORD_CHARS, passed per read) wins over the adapter's own.
  const limit = (ctx: FeedReadContext) => ctx.maxRecordChars ?? fallback;
  return {
    format: 'csv',
    extensions: ['csv'],
    read: (input, ctx) => readCsv(input, ctx, limit(ctx), WHOLE_FILE),
    split: (input, ctx, recordsPerRange) => splitCsv(input, ctx, limit(ctx), recordsPerRange),
    readRange: (open, ctx, part) => readCsvRange(open, ctx, limit(ctx), part),
  };
}

export const csvAdapter: FeedAdapter = createCsvAdapter();

type ControlItem = Extract<FeedItem, { kind: 'control' }>;

/** Which stretch of the file a read covers, and what it needs to know about the rest. */
interface Stretch {
  /** The header row's columns when the stretch starts after it; undefined: the stretch starts with it. */
  columns: CsvColumns | undefined;
  firstLine: number;
  firstRecord: number;
  /** The end of the file is in this stretch: the trailer (if any) must be in it. */
  last: boolean;
  /** Where the next stretch starts, when this one is not the last. */
  nextLine: number | undefined;
  /**
   * The rest of the file after the stretch, when it is not the last: read only if the stretch holds
   * the trailer, to find what reading the whole file would find first after it (the row that
   * follows it, or a fault on the way there).
   */
  readOn?: () => Readable;
}

const WHOLE_FILE: Stretch = { columns: undefined, firstLine: 1, firstRecord: 1, last: true, nextLine: undefined };

function layoutFor(input: Readable, ctx: FeedReadContext): CsvLayout {
  try {
    return csvLayoutOf(ctx.profile, ctx.fileName);
  } catch (error) {
    input.destroy();
    throw error;
  }
}

function scannerFor(ctx: FeedReadContext, layout: CsvLayout, maxRecordChars: number, mode: 'parse' | 'scan', line: number, fileStart: boolean): CsvScanner {
  return new CsvScanner({ fileName: ctx.fileName, delimiter: layout.delimiter.charCodeAt(0), maxRecordChars, mode, line, fileStart });
}

function bytesOf(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk);
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError('a feed stream must yield Buffers or strings');
}

async function* readCsv(input: Readable, ctx: FeedReadContext, maxRecordChars: number, stretch: Stretch): AsyncGenerator<FeedItem> {
  for await (const batch of readCsvBatches(input, ctx, maxRecordChars, stretch)) yield* batch;
}

/** The items of a stretch, a batch per chunk read: one await per chunk rather than per row. */
async function* readCsvBatches(input: Readable, ctx: FeedReadContext, maxRecordChars: number, stretch: Stretch): AsyncGenerator<FeedItem[]> {
  const layout = layoutFor(input, ctx);
  const scanner = scannerFor(ctx, layout, maxRecordChars, 'parse', stretch.firstLine, stretch.columns === undefined && stretch.firstLine === 1);
  const rows = new RowReader(ctx.fileName, layout, stretch, scanner);
  const records = scanner.records;
  const batch: FeedItem[] = [];
  try {
    for await (const chunk of input as AsyncIterable<unknown>) {
      scanner.push(bytesOf(chunk));
      rows.take(records, batch);
      if (batch.length > 0) yield batch.splice(0);
    }
    if (rows.trailerSeen && stretch.readOn !== undefined) {
      // A trailer with more of the file after it: the next row there is refused (take throws), or a fault before it.
      for await (const chunk of stretch.readOn() as AsyncIterable<unknown>) {
        scanner.push(bytesOf(chunk));
        rows.take(records, batch);
      }
    }
    scanner.end();
  } catch (error) {
    // Records completed before a fault in the same chunk are sound; hand them out before the error.
    // They come before the fault in the file: a problem in one of them (the header, a misplaced
    // trailer) is the file's first, whatever the scanner found after it in the same chunk.
    let first = error;
    if (error instanceof FeedFileError) {
      try {
        rows.take(records, batch);
      } catch (earlier) {
        first = earlier;
      }
    }
    if (batch.length > 0) yield batch.splice(0);
    throw first;
  }
  rows.take(records, batch);
  rows.finish(batch);
  if (batch.length > 0) yield batch;
}

/** Turns scanned records into feed items: the header, rows, row errors and the trailer's totals. */
class RowReader {
  private columns: CsvColumns | undefined;
  private control: ControlItem | undefined;
  private record: number;

  constructor(
    private readonly fileName: string,
    private readonly layout: CsvLayout,
    private readonly stretch: Stretch,
    /** Says whether a NUL byte has been seen, so that rows need checking for one. */
    private readonly scanner: { readonly sawNul: boolean },
  ) {
    this.columns = stretch.columns;
    this.record = stretch.firstRecord - 1;
  }

  get trailerSeen(): boolean {
    return this.control !== undefined;
  }

  /** Adds the items of the records scanned so far to `out`; empties `records`. */
  take(records: CsvRecord[], out: FeedItem[]): void {
    const { trailer } = this.layout;
    for (const { fields, line } of records.splice(0)) {
      const row = fields!;
      if (this.columns === undefined) {
        this.columns = columnsOfHeader(row, this.layout, this.fileName, line);
        continue;
      }
      if (this.control !== undefined) {
        // Totals that rows follow would not cover them: the file was assembled wrongly, or appended to.
        throw this.trailerNotLast(line);
      }
      if (trailer !== undefined && row[0] === trailer.marker) {
        this.control = controlOfTrailer(row, this.columns, line, this.fileName);
        continue;
      }
      this.record += 1;
      if (row.length !== this.columns.fields.length) {
        // Never padded or truncated into a row: a blank where a value should be must not be billed.
        out.push({ kind: 'row-error', record: this.record, line, message: `has ${row.length} columns, the header has ${this.columns.fields.length}` });
        continue;
      }
      const nul = this.scanner.sawNul ? nulFieldOf(row, this.columns) : undefined;
      if (nul !== undefined) {
        // PostgreSQL cannot store a NUL in text, and no value means one: the row is refused, not the file.
        out.push({ kind: 'row-error', record: this.record, line, field: nul, message: `${nul} contains a NUL character (byte 0x00), which no value may hold` });
        continue;
      }
      out.push({ kind: 'row', record: this.record, line, fields: fieldsOfRow(row, this.columns) });
    }
  }

  /** What the end of the stretch implies: an empty file, a missing or misplaced trailer. */
  finish(out: FeedItem[]): void {
    const { trailer, expected } = this.layout;
    if (this.columns === undefined) {
      throw new FeedFileError(this.fileName, `the file is empty: expected a header row with ${expected}`);
    }
    if (!this.stretch.last) {
      // The next stretch has rows (every stretch but the last ends before one), so a trailer here is not the last row.
      if (this.control !== undefined) throw this.trailerNotLast(this.stretch.nextLine ?? 0);
      return;
    }
    if (trailer !== undefined) {
      // The totals exist to catch a file cut short; a file without them cannot be checked, so it is not
      // read as complete. Held back until the end so that a control item always means "nothing follows".
      if (this.control === undefined) {
        throw new FeedFileError(
          this.fileName,
          `the file has no trailer row (a last row starting with ${JSON.stringify(trailer.marker)}, as the partner's feed profile requires): it may have been cut short`,
        );
      }
      out.push(this.control);
    }
  }

  private trailerNotLast(line: number): FeedFileError {
    return new FeedFileError(this.fileName, `line ${line}: a row follows the trailer row on line ${this.control?.line}; the trailer must be the last row`);
  }
}

/** The trailer's totals, raw. It may stop short of the header's width; a cell it lacks is absent, never ''. */
function controlOfTrailer(row: readonly string[], columns: CsvColumns, line: number, fileName: string): ControlItem {
  if (row.length > columns.fields.length) {
    throw new FeedFileError(fileName, `line ${line}: the trailer row has ${row.length} columns, the header has ${columns.fields.length}`);
  }
  const control: ControlItem = { kind: 'control', line };
  const recordCount = columns.recordCountIndex === undefined ? undefined : row[columns.recordCountIndex];
  const quantitySum = columns.quantitySumIndex === undefined ? undefined : row[columns.quantitySumIndex];
  if (recordCount !== undefined) control.recordCount = recordCount;
  if (quantitySum !== undefined) control.quantitySum = quantitySum;
  return control;
}

/** The first field of the row (one that is read, not an ignored column) holding a NUL character. */
function nulFieldOf(row: readonly string[], columns: CsvColumns): string | undefined {
  const { fields: names } = columns;
  for (let i = 0; i < names.length; i += 1) {
    const name = names[i];
    if (name !== undefined && row[i]?.includes('\u0000') === true) return name;
  }
  return undefined;
}

function fieldsOfRow(row: readonly string[], columns: CsvColumns): RawUsageFields {
  const fields: RawUsageFields = {};
  const { fields: names, optional } = columns;
  for (let i = 0; i < names.length; i += 1) {
    const name = names[i];
    const value = row[i];
    // An ignored column has no name; an empty optional value is the same as leaving it out.
    if (name === undefined || value === undefined || (value === '' && optional[i] === true)) continue;
    fields[name] = value;
  }
  return fields;
}

/**
 * The pre-pass: the same scanner without building fields, cutting before every `recordsPerRange`-th
 * record after the header. The header row is the prefix every later range is read with.
 */
async function splitCsv(input: Readable, ctx: FeedReadContext, maxRecordChars: number, recordsPerRange: number): Promise<FeedSplit> {
  let layout: CsvLayout;
  try {
    layout = csvLayoutOf(ctx.profile, ctx.fileName);
  } catch {
    // The read reports the profile's problem; there is nothing to split.
    input.destroy();
    return { prefix: undefined, ranges: [{ startByte: 0, endByte: Number.MAX_SAFE_INTEGER, firstRecord: 1, records: 0, startLine: 1 }], records: 0 };
  }
  const scanner = scannerFor(ctx, layout, maxRecordChars, 'scan', 1, true);
  const ranges: FeedRange[] = [{ startByte: 0, endByte: 0, firstRecord: 1, records: 0, startLine: 1 }];
  let prefix: FeedSplit['prefix'];
  let records = 0;
  let bytes = 0;
  const take = () => {
    for (const r of scanner.records) {
      if (prefix === undefined) {
        prefix = { startByte: 0, endByte: r.endByte };
        continue;
      }
      const current = ranges[ranges.length - 1]!;
      if (current.records >= recordsPerRange) {
        current.endByte = r.startByte;
        ranges.push({ startByte: r.startByte, endByte: 0, firstRecord: records + 1, records: 0, startLine: r.line });
      }
      ranges[ranges.length - 1]!.records += 1;
      records += 1;
    }
    scanner.records.length = 0;
  };
  try {
    for await (const chunk of input as AsyncIterable<unknown>) {
      const b = bytesOf(chunk);
      bytes += b.length;
      scanner.push(b);
      take();
    }
    scanner.end();
    take();
  } catch (error) {
    if (!(error instanceof FeedFileError)) throw error;
    // Malformed from here on: no more cuts. The last range reads to the end and reports it.
    input.destroy();
    bytes = Number.MAX_SAFE_INTEGER;
  }
  const last = ranges[ranges.length - 1]!;
  last.endByte = bytes;
  if (layout.trailer !== undefined && last.records > 0) {
    // The last row is the trailer, which is not a record (a file without one is refused when read).
    last.records -= 1;
    records -= 1;
  }
  return { prefix, ranges, records };
}

async function* readCsvRange(open: (start: number, end: number) => Readable, ctx: FeedReadContext, maxRecordChars: number, part: RangeToRead): AsyncGenerator<FeedItem[]> {
  const { range } = part;
  let columns: CsvColumns | undefined;
  if (part.index > 0) {
    if (part.prefix === undefined) throw new Error(`${ctx.fileName}: range ${part.index + 1} has no header to read it with`);
    // The header, read as the first range reads it (its errors are that range's to report first).
    columns = await headerColumns(open(part.prefix.startByte, part.prefix.endByte), ctx, maxRecordChars);
  }
  yield* readCsvBatches(open(range.startByte, range.endByte), ctx, maxRecordChars, {
    columns,
    firstLine: range.startLine,
    firstRecord: range.firstRecord,
    last: part.last,
    nextLine: part.nextLine,
    ...(part.last ? {} : { readOn: () => open(range.endByte, Number.MAX_SAFE_INTEGER) }),
  });
}

async function headerColumns(input: Readable, ctx: FeedReadContext, maxRecordChars: number): Promise<CsvColumns> {
  const layout = layoutFor(input, ctx);
  const scanner = scannerFor(ctx, layout, maxRecordChars, 'parse', 1, true);
  for await (const chunk of input as AsyncIterable<unknown>) scanner.push(bytesOf(chunk));
  scanner.end();
  const header = scanner.records[0];
  if (header?.fields === undefined) throw new FeedFileError(ctx.fileName, `the file is empty: expected a header row with ${layout.expected}`);
  return columnsOfHeader(header.fields, layout, ctx.fileName, header.line);
}
