import { Transform, pipeline, type Readable, type TransformCallback } from 'node:stream';
import { parse } from 'fast-csv';
import { columnsOfHeader, csvLayoutOf, type CsvColumns, type CsvDelimiter, type CsvLayout } from './csv-layout';
import { DEFAULT_MAX_RECORD_CHARS, FeedFileError, type FeedAdapter, type FeedItem, type FeedReadContext, type RawUsageFields } from './types';
import { InvalidUtf8Error, StrictUtf8Decoder, countByteLineBreaks, countLineBreaks } from './utf8-text';

export interface CsvAdapterOptions {
  /**
   * Longest record accepted, in characters, when the read context sets none. fast-csv has no limit of
   * its own and re-scans a pending record on every chunk, so an unterminated quote early in a large
   * file would otherwise cost quadratic time and memory proportional to the file.
   */
  maxRecordChars?: number;
}

export { DEFAULT_MAX_RECORD_CHARS };

export function createCsvAdapter(options: CsvAdapterOptions = {}): FeedAdapter {
  const fallback = options.maxRecordChars ?? DEFAULT_MAX_RECORD_CHARS;
  return {
    format: 'csv',
    extensions: ['csv'],
    // The configured limit (MAX_RECORD_CHARS, passed per read) wins over the adapter's own.
    read: (input, ctx) => readCsv(input, ctx, ctx.maxRecordChars ?? fallback),
  };
}

export const csvAdapter: FeedAdapter = createCsvAdapter();

type ControlItem = Extract<FeedItem, { kind: 'control' }>;

async function* readCsv(input: Readable, ctx: FeedReadContext, maxRecordChars: number): AsyncGenerator<FeedItem> {
  let layout: CsvLayout;
  try {
    layout = csvLayoutOf(ctx.profile, ctx.fileName);
  } catch (error) {
    input.destroy();
    throw error;
  }
  const guard = new CsvGuard(ctx.fileName, maxRecordChars, layout.delimiter);
  // headers: false, so that we see every physical row: blank ones keep the line count exact, and the
  // header itself is checked here. fast-csv's header mode pads short rows with '' unless told to be
  // strict and reports a duplicate header as a bare Error.
  const parser = parse({ headers: false, ignoreEmpty: false, delimiter: layout.delimiter });
  pipeline(input, guard, parser, () => {
    // Errors reach the loop below through the parser's iterator; this callback only keeps pipeline
    // from reporting them a second time.
  });

  const { trailer } = layout;
  let columns: CsvColumns | undefined;
  let control: ControlItem | undefined;
  let record = 0;
  // fast-csv does not report positions, but it keeps every character of a quoted value and ends each
  // row at exactly one LF, CRLF or CR, so the breaks inside a row's values plus one give the next start.
  let nextLine = 1;
  try {
    for await (const row of parser as AsyncIterable<string[]>) {
      const line = nextLine;
      nextLine += 1 + lineBreaksInRow(row);
      // fast-csv yields [] for an empty or whitespace-only line.
      if (row.length === 0) continue;
      if (columns === undefined) {
        columns = columnsOfHeader(row, layout, ctx.fileName, line);
        continue;
      }
      if (control !== undefined) {
        // Totals that rows follow would not cover them: the file was assembled wrongly, or appended to.
        throw new FeedFileError(ctx.fileName, `line ${line}: a row follows the trailer row on line ${control.line}; the trailer must be the last row`);
      }
      if (trailer !== undefined && row[0] === trailer.marker) {
        control = controlOfTrailer(row, columns, line, ctx.fileName);
        continue;
      }
      record += 1;
      if (row.length !== columns.fields.length) {
        // Never padded or truncated into a row: a blank where a value should be must not be billed.
        yield { kind: 'row-error', record, line, message: `has ${row.length} columns, the header has ${columns.fields.length}` };
        continue;
      }
      yield { kind: 'row', record, line, fields: fieldsOfRow(row.map(unifyLineBreaks), columns) };
    }
  } catch (error) {
    // The guard sees every malformation fast-csv would throw for, and first; this is a backstop so
    // that a parse error still names the file. Anything else (a read error) is not the file's fault.
    if (error instanceof Error && error.message.startsWith('Parse Error')) {
      throw new FeedFileError(ctx.fileName, `line ${nextLine}: malformed CSV: ${error.message.slice(0, 200)}`);
    }
    throw error;
  }
  if (columns === undefined) {
    throw new FeedFileError(ctx.fileName, `the file is empty: expected a header row with ${layout.expected}`);
  }
  if (trailer !== undefined) {
    // The totals exist to catch a file cut short; a file without them cannot be checked, so it is not
    // read as complete. Held back until the end so that a control item always means "nothing follows".
    if (control === undefined) {
      throw new FeedFileError(
        ctx.fileName,
        `the file has no trailer row (a last row starting with ${JSON.stringify(trailer.marker)}, as the partner's feed profile requires): it may have been cut short`,
      );
    }
    yield control;
  }
}

/**
 * A line break inside a quoted value is data, but which bytes spell it depends on the exporting
 * system: CRLF and CR become LF, so a CRLF file and an LF file give identical rows (as XML does).
 */
