import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { createCsvAdapter, csvAdapter } from './csv';
import { FeedFileError, type FeedAdapter, type FeedItem, type RawUsageFields } from './types';

const ctx = { fileName: 'feed.csv' };

function input(content: string | Buffer | readonly (string | Buffer)[]): Readable {
  if (typeof content === 'string' || Buffer.isBuffer(content)) return Readable.from(Buffer.from(content));
  return Readable.from(content.map((c) => Buffer.from(c)));
}

async function readAll(content: string | Buffer | readonly (string | Buffer)[], adapter: FeedAdapter = csvAdapter): Promise<FeedItem[]> {
  const items: FeedItem[] = [];
  for await (const item of adapter.read(input(content), ctx)) items.push(item);
  return items;
}

async function readError(content: string | Buffer | readonly (string | Buffer)[], adapter: FeedAdapter = csvAdapter): Promise<FeedFileError> {
  try {
    await readAll(content, adapter);
  } catch (error) {
    expect(error).toBeInstanceOf(FeedFileError);
    return error as FeedFileError;
  }
  throw new Error('expected a FeedFileError');
}

const row = (record: number, line: number, fields: RawUsageFields): FeedItem => ({ kind: 'row', record, line, fields });

const EXPECTED = 'Expected columns, in any order: usage_id, product, user, quantity, start_time (required) and account, end_time, description (optional).';

