import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FeedFileError, type FeedItem, type RawUsageFields } from './types';
import { xmlAdapter } from './xml';

const ctx = { fileName: 'feed.xml' };

function input(content: string | Buffer | readonly (string | Buffer)[]): Readable {
  if (typeof content === 'string' || Buffer.isBuffer(content)) return Readable.from(Buffer.from(content));
  return Readable.from(content.map((c) => Buffer.from(c)));
}

async function readAll(content: string | Buffer | readonly (string | Buffer)[]): Promise<FeedItem[]> {
  const items: FeedItem[] = [];
  for await (const item of xmlAdapter.read(input(content), ctx)) items.push(item);
  return items;
}

/** The items yielded before the file was rejected, and the rejection. */
async function readUntilError(content: string | Buffer): Promise<{ items: FeedItem[]; error: FeedFileError }> {
  const items: FeedItem[] = [];
  try {
    for await (const item of xmlAdapter.read(input(content), ctx)) items.push(item);
  } catch (error) {
    expect(error).toBeInstanceOf(FeedFileError);
    return { items, error: error as FeedFileError };
  }
  throw new Error('expected a FeedFileError');
}

async function readError(content: string | Buffer): Promise<string> {
  return (await readUntilError(content)).error.message;
}

const row = (record: number, line: number, fields: RawUsageFields): FeedItem => ({ kind: 'row', record, line, fields });

const U1 = '<usage id="U1"><product>CPU</product><user>alice</user><account>ACME</account><quantity>1.5</quantity><start>2026-10-01T09:00:00Z</start><end>2026-10-01T10:00:00Z</end><description>Compute</description></usage>';
const U1_FIELDS: RawUsageFields = {
  usage_id: 'U1',
  product: 'CPU',
  user: 'alice',
  account: 'ACME',
  quantity: '1.5',
  start_time: '2026-10-01T09:00:00Z',
  end_time: '2026-10-01T10:00:00Z',
  description: 'Compute',
};

