import { isUtf8 } from 'node:buffer';
import { FeedFileError } from './types';
import { InvalidUtf8Error, completeLength, firstInvalidUtf8Byte } from './utf8-text';

/**
 * The CSV tokenizer, on bytes. It follows the rules fast-csv follows (and that feeds were written
 * for): a field is quoted when its first non-blank character is a quote, and then leading blanks
 * are dropped; `""` inside quotes is a quote; an unquoted field is kept exactly as written, blanks
 * included; a record ends at LF, CRLF or CR outside quotes; a line of nothing but blanks is no
 * record at all. The delimiter is tested before blanks, so a tab-delimited file splits on its tabs.
 *
 * What it refuses, it refuses at once and names the line: text after a closing quote, a quote left
 * open at the end, a record longer than the limit (so one runaway record never makes it buffer the
 * rest of the file), bytes that are not UTF-8. It never decodes the file as a whole: it validates
 * UTF-8 on the bytes and decodes only field values, which is what makes a million-row feed take
 * about a second instead of ten.
 *
 * The same state machine, without building fields ('scan' mode), is the pre-pass that finds where a
 * big file can be cut into chunks: record boundaries, which only quoting decides.
 */

const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;

const FIELD_START = 0;
const UNQUOTED = 1;
const QUOTED = 2;
const QUOTE_IN_QUOTED = 3;
const AFTER_CLOSING_QUOTE = 4;

export interface CsvScannerOptions {
  fileName: string;
  /** The delimiter's character code: , ; tab or | (all ASCII). */
  delimiter: number;
  maxRecordChars: number;
  /** 'parse' builds each record's fields and checks UTF-8; 'scan' only finds record boundaries. */
  mode: 'parse' | 'scan';
  /** The physical line the first byte is on (1 at the start of a file). */
  line: number;
  /** Whether the input is the start of the file, where a UTF-8 byte order mark is dropped. */
  fileStart: boolean;
}

export interface CsvRecord {
  /** The fields, in 'parse' mode. */
  fields: string[] | undefined;
  /** The line the record starts on. */
  line: number;
  /** Offset of the record's first byte (the start of its line) from the first byte given to the scanner. */
  startByte: number;
  /** Offset just past the record's line break (or its last byte at the end of the input). */
  endByte: number;
}

export class CsvScanner {
  private readonly delimiter: number;
  private readonly parse: boolean;
  /** Unscanned input plus the open record, which starts at `recordStart`. */
  private buf: Buffer = Buffer.alloc(0);
  /** Absolute offset (from the first byte pushed) of buf[0]. */
  private bufBase = 0;
  private pos = 0;
  private state = FIELD_START;
  private line: number;
  private afterCR = false;
  private recordStart = 0;
  private recordLine: number;
  private quoteLine: number;
  private fieldStart = 0;
  private valueStart = 0;
  private valueEnd = 0;
  private escapedQuote = false;
  /** A field (or a delimiter) has been seen in the open record: it is not a blank line. */
  private fields: string[] = [];
  private fieldCount = 0;
  private bomChecked: boolean;
  private utf8Tail: Buffer | undefined;
  /** A NUL byte has been seen ('parse' mode): from then on, rows are checked for one (see RowReader). */
  sawNul = false;
  /** Records completed by the last push; the caller takes them out. */
  readonly records: CsvRecord[] = [];

  constructor(private readonly o: CsvScannerOptions) {
    this.delimiter = o.delimiter;
    this.parse = o.mode === 'parse';
    this.line = o.line;
    this.recordLine = o.line;
    this.quoteLine = o.line;
    this.bomChecked = !o.fileStart;
  }

  push(chunk: Buffer): void {
    if (!this.bomChecked) {
      const joined = this.buf.length > 0 ? Buffer.concat([this.buf, chunk]) : chunk;
      if (joined.length < 3 && joined.every((b, i) => b === BOM[i])) {
        // Could still be a BOM: wait for more.
        this.buf = joined;
        return;
      }
      this.bomChecked = true;
      const bom = joined[0] === 0xef && joined[1] === 0xbb && joined[2] === 0xbf ? 3 : 0;
      this.bufBase += bom;
      this.buf = Buffer.alloc(0);
      chunk = joined.subarray(bom);
    }
    const fault = this.parse ? this.checkUtf8(chunk) : undefined;
    if (fault !== undefined) {
      // The bytes before the offending one are read first: a problem in them comes first in the file,
      // and must be the one reported however the bytes were chunked.
      this.scanMore(chunk.subarray(0, Math.max(0, fault.offset)));
      throw this.fail(this.line, fault.error.describe());
    }
    this.scanMore(chunk);
  }

