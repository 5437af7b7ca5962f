import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_FEED_PROFILE, feedProfileSchema, type FeedProfile } from '../../src/core/feed-profile';
import { CANONICAL_FIELDS, FeedFileError, type CanonicalField, type FeedItem, type RawUsageFields } from './types';
import { xmlAdapter } from './xml';

function input(content: string | Buffer | readonly Buffer[]): Readable {
  if (typeof content === 'string' || Buffer.isBuffer(content)) return Readable.from(Buffer.from(content));
  return Readable.from(content);
}

const ctxOf = (profile?: FeedProfile) => ({ fileName: 'feed.xml', ...(profile ? { profile } : {}) });

async function readAll(content: string | Buffer | readonly Buffer[], profile?: FeedProfile): Promise<FeedItem[]> {
  const items: FeedItem[] = [];
  for await (const item of xmlAdapter.read(input(content), ctxOf(profile))) items.push(item);
  return items;
}

async function readUntilError(content: string, profile?: FeedProfile): Promise<{ items: FeedItem[]; message: string }> {
  const items: FeedItem[] = [];
  try {
    for await (const item of xmlAdapter.read(input(content), ctxOf(profile))) items.push(item);
  } catch (error) {
    expect(error).toBeInstanceOf(FeedFileError);
    return { items, message: (error as FeedFileError).message };
  }
  throw new Error('expected a FeedFileError');
}

const readError = async (content: string, profile?: FeedProfile) => (await readUntilError(content, profile)).message;

const row = (record: number, line: number, fields: RawUsageFields): FeedItem => ({ kind: 'row', record, line, fields });

const profileOf = (xml: Record<string, unknown>): FeedProfile => feedProfileSchema.parse({ xml });

/** Every element prefixed, the usage id and the user as attributes, control totals on the root. */
const NAMESPACED = profileOf({
  root_element: 'feed',
  record_element: 'record',
  fields: { usage_id: '@ref', user: '@user', quantity: 'amount', start_time: 'from', end_time: 'to', description: 'note' },
  record_count_attribute: 'count',
  quantity_sum_attribute: 'total',
});

