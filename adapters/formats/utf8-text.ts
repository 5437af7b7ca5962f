const UTF8_HINT = 'feeds must be UTF-8 (was it saved as Latin-1 or Windows-1252?)';

/** Thrown by StrictUtf8Decoder; the format adapter turns it into a FeedFileError naming the line. */
export class InvalidUtf8Error extends Error {
  override readonly name = 'InvalidUtf8Error';
  constructor(
    /** Offset in the chunk of the first byte that is not UTF-8, when it could be located. */
    readonly byteOffset: number | undefined,
    readonly atEnd = false,
  ) {
    super(atEnd ? 'the file ends in the middle of a UTF-8 character' : `invalid UTF-8 text: ${UTF8_HINT}`);
  }

  /** The message with the offending byte, which the chunk still holds. */
  describe(chunk: Uint8Array | undefined): string {
    const byte = this.byteOffset === undefined ? undefined : chunk?.[this.byteOffset];
    if (byte === undefined) return this.message;
    return `byte 0x${byte.toString(16).toUpperCase().padStart(2, '0')} is not valid UTF-8: ${UTF8_HINT}`;
  }
}

/**
 * Decodes a feed's bytes as UTF-8 and refuses anything else: a Latin-1 "£" quietly replaced by U+FFFD
 * would corrupt an id or a description without anyone noticing.
 */
export class StrictUtf8Decoder {
  // fatal: throw instead of substituting U+FFFD. ignoreBOM stays false, so a leading BOM is dropped
  // and the first CSV header or the XML declaration still matches.
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });

  /** The text of the next chunk. A chunk that is already a string (setEncoding was called) passes through. */
  write(chunk: unknown): string {
    if (typeof chunk === 'string') return chunk;
    if (!(chunk instanceof Uint8Array)) throw new TypeError('a feed stream must yield Buffers or strings');
    try {
      return this.decoder.decode(chunk, { stream: true });
    } catch {
      throw new InvalidUtf8Error(firstInvalidUtf8Byte(chunk));
    }
  }

  end(): string {
    try {
      return this.decoder.decode();
    } catch {
      throw new InvalidUtf8Error(undefined, true);
    }
  }
}

/**
 * Where a chunk the decoder rejected goes wrong; undefined when the fault is in a character begun in the
 * previous chunk. Only called on the error path, so it favours being obviously correct over being fast.
 */
export function firstInvalidUtf8Byte(bytes: Uint8Array): number | undefined {
  let i = 0;
  // Up to three leading continuation bytes may finish a character the previous chunk began.
  while (i < 3 && isContinuation(bytes[i])) i += 1;
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
