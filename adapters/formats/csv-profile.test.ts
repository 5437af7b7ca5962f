import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_FEED_PROFILE, feedProfileSchema, type FeedProfile } from '../../src/core/feed-profile';
import { createCsvAdapter, csvAdapter } from './csv';
import { CANONICAL_FIELDS, FeedFileError, type CanonicalField, type FeedAdapter, type FeedItem, type RawUsageFields } from './types';

function input(content: string | Buffer | readonly Buffer[]): Readable {
  if (typeof content === 'string' || Buffer.isBuffer(content)) return Readable.from(Buffer.from(content));
  return Readable.from(content);
}

async function readAll(content: string | Buffer | readonly Buffer[], profile?: FeedProfile, adapter: FeedAdapter = csvAdapter): Promise<FeedItem[]> {
  const items: FeedItem[] = [];
  for await (const item of adapter.read(input(content), { fileName: 'feed.csv', ...(profile ? { profile } : {}) })) items.push(item);
  return items;
}

/** The items yielded before the file was rejected, and the rejection's message. */
async function readUntilError(content: string | Buffer, profile?: FeedProfile, adapter: FeedAdapter = csvAdapter): Promise<{ items: FeedItem[]; message: string }> {
  const items: FeedItem[] = [];
  try {
    for await (const item of adapter.read(input(content), { fileName: 'feed.csv', ...(profile ? { profile } : {}) })) items.push(item);
  } catch (error) {
    expect(error).toBeInstanceOf(FeedFileError);
    return { items, message: (error as FeedFileError).message };
  }
  throw new Error('expected a FeedFileError');
}

const readError = async (content: string | Buffer, profile?: FeedProfile, adapter?: FeedAdapter) => (await readUntilError(content, profile, adapter)).message;

const row = (record: number, line: number, fields: RawUsageFields): FeedItem => ({ kind: 'row', record, line, fields });

const profileOf = (csv: Record<string, unknown>, rest: Record<string, unknown> = {}): FeedProfile => feedProfileSchema.parse({ ...rest, csv });

/** A German spreadsheet export: semicolons, the partner's own headers, one ignored column, a SUMME trailer. */
const GERMAN = profileOf(
  {
    delimiter: ';',
    columns: { usage_id: 'Nutzung-ID', product: 'Produkt', user: 'Benutzer', quantity: 'Menge', start_time: 'Beginn', end_time: 'Ende' },
    header_aliases: { description: ['Beschreibung', 'Text'] },
    ignore_columns: ['Kostenstelle'],
    trailer: { marker: 'SUMME', record_count_column: 'Produkt', quantity_sum_column: 'Menge' },
  },
  { decimal_separator: ',' },
);
const GERMAN_EXPECTED =
  'Expected columns, in any order: "Nutzung-ID" (usage_id), "Produkt" (product), "Benutzer" (user), "Menge" (quantity), "Beginn" (start_time) (required) ' +
  'and account, "Ende" (end_time), description (or "Beschreibung", "Text") (optional); ignored: "Kostenstelle".';
const GERMAN_HEADER = 'Nutzung-ID;Produkt;Benutzer;Menge;Beginn;Ende;Kostenstelle;Beschreibung\n';

