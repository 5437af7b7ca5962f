import type { Readable } from 'node:stream';
import { SaxesParser, type SaxesAttributePlain, type SaxesTagPlain } from 'saxes';
import {
  CANONICAL_FIELDS,
  DEFAULT_MAX_RECORD_CHARS,
  FeedFileError,
  REQUIRED_FIELDS,
  type CanonicalField,
  type ByteRange,
  type FeedAdapter,
  type FeedHeader,
  type FeedItem,
  type FeedReadContext,
  type RangeToRead,
  type RawUsageFields,
} from './types';
import { localName, xmlLayoutOf, type XmlLayout } from './xml-layout';
import { splitXml } from './xml-split';
import { InvalidUtf8Error, StrictUtf8Decoder, countByteLineBreaks, countLineBreaks } from './utf8-text';

/**
 * Records are built straight from saxes events; fast-xml-parser is deliberately not used, not even
 * per record on text that saxes delimits. Measured on 200k records (Node 20, this machine), with
 * saxes slicing each record out by its character offsets and a reused XMLParser configured for
 * untrusted input (processEntities: true, htmlEntities: false, no coercion, isArray always):
 *   - speed: 37-44k records/s, against 140-170k for this walker (saxes alone slicing the records
 *     out runs at 230-250k): re-parsing each record is where the time goes.
 *   - exactness: with htmlEntities false it leaves character references as written ("&#163;" stays
 *     "&#163;", not "£"), and it does not normalise line breaks and tabs in attribute values to
 *     spaces as XML requires: "AT&amp;T &#163;5" would come out as "AT&T &#163;5".
 *   - reporting: its object loses document order (attributes after elements, stray text anywhere),
 *     so a record's problems could no longer be listed in the order they occur.
 * It would add no safety either: saxes has already checked well-formedness, refused the DOCTYPE (so
 * no entity beyond the five predefined ones can exist) and decoded references exactly per the spec.
 * Values are the element's text exactly, untrimmed and never coerced: "0x1A" and "1e3" stay strings.
 */
export const xmlAdapter: FeedAdapter = {
  format: 'xml',
  extensions: ['xml'],
  read: readXml,
  sniff: sniffXml,
  split: (input, ctx, recordsPerRange) => splitXml(input, recordsPerRange, ctx.maxRecordChars ?? DEFAULT_MAX_RECORD_CHARS),
  readRange: readXmlRange,
};

const MAX_DEPTH = 32;
// Names that would reach an object's prototype if anything downstream ever keyed an object by them.
const FORBIDDEN_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);
/** What saxes says of text before or after the root element. */
const TEXT_OUTSIDE_ROOT = 'text data outside of root node.';
const UTF8_NAMES: ReadonlySet<string> = new Set(['utf-8', 'utf8', 'us-ascii', 'ascii']);
const OPTIONAL_FIELDS: ReadonlySet<CanonicalField> = new Set(CANONICAL_FIELDS.filter((f) => !REQUIRED_FIELDS.includes(f)));

type ControlItem = Extract<FeedItem, { kind: 'control' }>;

function layoutFor(input: Readable, ctx: FeedReadContext): XmlLayout {
  try {
    return xmlLayoutOf(ctx.profile, ctx.fileName);
  } catch (error) {
    input.destroy();
    throw error;
  }
}

async function* readXml(input: Readable, ctx: FeedReadContext): AsyncGenerator<FeedItem> {
  for await (const batch of readXmlBatches(input, ctx, WHOLE_DOCUMENT)) yield* batch;
}

/** Where a read starts in the document, and what it must add to stand as a document of its own. */
interface Stretch {
  /** Text read before the stretch's own bytes (the root start tag, on a line of its own), if it starts inside the root. */
  before: string;
  /** Text read after them (the root end tag), if the document goes on past the stretch. */
  after: string;
  /** Added to the parser's line numbers: where the stretch's first line is in the file. */
  lineOffset: number;
  /** Added to the walker's record count. */
  recordOffset: number;
  /** Whether the root start tag the stretch reads is the file's own: its control totals are yielded once, by that stretch. */
  ownRoot: boolean;
  /**
   * When the document goes on past the stretch: its own bytes again, then the rest of the file. If
   * the stretch did not end where a record may follow (malformed markup the split pre-pass read
   * differently), reading `after` fails where the file itself does not; the fault the file really
   * has is then found by reading on into the rest of the file, as a reading of the whole file would.
   */
  readOn?: { stretch: () => Readable; rest: () => Readable; range: number };
}

