import type { Readable } from 'node:stream';
import type { FeedRange, FeedSplit } from './types';

/**
 * The pre-pass that finds where an XML feed can be cut: before a record (a child of the root) whose
 * start tag begins a line, after nothing but indentation. It follows just enough of XML to know
 * where markup is (tags and their quoted attribute values, comments, CDATA, processing
 * instructions) and how deep it is; it checks nothing, because each range is then read by the real
 * parser, which checks everything. Where it meets what it does not follow (a DOCTYPE, markup that
 * never ends) it stops cutting, and the rest of the file is one range whose reading reports the
 * problem exactly as reading the whole file would.
 */

const LT = 0x3c;
const GT = 0x3e;
const LF = 0x0a;
const CR = 0x0d;
const SLASH = 0x2f;
const BANG = 0x21;
const QUESTION = 0x3f;
const DQUOTE = 0x22;
const SQUOTE = 0x27;

/** Between two records, at most this much may lie before a cut (else reading the parts could measure it differently). */
const MAX_GAP = 4096;

class GiveUp extends Error {}

export async function splitXml(input: Readable, recordsPerRange: number, maxRecordChars: number): Promise<FeedSplit> {
  const splitter = new XmlSplitter(recordsPerRange, Math.min(MAX_GAP, maxRecordChars), maxRecordChars * 4 + 64);
  let total = 0;
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      total += chunk.length;
      splitter.push(chunk);
    }
  } catch (error) {
    if (!(error instanceof GiveUp)) throw error;
    input.destroy();
    total = Number.MAX_SAFE_INTEGER;
  }
  return splitter.result(total);
}

class XmlSplitter {
  private readonly ranges: FeedRange[] = [{ startByte: 0, endByte: 0, firstRecord: 1, records: 0, startLine: 1 }];
  private prefix: FeedSplit['prefix'];
  private records = 0;
  /** The root element has ended (or the pre-pass lost count of where it is): no more cuts. */
  private rootEnded = false;
  /** Bytes in the root element's name. */
  private rootNameLength = 0;
  private carry: Buffer | undefined;
  /** Absolute offset of the current buffer's first byte. */
  private base = 0;
  private depth = 0;
  private line = 1;
  private afterCR = false;
  /** Absolute offset where the last record (or the root start tag) ended. */
  private lastRecordEnd = 0;
  /** Lines are counted up to this offset of the current buffer. */
  private counted = 0;
  /** Where the next buffer's scan starts (after the carried bytes already consumed). */
  private resumeAt = 0;
  /** The next quote and CR at or after a position of the current buffer (searched once, not per tag). */
  private readonly next = { [DQUOTE]: -2, [SQUOTE]: -2, [CR]: -2 };

  constructor(
    private readonly recordsPerRange: number,
    private readonly maxGap: number,
    private readonly maxCarry: number,
  ) {}

  push(chunk: Buffer): void {
    const buf = this.carry === undefined ? chunk : Buffer.concat([this.carry, chunk]);
    const n = buf.length;
    this.next[DQUOTE] = this.next[SQUOTE] = this.next[CR] = -2;
    let i = this.resumeAt;
    // Everything before `i` is consumed; markup that runs past the end of the buffer waits for more.
    for (;;) {
      const lt = buf.indexOf(LT, i);
      if (lt === -1) {
        i = n;
        break;
      }
      const end = this.markupEnd(buf, lt, n);
      if (end === -1) {
        i = lt;
        break;
      }
      const next = buf[lt + 1]!;
      if (next === SLASH) {
        this.depth -= 1;
        if (this.depth === 1) this.lastRecordEnd = this.base + end;
        // The root has ended: anything after it is refused when read, wherever it is cut.
        if (this.depth <= 0) this.rootEnded = true;
      } else if (next !== BANG && next !== QUESTION) {
        const selfClosing = buf[end - 2] === SLASH;
        if (this.depth === 0 && this.prefix === undefined) {
          this.prefix = { startByte: this.base + lt, endByte: this.base + end };
          this.rootNameLength = nameLength(buf, lt);
          this.lastRecordEnd = this.base + end;
        } else if (this.depth === 1 && !this.rootEnded) {
          this.recordStarts(buf, lt);
          if (selfClosing) this.lastRecordEnd = this.base + end;
        }
        if (!selfClosing) this.depth += 1;
        else if (this.depth === 0) this.rootEnded = true;
      }
      i = end;
    }
    // Keep the indentation before the next byte and the line break before it, so that a record
    // starting the next buffer can still be seen to start a line.
    let keep = i;
    while (keep > 0 && i - keep < 256 && (buf[keep - 1] === 0x20 || buf[keep - 1] === 0x09)) keep -= 1;
    if (keep > 0 && (buf[keep - 1] === LF || buf[keep - 1] === CR)) keep -= 1;
    // Lines are counted lazily (at cuts, and here for what is consumed): counting per tag costs more than the rest.
    this.countLines(buf, this.counted, keep);
    this.counted = 0;
    this.resumeAt = i - keep;
    this.carry = keep < n ? Buffer.from(buf.subarray(keep)) : undefined;
    this.base += keep;
    if (this.carry !== undefined && this.carry.length > this.maxCarry) throw new GiveUp('markup longer than a record may be');
  }