  private scanMore(chunk: Buffer): void {
    if (this.parse && !this.sawNul && chunk.indexOf(0) !== -1) this.sawNul = true;
    this.buf = this.buf.length > this.recordStart ? Buffer.concat([this.buf.subarray(this.recordStart), chunk]) : chunk;
    this.rebase(this.recordStart);
    this.scan(false);
    this.checkOpenRecord();
  }

  end(): void {
    if (!this.bomChecked) {
      this.bomChecked = true;
      const leftover = this.buf;
      this.buf = Buffer.alloc(0);
      if (leftover.length > 0) {
        const fault = this.parse ? this.checkUtf8(leftover) : undefined;
        if (fault !== undefined) {
          this.scanMore(leftover.subarray(0, Math.max(0, fault.offset)));
          throw this.fail(this.line, fault.error.describe());
        }
        if (this.parse && leftover.indexOf(0) !== -1) this.sawNul = true;
        this.buf = leftover;
      }
    }
    if (this.parse && this.utf8Tail !== undefined && this.utf8Tail.length > 0) {
      throw this.fail(this.line, new InvalidUtf8Error(undefined, true).message);
    }
    this.scan(true);
    // A record too long ends before the file does: that comes first.
    this.checkOpenRecord();
    if (this.state === QUOTED) {
      throw this.fail(this.quoteLine, 'unterminated quoted field: the quote that opens on this line is never closed');
    }
    this.finishRecord(this.buf.length);
  }

  /** Where the scan is, from the first byte pushed: the start of the open record. */
  get openRecordStart(): number {
    return this.bufBase + this.recordStart;
  }

  private rebase(shift: number): void {
    this.bufBase += shift;
    this.pos -= shift;
    this.fieldStart -= shift;
    this.valueStart -= shift;
    this.valueEnd -= shift;
    this.recordStart = 0;
  }

  private scan(atEnd: boolean): void {
    const buf = this.buf;
    const n = buf.length;
    const delimiter = this.delimiter;
    let { state, line, afterCR } = this;
    let i = this.pos;
    for (; i < n; i += 1) {
      const c = buf[i]!;
      // The common case, first: a byte that is data in the state it is in.
      if (c !== LF && c !== CR && c !== QUOTE && c !== delimiter) {
        afterCR = false;
        if (state === UNQUOTED || state === QUOTED) continue;
        if (c < 0x80) {
          if (c === 0x20 || c === 0x09 || c === 0x0b || c === 0x0c) {
            if (state === QUOTE_IN_QUOTED) {
              state = AFTER_CLOSING_QUOTE;
              this.closeQuoted(i);
            }
            continue;
          }
          if (state === FIELD_START) {
            state = UNQUOTED;
            continue;
          }
          throw this.faultAt(i, this.afterClosingQuote(line, String.fromCharCode(c)));
        }
        // Non-ASCII where blanks matter: decode the character (it may continue in the next chunk).
        const size = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        if (i + size > n && !atEnd) break;
        const code = codePointAt(buf, i, size);
        if (isUnicodeBlank(code)) {
          if (state === QUOTE_IN_QUOTED) {
            state = AFTER_CLOSING_QUOTE;
            this.closeQuoted(i);
          }
          i += size - 1;
          continue;
        }
        if (state === FIELD_START) {
          state = UNQUOTED;
          i += size - 1;
          continue;
        }
        throw this.faultAt(i, this.afterClosingQuote(line, String.fromCharCode(code > 0xffff ? 0xd800 + ((code - 0x10000) >> 10) : code)));
      }
      if (c === LF) {
        if (afterCR) {
          // The LF of a CRLF: the line (and the record, outside quotes) already ended at the CR.
          afterCR = false;
          if (state !== QUOTED) {
            this.recordStart = i + 1;
            this.fieldStart = i + 1;
          }
          continue;
        }
        line += 1;
      } else if (c === CR) {
        line += 1;
        afterCR = true;
      } else {
        afterCR = false;
      }
      if (c === QUOTE) {
        if (state === FIELD_START) {
          state = QUOTED;
          this.quoteLine = line;
          this.valueStart = i + 1;
          this.escapedQuote = false;
        } else if (state === QUOTED) {
          state = QUOTE_IN_QUOTED;
        } else if (state === QUOTE_IN_QUOTED) {
          state = QUOTED;
          this.escapedQuote = true;
        } else if (state === AFTER_CLOSING_QUOTE) {
          throw this.faultAt(i, this.afterClosingQuote(line, '"'));
        }
        continue;
      }
      if (c === delimiter) {
        if (state === QUOTED) continue;
        if (state === QUOTE_IN_QUOTED) this.closeQuoted(i);
        this.endField(state, i);
        state = FIELD_START;
        this.fieldStart = i + 1;
        continue;
      }
      // A line break.
      if (state === QUOTED) continue;
      if (state === QUOTE_IN_QUOTED) this.closeQuoted(i);
      const recordEnd = i;
      if (recordEnd - this.recordStart > this.o.maxRecordChars && this.charsBetween(this.recordStart, recordEnd) > this.o.maxRecordChars) {
        throw this.tooLong();
      }
      if (state !== FIELD_START || this.fieldCount > 0) this.endField(state, i);
      // A CR's LF, if one follows, belongs to this record's line break.
      const next = c === CR && i + 1 < n && buf[i + 1] === LF ? i + 2 : i + 1;
      this.finishRecord(next);
      state = FIELD_START;
      this.recordStart = next;
      this.fieldStart = next;
      this.recordLine = line;
    }
    this.pos = i;
    this.state = state;
    this.line = line;
    this.afterCR = afterCR;
    // Blank-only text at the end is no record, as a blank line is none.
    if (atEnd && state !== QUOTED && (state !== FIELD_START || this.fieldCount > 0)) {
      if (state === QUOTE_IN_QUOTED) this.closeQuoted(n);
      this.endField(state, n);
    }
  }