describe('csvAdapter', () => {
  it('claims the csv format and extension', () => {
    expect(csvAdapter.format).toBe('csv');
    expect(csvAdapter.extensions).toEqual(['csv']);
  });

  it('maps columns by header name, in any order, matching names case-insensitively after trimming', async () => {
    const a = await readAll('usage_id,product,user,account,quantity,start_time,end_time,description\nU1,CPU,alice,ACME,1.5,2026-10-01T09:00:00Z,2026-10-01T10:00:00Z,Compute\n');
    const b = await readAll(' Description ,END_TIME,Quantity,start_time,User,Account,PRODUCT,usage_id\nCompute,2026-10-01T10:00:00Z,1.5,2026-10-01T09:00:00Z,alice,ACME,CPU,U1\n');
    const expected = [
      row(1, 2, {
        usage_id: 'U1',
        product: 'CPU',
        user: 'alice',
        account: 'ACME',
        quantity: '1.5',
        start_time: '2026-10-01T09:00:00Z',
        end_time: '2026-10-01T10:00:00Z',
        description: 'Compute',
      }),
    ];
    expect(a).toEqual(expected);
    expect(b).toEqual(expected);
  });

  it('yields values untouched, leaves out empty optional columns and keeps empty required ones', async () => {
    const items = await readAll('usage_id,product,user,account,quantity,start_time,end_time,description\n U1 ,CPU,alice,, 12 ,2026-10-01,,\n,CPU,bob,A,0x1A,1e3,x, \n');
    expect(items).toEqual([
      row(1, 2, { usage_id: ' U1 ', product: 'CPU', user: 'alice', quantity: ' 12 ', start_time: '2026-10-01' }),
      row(2, 3, { usage_id: '', product: 'CPU', user: 'bob', account: 'A', quantity: '0x1A', start_time: '1e3', end_time: 'x', description: ' ' }),
    ]);
  });

  it('matches the first header despite a UTF-8 BOM, giving the same rows as without it', async () => {
    const text = 'usage_id,product,user,quantity,start_time\nU1,CPU,alice,1,2026-10-01\n';
    const withBom = await readAll(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]));
    expect(withBom).toEqual([row(1, 2, { usage_id: 'U1', product: 'CPU', user: 'alice', quantity: '1', start_time: '2026-10-01' })]);
    expect(withBom).toEqual(await readAll(text));
  });

  it('reads CRLF and LF files identically, including quoted fields and line numbers', async () => {
    const lf = 'usage_id,product,user,quantity,start_time,description\nU1,CPU,alice,1,t1,"two\nlines"\n\nU2,CPU,bob,2,t2,plain\n';
    const crlf = lf.replaceAll('\n', '\r\n');
    const expected = [
      row(1, 2, { usage_id: 'U1', product: 'CPU', user: 'alice', quantity: '1', start_time: 't1', description: 'two\nlines' }),
      row(2, 5, { usage_id: 'U2', product: 'CPU', user: 'bob', quantity: '2', start_time: 't2', description: 'plain' }),
    ];
    expect(await readAll(lf)).toEqual(expected);
    // A line break inside quotes is data, spelled LF whatever the file used.
    expect(await readAll(crlf)).toEqual(expected);
    expect(await readAll(lf.replaceAll('\n', '\r'))).toEqual(expected);
  });

  it('parses quoted fields holding the delimiter, doubled quotes and newlines, and counts their lines', async () => {
    const items = await readAll(
      'usage_id,product,user,quantity,start_time,description\n' +
        '"U,1","say ""hi""",alice,1,t,"line one\nline two\nline three"\n' +
        'U2,CPU,bob,2,t,"""quoted"""\n' +
        'U3,CPU,carol,3,t,""\n',
    );
    expect(items).toEqual([
      row(1, 2, { usage_id: 'U,1', product: 'say "hi"', user: 'alice', quantity: '1', start_time: 't', description: 'line one\nline two\nline three' }),
      row(2, 5, { usage_id: 'U2', product: 'CPU', user: 'bob', quantity: '2', start_time: 't', description: '"quoted"' }),
      row(3, 6, { usage_id: 'U3', product: 'CPU', user: 'carol', quantity: '3', start_time: 't' }),
    ]);
  });

  it('rejects short and long rows as row errors, without padding or truncating, and carries on', async () => {
    const items = await readAll(
      'usage_id,product,user,account,quantity,start_time,description\n' +
        'U1,CPU,alice,A,1,t\n' +
        'U2,CPU,bob,A,2,t,desc,extra\n' +
        'U3,CPU,carol,A,3,t,ok\n' +
        'U4,CPU\n',
    );
    expect(items).toEqual([
      { kind: 'row-error', record: 1, line: 2, message: 'has 6 columns, the header has 7' },
      { kind: 'row-error', record: 2, line: 3, message: 'has 8 columns, the header has 7' },
      row(3, 4, { usage_id: 'U3', product: 'CPU', user: 'carol', account: 'A', quantity: '3', start_time: 't', description: 'ok' }),
      { kind: 'row-error', record: 4, line: 5, message: 'has 2 columns, the header has 7' },
    ]);
  });

  it('skips blank and whitespace-only lines but counts them in line numbers', async () => {
    const items = await readAll('\nusage_id,product,user,quantity,start_time\n\n   \nU1,CPU,alice,1,t\n\r\n\nU2,CPU,bob,2,t');
    expect(items).toEqual([
      row(1, 5, { usage_id: 'U1', product: 'CPU', user: 'alice', quantity: '1', start_time: 't' }),
      row(2, 8, { usage_id: 'U2', product: 'CPU', user: 'bob', quantity: '2', start_time: 't' }),
    ]);
  });

  it('yields nothing for a header without rows', async () => {
    expect(await readAll('usage_id,product,user,quantity,start_time\r\n')).toEqual([]);
  });

  it.each<[string, string, string]>([
    [
      'a missing required header',
      'usage_id,product,user,start_time\n',
      'feed.csv: line 1: the header row does not match the feed format: missing required column quantity. ' +
        `${EXPECTED} Found: "usage_id", "product", "user", "start_time".`,
    ],
    [
      'an unknown header',
      'usage_id,product,user,qty,start_time\n',
      'feed.csv: line 1: the header row does not match the feed format: missing required column quantity; unknown column "qty". ' +
        `${EXPECTED} Found: "usage_id", "product", "user", "qty", "start_time".`,
    ],
    [
      'a duplicate header (after trimming and case-folding)',
      'usage_id,product,user,quantity,start_time, User \n',
      'feed.csv: line 1: the header row does not match the feed format: duplicate column user (columns 3 and 6). ' +
        `${EXPECTED} Found: "usage_id", "product", "user", "quantity", "start_time", " User ".`,
    ],
    [
      'an empty header name',
      'usage_id,product,,user,quantity,start_time\n',
      'feed.csv: line 1: the header row does not match the feed format: empty column name at position 3. ' +
        `${EXPECTED} Found: "usage_id", "product", "", "user", "quantity", "start_time".`,
    ],
    [
      'a file delimited by semicolons',
      'usage_id;product;user;quantity;start_time\n',
      'feed.csv: line 1: the header row does not match the feed format: missing required columns usage_id, product, user, quantity, start_time; ' +
        'unknown column "usage_id;product;user;quantity;start_time". The header is one column containing ";": columns must be separated by ",". ' +
        `${EXPECTED} Found: "usage_id;product;user;quantity;start_time".`,
    ],
  ])('rejects the file for %s, listing expected and found headers', async (_case, content, message) => {
    expect((await readError(content)).message).toBe(message);
  });

  it.each(['', '\n\n', '\uFEFF', '  \r\n'])('rejects an empty file %j', async (content) => {
    expect((await readError(content)).message).toBe(
      'feed.csv: the file is empty: expected a header row with usage_id, product, user, quantity, start_time (required) and account, end_time, description (optional)',
    );
  });

  it('rejects an unterminated quote with the line where it opened', async () => {
    const error = await readError('usage_id,product,user,quantity,start_time\nU1,CPU,alice,1,t\nU2,CPU,"bob,2,t\nU3,CPU,carol,3,t\n');
    expect(error.message).toBe('feed.csv: line 3: unterminated quoted field: the quote that opens on this line is never closed');
  });

  it('gives up on an unterminated quote early in a large file quickly and with bounded buffering', async () => {
    const header = 'usage_id,product,user,quantity,start_time\nU1,CPU,"alice,1,t\n';
    const body = 'U2,CPU,bob,2,2026-10-01T09:00:00Z\n'.repeat(200_000); // about 7 MB
    const chunks: Buffer[] = [Buffer.from(header)];
    const bytes = Buffer.from(body);
    for (let at = 0; at < bytes.length; at += 65_536) chunks.push(bytes.subarray(at, at + 65_536));
    const started = performance.now();
    const error = await readError(chunks);
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(error.message).toBe(
      'feed.csv: line 2: a quoted field opened on this line is still open after 1048576 characters: is its closing quote missing?',
    );
  });

  it('rejects a record longer than the limit', async () => {
    const adapter = createCsvAdapter({ maxRecordChars: 60 });
    const error = await readError(`usage_id,product,user,quantity,start_time\nU1,CPU,alice,1,t\nU2,CPU,${'b'.repeat(60)},2,t\n`, adapter);
    expect(error.message).toBe('feed.csv: line 3: the record starting on this line is longer than 60 characters');
  });

  it('takes the limit from the read context (MAX_RECORD_CHARS) before its own option', async () => {
    const content = `usage_id,product,user,quantity,start_time\nU1,CPU,alice,1,t\nU2,CPU,${'b'.repeat(60)},2,t\n`;
    const read = async (adapter: FeedAdapter, maxRecordChars?: number) => {
      try {
        const items: FeedItem[] = [];
        for await (const item of adapter.read(input(content), { ...ctx, ...(maxRecordChars === undefined ? {} : { maxRecordChars }) })) items.push(item);
        return items.length;
      } catch (error) {
        return (error as Error).message;
      }
    };
    const tooLong = (n: number) => `feed.csv: line 3: the record starting on this line is longer than ${n} characters`;
    expect(await read(csvAdapter, 60)).toBe(tooLong(60));
    expect(await read(createCsvAdapter({ maxRecordChars: 60 }), 1000)).toBe(2);
    expect(await read(createCsvAdapter({ maxRecordChars: 1000 }), 70)).toBe(tooLong(70));
    expect(await read(createCsvAdapter({ maxRecordChars: 60 }))).toBe(tooLong(60));
    expect(await read(csvAdapter)).toBe(2);
  });

  it('rejects text after a closing quote rather than guessing', async () => {
    const error = await readError('usage_id,product,user,quantity,start_time\nU1,"CPU"x,alice,1,t\n');
    expect(error.message).toBe(
      'feed.csv: line 2: unexpected "x" after the closing quote of a quoted field (a quote inside a quoted field is written as "")',
    );
  });

  it('rejects bytes that are not UTF-8, naming the line, instead of replacing them', async () => {
    const latin1Pound = Buffer.concat([Buffer.from('usage_id,product,user,quantity,start_time,description\nU1,CPU,alice,1,t,ok\nU2,CPU,bob,2,t,"'), Buffer.from([0xa3]), Buffer.from('5"\n')]);
    expect((await readError(latin1Pound)).message).toBe(
      'feed.csv: line 3: byte 0xA3 is not valid UTF-8: feeds must be UTF-8 (was it saved as Latin-1 or Windows-1252?)',
    );
    const truncated = Buffer.concat([Buffer.from('usage_id,product,user,quantity,start_time\nU1,CPU,alice,1,'), Buffer.from('€').subarray(0, 2)]);
    expect((await readError(truncated)).message).toBe('feed.csv: line 2: the file ends in the middle of a UTF-8 character');
  });

  it('stops reading the file when the consumer stops', async () => {
    const file = input(`usage_id,product,user,quantity,start_time\n${'U1,CPU,alice,1,t\n'.repeat(10_000)}`);
    for await (const item of csvAdapter.read(file, ctx)) {
      expect(item).toMatchObject({ kind: 'row', record: 1 });
      break;
    }
    await vi.waitFor(() => expect(file.destroyed).toBe(true));
  });

  it('passes a read error through as it is, not as a problem with the file', async () => {
    const disk = new Error('EIO: i/o error, read');
    const file = Readable.from(
      (function* () {
        yield Buffer.from('usage_id,product,user,quantity,start_time\n');
        throw disk;
      })(),
    );
    await expect(
      (async () => {
        for await (const _ of csvAdapter.read(file, ctx)) void _;
      })(),
    ).rejects.toBe(disk);
  });

  it('yields the same items however the bytes are split into chunks', async () => {
    // Values drawn from characters that stress the scanner: delimiter, quote, CR, LF, blanks and
    // multi-byte UTF-8 (which a chunk boundary may cut in half).
    const value = fc.string({ unit: fc.constantFrom('a', 'Z', '1', ',', '"', '\n', '\r', ' ', '\t', 'é', '€', '😀'), maxLength: 8 });
    const record = fc.record({ usage_id: value, product: value, user: value, quantity: value, start_time: value, description: value });
    await fc.assert(
      fc.asyncProperty(
        fc.array(record, { maxLength: 6 }),
        fc.constantFrom('\n', '\r\n'),
        fc.boolean(),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 8 }),
        async (records, eol, quoteAll, blankLines, cuts) => {
          const columns = ['description', 'usage_id', 'start_time', 'product', 'user', 'quantity'] as const;
          let text = `${columns.join(',')}${eol}`;
          const expected: FeedItem[] = [];
          records.forEach((r, index) => {
            if (blankLines) text += eol;
            const line = text.split(/\r\n|\r|\n/).length;
            // Quote whenever fast-csv would otherwise read the value differently (or, at random, always).
            const cells = columns.map((c) => {
              const v = r[c];
              const plain = !quoteAll && !/[",\r\n]/.test(v) && v.trim() === v;
              return plain ? v : `"${v.replaceAll('"', '""')}"`;
            });
            text += `${cells.join(',')}${eol}`;
            // Line breaks inside values read as LF, however they were written.
            const lf = (v: string) => v.replace(/\r\n?/g, '\n');
            const fields: RawUsageFields = { usage_id: lf(r.usage_id), product: lf(r.product), user: lf(r.user), quantity: lf(r.quantity), start_time: lf(r.start_time) };
            if (r.description !== '') fields.description = lf(r.description);
            expected.push(row(index + 1, line, fields));
          });
          const bytes = Buffer.from(text);
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
          const chunks = [0, ...points].map((from, i) => bytes.subarray(from, points[i] ?? bytes.length)).filter((c) => c.length > 0);
          expect(await readAll(chunks)).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('csvAdapter: the first problem in the file, however the bytes arrive', () => {
  /** The rejection, read in one chunk and then a byte at a time: both must name the same problem. */
  async function rejectionEitherWay(content: Buffer, adapter: FeedAdapter = csvAdapter): Promise<string> {
    const whole = (await readError(content, adapter)).message;
    const bytes: Buffer[] = [];
    for (let at = 0; at < content.length; at += 1) bytes.push(content.subarray(at, at + 1));
    expect((await readError(bytes, adapter)).message).toBe(whole);
    return whole;
  }

  it('names a bad header on line 1 before a Latin-1 byte on line 5, even when both arrive in one chunk', async () => {
    const content = Buffer.concat([Buffer.from('usage_id,product,usr,quantity,start_time\nU1,CPU,a,1,t\nU2,CPU,a,1,t\nU3,CPU,a,1,t\nU4,CPU,'), Buffer.from([0xa3]), Buffer.from(',1,t\n')]);
    expect(await rejectionEitherWay(content)).toMatch(/^feed\.csv: line 1: the header row does not match the feed format: missing required column user; unknown column "usr"/);
  });

  it('names the first byte of a UTF-8 character that a later byte breaks, wherever the chunks end', async () => {
    const content = Buffer.concat([Buffer.from('usage_id,product,user,quantity,start_time\nU1,CPU,a'), Buffer.from([0xe2]), Buffer.from('b,1,t\n')]);
    expect(await rejectionEitherWay(content)).toBe('feed.csv: line 2: byte 0xE2 is not valid UTF-8: feeds must be UTF-8 (was it saved as Latin-1 or Windows-1252?)');
  });

  it('says a record is too long, and how, from where it passed the limit, not from where a chunk ended', async () => {
    const adapter = createCsvAdapter({ maxRecordChars: 60 });
    const header = 'usage_id,product,user,quantity,start_time\n';
    // A quoted field still open when the record passes 60 characters, closed later on the line.
    expect(await rejectionEitherWay(Buffer.from(`${header}U1,CPU,"${'x'.repeat(80)}",1,t\n`), adapter)).toBe(
      'feed.csv: line 2: a quoted field opened on this line is still open after 60 characters: is its closing quote missing?',
    );
    // A quoted field closed before the limit, then a fault after it: the length came first.
    expect(await rejectionEitherWay(Buffer.from(`${header}U1,CPU,"a"${' '.repeat(70)}z,1,t\n`), adapter)).toBe(
      'feed.csv: line 2: the record starting on this line is longer than 60 characters',
    );
    // And a fault before the limit comes first.
    expect(await rejectionEitherWay(Buffer.from(`${header}U1,CPU,"a"z${' '.repeat(70)},1,t\n`), adapter)).toBe(
      'feed.csv: line 2: unexpected "z" after the closing quote of a quoted field (a quote inside a quoted field is written as "")',
    );
  });

  it('refuses a NUL character in a value as a row error naming the line and the field, keeping the good rows', async () => {
    const content = 'usage_id,product,user,quantity,start_time,description\nU1,CPU,alice,1,t,ok\nU2,CPU,bo\u0000b,2,t,ok\nU3,CPU,carol,3,t,"two\nlines\u0000"\nU4,CPU,dave,4,t,ok\n';
    const expected: FeedItem[] = [
      row(1, 2, { usage_id: 'U1', product: 'CPU', user: 'alice', quantity: '1', start_time: 't', description: 'ok' }),
      { kind: 'row-error', record: 2, line: 3, field: 'user', message: 'user contains a NUL character (byte 0x00), which no value may hold' },
      { kind: 'row-error', record: 3, line: 4, field: 'description', message: 'description contains a NUL character (byte 0x00), which no value may hold' },
      row(4, 6, { usage_id: 'U4', product: 'CPU', user: 'dave', quantity: '4', start_time: 't', description: 'ok' }),
    ];
    expect(await readAll(content)).toEqual(expected);
    expect(await readAll([...Buffer.from(content)].map((b) => Buffer.from([b])))).toEqual(expected);
  });
});