function unifyLineBreaks(value: string): string {
  return value.includes('\r') ? value.replace(/\r\n?/g, '\n') : value;
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

function lineBreaksInRow(row: readonly string[]): number {
  let n = 0;
  for (const value of row) {
    if (value.indexOf('\n') !== -1 || value.indexOf('\r') !== -1) n += countLineBreaks(value);
  }
  return n;
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

// Character codes and states of CsvGuard's scanner.
const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const FIELD_START = 0;
const UNQUOTED = 1;
const QUOTED = 2;
const QUOTE_IN_QUOTED = 3;
const AFTER_CLOSING_QUOTE = 4;

/**
 * Between the file and fast-csv: decodes strict UTF-8 and follows the quoting just closely enough to
 * know where each record starts, so that what fast-csv cannot report well (an unterminated quote, text
 * after a closing quote, a runaway record, a bad byte) fails fast with the line it happened on.
 * It mirrors fast-csv's rules: a field is quoted when its first non-blank character is a quote, `""`
 * inside quotes is a quote, and a record ends at LF, CRLF or CR outside quotes. The delimiter is tested
 * before blanks, as fast-csv does, so that a tab-delimited file splits on its tabs.
 */
class CsvGuard extends Transform {
  private readonly decoder = new StrictUtf8Decoder();
  private state = FIELD_START;
  /** Physical line of the next character. */
  private line = 1;
  private afterCR = false;
  /** Characters scanned so far, and where the current record began. */
  private offset = 0;
  private recordStart = 0;
  private recordLine = 1;
  private quoteLine = 1;
  private readonly delimiter: number;

  constructor(
    private readonly fileName: string,
    private readonly maxRecordChars: number,
    delimiter: CsvDelimiter,
  ) {
    // Strings out: fast-csv decodes Buffers with a lenient StringDecoder, but passes strings through.
    super({ readableObjectMode: true });
    this.delimiter = delimiter.charCodeAt(0);
  }

  override _transform(chunk: unknown, _encoding: BufferEncoding, done: TransformCallback): void {
    try {
      const text = this.decode(chunk, () => this.decoder.write(chunk));
      this.scan(text);
      this.checkRecordLength(this.offset);
      if (text.length > 0) this.push(text);
      done();
    } catch (error) {
      done(error as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      const text = this.decode(undefined, () => this.decoder.end());
      this.scan(text);
      if (this.state === QUOTED) {
        throw this.fail(this.quoteLine, 'unterminated quoted field: the quote that opens on this line is never closed');
      }
      this.checkRecordLength(this.offset);
      if (text.length > 0) this.push(text);
      done();
    } catch (error) {
      done(error as Error);
    }
  }

  private decode(chunk: unknown, decode: () => string): string {
    try {
      return decode();
    } catch (error) {
      if (!(error instanceof InvalidUtf8Error)) throw error;
      const bytes = chunk instanceof Uint8Array ? chunk : undefined;
      const before = bytes === undefined ? 0 : countByteLineBreaks(bytes, error.byteOffset ?? 0, this.afterCR);
      throw this.fail(this.line + before, error.describe(bytes));
    }
  }

  private scan(text: string): void {
    // Locals rather than fields: this loop runs once per character of the file.
    let { state, line, afterCR, recordStart, recordLine, quoteLine } = this;
    const delimiter = this.delimiter;
    const base = this.offset;
    for (let i = 0; i < text.length; i += 1) {
      const c = text.charCodeAt(i);
      if (c === LF) {
        if (afterCR) {
          // The LF of a CRLF: the line and the record already ended at the CR.
          afterCR = false;
          continue;
        }
        line += 1;
      } else if (c === CR) {
        line += 1;
        afterCR = true;
      } else {
        afterCR = false;
      }
      const newline = c === LF || c === CR;
      switch (state) {
        case FIELD_START:
          if (c === QUOTE) {
            state = QUOTED;
            quoteLine = line;
          } else if (newline) {
            state = FIELD_START;
          } else if (c !== delimiter && !isBlank(c)) {
            state = UNQUOTED;
          }
          break;
        case UNQUOTED:
          if (c === delimiter) state = FIELD_START;
          break;
        case QUOTED:
          if (c === QUOTE) state = QUOTE_IN_QUOTED;
          break;
        case QUOTE_IN_QUOTED:
        case AFTER_CLOSING_QUOTE:
          if (c === QUOTE && state === QUOTE_IN_QUOTED) state = QUOTED;
          else if (c === delimiter) state = FIELD_START;
          else if (isBlank(c)) state = AFTER_CLOSING_QUOTE;
          else if (!newline) {
            throw this.fail(
              line,
              `unexpected ${JSON.stringify(String.fromCharCode(c))} after the closing quote of a quoted field (a quote inside a quoted field is written as "")`,
            );
          }
          break;
      }
      if (newline && state !== QUOTED) {
        const end = base + i;
        if (end - recordStart > this.maxRecordChars) {
          throw this.fail(recordLine, `the record starting on this line is longer than ${this.maxRecordChars} characters`);
        }
        state = FIELD_START;
        recordStart = end + 1;
        recordLine = line;
      }
    }
    this.state = state;
    this.line = line;
    this.afterCR = afterCR;
    this.recordStart = recordStart;
    this.recordLine = recordLine;
    this.quoteLine = quoteLine;
    this.offset = base + text.length;
  }

  /** A record still open at `end` may already be too long: stop before fast-csv buffers more of it. */
  private checkRecordLength(end: number): void {
    if (end - this.recordStart <= this.maxRecordChars) return;
    if (this.state === QUOTED) {
      throw this.fail(
        this.quoteLine,
        `a quoted field opened on this line is still open after ${this.maxRecordChars} characters: is its closing quote missing?`,
      );
    }
    throw this.fail(this.recordLine, `the record starting on this line is longer than ${this.maxRecordChars} characters`);
  }

  private fail(line: number, detail: string): FeedFileError {
    return new FeedFileError(this.fileName, `line ${line}: ${detail}`);
  }
}

/** What fast-csv skips as blank around fields: JavaScript's \s without the line breaks. */
function isBlank(c: number): boolean {
  if (c === 0x20 || c === 0x09) return true;
  if (c < 0x80) return c === 0x0b || c === 0x0c;
  return (
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}