describe('xmlAdapter.read', () => {
  it('claims the xml format and extension', () => {
    expect(xmlAdapter.format).toBe('xml');
    expect(xmlAdapter.extensions).toEqual(['xml']);
  });

  it('gives one record the same shape as many', async () => {
    const one = await readAll(`<?xml version="1.0" encoding="UTF-8"?>\n<usageFeed partner="ACME">\n  ${U1}\n</usageFeed>\n`);
    expect(one).toEqual([row(1, 3, U1_FIELDS)]);
    const many = await readAll(
      `<usageFeed partner="ACME">\n  ${U1}\n  <usage id="U2">\n    <product>GPU</product>\n    <user>bob</user>\n    <quantity>2</quantity>\n    <start>2026-10-02T09:00:00Z</start>\n  </usage>\n</usageFeed>`,
    );
    expect(many).toEqual([
      row(1, 2, U1_FIELDS),
      row(2, 3, { usage_id: 'U2', product: 'GPU', user: 'bob', quantity: '2', start_time: '2026-10-02T09:00:00Z' }),
    ]);
  });

  it('yields nothing for a feed without records', async () => {
    expect(await readAll('<usageFeed partner="ACME"/>')).toEqual([]);
    expect(await readAll('<usageFeed partner="ACME">\n</usageFeed>')).toEqual([]);
  });

  it('keeps values exactly as written: no number coercion, no trimming, CDATA and entities as text', async () => {
    const items = await readAll(
      '<usageFeed><usage id="007">' +
        '<product><![CDATA[A&B <x>]]></product><user> alice </user><account>AT&amp;T &#163;</account>' +
        '<quantity>0x1A</quantity><start>1e3</start><end>34100000000000000001</end>' +
        '<description>before <![CDATA[<middle>]]> after</description>' +
        '</usage></usageFeed>',
    );
    expect(items).toEqual([
      row(1, 1, {
        usage_id: '007',
        product: 'A&B <x>',
        user: ' alice ',
        account: 'AT&T £',
        quantity: '0x1A',
        start_time: '1e3',
        end_time: '34100000000000000001',
        description: 'before <middle> after',
      }),
    ]);
  });

  it('leaves out missing and empty optional elements and keeps empty required ones', async () => {
    const items = await readAll('<usageFeed><usage id=""><product>CPU</product><user/><account></account><quantity>1</quantity><start>t</start><description/></usage></usageFeed>');
    expect(items).toEqual([row(1, 1, { usage_id: '', product: 'CPU', user: '', quantity: '1', start_time: 't' })]);
  });

  it('reads fields given as attributes the same as fields given as elements', async () => {
    const asAttributes = await readAll(
      '<usageFeed partner="ACME"><usage id="U1" product="CPU" user="alice" account="ACME" quantity="1.5" start="2026-10-01T09:00:00Z" end="2026-10-01T10:00:00Z" description="Compute"/></usageFeed>',
    );
    const mixed = await readAll(
      '<usageFeed partner="ACME"><usage id="U1" quantity="1.5"><product>CPU</product><user>alice</user><account>ACME</account>' +
        '<start>2026-10-01T09:00:00Z</start><end>2026-10-01T10:00:00Z</end><description>Compute</description></usage></usageFeed>',
    );
    const asElements = await readAll(`<usageFeed partner="ACME">${U1.replace('<usage id="U1">', '<usage><id>U1</id>')}</usageFeed>`);
    expect(asAttributes).toEqual([row(1, 1, U1_FIELDS)]);
    expect(mixed).toEqual([row(1, 1, U1_FIELDS)]);
    expect(asElements).toEqual([row(1, 1, U1_FIELDS)]);
  });

  it('reads a namespaced feed the same as a plain one', async () => {
    const plain = await readAll(`<usageFeed partner="ACME">${U1}</usageFeed>`);
    const defaultNs = await readAll(`<usageFeed xmlns="urn:example:usage" partner="ACME">${U1}</usageFeed>`);
    const prefixed = await readAll(
      `<f:usageFeed xmlns:f="urn:example:usage" partner="ACME">${U1.replaceAll('<', '<f:').replaceAll('<f:/', '</f:')}</f:usageFeed>`,
    );
    expect(plain).toEqual([row(1, 1, U1_FIELDS)]);
    expect(defaultNs).toEqual(plain);
    expect(prefixed).toEqual(plain);
  });

  it('gives each record the line of its start tag, however its markup is laid out', async () => {
    const items = await readAll('<usageFeed>\r\n<usage\r\n  id="U1"\r\n  quantity="1"><product>P</product><user>u</user><start>t</start></usage>\n\n<usage id="U2" product="P" user="u" quantity="2" start="t"/>\n</usageFeed>');
    expect(items.map((i) => [i.kind, i.kind === 'control' ? undefined : i.record, i.line])).toEqual([
      ['row', 1, 2],
      ['row', 2, 6],
    ]);
  });

  it('rejects a record with unexpected or repeated elements, naming the field, and carries on', async () => {
    const items = await readAll(
      '<usageFeed>\n' +
        '<usage id="U1"><product>P</product><user>u</user><quantity>1</quantity><quantity>2</quantity><start>t</start></usage>\n' +
        '<usage id="U2"><product>P</product><user>u</user><colour>red</colour><quantity>1</quantity><start>t</start></usage>\n' +
        '<usage id="U3" quantity="1"><product>P</product><user>u</user><quantity>1</quantity><start>t</start></usage>\n' +
        '<usage id="U4" size="L"><product>P<b>old</b></product><user unit="x">u</user><quantity>1</quantity><start>t</start>stray</usage>\n' +
        '<usage id="U5"><product>P</product><user>u</user><quantity>5</quantity><start>t</start></usage>\n' +
        '</usageFeed>',
    );
    expect(items).toEqual([
      { kind: 'row-error', record: 1, line: 2, field: 'quantity', message: '<quantity> is repeated' },
      { kind: 'row-error', record: 2, line: 3, field: 'colour', message: 'unexpected element <colour>' },
      { kind: 'row-error', record: 3, line: 4, field: 'quantity', message: 'quantity is given both as an attribute and as <quantity>' },
      {
        kind: 'row-error',
        record: 4,
        line: 5,
        field: 'size',
        message:
          'unexpected attribute size on <usage>; unexpected element <b> inside <product>: a field holds text only; unexpected attribute unit on <user>; unexpected text "stray" in <usage>',
      },
      row(5, 6, { usage_id: 'U5', product: 'P', user: 'u', quantity: '5', start_time: 't' }),
    ]);
  });

  it.each<[string, string, string]>([
    ['a root other than usageFeed', '<feed><usage id="U1"/></feed>', 'feed.xml: line 1: the root element is <feed>, expected <usageFeed>'],
    [
      'an element other than usage in the root',
      '<usageFeed>\n<header/>\n</usageFeed>',
      'feed.xml: line 2: unexpected element <header> in <usageFeed>: a feed holds only <usage> records',
    ],
    ['text in the root', '<usageFeed>\nstray\n</usageFeed>', 'feed.xml: line 3: unexpected text "stray" in <usageFeed>'],
    ['an empty file', '', 'feed.xml: line 1: not well-formed XML at column 1: document must contain a root element.'],
    [
      'a declared encoding other than UTF-8',
      '<?xml version="1.0" encoding="ISO-8859-1"?>\n<usageFeed/>',
      'feed.xml: line 1: the XML declaration says encoding "ISO-8859-1"; feeds must be UTF-8',
    ],
  ])('rejects the file for %s', async (_case, content, message) => {
    expect(await readError(content)).toBe(message);
  });

  it('rejects XML that is not well-formed, naming the line, after the records completed before it', async () => {
    const { items, error } = await readUntilError(
      `<usageFeed>\n${U1}\n<usage id="U2">\n<product>P</usage>\n</usageFeed>`,
    );
    expect(items).toEqual([row(1, 2, U1_FIELDS)]);
    expect(error.message).toBe('feed.xml: line 4: not well-formed XML at column 18: unexpected close tag.');
    expect(await readError('<usageFeed>\n<usage id="U1" id="U2"/>\n</usageFeed>')).toBe(
      'feed.xml: line 2: not well-formed XML at column 24: duplicate attribute: id.',
    );
  });

  it('rejects bytes that are not UTF-8, naming the line', async () => {
    const content = Buffer.concat([Buffer.from('<usageFeed>\n<usage id="U1">\n<description>'), Buffer.from([0xa3]), Buffer.from('5</description></usage></usageFeed>')]);
    expect(await readError(content)).toBe('feed.xml: line 3: byte 0xA3 is not valid UTF-8: feeds must be UTF-8 (was it saved as Latin-1 or Windows-1252?)');
  });

  it.each<[string, string, number]>([
    ['an internal entity', '<?xml version="1.0"?>\n<!DOCTYPE usageFeed [\n<!ENTITY p "ACME">\n]>\n<usageFeed partner="&p;"/>', 2],
    ['an external entity', '<!DOCTYPE usageFeed [<!ENTITY x SYSTEM "file:///etc/passwd">]><usageFeed>&x;</usageFeed>', 1],
    ['a parameter entity', '<!DOCTYPE usageFeed [<!ENTITY % x SYSTEM "http://example.invalid/x.dtd"> %x;]><usageFeed/>', 1],
    ['an external DTD', '<!DOCTYPE usageFeed SYSTEM "http://example.invalid/feed.dtd"><usageFeed/>', 1],
  ])('rejects a DOCTYPE with %s before the root', async (_case, content, line) => {
    const { items, error } = await readUntilError(content);
    expect(items).toEqual([]);
    expect(error.message).toBe(`feed.xml: line ${line}: a DOCTYPE is not allowed in a feed (no DTDs or entity definitions)`);
  });

  it('rejects a billion-laughs document in well under a second', async () => {
    const entities = ['<!ENTITY lol0 "lol">'];
    for (let i = 1; i <= 9; i += 1) entities.push(`<!ENTITY lol${i} "${`&lol${i - 1};`.repeat(10)}">`);
    const bomb = `<?xml version="1.0"?>\n<!DOCTYPE usageFeed [\n${entities.join('\n')}\n]>\n<usageFeed><usage id="&lol9;"/></usageFeed>`;
    const started = performance.now();
    const message = await readError(bomb);
    expect(performance.now() - started).toBeLessThan(250);
    expect(message).toBe('feed.xml: line 2: a DOCTYPE is not allowed in a feed (no DTDs or entity definitions)');
  });

  it('rejects nesting deeper than 32 levels, and allows 32', async () => {
    const nest = (depth: number) => `<usageFeed><usage id="U1"><product>${'<x>'.repeat(depth - 3)}${'</x>'.repeat(depth - 3)}</product></usage></usageFeed>`;
    expect(await readAll(nest(32))).toEqual([
      { kind: 'row-error', record: 1, line: 1, field: 'product', message: 'unexpected element <x> inside <product>: a field holds text only' },
    ]);
    expect(await readError(nest(33))).toBe('feed.xml: line 1: elements are nested more than 32 deep');
    expect(await readError(`<usageFeed>${'<usage>'.repeat(10_000)}`)).toBe('feed.xml: line 1: elements are nested more than 32 deep');
  });

  it.each<[string, string, string]>([
    ['an element named __proto__', '<usageFeed><usage id="U1"><__proto__><polluted>yes</polluted></__proto__></usage></usageFeed>', 'element name "__proto__"'],
    ['an element named constructor', '<usageFeed><constructor><prototype/></constructor></usageFeed>', 'element name "constructor"'],
    ['a prefixed element named prototype', '<usageFeed xmlns:p="urn:x"><usage id="U1"><p:prototype/></usage></usageFeed>', 'element name "p:prototype"'],
    ['an attribute named __proto__', '<usageFeed><usage id="U1" __proto__="x"/></usageFeed>', 'attribute name "__proto__"'],
    ['a namespace prefix named __proto__', '<usageFeed xmlns:__proto__="urn:polluted"/>', 'attribute name "xmlns:__proto__"'],
  ])('rejects %s and pollutes nothing', async (_case, content, what) => {
    expect(await readError(content)).toBe(`feed.xml: line 1: ${what} is not allowed`);
    expect(Object.prototype).not.toHaveProperty('polluted');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(Object.prototype)).toEqual([]);
  });

  it('passes a read error through as it is, not as a problem with the file', async () => {
    const disk = new Error('EIO: i/o error, read');
    const file = Readable.from(
      (function* () {
        yield Buffer.from(`<usageFeed>${U1}`);
        throw disk;
      })(),
    );
    const items: FeedItem[] = [];
    await expect(
      (async () => {
        for await (const item of xmlAdapter.read(file, ctx)) items.push(item);
      })(),
    ).rejects.toBe(disk);
    expect(items).toEqual([row(1, 1, U1_FIELDS)]);
  });

  it('stops reading the file when the consumer stops', async () => {
    const file = input(`<usageFeed>${U1.repeat(10_000)}</usageFeed>`);
    for await (const item of xmlAdapter.read(file, ctx)) {
      expect(item).toMatchObject({ kind: 'row', record: 1 });
      break;
    }
    expect(file.destroyed).toBe(true);
  });

  it('yields the same items however the bytes are split into chunks', async () => {
    const value = fc.string({ unit: fc.constantFrom('a', 'Z', '1', '&', '<', '>', '"', "'", ']', '\n', ' ', 'é', '€', '😀'), maxLength: 8 });
    const record = fc.record({ id: value, product: value, user: value, quantity: value, start: value, description: value });
    const escape = (v: string) => v.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
    await fc.assert(
      fc.asyncProperty(fc.array(record, { maxLength: 5 }), fc.boolean(), fc.array(fc.nat(), { maxLength: 8 }), async (records, cdata, cuts) => {
        let text = '<?xml version="1.0" encoding="UTF-8"?>\n<usageFeed partner="ACME">\n';
        const expected: FeedItem[] = [];
        records.forEach((r, index) => {
          const line = text.split('\n').length;
          const body = (v: string) => (cdata && !v.includes(']]>') ? `<![CDATA[${v}]]>` : escape(v));
          text += `  <usage id="${escape(r.id).replaceAll('"', '&quot;')}">\n`;
          for (const name of ['product', 'user', 'quantity', 'start', 'description'] as const) text += `    <${name}>${body(r[name])}</${name}>\n`;
          text += '  </usage>\n';
          // XML turns a line break in an attribute value into a space.
          const fields: RawUsageFields = { usage_id: r.id.replaceAll('\n', ' '), product: r.product, user: r.user, quantity: r.quantity, start_time: r.start };
          if (r.description !== '') fields.description = r.description;
          expected.push(row(index + 1, line, fields));
        });
        text += '</usageFeed>\n';
        const bytes = Buffer.from(text);
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
        const chunks = [0, ...points].map((from, i) => bytes.subarray(from, points[i] ?? bytes.length)).filter((c) => c.length > 0);
        expect(await readAll(chunks)).toEqual(expected);
      }),
      { numRuns: 200 },
    );
  });
});