describe('xmlAdapter.read with a feed profile', () => {
  it('reads records by the profile\'s names, and yields the root\'s control totals before the first record', async () => {
    const items = await readAll(
      '<?xml version="1.0" encoding="UTF-8"?>\n' +
        '<u:feed xmlns:u="urn:example:usage" count="2" total=" 3.5 ">\n' +
        '  <u:record ref="R-1" user="alice">\n' +
        '    <u:product>CPU</u:product><u:amount>2.5</u:amount><u:from>2026-10-05T14:00:00+02:00</u:from>\n' +
        '    <u:note><![CDATA[Nightly <batch> & "reports"]]></u:note>\n' +
        '  </u:record>\n' +
        '  <u:record ref="R-2" user=" bob "><u:product>GPU</u:product><u:amount>0x1A</u:amount><u:from>1e3</u:from><u:to>t</u:to><u:note>A &amp; B</u:note></u:record>\n' +
        '</u:feed>\n',
      NAMESPACED,
    );
    expect(items).toEqual([
      { kind: 'control', line: 2, recordCount: '2', quantitySum: ' 3.5 ' },
      row(1, 3, { usage_id: 'R-1', user: 'alice', product: 'CPU', quantity: '2.5', start_time: '2026-10-05T14:00:00+02:00', description: 'Nightly <batch> & "reports"' }),
      row(2, 7, { usage_id: 'R-2', user: ' bob ', product: 'GPU', quantity: '0x1A', start_time: '1e3', end_time: 't', description: 'A & B' }),
    ]);
  });

  it('reads a mapped field only where the profile puts it, and an unmapped one by its canonical name as either', async () => {
    const items = await readAll(
      '<feed count="3" total="0">\n' +
        '<record ref="R-1" product="P" user="u"><account>A</account><amount>1</amount><from>t</from></record>\n' +
        '<record ref="R-2" id="X" amount="1" user="u"><product>P</product><id>1</id><user>v</user><quantity>1</quantity><from>t</from></record>\n' +
        '<record xmlns:u="urn:x" u:ref="R-3" u:user="w"><u:product>P</u:product><u:amount>3</u:amount><u:from>t</u:from></record>\n' +
        '</feed>',
      NAMESPACED,
    );
    expect(items).toEqual([
      { kind: 'control', line: 1, recordCount: '3', quantitySum: '0' },
      row(1, 2, { usage_id: 'R-1', product: 'P', user: 'u', account: 'A', quantity: '1', start_time: 't' }),
      {
        kind: 'row-error',
        record: 2,
        line: 3,
        field: 'id',
        message: 'unexpected attribute id on <record>; unexpected attribute amount on <record>; unexpected element <id>; unexpected element <user>; unexpected element <quantity>',
      },
      row(3, 4, { usage_id: 'R-3', product: 'P', user: 'w', quantity: '3', start_time: 't' }),
    ]);
  });

  it('lets a place the profile names beat another field\'s canonical name', async () => {
    const profile = profileOf({ fields: { user: 'account' } });
    expect(await readAll('<usageFeed><usage id="U1" product="P"><account>alice</account><quantity>1</quantity><start>t</start></usage></usageFeed>', profile)).toEqual([
      row(1, 1, { usage_id: 'U1', product: 'P', user: 'alice', quantity: '1', start_time: 't' }),
    ]);
  });

  it('refuses unknown attributes on the record element but not namespace declarations', async () => {
    const items = await readAll(
      '<feed count="1" total="1"><record xmlns="urn:x" xmlns:v="urn:v" ref="R" user="u" v:colour="red" size="L"><product>P</product><amount>1</amount><from>t</from></record></feed>',
      NAMESPACED,
    );
    expect(items).toEqual([
      { kind: 'control', line: 1, recordCount: '1', quantitySum: '1' },
      { kind: 'row-error', record: 1, line: 1, field: 'v:colour', message: 'unexpected attribute v:colour on <record>; unexpected attribute size on <record>' },
    ]);
  });

  it('takes as records only record elements directly in the root', async () => {
    const items = await readAll(
      '<feed count="1" total="1">\n<record ref="R" user="u"><product>P</product><amount>1</amount><from>t</from><record/></record>\n</feed>',
      NAMESPACED,
    );
    expect(items).toEqual([
      { kind: 'control', line: 1, recordCount: '1', quantitySum: '1' },
      { kind: 'row-error', record: 1, line: 2, field: 'record', message: 'unexpected element <record>' },
    ]);
  });

  const control = { kind: 'control', line: 1, recordCount: '1', quantitySum: '1' } as const;

  it.each<[string, string, FeedItem[], string]>([
    ['the canonical root', '<usageFeed count="0" total="0"/>', [], 'feed.xml: line 1: the root element is <usageFeed>, expected <feed>'],
    [
      'another element in the root',
      '<u:feed xmlns:u="urn:x" count="1" total="1">\n<u:header/>\n</u:feed>',
      [control],
      'feed.xml: line 2: unexpected element <u:header> in <feed>: a feed holds only <record> records',
    ],
    ['text in the root', '<feed count="1" total="1">\nstray\n</feed>', [control], 'feed.xml: line 3: unexpected text "stray" in <feed>'],
    [
      'a missing control attribute',
      '<u:feed xmlns:u="urn:x"\n  total="1"><u:record/></u:feed>',
      [],
      'feed.xml: line 1: the root element <u:feed> has no attribute count, which the partner\'s feed profile says carries the record count',
    ],
    [
      'a control attribute given twice under two prefixes',
      '<feed xmlns:a="urn:a" xmlns:b="urn:b" a:count="1" b:count="2" total="1"/>',
      [],
      'feed.xml: line 1: the root element <feed> has 2 attributes named count, which the partner\'s feed profile says carries the record count',
    ],
    ['a DOCTYPE', '<!DOCTYPE feed [<!ENTITY n "1">]><feed count="&n;" total="1"/>', [], 'feed.xml: line 1: a DOCTYPE is not allowed in a feed (no DTDs or entity definitions)'],
  ])('rejects the file for %s, after the items before the fault', async (_case, content, before, message) => {
    const { items, message: actual } = await readUntilError(content, NAMESPACED);
    expect(items).toEqual(before);
    expect(actual).toBe(message);
  });

  it('reads control totals from prefixed root attributes, and only those the profile names', async () => {
    expect(await readAll('<u:feed xmlns:u="urn:x" u:count="0" u:total="0"/>', NAMESPACED)).toEqual([{ kind: 'control', line: 1, recordCount: '0', quantitySum: '0' }]);
    expect(await readAll('<usageFeed rows="5" sum="9"/>', profileOf({ quantity_sum_attribute: 'sum' }))).toEqual([{ kind: 'control', line: 1, quantitySum: '9' }]);
    expect(await readAll('<usageFeed rows="5" sum="9"/>', DEFAULT_FEED_PROFILE)).toEqual([]);
  });

  it('still refuses forbidden names, even where the profile would map them', async () => {
    const profile = profileOf({ fields: { usage_id: '@constructor', description: '__proto__' } });
    expect(await readError('<usageFeed><usage constructor="x"/></usageFeed>', profile)).toBe('feed.xml: line 1: attribute name "constructor" is not allowed');
    expect(await readError('<usageFeed><usage><__proto__><polluted>1</polluted></__proto__></usage></usageFeed>', profile)).toBe(
      'feed.xml: line 1: element name "__proto__" is not allowed',
    );
    expect(Object.prototype).not.toHaveProperty('polluted');
    expect(Object.keys(Object.prototype)).toEqual([]);
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['two fields at one place', { fields: { usage_id: '@ref', user: 'u:ref', account: '@u:ref' } }, 'fields.usage_id and fields.account both read "@ref"'],
    ['a path instead of a name', { fields: { quantity: 'amount/value' } }, 'fields.quantity "amount/value" is not an element or attribute name'],
    ['an empty attribute name', { fields: { quantity: '@' }, record_count_attribute: 'a b' }, 'fields.quantity "" is not an element or attribute name; record_count_attribute "a b" is not an element or attribute name'],
  ])('refuses a profile with %s, without reading the file', async (_case, xml, problem) => {
    const file = input('<usageFeed/>');
    const read = async () => {
      for await (const _ of xmlAdapter.read(file, ctxOf(profileOf(xml)))) void _;
    };
    await expect(read()).rejects.toThrow(new FeedFileError('feed.xml', `the partner's feed profile cannot be applied: ${problem}`));
    expect(file.destroyed).toBe(true);
  });

  it('reads exactly as without a profile when given the default profile', async () => {
    const text = '<usageFeed partner="ACME">\n<usage id="U1" quantity="1"><product>P</product><user>u</user><start>t</start></usage>\n<usage><colour/></usage>\n</usageFeed>';
    expect(await readAll(text, DEFAULT_FEED_PROFILE)).toEqual(await readAll(text));
  });

  it('yields the rows of the canonical format for the same data spelled by a profile, however it is chunked', async () => {
    // No line breaks or tabs: XML turns them into spaces in attribute values, but not in elements.
    const value = fc.string({ unit: fc.constantFrom('a', 'Z', '1', '&', '<', '>', '"', "'", ']', ' ', 'é', '€', '😀'), maxLength: 6 });
    const usage = fc.record(Object.fromEntries(CANONICAL_FIELDS.map((f) => [f, value])) as Record<CanonicalField, typeof value>);
    const placement = fc.constantFrom('default-element', 'default-attribute', 'mapped-element', 'mapped-attribute');
    const placements = fc.record(Object.fromEntries(CANONICAL_FIELDS.map((f) => [f, placement])) as Record<CanonicalField, typeof placement>);
    const escape = (v: string) => v.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
    const canonicalName: Record<CanonicalField, string> = {
      usage_id: 'id',
      product: 'product',
      user: 'user',
      account: 'account',
      quantity: 'quantity',
      start_time: 'start',
      end_time: 'end',
      description: 'description',
    };

    await fc.assert(
      fc.asyncProperty(
        fc.array(usage, { maxLength: 4 }),
        placements,
        fc.constantFrom('', 'u:', 'usage-ns:'),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (usages, placed, prefix, cdata, cuts) => {
          const body = (v: string) => (cdata && !v.includes(']]>') ? `<![CDATA[${v}]]>` : escape(v));
          let canonical = '<usageFeed>\n';
          for (const u of usages) canonical += `<usage>${CANONICAL_FIELDS.map((f) => `<${canonicalName[f]}>${body(u[f])}</${canonicalName[f]}>`).join('')}</usage>\n`;
          canonical += '</usageFeed>\n';

          const fields: Partial<Record<CanonicalField, string>> = {};
          for (const f of CANONICAL_FIELDS) {
            if (placed[f] === 'mapped-element') fields[f] = `${f}-value`;
            if (placed[f] === 'mapped-attribute') fields[f] = `@${f}-attr`;
          }
          const profile = profileOf({ root_element: 'feed', record_element: 'rec', fields, record_count_attribute: 'n' });
          const declaration = prefix === '' ? '' : ` xmlns:${prefix.slice(0, -1)}="urn:example:usage"`;
          let spelled = `<${prefix}feed${declaration} n="${usages.length}">\n`;
          for (const u of usages) {
            const attributes = CANONICAL_FIELDS.filter((f) => placed[f].endsWith('attribute'))
              .map((f) => ` ${placed[f] === 'mapped-attribute' ? `${f}-attr` : canonicalName[f]}="${escape(u[f])}"`)
              .join('');
            const elements = CANONICAL_FIELDS.filter((f) => placed[f].endsWith('element'))
              .map((f) => {
                const name = `${prefix}${placed[f] === 'mapped-element' ? `${f}-value` : canonicalName[f]}`;
                return `<${name}>${body(u[f])}</${name}>`;
              })
              .join('');
            spelled += `<${prefix}rec${attributes}>${elements}</${prefix}rec>\n`;
          }
          spelled += `</${prefix}feed>\n`;

          const bytes = Buffer.from(spelled);
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
          const chunks = [0, ...points].map((from, i) => bytes.subarray(from, points[i] ?? bytes.length)).filter((c) => c.length > 0);
          const expected = await readAll(canonical);
          expect(expected.filter((i) => i.kind === 'row')).toHaveLength(usages.length);
          expect(await readAll(chunks, profile)).toEqual([{ kind: 'control', line: 1, recordCount: String(usages.length) }, ...expected]);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('xmlAdapter.sniff with a feed profile', () => {
  it('finds the partner on the profile\'s root', async () => {
    expect(await xmlAdapter.sniff!(input('<u:feed xmlns:u="urn:x" partner="ACME" count="1"><u:record/></u:feed>'), ctxOf(NAMESPACED))).toEqual({ partner: 'ACME' });
  });

  it('rejects a root the profile does not name', async () => {
    await expect(xmlAdapter.sniff!(input('<usageFeed partner="ACME"/>'), ctxOf(NAMESPACED))).rejects.toThrow(
      new FeedFileError('feed.xml', 'line 1: the root element is <usageFeed>, expected <feed>'),
    );
  });
});