const WHOLE_DOCUMENT: Stretch = { before: '', after: '', lineOffset: 0, recordOffset: 0, ownRoot: true };

/** The items of a stretch, a batch per chunk read: one await per chunk rather than per record. */
async function* readXmlBatches(input: Readable, ctx: FeedReadContext, stretch: Stretch): AsyncGenerator<FeedItem[]> {
  const walker = new UsageFeedWalker(ctx.fileName, layoutFor(input, ctx), 'read', ctx.maxRecordChars ?? DEFAULT_MAX_RECORD_CHARS, stretch);
  const decoder = new StrictUtf8Decoder();
  // The walker queues the items of one chunk; they are handed out before the next chunk is read, so
  // memory stays at about a chunk's worth and the file is pulled only as fast as it is consumed.
  const items = walker.items;
  let ownBytesRead = false;
  try {
    if (stretch.before !== '') walker.write(decoder, stretch.before);
    for await (const chunk of input as AsyncIterable<unknown>) {
      walker.write(decoder, chunk);
      if (items.length > 0) yield items.splice(0);
    }
    ownBytesRead = true;
    if (stretch.after !== '') walker.write(decoder, stretch.after);
    walker.write(decoder, undefined);
  } catch (error) {
    // Records completed before a fault in the same chunk are sound; hand them out before the error.
    if (items.length > 0) yield items.splice(0);
    if (ownBytesRead && stretch.readOn !== undefined && error instanceof FeedFileError) throw await faultReadingOn(ctx, stretch, stretch.readOn);
    throw error;
  }
  if (items.length > 0) yield items.splice(0);
}

/**
 * The stretch read well but the end tag added after it did not: it ends inside markup. Reads it again
 * and on into the rest of the file (its items are already out, and later ones are other stretches'),
 * up to the fault the file has there.
 */
async function faultReadingOn(ctx: FeedReadContext, stretch: Stretch, readOn: NonNullable<Stretch['readOn']>): Promise<Error> {
  const walker = new UsageFeedWalker(ctx.fileName, xmlLayoutOf(ctx.profile, ctx.fileName), 'read', ctx.maxRecordChars ?? DEFAULT_MAX_RECORD_CHARS, stretch);
  const decoder = new StrictUtf8Decoder();
  try {
    if (stretch.before !== '') walker.write(decoder, stretch.before);
    for (const input of [readOn.stretch(), readOn.rest()]) {
      for await (const chunk of input as AsyncIterable<unknown>) {
        walker.write(decoder, chunk);
        walker.items.length = 0;
      }
    }
    walker.write(decoder, undefined);
  } catch (error) {
    return error as Error;
  }
  // The file reads on without a fault: the pre-pass cut it where no record starts, which it never
  // does in a well-formed file. Not the file's fault, so not a FeedFileError.
  return new Error(`${ctx.fileName}: range ${readOn.range + 1} of the file's split does not end between records`);
}

/**
 * One range of a split feed. A range inside the root is read as a document of its own: the root's
 * start tag (its line breaks, which XML reads as spaces in a tag, written as spaces, so it takes
 * exactly one line), then the range, then the root's end tag unless the range has the file's own.
 * Line and record numbers are shifted to where the range sits in the file.
 */
async function* readXmlRange(open: (start: number, end: number) => Readable, ctx: FeedReadContext, part: RangeToRead): AsyncGenerator<FeedItem[]> {
  const { range, prefix } = part;
  const first = part.index === 0;
  const rootTag = prefix !== undefined && (!first || !part.last) ? await readRootTag(open, ctx, prefix, first) : '';
  const rootName = /^<([^\s/>]+)/.exec(rootTag)?.[1];
  if (!first && rootName === undefined) {
    throw new FeedFileError(ctx.fileName, `line ${await lineAt(open, prefix?.startByte ?? 0)}: not well-formed XML: the root start tag has no name`);
  }
  yield* readXmlBatches(open(range.startByte, range.endByte), ctx, {
    before: first ? '' : `${rootTag.replace(/\r\n?|\n/g, ' ')}\n`,
    after: part.last || rootName === undefined ? '' : `</${rootName}>`,
    // A later range's first line is the read's second (the root tag takes the first).
    lineOffset: first ? 0 : range.startLine - 2,
    recordOffset: range.firstRecord - 1,
    ownRoot: first,
    ...(part.last
      ? {}
      : { readOn: { stretch: () => open(range.startByte, range.endByte), rest: () => open(range.endByte, Number.MAX_SAFE_INTEGER), range: part.index } }),
  });
}