describe('xmlAdapter.read: the first problem in the file, however the bytes arrive', () => {
  /** The rejection, read in one chunk and then a byte at a time: both must name the same problem. */
  async function rejectionEitherWay(content: Buffer): Promise<string> {
    const whole = await readError(content);
    const bytes: Buffer[] = [];
    for (let at = 0; at < content.length; at += 1) bytes.push(content.subarray(at, at + 1));
    let pieces = 'no error';
    try {
      for await (const item of xmlAdapter.read(Readable.from(bytes), ctx)) void item;
    } catch (error) {
      pieces = (error as Error).message;
    }
    expect(pieces).toBe(whole);
    return whole;
  }

  it('names an element not allowed on line 3 before a Latin-1 byte on line 9, even when both arrive in one chunk', async () => {
    const content = Buffer.concat([
      Buffer.from(`<usageFeed>\n${U1}\n<total>3</total>\n${U1.replace('U1', 'U2')}\n${U1.replace('U1', 'U3')}\n<usage id="U4">\n<product>CPU</product>\n<user>a</user>\n<description>`),
      Buffer.from([0xa3]),
      Buffer.from('5</description></usage>\n</usageFeed>\n'),
    ]);
    expect(await rejectionEitherWay(content)).toBe('feed.xml: line 3: unexpected element <total> in <usageFeed>: a feed holds only <usage> records');
  });

  it('names the first byte of a UTF-8 character that a later byte breaks, wherever the chunks end', async () => {
    // E2 starts a three-byte character; "&" cannot continue it.
    const content = Buffer.concat([Buffer.from('<usageFeed>\n<usage id="U1">\n<description>a'), Buffer.from([0xe2]), Buffer.from('&amp;</description></usage>\n</usageFeed>')]);
    expect(await rejectionEitherWay(content)).toBe('feed.xml: line 3: byte 0xE2 is not valid UTF-8: feeds must be UTF-8 (was it saved as Latin-1 or Windows-1252?)');
  });

  it('names the line of a bad byte right after a CR line break (which saxes holds back) as in one piece', async () => {
    const content = Buffer.concat([Buffer.from('<usageFeed>\r<usage id="U1">\r'), Buffer.from([0xa3]), Buffer.from('</usage></usageFeed>')]);
    expect(await rejectionEitherWay(content)).toBe('feed.xml: line 3: byte 0xA3 is not valid UTF-8: feeds must be UTF-8 (was it saved as Latin-1 or Windows-1252?)');
  });

  it('names the place of text outside the root where the text ends, not where a chunk happened to end', async () => {
    const content = Buffer.from(`<?xml version="1.0"?>\nstray text before the root\n<usageFeed>\n${U1}\n</usageFeed>\n`);
    expect(await rejectionEitherWay(content)).toBe('feed.xml: line 3: not well-formed XML at column 1: text data outside of root node.');
    expect(await rejectionEitherWay(Buffer.from(`<usageFeed>\n${U1}\n</usageFeed>\ntrailing &amp; text`))).toMatch(/^feed\.xml: line 4: not well-formed XML at column \d+: text data outside of root node\.$/);
    expect(await rejectionEitherWay(Buffer.from(`<![CDATA[ ]]><usageFeed>\n${U1}\n</usageFeed>`))).toMatch(/^feed\.xml: line 1: not well-formed XML at column \d+: text data outside of root node\.$/);
  });

  it('refuses a NUL character, which XML 1.0 does not allow, written or as a reference, naming the line', async () => {
    expect(await rejectionEitherWay(Buffer.from(`<usageFeed>\n<usage id="U1">\n<user>a\u0000b</user></usage>\n</usageFeed>`))).toBe(
      'feed.xml: line 3: not well-formed XML at column 8: disallowed character.',
    );
    expect(await readError(`<usageFeed>\n<usage id="U1">\n<user>a&#0;b</user></usage>\n</usageFeed>`)).toBe('feed.xml: line 3: not well-formed XML at column 11: malformed character entity.');
  });
});