  /** The closing quote of a quoted field is at `at`: its value ends there. */
  private closeQuoted(at: number): void {
    this.valueEnd = at - 1;
  }

  private endField(state: number, at: number): void {
    this.fieldCount += 1;
    if (!this.parse) return;
    let value: string;
    if (state === QUOTE_IN_QUOTED || state === AFTER_CLOSING_QUOTE) {
      value = this.buf.toString('utf8', this.valueStart, this.valueEnd);
      if (this.escapedQuote) value = value.replaceAll('""', '"');
      // A line break inside a quoted value is data, but which bytes spell it depends on the
      // exporting system: CRLF and CR become LF, so a CRLF file and an LF file give identical rows.
      if (value.includes('\r')) value = value.replace(/\r\n?/g, '\n');
    } else if (state === FIELD_START && this.fieldCount === 1) {
      // Blanks alone before a record's first delimiter are no value (fast-csv reads the row's
      // leading blanks as the start of a blank line); elsewhere a blank value is kept as written.
      value = '';
    } else {
      value = this.buf.toString('utf8', this.fieldStart, at);
    }
    this.fields.push(value);
  }

  private finishRecord(next: number): void {
    if (this.fieldCount > 0) {
      this.records.push({
        fields: this.parse ? this.fields : undefined,
        line: this.recordLine,
        startByte: this.bufBase + this.recordStart,
        endByte: this.bufBase + next,
      });
      if (this.parse) this.fields = [];
    }
    this.fieldCount = 0;
  }

  /** An open record may already be too long: stop before buffering more of it. What is scanned counts, not what waits. */
  private checkOpenRecord(): void {
    const end = this.pos;
    if (end - this.recordStart <= this.o.maxRecordChars || this.charsBetween(this.recordStart, end) <= this.o.maxRecordChars) return;
    throw this.tooLong();
  }

  /**
   * A fault at buf[at] in the open record, unless the record has already run past the limit before it:
   * then that came first (which is what reading in small chunks would find).
   */
  private faultAt(at: number, fault: FeedFileError): FeedFileError {
    if (at - this.recordStart > this.o.maxRecordChars && this.charsBetween(this.recordStart, at) > this.o.maxRecordChars) return this.tooLong();
    return fault;
  }