/**
 * The root start tag, as text. The first range holds it and reads it itself (only its name is
 * needed, for the end tag, and only if the range reads well up to its end); a later range needs it
 * whole, and a fault in it is reported as reading the file would report it, at its line.
 */
async function readRootTag(open: (start: number, end: number) => Readable, ctx: FeedReadContext, prefix: ByteRange, first: boolean): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of open(prefix.startByte, prefix.endByte) as AsyncIterable<Buffer | string>) parts.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  const bytes = Buffer.concat(parts);
  if (first) return bytes.toString('utf8');
  const decoder = new StrictUtf8Decoder();
  try {
    return decoder.write(bytes) + decoder.end();
  } catch (error) {
    if (!(error instanceof InvalidUtf8Error)) throw error;
    const line = (await lineAt(open, prefix.startByte)) + countLineBreaks(error.validText);
    throw new FeedFileError(ctx.fileName, `line ${line}: ${error.describe(bytes)}`);
  }
}

/** The line the byte at `offset` is on (error path only: it reads the file up to there). */
async function lineAt(open: (start: number, end: number) => Readable, offset: number): Promise<number> {
  let line = 1;
  let afterCR = false;
  for await (const chunk of open(0, offset) as AsyncIterable<Buffer | string>) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    line += countByteLineBreaks(bytes, bytes.length, afterCR);
    afterCR = bytes[bytes.length - 1] === 0x0d;
  }
  return line;
}

async function sniffXml(input: Readable, ctx: FeedReadContext): Promise<FeedHeader> {
  const walker = new UsageFeedWalker(ctx.fileName, layoutFor(input, ctx), 'sniff', ctx.maxRecordChars ?? DEFAULT_MAX_RECORD_CHARS);
  const decoder = new StrictUtf8Decoder();
  try {
    for await (const chunk of input as AsyncIterable<unknown>) {
      try {
        walker.write(decoder, chunk);
      } catch (error) {
        if (error instanceof RootReached) return { partner: error.partner };
        throw error;
      }
    }
    try {
      walker.write(decoder, undefined);
    } catch (error) {
      if (error instanceof RootReached) return { partner: error.partner };
      throw error;
    }
    // saxes reports a document without a root as not well-formed, so this is not reached.
    throw new FeedFileError(ctx.fileName, 'no root element');
  } finally {
    input.destroy();
  }
}

/** Stops saxes in the middle of a chunk once sniff has what it came for. */
class RootReached extends Error {
  constructor(readonly partner: string | undefined) {
    super('root reached');
  }
}

interface RecordInProgress {
  record: number;
  line: number;
  fields: RawUsageFields;
  /** Fields seen so far, including empty optional ones that are left out of `fields`, and where. */
  seen: Map<CanonicalField, 'attribute' | 'element'>;
  problems: { field: string; message: string }[];
  /** The field whose text is being collected, if the current child element is one, and its tag. */
  field: CanonicalField | undefined;
  fieldTag: string;
  text: string;
}

class UsageFeedWalker {
  readonly items: FeedItem[] = [];
  private readonly parser = new SaxesParser<{ position: true; xmlns: false }>({ position: true, xmlns: false });
  /** Open elements, the root being 1. */
  private depth = 0;
  private tagLine = 1;
  private records = 0;
  private current: RecordInProgress | undefined;
  /**
   * The stretch of the document being measured against maxChars: the open record, from the "<" of its
   * start tag, or else what has come since the last record (or the root start tag) ended. saxes keeps a
   * text node, an attribute value or a comment whole until it ends, so without this one long record, or
   * megabytes of anything between records, would be held in memory however large.
   */
  private spanStart = 0;
  private spanLine = 1;
  private spanIsRecord = false;
  /**
   * Characters handed to saxes. Its own `position` is only right inside its handlers: between writes
   * it counts the last chunk twice (saxes 6 adds the chunk to chunkPosition but leaves `i` at its end).
   */
  private written = 0;
  /** The last character handed to saxes was a CR, which saxes holds back until it sees the next one. */
  private heldCR = false;

