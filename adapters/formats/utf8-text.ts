const UTF8_HINT = 'feeds must be UTF-8 (was it saved as Latin-1 or Windows-1252?)';

/** Thrown by StrictUtf8Decoder; the format adapter turns it into a FeedFileError naming the line. */
export class InvalidUtf8Error extends Error {
  override readonly name = 'InvalidUtf8Error';
  constructor(
    /** Offset in the chunk of the first byte that is not UTF-8, when it could be located. */
    readonly byteOffset: number | undefined,
    readonly atEnd = false,
    /** The offending byte itself, when it could be located (it may have come in the chunk before). */
    readonly byte?: number,
    /**
     * The text of the stream from where the decoder last returned up to the offending byte, which
     * was never returned: the reader reads it first, so that a problem before the byte is the one
     * reported, however the bytes were chunked.
     */
    readonly validText = '',
  ) {
    super(atEnd ? 'the file ends in the middle of a UTF-8 character' : `invalid UTF-8 text: ${UTF8_HINT}`);
  }

  /** The message with the offending byte, which the error or the chunk still holds. */
  describe(chunk?: Uint8Array): string {
    const byte = this.byte ?? (this.byteOffset === undefined ? undefined : chunk?.[this.byteOffset]);
    if (byte === undefined) return this.message;
    return `byte 0x${byte.toString(16).toUpperCase().padStart(2, '0')} is not valid UTF-8: ${UTF8_HINT}`;
  }
}

/**
 * Decodes a feed's bytes as UTF-8 and refuses anything else: a Latin-1 "£" quietly replaced by U+FFFD
 * would corrupt an id or a description without anyone noticing. The error names the first offending
 * byte and carries the good text before it, whatever the chunks: a character begun in one chunk and
 * broken in the next is reported at its first byte, as it would be if the file came in one piece.
 */
export class StrictUtf8Decoder {
  // fatal: throw instead of substituting U+FFFD. ignoreBOM stays false, so a leading BOM is dropped
  // and the first CSV header or the XML declaration still matches.
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });
  /** The bytes of a character the last chunk began and did not finish (the decoder holds them too). */
  private pending: Uint8Array | undefined;
  /** Whether any character has been decoded yet (a BOM is only dropped at the very start). */
  private started = false;

  /** The text of the next chunk. A chunk that is already a string (setEncoding was called) passes through. */
  write(chunk: unknown): string {
    if (typeof chunk === 'string') return chunk;
    if (!(chunk instanceof Uint8Array)) throw new TypeError('a feed stream must yield Buffers or strings');
    let text: string;
    try {
      text = this.decoder.decode(chunk, { stream: true });
    } catch {
      throw this.locate(chunk);
    }
    this.follow(chunk);
    return text;
  }

  end(): string {
    try {
      return this.decoder.decode();
    } catch {
      throw new InvalidUtf8Error(undefined, true);
    }
  }

  /** Keeps the unfinished character at the end of what has been decoded (at most three bytes). */
  private follow(chunk: Uint8Array): void {
    const data = this.pending !== undefined && chunk.length < 4 ? concatBytes(this.pending, chunk) : chunk;
    const whole = completeLength(data);
    if (whole > 0) this.started = true;
    this.pending = whole < data.length ? data.slice(whole) : undefined;
  }

  /** The error for a chunk the decoder refused: where, which byte, and the good text before it. */
  private locate(chunk: Uint8Array): InvalidUtf8Error {
    const held = this.pending?.length ?? 0;
    const data = this.pending === undefined ? chunk : concatBytes(this.pending, chunk);
    const bad = firstInvalidUtf8Byte(data, true);
    if (bad === undefined) return new InvalidUtf8Error(undefined);
    // The pending bytes were never returned as text: the good text starts with them.
    const validText = bad === 0 ? '' : new TextDecoder('utf-8', { ignoreBOM: this.started }).decode(data.subarray(0, bad));
    return new InvalidUtf8Error(bad >= held ? bad - held : undefined, false, data[bad], validText);
  }
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a, 0);
  joined.set(b, a.length);
  return joined;
}

/** How many bytes of `data` (valid UTF-8 so far) are whole characters: all but a character cut off by its end. */
export function completeLength(data: Uint8Array): number {
  for (let back = 1; back <= 3 && back <= data.length; back += 1) {
    const b = data[data.length - back]!;
    if ((b & 0xc0) === 0x80) continue;
    const size = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return size > back ? data.length - back : data.length;
  }
  return data.length;
}

/**
 * Where bytes the decoder rejected go wrong: the first byte of the first character that is not UTF-8.
 * `atBoundary`: the bytes start at a character boundary; otherwise up to three leading continuation
 * bytes are taken to finish a character begun before them, and a fault in that character is not
 * located (undefined). Only called on the error path, so it favours being obviously correct over being fast.
 */
export function firstInvalidUtf8Byte(bytes: Uint8Array, atBoundary = false): number | undefined {
  let i = 0;
  // Up to three leading continuation bytes may finish a character the previous chunk began.
  if (!atBoundary) while (i < 3 && isContinuation(bytes[i])) i += 1;
  while (i < bytes.length) {
    const b = bytes[i] ?? 0;
    if (b < 0x80) {
      i += 1;
      continue;
    }
    const need = b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : 0;
    if (need === 0) return i;
    // The second byte's range is narrower after E0, ED, F0 and F4 (overlong forms, surrogates, > U+10FFFF).
    const second = bytes[i + 1];
    const min = b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80;
    const max = b === 0xed ? 0x9f : b === 0xf4 ? 0x8f : 0xbf;
    if (second !== undefined && (second < min || second > max)) return i;
    for (let k = 2; k <= need; k += 1) {
      const next = bytes[i + k];
      if (next !== undefined && !isContinuation(next)) return i;
    }
    // A character cut off by the end of the chunk is not a fault here: the next chunk may finish it.
    i += need + 1;
  }
  return undefined;
}

function isContinuation(b: number | undefined): boolean {
  return b !== undefined && b >= 0x80 && b <= 0xbf;
}

/** Line breaks in bytes[0, end): LF, CRLF and a lone CR each count once. `afterCR`: the byte before was a CR. */
export function countByteLineBreaks(bytes: Uint8Array, end: number, afterCR: boolean): number {
  let n = 0;
  let cr = afterCR;
  for (let i = 0; i < end; i += 1) {
    const b = bytes[i];
    if (b === 0x0a) {
      if (!cr) n += 1;
      cr = false;
    } else {
      cr = b === 0x0d;
      if (cr) n += 1;
    }
  }
  return n;
}

/** Line breaks in a string: LF, CRLF and a lone CR each count once. */
export function countLineBreaks(text: string): number {
  let n = 0;
  let at = 0;
  for (;;) {
    const lf = text.indexOf('\n', at);
    const cr = text.indexOf('\r', at);
    if (lf === -1 && cr === -1) return n;
    n += 1;
    if (cr !== -1 && (lf === -1 || cr < lf)) at = text.charCodeAt(cr + 1) === 0x0a ? cr + 2 : cr + 1;
    else at = lf + 1;
  }
}
