import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { feedProfileSchema, type FeedProfile } from '../../src/core/feed-profile';
import { csvAdapter } from './csv';
import { type FeedAdapter, FeedFileError, type FeedItem, type FeedReadContext } from './types';
import { xmlAdapter } from './xml';

/**
 * A big file is split by a pre-pass into ranges that workers read on their own. Whatever the file,
 * reading its ranges one after the other must give exactly what reading it whole gives: the same
 * items with the same record and line numbers, or the same error. And each range must hold the
 * records the pre-pass counted, since later ranges number their records from that count.
 */

type Outcome = { items: FeedItem[]; error?: string };

function chunked(bytes: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) parts.push(bytes.subarray(at, at + size));
  return Readable.from(parts);
}

async function readWhole(adapter: FeedAdapter, bytes: Buffer, ctx: FeedReadContext): Promise<Outcome> {
  const items: FeedItem[] = [];
  try {
    for await (const item of adapter.read(chunked(bytes, 7), ctx)) items.push(item);
    return { items };
  } catch (error) {
    return { items, error: (error as Error).message };
  }
}

async function readBySplit(adapter: FeedAdapter, bytes: Buffer, ctx: FeedReadContext, perRange: number): Promise<Outcome & { ranges: number; counted: boolean }> {
  const split = await adapter.split!(chunked(bytes, 5), ctx, perRange);
  const open = (start: number, end: number) => chunked(bytes.subarray(start, Math.min(end, bytes.length)), 3);
  const items: FeedItem[] = [];
  let counted = true;
  for (const [index, range] of split.ranges.entries()) {
    const before = items.length;
    try {
      const part = { range, prefix: split.prefix, index, last: index === split.ranges.length - 1, nextLine: split.ranges[index + 1]?.startLine };
      for await (const batch of adapter.readRange!(open, ctx, part)) items.push(...batch);
    } catch (error) {
      return { items, error: (error as Error).message, ranges: split.ranges.length, counted };
    }
    const records = items.slice(before).filter((i) => i.kind !== 'control').length;
    if (records !== range.records) counted = false;
  }
  expect(split.ranges[0]?.startByte).toBe(0);
  return { items, ranges: split.ranges.length, counted };
}

async function expectSameBySplit(adapter: FeedAdapter, text: string | Buffer, ctx: FeedReadContext, perRange: number): Promise<number> {
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text);
  const whole = await readWhole(adapter, bytes, ctx);
  const split = await readBySplit(adapter, bytes, ctx, perRange);
  if (whole.error !== undefined) {
    // The first error in file order wins: ranges are read (and rejected) in order.
    expect(split.error).toBe(whole.error);
  } else {
    expect(split.error).toBeUndefined();
    expect(split.items).toEqual(whole.items);
    expect(split.counted).toBe(true);
  }
  return split.ranges;
}

const GERMAN: FeedProfile = feedProfileSchema.parse({
  decimal_separator: ',',
  csv: {
    delimiter: ';',
    columns: { usage_id: 'ID', quantity: 'Menge' },
    trailer: { marker: 'SUMME', record_count_column: 'ID', quantity_sum_column: 'Menge' },
  },
});

