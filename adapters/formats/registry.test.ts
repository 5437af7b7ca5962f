import { describe, expect, it } from 'vitest';
import { csvAdapter } from './csv';
import { adapterForFormat, feedAdapters, formatForFileName } from './registry';
import { xmlAdapter } from './xml';

describe('feed format registry', () => {
  it('registers each format once, and each extension (lower case, no dot) to one format', () => {
    const formats = feedAdapters.map((a) => a.format);
    expect(formats).toEqual(['csv', 'xml']);
    const extensions = feedAdapters.flatMap((a) => a.extensions);
    expect(new Set(extensions).size).toBe(extensions.length);
    for (const extension of extensions) expect(extension).toMatch(/^[a-z0-9]+(\.[a-z0-9]+)*$/);
  });

  it('finds the adapter for a format', () => {
    expect(adapterForFormat('csv')).toBe(csvAdapter);
    expect(adapterForFormat('xml')).toBe(xmlAdapter);
  });

  it.each(['json', 'CSV', '', '__proto__'])('refuses the unknown format %j, listing the known ones', (format) => {
    expect(() => adapterForFormat(format)).toThrow(new Error(`unknown feed format ${JSON.stringify(format)}; known formats: csv, xml`));
  });

  it.each<[string, string | undefined]>([
    ['usage-2026-10.csv', 'csv'],
    ['USAGE.CSV', 'csv'],
    ['inbox/acme/feed.Xml', 'xml'],
    ['feed.tar.xml', 'xml'],
    ['feed.csv.bak', undefined],
    ['feed.txt', undefined],
    ['csv', undefined],
    ['.csv', undefined],
    ['feedcsv', undefined],
    ['', undefined],
  ])('reads the format of %j from its extension as %j', (name, format) => {
    expect(formatForFileName(name)).toBe(format);
  });
});