  constructor(
    private readonly fileName: string,
    private readonly layout: XmlLayout,
    private readonly mode: 'read' | 'sniff',
    private readonly maxChars: number,
    private readonly stretch: Stretch = WHOLE_DOCUMENT,
  ) {
    const { parser } = this;
    // Any DOCTYPE is refused as soon as saxes has read it, before the root: that shuts out entity
    // definitions (billion laughs), external and parameter entities in one go. saxes itself never
    // expands DTD entities nor fetches anything.
    parser.on('doctype', (doctype) => {
      // saxes reports it at its closing ">"; name the line where it began.
      throw this.fail(parser.line - countLineBreaks(doctype), 'a DOCTYPE is not allowed in a feed (no DTDs or entity definitions)');
    });
    // At most seven handlers: with an eighth, V8 turns the parser object into a dictionary (saxes adds
    // handler properties with keyed stores) and every property read in saxes's per-character loop gets
    // about four times slower. Hence no 'xmldecl' and 'attribute' handlers: those checks run on tags.
    parser.on('opentagstart', (tag) => this.onOpenTagStart(tag.name));
    parser.on('opentag', (tag) => this.onOpenTag(tag));
    parser.on('text', (text) => this.onText(text));
    parser.on('cdata', (text) => {
      // Outside the root, CDATA is refused whatever it holds (saxes's own report of it is set aside with the text's).
      if (this.depth === 0) throw this.fail(this.parser.line, `not well-formed XML at column ${Math.max(this.parser.column, 1)}: ${TEXT_OUTSIDE_ROOT}`);
      this.onText(text);
    });
    parser.on('closetag', () => this.onCloseTag());
    parser.on('error', (error) => {
      // saxes prefixes "line:column: "; we say it in words.
      const prefix = `${parser.line}:${parser.column}: `;
      const message = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
      // saxes says this wherever it stops looking at the text (the end of a chunk, an "&"), so the
      // place would depend on the chunks: the text is refused where it ends instead (see onText).
      if (message === TEXT_OUTSIDE_ROOT) return;
      // saxes's column is where the next character would go, which is the last one read, counting from 1.
      throw this.fail(parser.line, `not well-formed XML at column ${Math.max(parser.column, 1)}: ${message}`);
    });
  }

  /** Feeds one chunk (undefined: the end of the file). Items for completed records land in `items`. */
  write(decoder: StrictUtf8Decoder, chunk: unknown): void {
    let text: string;
    try {
      text = chunk === undefined ? decoder.end() : decoder.write(chunk);
    } catch (error) {
      if (!(error instanceof InvalidUtf8Error)) throw error;
      // The text before the offending byte is read first: a problem in it comes first in the file,
      // and must be the one reported however the bytes were chunked.
      this.writeText(error.validText);
      // saxes holds a trailing CR back (it may start a CRLF): the byte is on the line after it.
      throw this.fail(this.parser.line + (this.heldCR ? 1 : 0), error.describe(chunk instanceof Uint8Array ? chunk : undefined));
    }
    this.writeText(text);
    if (chunk === undefined) this.parser.close();
  }

  private writeText(text: string): void {
    if (text.length === 0) return;
    // Never more at once than the open span may still grow by (plus one character to pass the limit),
    // so an overlong record is stopped right after its limit, not a chunk later. With the default limit
    // a 64 KiB chunk goes in whole.
    for (let at = 0; at < text.length; ) {
      const room = this.maxChars - (this.written - this.spanStart) + 1;
      const end = Math.min(text.length, at + room);
      this.parser.write(at === 0 && end === text.length ? text : text.slice(at, end));
      this.written += end - at;
      this.heldCR = text.charCodeAt(end - 1) === 0x0d;
      this.checkSpan(this.written);
      at = end;
    }
  }

  /** `position`: characters read so far. */
  private checkSpan(position: number): void {
    if (position - this.spanStart <= this.maxChars) return;
    throw this.fail(
      this.spanLine,
      this.spanIsRecord
        ? `the record starting on this line is longer than ${this.maxChars} characters`
        : `more than ${this.maxChars} characters outside any <${this.layout.record}> record, from this line on`,
    );
  }