describe('csvAdapter with a feed profile', () => {
  it('maps the partner\'s headers, skips ignored columns, and yields the trailer\'s totals last', async () => {
    const items = await readAll(
      GERMAN_HEADER +
        'N-1;CPU;anna;2,5;05.10.2026 14:00;05.10.2026 15:00;KST-1;Rechenzeit\n' +
        'N-2;GPU;bernd;"1,25";05.10.2026 16:00;;KST-2;"Lauf; ""B""\nzweite Zeile"\n' +
        '\n' +
        'SUMME;2;;3,75\n' +
        '\n',
      GERMAN,
    );
    expect(items).toEqual([
      row(1, 2, { usage_id: 'N-1', product: 'CPU', user: 'anna', quantity: '2,5', start_time: '05.10.2026 14:00', end_time: '05.10.2026 15:00', description: 'Rechenzeit' }),
      row(2, 3, { usage_id: 'N-2', product: 'GPU', user: 'bernd', quantity: '1,25', start_time: '05.10.2026 16:00', description: 'Lauf; "B"\nzweite Zeile' }),
      { kind: 'control', line: 6, recordCount: '2', quantitySum: '3,75' },
    ]);
  });

  it('matches profile headers and aliases case-insensitively after trimming, in any order', async () => {
    const items = await readAll(' text ;KOSTENSTELLE;beginn;MENGE; nutzung-id ;produkt;benutzer\nx;K;t;1;N-1;P;u\nSUMME;;;1;;1\n', GERMAN);
    expect(items).toEqual([
      row(1, 2, { usage_id: 'N-1', product: 'P', user: 'u', quantity: '1', start_time: 't', description: 'x' }),
      { kind: 'control', line: 3, recordCount: '1', quantitySum: '1' },
    ]);
  });

  it('reads a field only from its mapped header once the profile maps it', async () => {
    const message = await readError('usage_id;Produkt;Benutzer;Menge;Beginn\n', profileOf({ delimiter: ';', columns: GERMAN.csv.columns }));
    expect(message).toBe(
      'feed.csv: line 1: the header row does not match the feed format: missing required column "Nutzung-ID" (usage_id); unknown column "usage_id". ' +
        'Expected columns, in any order: "Nutzung-ID" (usage_id), "Produkt" (product), "Benutzer" (user), "Menge" (quantity), "Beginn" (start_time) (required) ' +
        'and account, "Ende" (end_time), description (optional). Found: "usage_id", "Produkt", "Benutzer", "Menge", "Beginn".',
    );
  });

  it('lets a header the profile spells out beat another field\'s canonical name', async () => {
    // The partner's "account" column holds the user; the account is then not in the file.
    const profile = profileOf({ columns: { user: 'account' }, ignore_columns: ['description'] });
    expect(await readAll('usage_id,product,account,quantity,start_time,description\nU1,P,alice,1,t,ignored\n', profile)).toEqual([
      row(1, 2, { usage_id: 'U1', product: 'P', user: 'alice', quantity: '1', start_time: 't' }),
    ]);
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['a column given for two fields', { columns: { user: 'Name', account: 'name' } }, 'the header "name" is given for user and account'],
    ['an alias that is another field\'s column', { columns: { user: 'Kunde' }, header_aliases: { account: ['KUNDE'] } }, 'the header "kunde" is given for user and account'],
    ['a mapped column that is also ignored', { columns: { quantity: 'Menge' }, ignore_columns: ['Menge'] }, 'the header "menge" is given for quantity and ignore_columns'],
  ])('refuses a profile with %s, without reading the file', async (_case, csv, problem) => {
    const file = input('usage_id,product,user,quantity,start_time\n');
    const read = async () => {
      for await (const _ of csvAdapter.read(file, { fileName: 'feed.csv', profile: profileOf(csv) })) void _;
    };
    await expect(read()).rejects.toThrow(new FeedFileError('feed.csv', `the partner's feed profile is ambiguous: ${problem}`));
    expect(file.destroyed).toBe(true);
  });

  const headerError = (problems: string, found: string) =>
    `feed.csv: line 1: the header row does not match the feed format: ${problems} ${GERMAN_EXPECTED} Found: ${found}.`;

  it.each<[string, string, string]>([
    [
      'a missing mapped header',
      'Nutzung-ID;Produkt;Benutzer;Beginn;Beschreibung\n',
      headerError('missing required column "Menge" (quantity).', '"Nutzung-ID", "Produkt", "Benutzer", "Beginn", "Beschreibung"'),
    ],
    [
      'a header the profile does not know',
      'Nutzung-ID;Produkt;Benutzer;Menge;Beginn;Projekt\n',
      headerError('unknown column "Projekt".', '"Nutzung-ID", "Produkt", "Benutzer", "Menge", "Beginn", "Projekt"'),
    ],
    [
      'two aliases of one field',
      'Nutzung-ID;Produkt;Benutzer;Menge;Beginn;Text;Beschreibung\n',
      headerError('duplicate column description (columns 6 and 7).', '"Nutzung-ID", "Produkt", "Benutzer", "Menge", "Beginn", "Text", "Beschreibung"'),
    ],
    [
      'an empty header',
      'Nutzung-ID;Produkt;;Benutzer;Menge;Beginn\n',
      headerError('empty column name at position 3.', '"Nutzung-ID", "Produkt", "", "Benutzer", "Menge", "Beginn"'),
    ],
    [
      'a missing field that also carries a trailer total (reported once)',
      'Nutzung-ID;Benutzer;Menge;Beginn;Produkt-Code\n',
      headerError('missing required column "Produkt" (product); unknown column "Produkt-Code".', '"Nutzung-ID", "Benutzer", "Menge", "Beginn", "Produkt-Code"'),
    ],
    [
      'the wrong delimiter',
      'Nutzung-ID,Produkt,Benutzer,Menge,Beginn\n',
      headerError(
        'missing required columns "Nutzung-ID" (usage_id), "Produkt" (product), "Benutzer" (user), "Menge" (quantity), "Beginn" (start_time); ' +
          'unknown column "Nutzung-ID,Produkt,Benutzer,Menge,Beginn". ' +
          'The header is one column containing ",": columns must be separated by ";".',
        '"Nutzung-ID,Produkt,Benutzer,Menge,Beginn"',
      ),
    ],
  ])('rejects the file for %s, listing the partner\'s expected headers and the found ones', async (_case, content, message) => {
    expect(await readError(content, GERMAN)).toBe(message);
  });

  it('rejects a header without the column that carries a trailer total, or with it twice', async () => {
    const profile = profileOf({ ignore_columns: ['Anzahl', 'Summe'], trailer: { marker: 'TOTAL', record_count_column: 'anzahl', quantity_sum_column: 'summe' } });
    const expected =
      'Expected columns, in any order: usage_id, product, user, quantity, start_time (required) and account, end_time, description (optional); ignored: "Anzahl", "Summe".';
    expect(await readError('usage_id,product,user,quantity,start_time,Summe,summe\n', profile)).toBe(
      'feed.csv: line 1: the header row does not match the feed format: no column "anzahl" for the trailer\'s record count; ' +
        `the column "summe" for the trailer's quantity sum appears 2 times. ${expected} ` +
        'Found: "usage_id", "product", "user", "quantity", "start_time", "Summe", "summe".',
    );
  });

  it('rejects an empty file, describing the header the profile expects', async () => {
    expect(await readError('\n', GERMAN)).toBe(`feed.csv: the file is empty: expected a header row with ${GERMAN_EXPECTED.slice('Expected columns, in any order: '.length, -1)}`);
  });

  it('does not require product in the header when the profile supplies a default product', async () => {
    const withDefault = profileOf({}, { defaults: { product: 'CPU', account: 'ACME' } });
    expect(await readAll('usage_id,user,quantity,start_time\nU1,alice,1,t\n', withDefault)).toEqual([
      row(1, 2, { usage_id: 'U1', user: 'alice', quantity: '1', start_time: 't' }),
    ]);
    expect(await readError('usage_id,user,quantity\n', withDefault)).toBe(
      'feed.csv: line 1: the header row does not match the feed format: missing required column start_time. ' +
        'Expected columns, in any order: usage_id, user, quantity, start_time (required) and product, account, end_time, description (optional). ' +
        'Found: "usage_id", "user", "quantity".',
    );
    expect(await readError('usage_id,user,quantity,start_time\n')).toContain('missing required column product.');
  });

  it('reads exactly as without a profile when given the default profile', async () => {
    const text = '\uFEFFusage_id,product,user,quantity,start_time,description\r\nU1,CPU,alice,1,t,"a,b"\r\n\r\nU2,CPU,bob\r\n';
    expect(await readAll(text, DEFAULT_FEED_PROFILE)).toEqual(await readAll(text));
    const bad = 'usage_id;product;user;quantity;start_time\n';
    expect(await readError(bad, DEFAULT_FEED_PROFILE)).toBe(await readError(bad));
  });

  describe('trailer', () => {
    const header = 'Nutzung-ID;Produkt;Benutzer;Menge;Beginn\n';
    const data = 'N-1;CPU;anna;2,5;t\n';

    it('is the last row: a row after it rejects the file, after the rows before it', async () => {
      const { items, message } = await readUntilError(`${header}${data}SUMME;1;;2,5\n\nN-2;CPU;bernd;1;t\n`, GERMAN);
      expect(items).toEqual([row(1, 2, { usage_id: 'N-1', product: 'CPU', user: 'anna', quantity: '2,5', start_time: 't' })]);
      expect(message).toBe('feed.csv: line 5: a row follows the trailer row on line 3; the trailer must be the last row');
      expect(await readError(`${header}SUMME;0\nSUMME;0\n`, GERMAN)).toBe(
        'feed.csv: line 3: a row follows the trailer row on line 2; the trailer must be the last row',
      );
    });

    it('is required when the profile declares one: a file without it may have been cut short', async () => {
      const { items, message } = await readUntilError(`${header}${data}`, GERMAN);
      expect(items).toHaveLength(1);
      expect(message).toBe(
        'feed.csv: the file has no trailer row (a last row starting with "SUMME", as the partner\'s feed profile requires): it may have been cut short',
      );
    });

    it('may be shorter than the header: missing cells are absent, empty ones are empty', async () => {
      expect((await readAll(`${header}${data}SUMME\n`, GERMAN)).at(-1)).toEqual({ kind: 'control', line: 3 });
      expect((await readAll(`${header}${data}SUMME;1\n`, GERMAN)).at(-1)).toEqual({ kind: 'control', line: 3, recordCount: '1' });
      expect((await readAll(`${header}${data}SUMME;;;\n`, GERMAN)).at(-1)).toEqual({ kind: 'control', line: 3, recordCount: '', quantitySum: '' });
    });

    it('may not be longer than the header', async () => {
      expect(await readError(`${header}${data}SUMME;1;;2,5;;extra\n`, GERMAN)).toBe('feed.csv: line 3: the trailer row has 6 columns, the header has 5');
    });

    it('is recognised by its exact first cell, and is not counted as a record', async () => {
      const items = await readAll(`${header}SUMMEN;CPU;anna;1;t\n SUMME;CPU;bob;2;t\r\nSUMME;2;;3\r\n`, GERMAN);
      expect(items).toEqual([
        row(1, 2, { usage_id: 'SUMMEN', product: 'CPU', user: 'anna', quantity: '1', start_time: 't' }),
        row(2, 3, { usage_id: ' SUMME', product: 'CPU', user: 'bob', quantity: '2', start_time: 't' }),
        { kind: 'control', line: 4, recordCount: '2', quantitySum: '3' },
      ]);
    });

    it('can carry its totals in ignored columns, and without named columns still marks the end', async () => {
      const profile = profileOf({ ignore_columns: ['rows', 'total'], trailer: { marker: 'END', record_count_column: 'ROWS' } });
      expect(await readAll('usage_id,product,user,quantity,start_time,rows,total\nU1,P,u,1,t,,\nEND,,,,,1,1\n', profile)).toEqual([
        row(1, 2, { usage_id: 'U1', product: 'P', user: 'u', quantity: '1', start_time: 't' }),
        { kind: 'control', line: 3, recordCount: '1' },
      ]);
      expect(await readAll('usage_id,product,user,quantity,start_time\nEND\n', profileOf({ trailer: { marker: 'END' } }))).toEqual([{ kind: 'control', line: 2 }]);
    });

    it('gives the record count of a file with only a header and a trailer', async () => {
      expect(await readAll(`${header}SUMME;0;;0\n`, GERMAN)).toEqual([{ kind: 'control', line: 2, recordCount: '0', quantitySum: '0' }]);
    });
  });

  describe.each<[string, FeedProfile]>([
    ['tab', profileOf({ delimiter: '\t' })],
    ['pipe', profileOf({ delimiter: '|' })],
    ['semicolon', profileOf({ delimiter: ';' })],
  ])('with a %s delimiter', (_name, profile) => {
    const d = profile.csv.delimiter;
    const line = (...cells: string[]) => `${cells.join(d)}\n`;

    it('parses quoted fields holding the delimiter, quotes, commas and newlines, and counts lines', async () => {
      const items = await readAll(
        line('usage_id', 'product', 'user', 'quantity', 'start_time', 'description') +
          line(`"U${d}1"`, '"say ""hi"""', 'alice', '1,5', 't', '"one\ntwo"') +
          line('U2', 'CPU', ' bob ', '2', 't', `"${d}"`),
        profile,
      );
      expect(items).toEqual([
        row(1, 2, { usage_id: `U${d}1`, product: 'say "hi"', user: 'alice', quantity: '1,5', start_time: 't', description: 'one\ntwo' }),
        row(2, 4, { usage_id: 'U2', product: 'CPU', user: ' bob ', quantity: '2', start_time: 't', description: d }),
      ]);
    });

    it('rejects short and long rows as row errors', async () => {
      const items = await readAll(line('usage_id', 'product', 'user', 'quantity', 'start_time') + line('U1', 'P', 'u', '1') + line('U2', 'P', 'u', '2', 't', 'x'), profile);
      expect(items).toEqual([
        { kind: 'row-error', record: 1, line: 2, message: 'has 4 columns, the header has 5' },
        { kind: 'row-error', record: 2, line: 3, message: 'has 6 columns, the header has 5' },
      ]);
    });

    it('rejects an unterminated quote, text after a closing quote and a runaway record, naming the line', async () => {
      const header = line('usage_id', 'product', 'user', 'quantity', 'start_time');
      expect(await readError(`${header}${line('U1', 'P', 'u', '1', 't')}${line('U2', '"P', 'u', '2', 't')}`, profile)).toBe(
        'feed.csv: line 3: unterminated quoted field: the quote that opens on this line is never closed',
      );
      expect(await readError(`${header}${line('U1', '"P"x', 'u', '1', 't')}`, profile)).toBe(
        'feed.csv: line 2: unexpected "x" after the closing quote of a quoted field (a quote inside a quoted field is written as "")',
      );
      expect(await readError(`${header}${line('U1', 'P', 'u'.repeat(80), '1', 't')}`, profile, createCsvAdapter({ maxRecordChars: 60 }))).toBe(
        'feed.csv: line 2: the record starting on this line is longer than 60 characters',
      );
    });

    it('rejects bytes that are not UTF-8, naming the line', async () => {
      const bytes = Buffer.concat([Buffer.from(line('usage_id', 'product', 'user', 'quantity', 'start_time') + `U1${d}P${d}`), Buffer.from([0xa3]), Buffer.from(`${d}1${d}t\n`)]);
      expect(await readError(bytes, profile)).toBe('feed.csv: line 2: byte 0xA3 is not valid UTF-8: feeds must be UTF-8 (was it saved as Latin-1 or Windows-1252?)');
    });

    it('matches the first header despite a UTF-8 BOM', async () => {
      const text = line('usage_id', 'product', 'user', 'quantity', 'start_time') + line('U1', 'P', 'u', '1', 't');
      expect(await readAll(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]), profile)).toEqual([
        row(1, 2, { usage_id: 'U1', product: 'P', user: 'u', quantity: '1', start_time: 't' }),
      ]);
    });
  });

  it('yields the rows of the canonical format for the same data re-spelled by a profile, however it is chunked', async () => {
    // Characters that stress both scanners: every delimiter, quotes, line breaks, blanks, multi-byte UTF-8.
    const value = fc.string({ unit: fc.constantFrom('a', 'Z', '1', ',', ';', '|', '\t', '"', '\n', '\r', ' ', 'é', '€', '😀'), maxLength: 6 });
    const usage = fc.record({ usage_id: value, product: value, user: value, account: value, quantity: value, start_time: value, end_time: value, description: value });
    const spelling = fc.record({ how: fc.constantFrom('canonical', 'column', 'alias'), upper: fc.boolean(), padded: fc.boolean() });
    const spellings = fc.record(Object.fromEntries(CANONICAL_FIELDS.map((f) => [f, spelling])) as Record<CanonicalField, typeof spelling>);
    const order = fc.shuffledSubarray([...CANONICAL_FIELDS, 'Kostenstelle'], { minLength: CANONICAL_FIELDS.length + 1 });

    await fc.assert(
      fc.asyncProperty(
        fc.array(usage, { maxLength: 5 }),
        fc.constantFrom<FeedProfile['csv']['delimiter']>(';', '\t', '|'),
        spellings,
        order,
        fc.boolean(),
        fc.boolean(),
        fc.constantFrom('\n', '\r\n'),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (usages, delimiter, spelled, columnOrder, trailer, quoteAll, eol, cuts) => {
          const encode = (cells: readonly string[], d: string) =>
            cells.map((v) => (quoteAll || /["\r\n,;|\t]/.test(v) || v.trim() !== v ? `"${v.replaceAll('"', '""')}"` : v)).join(d) + eol;
          const canonical = encode(CANONICAL_FIELDS, ',') + usages.map((u) => encode(CANONICAL_FIELDS.map((f) => u[f]), ',')).join('');

          const columns: Partial<Record<CanonicalField, string>> = {};
          const aliases: Partial<Record<CanonicalField, string[]>> = {};
          const headerOf = (name: string): string => {
            if (name === 'Kostenstelle') return name;
            const field = name as CanonicalField;
            const { how, upper, padded } = spelled[field];
            let header: string = field;
            if (how === 'column') header = columns[field] = `Spalte ${field}`;
            if (how === 'alias') header = (aliases[field] = [`alt-${field}`, `other-${field}`])[1] ?? field;
            return `${padded ? ' ' : ''}${upper ? header.toUpperCase() : header}`;
          };
          const header = columnOrder.map(headerOf);
          const countColumn = header[1] ?? '';
          const profile = profileOf({
            delimiter,
            columns,
            header_aliases: aliases,
            ignore_columns: ['kostenstelle'],
            ...(trailer ? { trailer: { marker: '#END', record_count_column: countColumn.trim() } } : {}),
          });
          let respelled = encode(header, delimiter);
          for (const u of usages) respelled += encode(columnOrder.map((c) => (c === 'Kostenstelle' ? 'K;1' : u[c as CanonicalField])), delimiter);
          const trailerLine = respelled.split(/\r\n|\r|\n/).length;
          if (trailer) respelled += `#END${delimiter}${usages.length}${eol}`;

          const bytes = Buffer.from(respelled);
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
          const chunks = [0, ...points].map((from, i) => bytes.subarray(from, points[i] ?? bytes.length)).filter((c) => c.length > 0);
          const expected = await readAll(canonical);
          if (trailer) expected.push({ kind: 'control', line: trailerLine, recordCount: String(usages.length) });
          expect(expected.filter((i) => i.kind === 'row')).toHaveLength(usages.length);
          expect(await readAll(chunks, profile)).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });
});