describe('splitting a CSV feed', () => {
  const header = 'usage_id,product,user,quantity,start_time,description\n';
  const rows = (n: number, eol = '\n') =>
    Array.from({ length: n }, (_, i) => `U${i + 1},CPU,"user ${i + 1}",${i + 1},2026-10-01T09:00:00Z,"line one${eol}line ""two"""`).join(eol);

  it('cuts between records, never inside a quoted line break, and numbers records and lines as a whole read does', async () => {
    const text = `${header}${rows(23)}\n`;
    expect(await expectSameBySplit(csvAdapter, text, { fileName: 'f.csv' }, 5)).toBe(5);
    expect(await expectSameBySplit(csvAdapter, text.replaceAll('\n', '\r\n'), { fileName: 'f.csv' }, 4)).toBe(6);
  });

  it('keeps blank lines, a BOM and a missing final line break exactly as a whole read does', async () => {
    const text = `\uFEFF\n${header}\n\n${rows(9).replaceAll('\n2026', '\n\n2026')}\n   \n`;
    await expectSameBySplit(csvAdapter, text, { fileName: 'f.csv' }, 2);
    await expectSameBySplit(csvAdapter, `${header}${rows(9)}`, { fileName: 'f.csv' }, 3);
  });

  it('reads the trailer in the last range only, and rejects one that rows follow, naming the line as a whole read does', async () => {
    const good = `ID;product;user;Menge;start_time\nA;CPU;u;1,5;t\nB;CPU;u;2;t\nC;CPU;u;3;t\nSUMME;3;;6,5\n`;
    expect(await expectSameBySplit(csvAdapter, good, { fileName: 'g.csv', profile: GERMAN }, 1)).toBe(4);
    const followed = `ID;product;user;Menge;start_time\nA;CPU;u;1,5;t\nSUMME;1;;1,5\n\nB;CPU;u;2;t\nC;CPU;u;3;t\n`;
    await expectSameBySplit(csvAdapter, followed, { fileName: 'g.csv', profile: GERMAN }, 1);
    await expectSameBySplit(csvAdapter, `ID;product;user;Menge;start_time\nA;CPU;u;1,5;t\nB;CPU;u;2;t\n`, { fileName: 'g.csv', profile: GERMAN }, 1);
  });

  it('reports the first fault after a trailer in a range that is not the last as a whole read does', async () => {
    // The row after the trailer is in the next range, and breaks before it ends (fuzz seed 3 case 1459).
    const badByte = Buffer.concat([Buffer.from('ID;product;user;Menge;start_time\nA;CPU;u;1,5;t\nSUMME;1;;1,5\nB;CPU;'), Buffer.from([0xab, 0x3c]), Buffer.from(';2;t\n')]);
    expect(await expectSameBySplit(csvAdapter, badByte, { fileName: 'g.csv', profile: GERMAN }, 1)).toBe(3);
    expect((await readWhole(csvAdapter, badByte, { fileName: 'g.csv', profile: GERMAN })).error).toBe(
      'g.csv: line 4: byte 0xAB is not valid UTF-8: feeds must be UTF-8 (was it saved as Latin-1 or Windows-1252?)',
    );
    const longRow = `ID;product;user;Menge;start_time\nA;CPU;u;1,5;t\nSUMME;1;;1,5\n\nB;CPU;${'u'.repeat(100)};2;t\n`;
    await expectSameBySplit(csvAdapter, longRow, { fileName: 'g.csv', profile: GERMAN, maxRecordChars: 60 }, 1);
  });

  it('reports an unterminated quote, a runaway record or a bad byte with the message of a whole read', async () => {
    await expectSameBySplit(csvAdapter, `${header}${rows(6)}\nU7,CPU,"open,1,t,x\nU8,CPU,u,1,t,x\n`, { fileName: 'f.csv' }, 2);
    await expectSameBySplit(csvAdapter, `${header}${rows(6)}\nU7,CPU,${'x'.repeat(300)},1,t,x\n`, { fileName: 'f.csv', maxRecordChars: 200 }, 2);
    const latin1 = Buffer.concat([Buffer.from(`${header}${rows(6)}\nU7,CPU,u,1,t,`), Buffer.from([0xa3]), Buffer.from('\n')]);
    await expectSameBySplit(csvAdapter, latin1, { fileName: 'f.csv' }, 2);
  });

  it('gives the same items as a whole read for any file, however it is cut (property)', async () => {
    const value = fc.string({ unit: fc.constantFrom('a', '1', ',', '"', '\n', '\r', ' ', '\t', '\u00a0', 'é', '😀'), maxLength: 6 });
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(value, { minLength: 1, maxLength: 7 }), { maxLength: 12 }), fc.integer({ min: 1, max: 4 }), fc.boolean(), async (lines, perRange, crlf) => {
        const eol = crlf ? '\r\n' : '\n';
        const text = `usage_id,product,user,quantity,start_time${eol}${lines.map((cells) => cells.join(',')).join(eol)}`;
        await expectSameBySplit(csvAdapter, text, { fileName: 'p.csv', maxRecordChars: 40 }, perRange);
      }),
      { numRuns: 400 },
    );
  });
});