  result(total: number): FeedSplit {
    const { ranges, prefix, records } = this;
    const last = ranges[ranges.length - 1]!;
    last.endByte = total;
    if (prefix === undefined) return { prefix, ranges: [{ startByte: 0, endByte: total, firstRecord: 1, records, startLine: 1 }], records };
    return { prefix, ranges, records };
  }

  /** A record's start tag begins at buf[lt]: count it, and cut before it if its range is full and it starts a line. */
  private recordStarts(buf: Buffer, lt: number): void {
    const current = this.ranges[this.ranges.length - 1]!;
    if (current.records >= this.recordsPerRange) {
      // Only indentation between the start of the line and the tag.
      let j = lt - 1;
      while (j >= 0 && (buf[j] === 0x20 || buf[j] === 0x09)) j -= 1;
      const lineStart = this.base + j + 1;
      // Everything between the last record and this one, up to the end of its name, as the whole file
      // is measured against the record limit, plus the root's end tag that closes the range before:
      // within the limit, so that neither part measures it differently from the whole (bytes are at
      // least as many as characters).
      const gap = this.base + lt + nameLength(buf, lt) + 2 - this.lastRecordEnd + this.rootNameLength + 3;
      if (j >= 0 && (buf[j] === LF || buf[j] === CR) && gap <= this.maxGap) {
        this.countLines(buf, this.counted, j + 1);
        this.counted = j + 1;
        current.endByte = lineStart;
        this.ranges.push({ startByte: lineStart, endByte: 0, firstRecord: this.records + 1, records: 0, startLine: this.line });
      }
    }
    this.ranges[this.ranges.length - 1]!.records += 1;
    this.records += 1;
  }

  /** The offset just past the markup that starts at buf[lt], or -1 if it does not end in the buffer. */
  private markupEnd(buf: Buffer, lt: number, n: number): number {
    if (lt + 1 >= n) return -1;
    const next = buf[lt + 1]!;
    if (next === QUESTION) {
      const close = buf.indexOf('?>', lt + 2, 'latin1');
      return close === -1 ? -1 : close + 2;
    }
    if (next === BANG) {
      if (lt + 9 > n) return -1;
      if (buf[lt + 2] === 0x2d && buf[lt + 3] === 0x2d) {
        const close = buf.indexOf('-->', lt + 4, 'latin1');
        return close === -1 ? -1 : close + 3;
      }
      if (buf.toString('latin1', lt, lt + 9) === '<![CDATA[') {
        const close = buf.indexOf(']]>', lt + 9, 'latin1');
        return close === -1 ? -1 : close + 3;
      }
      throw new GiveUp('a DOCTYPE or other declaration');
    }
    // A tag: up to its '>' outside quoted attribute values.
    const gt = buf.indexOf(GT, lt + 1);
    if (gt === -1) return -1;
    const dq = this.nextOf(buf, DQUOTE, lt + 1);
    const sq = this.nextOf(buf, SQUOTE, lt + 1);
    if ((dq === -1 || dq > gt) && (sq === -1 || sq > gt)) return gt + 1;
    let quote = 0;
    for (let j = lt + 1; j < n; j += 1) {
      const b = buf[j]!;
      if (quote !== 0) {
        if (b === quote) quote = 0;
      } else if (b === DQUOTE || b === SQUOTE) quote = b;
      else if (b === GT) return j + 1;
    }
    return -1;
  }

  /** The first index of `byte` at or after `from` in buf, or -1; remembered until the scan passes it. */
  private nextOf(buf: Buffer, byte: typeof DQUOTE | typeof SQUOTE | typeof CR, from: number): number {
    const known = this.next[byte];
    if (known === -1 || known >= from) return known;
    const found = buf.indexOf(byte, from);
    this.next[byte] = found;
    return found;
  }

  /** Line breaks in buf[from, to): LF, CRLF and a lone CR each count once, as XML reads them. */
  private countLines(buf: Buffer, from: number, to: number): void {
    if (from >= to) return;
    const cr = this.nextOf(buf, CR, from);
    if (cr === -1 || cr >= to) {
      let lines = 0;
      for (let at = buf.indexOf(LF, from); at !== -1 && at < to; at = buf.indexOf(LF, at + 1)) lines += 1;
      // An LF right after a CR that ended the previous stretch is part of that line break.
      if (this.afterCR && buf[from] === LF) lines -= 1;
      this.line += lines;
      this.afterCR = false;
      return;
    }
    for (let i = from; i < to; i += 1) {
      const b = buf[i]!;
      if (b === LF) {
        if (!this.afterCR) this.line += 1;
        this.afterCR = false;
      } else if (b === CR) {
        this.line += 1;
        this.afterCR = true;
      } else this.afterCR = false;
    }
  }
}

/** Bytes in the name of the tag that starts at buf[lt] (the whole tag is in buf). */
function nameLength(buf: Buffer, lt: number): number {
  let i = lt + 1;
  while (i < buf.length) {
    const b = buf[i]!;
    if (b === GT || b === SLASH || b === 0x20 || b === 0x09 || b === LF || b === CR) break;
    i += 1;
  }
  return i - lt - 1;
}