  /** Starts measuring a new span at `start` (a position in characters). */
  private restartSpan(start: number, line: number, record: boolean): void {
    this.spanStart = start;
    this.spanLine = line;
    this.spanIsRecord = record;
  }

  private onOpenTagStart(name: string): void {
    this.checkName(name, 'element');
    // The XML declaration, if any, is complete by the time the root starts.
    const encoding = this.depth === 0 ? this.parser.xmlDecl.encoding : undefined;
    if (encoding !== undefined && !UTF8_NAMES.has(encoding.toLowerCase())) {
      throw this.fail(1, `the XML declaration says encoding "${encoding}"; feeds must be UTF-8`);
    }
    if (this.depth >= MAX_DEPTH) {
      throw this.fail(this.parser.line, `elements are nested more than ${MAX_DEPTH} deep`);
    }
    // saxes fires this after reading the character that ends the name; if that was a line break,
    // the tag itself began on the line before.
    this.tagLine = this.parser.column === 0 ? this.parser.line - 1 : this.parser.line;
    // A child of the root is a record (or refused when its start tag completes). Its "<" is the name
    // and the character after it back (one short when that character is a CRLF, which saxes reads as one).
    if (this.depth === 1) this.restartSpan(this.parser.position - name.length - 2, this.tagLine, true);
  }

  private checkName(name: string, what: 'element' | 'attribute'): void {
    const colon = name.indexOf(':');
    const forbidden =
      colon === -1 ? FORBIDDEN_NAMES.has(name) : FORBIDDEN_NAMES.has(name.slice(0, colon)) || FORBIDDEN_NAMES.has(name.slice(colon + 1));
    if (forbidden) throw this.fail(this.parser.line, `${what} name "${name}" is not allowed`);
  }

  private onOpenTag(tag: SaxesTagPlain): void {
    this.depth += 1;
    const local = localName(tag.name);
    const attributes = this.attributesOf(tag);
    const { root, record } = this.layout;
    if (this.depth === 1) {
      if (local !== root) throw this.fail(this.tagLine, `the root element is <${tag.name}>, expected <${root}>`);
      if (this.mode === 'sniff') throw new RootReached(tag.attributes.partner);
      this.restartSpan(this.parser.position, this.parser.line, false);
      const control = this.controlOf(tag.name, attributes);
      if (control !== undefined && this.stretch.ownRoot) this.items.push(control);
      return;
    }
    if (this.depth === 2) {
      if (local !== record) {
        throw this.fail(this.tagLine, `unexpected element <${tag.name}> in <${root}>: a feed holds only <${record}> records`);
      }
      this.startRecord(tag.name, attributes);
      return;
    }
    const current = this.current;
    if (current === undefined) return;
    if (this.depth === 3) {
      const field = this.layout.elements.get(local);
      if (field === undefined) {
        problem(current, local, `unexpected element <${tag.name}>`);
        return;
      }
      for (const attribute of attributes) problem(current, field, `unexpected attribute ${attribute.name} on <${tag.name}>`);
      const seen = current.seen.get(field);
      if (seen !== undefined) {
        const message = seen === 'element' ? `<${tag.name}> is repeated` : `${field} is given both as an attribute and as <${tag.name}>`;
        problem(current, field, message);
        return;
      }
      current.seen.set(field, 'element');
      current.field = field;
      current.fieldTag = tag.name;
      current.text = '';
      return;
    }
    // Inside a field element: its value must be text only. Deeper levels were condemned with their parent.
    if (this.depth === 4 && current.field !== undefined) {
      problem(current, current.field, `unexpected element <${tag.name}> inside <${current.fieldTag}>: a field holds text only`);
      current.field = undefined;
    }
  }

  private startRecord(name: string, attributes: readonly SaxesAttributePlain[]): void {
    this.records += 1;
    const current: RecordInProgress = {
      record: this.records + this.stretch.recordOffset,
      line: this.tagLine + this.stretch.lineOffset,
      fields: {},
      seen: new Map(),
      problems: [],
      field: undefined,
      fieldTag: '',
      text: '',
    };
    for (const attribute of attributes) {
      const field = this.layout.attributes.get(localName(attribute.name));
      if (field === undefined || current.seen.has(field)) {
        // A repeat can only be the same local name under two prefixes; saxes rejects plain duplicates.
        problem(current, field ?? attribute.name, `unexpected attribute ${attribute.name} on <${name}>`);
      } else {
        current.seen.set(field, 'attribute');
        setField(current.fields, field, attribute.value);
      }
    }
    this.current = current;
  }