  /**
   * The open record is longer than the limit. What it says depends on where the record is when it
   * passes the limit (inside a quoted field: probably a missing closing quote), found by reading the
   * record again up to there, so that it does not depend on where a chunk happened to end.
   */
  private tooLong(): FeedFileError {
    const { buf, delimiter } = this;
    const max = this.o.maxRecordChars;
    let state = FIELD_START;
    let line = this.recordLine;
    let quoteLine = line;
    let afterCR = false;
    let chars = 0;
    for (let i = this.recordStart; i < buf.length; i += 1) {
      const c = buf[i]!;
      if ((c & 0xc0) !== 0x80) {
        chars += c >= 0xf0 ? 2 : 1;
        if (chars > max) break;
      }
      if (c === LF) {
        if (!afterCR) line += 1;
        afterCR = false;
      } else if (c === CR) {
        line += 1;
        afterCR = true;
      } else afterCR = false;
      if (state === QUOTED) {
        if (c === QUOTE) state = QUOTE_IN_QUOTED;
      } else if (state === QUOTE_IN_QUOTED) {
        state = c === QUOTE ? QUOTED : c === delimiter ? FIELD_START : AFTER_CLOSING_QUOTE;
      } else if (c === delimiter) {
        state = FIELD_START;
      } else if (state === FIELD_START) {
        if (c === QUOTE) {
          state = QUOTED;
          quoteLine = line;
        } else if (c >= 0x80) {
          const size = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
          if (!isUnicodeBlank(codePointAt(buf, i, size))) state = UNQUOTED;
        } else if (!(c === 0x20 || c === 0x09 || c === 0x0b || c === 0x0c)) state = UNQUOTED;
      }
    }
    if (state === QUOTED) {
      return this.fail(quoteLine, `a quoted field opened on this line is still open after ${max} characters: is its closing quote missing?`);
    }
    return this.fail(this.recordLine, `the record starting on this line is longer than ${max} characters`);
  }

  /** Characters (UTF-16 code units, as JavaScript counts a string's length) in buf[from, to). */
  private charsBetween(from: number, to: number): number {
    let chars = 0;
    for (let i = from; i < to; i += 1) {
      const b = this.buf[i]!;
      if ((b & 0xc0) !== 0x80) chars += b >= 0xf0 ? 2 : 1;
    }
    return chars;
  }

  /**
   * Checks that the chunk continues the file as UTF-8. If not: where in the chunk the offending byte
   * is (negative when it began a character in the chunk before), and the error naming it.
   */
  private checkUtf8(chunk: Buffer): { offset: number; error: InvalidUtf8Error } | undefined {
    const held = this.utf8Tail?.length ?? 0;
    const data = this.utf8Tail === undefined ? chunk : Buffer.concat([this.utf8Tail, chunk]);
    // A character cut by the chunk's end is checked with the next chunk.
    const whole = completeLength(data);
    if (!isUtf8(data.subarray(0, whole))) {
      // The held bytes start a character: the data starts at a character boundary.
      const bad = firstInvalidUtf8Byte(data, true) ?? 0;
      return { offset: bad - held, error: new InvalidUtf8Error(bad - held, false, data[bad]) };
    }
    this.utf8Tail = whole < data.length ? Buffer.from(data.subarray(whole)) : undefined;
    return undefined;
  }

  private afterClosingQuote(line: number, char: string): FeedFileError {
    return this.fail(line, `unexpected ${JSON.stringify(char)} after the closing quote of a quoted field (a quote inside a quoted field is written as "")`);
  }

  private fail(line: number, detail: string): FeedFileError {
    return new FeedFileError(this.o.fileName, `line ${line}: ${detail}`);
  }
}

const BOM = [0xef, 0xbb, 0xbf];

function codePointAt(buf: Buffer, i: number, size: number): number {
  const b0 = buf[i]!;
  if (size === 1) return b0;
  const b1 = (buf[i + 1] ?? 0) & 0x3f;
  if (size === 2) return ((b0 & 0x1f) << 6) | b1;
  const b2 = (buf[i + 2] ?? 0) & 0x3f;
  if (size === 3) return ((b0 & 0x0f) << 12) | (b1 << 6) | b2;
  const b3 = (buf[i + 3] ?? 0) & 0x3f;
  return ((b0 & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3;
}

/** What fast-csv skips as blank around quoted fields beyond ASCII: JavaScript's \s without the line breaks. */
function isUnicodeBlank(c: number): boolean {
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