describe('splitting an XML feed', () => {
  const record = (i: number) =>
    `  <usage id="X-${i}" user="u${i}">\n    <product>CPU</product>\n    <quantity>${i}</quantity>\n    <start>2026-10-01T09:00:00Z</start>\n` +
    `    <description><![CDATA[a <b> </usage> c]]></description><!-- </usage> -->\n  </usage>\n`;
  const feed = (n: number, attrs = 'partner="ACME"') => `<?xml version="1.0" encoding="UTF-8"?>\n<!-- feed -->\n<usageFeed ${attrs}>\n${Array.from({ length: n }, (_, i) => record(i + 1)).join('')}</usageFeed>\n`;

  it('cuts before records that start a line, and numbers records and lines as a whole read does', async () => {
    expect(await expectSameBySplit(xmlAdapter, feed(10), { fileName: 'f.xml' }, 3)).toBe(4);
    expect(await expectSameBySplit(xmlAdapter, feed(10).replaceAll('\n', '\r\n'), { fileName: 'f.xml' }, 2)).toBe(5);
  });

  it('repeats the root start tag for later ranges, attributes on several lines and namespaces included, and yields its totals once', async () => {
    const profile = feedProfileSchema.parse({ xml: { record_count_attribute: 'count', quantity_sum_attribute: 'sum' } });
    const text = feed(7, 'xmlns:b="urn:x"\n    partner="ACME"\n    b:count="7" b:sum="28"').replace('<usageFeed', '<b:usageFeed').replace('</usageFeed>', '</b:usageFeed>');
    expect(await expectSameBySplit(xmlAdapter, text, { fileName: 'f.xml', profile }, 2)).toBe(4);
  });

  it('does not cut where a record does not start a line, nor a file with a DOCTYPE', async () => {
    const oneLine = feed(6).replaceAll('\n', '');
    expect(await expectSameBySplit(xmlAdapter, oneLine, { fileName: 'f.xml' }, 2)).toBe(1);
    const doctype = feed(6).replace('<!-- feed -->', '<!DOCTYPE usageFeed [<!ENTITY a "b">]>');
    expect(await expectSameBySplit(xmlAdapter, doctype, { fileName: 'f.xml' }, 2)).toBe(1);
  });

  it('gives the same items as a whole read for any layout of the records, however it is cut (property)', async () => {
    const gap = fc.constantFrom('\n', '\n  ', '\n\t', '', ' ', '\n<!-- a > b -->\n  ', '\n<?pi x?>\n', '\r\n  ', '\n\n');
    const value = fc.constantFrom('1', 'a > b', 'it\'s "q"', '<![CDATA[</usage> ]]> x]]>', '&lt;&amp;', '2\n3');
    const record = fc.tuple(fc.boolean(), value, fc.boolean(), fc.boolean()).map(
      ([asAttribute, description, selfClosing, broken]) => (i: number) =>
        selfClosing
          ? `<usage id="S-${i}" product="CPU" user="u" quantity="1" start="t" description='${description.includes('\'') ? 'x' : description.replace(/[<&]/g, '')}'/>`
          : `<usage${asAttribute ? ` id="E-${i}"` : ''}>${asAttribute ? '' : `<id>E-${i}</id>`}<product>CPU</product>\n  <user>u</user><quantity>${broken ? '<x/>' : '1'}</quantity>` +
            `<start>t</start><description>${description}</description></usage>`,
    );
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(gap, record), { maxLength: 12 }), fc.integer({ min: 1, max: 4 }), fc.boolean(), async (records, perRange, crlf) => {
        let body = '';
        records.forEach(([before, make], i) => (body += `${before}${make(i + 1)}`));
        let text = `<?xml version="1.0"?>\n<usageFeed partner="ACME">${body}\n</usageFeed>\n`;
        if (crlf) text = text.replace(/\r?\n/g, '\r\n');
        await expectSameBySplit(xmlAdapter, text, { fileName: 'p.xml', maxRecordChars: 2000 }, perRange);
      }),
      { numRuns: 300 },
    );
  });

  it('reports a second XML declaration inside a record as a whole read does, in the range that holds it', async () => {
    // fuzz-ingest seed 20261121 case 33: chunked, this file once never finished.
    const text = feed(6).replace('    <product>CPU</product>\n', '    <product>CPU</product>\n<?xml version="1.0" encoding="UTF-8"?>\n');
    expect(await expectSameBySplit(xmlAdapter, text, { fileName: 'f.xml' }, 2)).toBeGreaterThan(1);
    const later = feed(6).replace('<quantity>5</quantity>', '<quantity>5</quantity>\n<?xml version="1.0"?>');
    expect(await expectSameBySplit(xmlAdapter, later, { fileName: 'f.xml' }, 2)).toBeGreaterThan(1);
  });

  it('reports bytes that are not UTF-8 in the root start tag as a FeedFileError naming the line, also to a later range that reads the tag itself', async () => {
    const bytes = Buffer.from(feed(6).replace('partner="ACME"', 'partner="AC\u00ffME"'), 'latin1');
    const message = 'f.xml: line 3: byte 0xFF is not valid UTF-8: feeds must be UTF-8 (was it saved as Latin-1 or Windows-1252?)';
    expect(await expectSameBySplit(xmlAdapter, bytes, { fileName: 'f.xml' }, 2)).toBeGreaterThan(1);
    expect((await readWhole(xmlAdapter, bytes, { fileName: 'f.xml' })).error).toBe(message);
    // A worker given only the second range (the first is another worker's) reads the root tag itself.
    const split = await xmlAdapter.split!(Readable.from([bytes]), { fileName: 'f.xml' }, 2);
    const open = (start: number, end: number) => Readable.from([bytes.subarray(start, Math.min(end, bytes.length))]);
    const part = { range: split.ranges[1]!, prefix: split.prefix, index: 1, last: false, nextLine: split.ranges[2]?.startLine };
    const error = await (async () => {
      try {
        for await (const batch of xmlAdapter.readRange!(open, { fileName: 'f.xml' }, part)) void batch;
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(FeedFileError);
    expect((error as FeedFileError).message).toBe(message);
  });

  it('reports what a whole read reports when a range ends inside markup the pre-pass read differently, or after the root', async () => {
    // A close tag missing its ">" swallows the next tag for the pre-pass, which then cuts inside a record (fuzz case 2768).
    const swallowed = feed(9).replace('<quantity>4</quantity>', '<quantity>4</quantity\n   ');
    await expectSameBySplit(xmlAdapter, swallowed, { fileName: 'f.xml' }, 2);
    // A start tag after the root's end tag is not a second root for the ranges after it (fuzz case 525).
    const afterRoot = `${feed(5)}    <product>CPU</product>\n  <usage id="Z"><product>CPU</product></usage>\n`;
    await expectSameBySplit(xmlAdapter, afterRoot, { fileName: 'f.xml' }, 1);
  });

  it('reports malformed XML in a later range with the line of a whole read', async () => {
    const broken = feed(9).replace('<quantity>7</quantity>', '<quantity>7</quantitx>');
    await expectSameBySplit(xmlAdapter, broken, { fileName: 'f.xml' }, 2);
    const unclosed = feed(9).replace('</usageFeed>\n', '');
    await expectSameBySplit(xmlAdapter, unclosed, { fileName: 'f.xml' }, 2);
    const long = feed(9).replace('<quantity>8</quantity>', `<quantity>8</quantity><description>${'y'.repeat(500)}</description>`);
    await expectSameBySplit(xmlAdapter, long, { fileName: 'f.xml', maxRecordChars: 400 }, 2);
  });
});