describe('xmlAdapter.read: the record length limit (maxRecordChars)', () => {
  const limited = (maxRecordChars?: number) => ({ fileName: 'feed.xml', ...(maxRecordChars === undefined ? {} : { maxRecordChars }) });

  async function readLimited(content: string | Buffer | readonly (string | Buffer)[] | Readable, maxRecordChars?: number) {
    const items: FeedItem[] = [];
    try {
      for await (const item of xmlAdapter.read(content instanceof Readable ? content : input(content), limited(maxRecordChars))) items.push(item);
    } catch (error) {
      expect(error).toBeInstanceOf(FeedFileError);
      return { items, error: (error as FeedFileError).message };
    }
    return { items, error: undefined };
  }

  const SHORT = '<usage id="U1" product="P" user="u" quantity="1" start="t"/>';
  const RECORD = '<usage id="U2"><product>P</product><user>u</user><quantity>2</quantity><start>t</start></usage>';
  const DOC = `<usageFeed>\n${SHORT}\n${RECORD}\n</usageFeed>\n`;
  const ROWS = [
    row(1, 2, { usage_id: 'U1', product: 'P', user: 'u', quantity: '1', start_time: 't' }),
    row(2, 3, { usage_id: 'U2', product: 'P', user: 'u', quantity: '2', start_time: 't' }),
  ];
  /** The document cut into pieces of `size` bytes. */
  const pieces = (text: string, size: number) => {
    const bytes = Buffer.from(text);
    const out: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += size) out.push(bytes.subarray(at, at + size));
    return out;
  };

  it.each([1, 3, 17, 64, 65_536])('counts a record from its start tag to its end tag, at the limit or one over, in chunks of %i bytes', async (size) => {
    expect(RECORD.length).toBe(95);
    expect(await readLimited(pieces(DOC, size), 95)).toEqual({ items: ROWS, error: undefined });
    expect(await readLimited(pieces(DOC, size), 94)).toEqual({
      items: [ROWS[0]],
      error: 'feed.xml: line 3: the record starting on this line is longer than 94 characters',
    });
  });

  it('measures a self-closing record with a long attribute the same way', async () => {
    const long = `<usageFeed>\n\n<usage id="U1" product="P" user="u" quantity="1" start="t" description="${'d'.repeat(2000)}"/>\n</usageFeed>`;
    expect(await readLimited(long, 1000)).toEqual({ items: [], error: 'feed.xml: line 3: the record starting on this line is longer than 1000 characters' });
    expect((await readLimited(long, 2100)).items).toHaveLength(1);
  });

  it('stops inside a huge text node at the limit, before saxes reads the rest of the chunk', async () => {
    // One 5 MB chunk whose tail is not well-formed: had saxes been handed the whole chunk, it would have
    // buffered the 5 MB text node and reported the "<<" instead.
    const doc = `<usageFeed>\n${SHORT}\n<usage id="U2"><description>${'x'.repeat(5_000_000)}</description><<`;
    expect(await readLimited(doc, 1000)).toEqual({
      items: [ROWS[0]],
      error: 'feed.xml: line 3: the record starting on this line is longer than 1000 characters',
    });
  });

  it('stops reading an endless record soon after the limit', async () => {
    let pulled = 0;
    const file = Readable.from(
      (function* () {
        yield Buffer.from('<usageFeed>\n<usage id="U1"><description>');
        for (;;) {
          pulled += 1;
          yield Buffer.from('x'.repeat(65_536));
        }
      })(),
    );
    expect(await readLimited(file, 100_000)).toEqual({
      items: [],
      error: 'feed.xml: line 2: the record starting on this line is longer than 100000 characters',
    });
    expect(pulled).toBeLessThanOrEqual(3);
  });

  it('defaults to 1 MiB (MAX_RECORD_CHARS) when the caller sets no limit', async () => {
    const huge = `<usageFeed>\n<usage id="U1"><description>${'x'.repeat(1 << 20)}</description></usage>\n</usageFeed>`;
    expect(await readLimited(huge)).toEqual({ items: [], error: 'feed.xml: line 2: the record starting on this line is longer than 1048576 characters' });
    expect((await readLimited(huge, (1 << 20) + 200)).items).toHaveLength(1);
  });

  it('bounds what comes between records too, naming the line it starts on', async () => {
    const comment = `<!-- ${'z'.repeat(2000)} -->`;
    expect(await readLimited(`<usageFeed>\n${SHORT}\n${comment}\n${RECORD}\n</usageFeed>`, 1000)).toEqual({
      items: [ROWS[0]],
      error: 'feed.xml: line 2: more than 1000 characters outside any <usage> record, from this line on',
    });
    expect(await readLimited(`${comment}\n<usageFeed>\n${SHORT}\n</usageFeed>`, 1000)).toEqual({
      items: [],
      error: 'feed.xml: line 1: more than 1000 characters outside any <usage> record, from this line on',
    });
    expect(await readLimited(`<usageFeed>${' '.repeat(2000)}</usageFeed>`, 1000)).toEqual({
      items: [],
      error: 'feed.xml: line 1: more than 1000 characters outside any <usage> record, from this line on',
    });
  });

  it('applies the same limit when sniffing the partner', async () => {
    const content = `<usageFeed partner="ACME" note="${'n'.repeat(2000)}">${SHORT}</usageFeed>`;
    await expect(xmlAdapter.sniff!(input(content), limited(1000))).rejects.toThrow(
      new FeedFileError('feed.xml', 'line 1: more than 1000 characters outside any <usage> record, from this line on'),
    );
    expect(await xmlAdapter.sniff!(input(content), limited(3000))).toEqual({ partner: 'ACME' });
  });
});

