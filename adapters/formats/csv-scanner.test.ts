import { Readable } from 'node:stream';
import fc from 'fast-check';
import { parse } from 'fast-csv';
import { describe, expect, it } from 'vitest';
import { CsvScanner } from './csv-scanner';

/**
 * The CSV tokenizer replaced fast-csv (it reads a million rows in about a second instead of ten).
 * Feeds were written for fast-csv's reading, so on anything the tokenizer accepts it must give
 * exactly fast-csv's rows: a differential test against fast-csv itself, on random text full of the
 * characters that matter (delimiters, quotes, CR, LF, ASCII and Unicode blanks, multi-byte UTF-8),
 * cut into random chunks.
 */

async function fastCsvRows(text: string, delimiter: string): Promise<string[][]> {
  const parser = parse({ headers: false, ignoreEmpty: false, delimiter });
  Readable.from([text]).pipe(parser);
  const rows: string[][] = [];
  for await (const row of parser as AsyncIterable<string[]>) if (row.length > 0) rows.push(row);
  return rows;
}

function scannerRows(chunks: Buffer[], delimiter: string): string[][] | 'refused' {
  const scanner = new CsvScanner({ fileName: 'f.csv', delimiter: delimiter.charCodeAt(0), maxRecordChars: 1 << 20, mode: 'parse', line: 1, fileStart: true });
  try {
    for (const chunk of chunks) scanner.push(chunk);
    scanner.end();
  } catch {
    return 'refused';
  }
  // A line break inside quotes reads as LF whatever the file used (fast-csv keeps it as written).
  return scanner.records.map((r) => r.fields!);
}

const unify = (rows: string[][]) => rows.map((row) => row.map((v) => v.replace(/\r\n?/g, '\n')));

describe('CsvScanner reads what fast-csv reads', () => {
  it('for any text it accepts, with any delimiter and any chunking (property)', async () => {
    const unit = fc.constantFrom('a', 'b', '1', ',', ';', '\t', '"', '"', '\n', '\r', ' ', '\u00a0', '\u3000', 'é', '😀');
    let compared = 0;
    await fc.assert(
      fc.asyncProperty(fc.string({ unit, maxLength: 60 }), fc.constantFrom(',', ';', '\t'), fc.array(fc.nat(), { maxLength: 5 }), async (text, delimiter, cuts) => {
        const bytes = Buffer.from(text);
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
        const chunks = [0, ...points].map((from, i) => bytes.subarray(from, points[i] ?? bytes.length)).filter((c) => c.length > 0);
        const ours = scannerRows(chunks, delimiter);
        if (ours === 'refused') return;
        compared += 1;
        expect(ours).toEqual(unify(await fastCsvRows(text, delimiter)));
      }),
      { numRuns: 3000 },
    );
    // Most random texts are well formed enough to compare.
    expect(compared).toBeGreaterThan(1000);
  });
});