  private onText(text: string): void {
    const current = this.current;
    const { root, record } = this.layout;
    if (this.depth === 3 && current?.field !== undefined) {
      current.text += text;
    } else if (this.depth === 2 && current !== undefined) {
      if (text.trim() !== '') problem(current, record, `unexpected text ${JSON.stringify(text.trim().slice(0, 40))} in <${record}>`);
    } else if (this.depth === 1 && text.trim() !== '') {
      throw this.fail(this.parser.line, `unexpected text ${JSON.stringify(text.trim().slice(0, 40))} in <${root}>`);
    } else if (this.depth === 0 && /[^ \t\r\n]/.test(text)) {
      // Before or after the root element: refused where the text ends, as saxes does when it is read whole.
      throw this.fail(this.parser.line, `not well-formed XML at column ${Math.max(this.parser.column, 1)}: ${TEXT_OUTSIDE_ROOT}`);
    }
  }

  private onCloseTag(): void {
    const current = this.current;
    if (this.depth === 3 && current?.field !== undefined) {
      setField(current.fields, current.field, current.text);
      current.field = undefined;
      current.text = '';
    } else if (this.depth === 2 && current !== undefined) {
      // A record that began and ended inside one write is only measured here.
      this.checkSpan(this.parser.position);
      this.items.push(finishRecord(current));
      this.current = undefined;
      this.restartSpan(this.parser.position, this.parser.line, false);
    }
    this.depth -= 1;
  }

  /**
   * The control totals the root declares, when the profile says where. A feed without them cannot be
   * checked, so a missing one rejects the file rather than passing it as complete.
   */
  private controlOf(tagName: string, attributes: readonly SaxesAttributePlain[]): ControlItem | undefined {
    const { recordCountAttribute, quantitySumAttribute } = this.layout;
    if (recordCountAttribute === undefined && quantitySumAttribute === undefined) return undefined;
    const control: ControlItem = { kind: 'control', line: this.tagLine + this.stretch.lineOffset };
    const find = (name: string | undefined, what: string): string | undefined => {
      if (name === undefined) return undefined;
      const found = attributes.filter((a) => localName(a.name) === name);
      const only = found[0];
      if (only === undefined || found.length > 1) {
        const problem = found.length > 1 ? `has ${found.length} attributes named ${name}` : `has no attribute ${name}`;
        throw this.fail(this.tagLine, `the root element <${tagName}> ${problem}, which the partner's feed profile says carries the ${what}`);
      }
      return only.value;
    };
    const recordCount = find(recordCountAttribute, 'record count');
    const quantitySum = find(quantitySumAttribute, 'quantity sum');
    if (recordCount !== undefined) control.recordCount = recordCount;
    if (quantitySum !== undefined) control.quantitySum = quantitySum;
    return control;
  }

  /** The tag's attributes, names checked, without namespace declarations (they are not data). */
  private attributesOf(tag: SaxesTagPlain): SaxesAttributePlain[] {
    const result: SaxesAttributePlain[] = [];
    for (const name in tag.attributes) {
      this.checkName(name, 'attribute');
      if (name === 'xmlns' || name.startsWith('xmlns:')) continue;
      result.push({ name, value: tag.attributes[name] ?? '' });
    }
    return result;
  }

  private fail(line: number, detail: string): FeedFileError {
    return new FeedFileError(this.fileName, `line ${line + this.stretch.lineOffset}: ${detail}`);
  }
}

function finishRecord(current: RecordInProgress): FeedItem {
  const { record, line, fields, problems } = current;
  const first = problems[0];
  if (first !== undefined) {
    return { kind: 'row-error', record, line, field: first.field, message: problems.map((p) => p.message).join('; ') };
  }
  return { kind: 'row', record, line, fields };
}

function setField(fields: RawUsageFields, field: CanonicalField, value: string): void {
  // As in CSV, an empty optional value is the same as leaving it out.
  if (value === '' && OPTIONAL_FIELDS.has(field)) return;
  fields[field] = value;
}

function problem(current: RecordInProgress, field: string, message: string): void {
  current.problems.push({ field, message });
}