describe('xmlAdapter.sniff', () => {
  const sniff = (content: Readable) => xmlAdapter.sniff!(content, ctx);

  it('returns the partner declared on the root', async () => {
    expect(await sniff(input(`<?xml version="1.0"?>\n<!-- usage for October -->\n<usageFeed partner="ACME">${U1}</usageFeed>`))).toEqual({ partner: 'ACME' });
  });

  it('returns no partner when the root has none', async () => {
    expect(await sniff(input('<usageFeed/>'))).toEqual({ partner: undefined });
  });

  it('reads only up to the root start tag, then destroys the stream', async () => {
    let pulled = 0;
    const file = Readable.from(
      (function* () {
        yield Buffer.from('<usageFeed\n  partner="ACME">');
        for (;;) {
          pulled += 1;
          yield Buffer.from(U1);
        }
      })(),
    );
    expect(await sniff(file)).toEqual({ partner: 'ACME' });
    expect(file.destroyed).toBe(true);
    expect(pulled).toBeLessThan(100);
  });

  it.each<[string, string, string]>([
    ['a DOCTYPE', '<!DOCTYPE usageFeed [<!ENTITY p "ACME">]><usageFeed partner="&p;"/>', 'feed.xml: line 1: a DOCTYPE is not allowed in a feed (no DTDs or entity definitions)'],
    ['another root', '<feed partner="ACME"/>', 'feed.xml: line 1: the root element is <feed>, expected <usageFeed>'],
    ['a file without a root', '<?xml version="1.0"?>\n', 'feed.xml: line 2: not well-formed XML at column 1: document must contain a root element.'],
  ])('rejects %s', async (_case, content, message) => {
    await expect(sniff(input(content))).rejects.toThrow(new FeedFileError('feed.xml', message.slice('feed.xml: '.length)));
  });
});
