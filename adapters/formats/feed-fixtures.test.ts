import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { feedProfileSchema, type FeedProfile } from '../../src/core/feed-profile';
import { adapterForFormat, formatForFileName } from './registry';
import type { FeedItem } from './types';

const FEEDS = new URL('../../fixtures/feeds/', import.meta.url);

async function profileOf(name: string): Promise<FeedProfile> {
  return feedProfileSchema.parse(parseYaml(await readFile(new URL(`${name}.profile.yaml`, FEEDS), 'utf8')));
}

/** Reads a fixture the way the ingest does: format from the file name, the partner's profile beside it. */
async function readFixture(fileName: string, profileName: string): Promise<FeedItem[]> {
  const format = formatForFileName(fileName);
  if (format === undefined) throw new Error(`no format for ${fileName}`);
  const items: FeedItem[] = [];
  const profile = await profileOf(profileName);
  for await (const item of adapterForFormat(format).read(createReadStream(new URL(fileName, FEEDS)), { fileName, profile })) items.push(item);
  return items;
}

describe('feed fixtures read with their profiles', () => {
  it('semicolon-decimal-comma.csv: German headers, decimal commas and local times mapped as written, then the SUMME trailer', async () => {
    expect(await readFixture('semicolon-decimal-comma.csv', 'semicolon-decimal-comma')).toEqual([
      {
        kind: 'row',
        record: 1,
        line: 2,
        fields: { usage_id: 'N-1001', product: 'CPU', user: 'anna', quantity: '2,5', start_time: '05.10.2026 14:00', end_time: '05.10.2026 15:30', description: 'Rechenzeit' },
      },
      {
        kind: 'row',
        record: 2,
        line: 3,
        fields: { usage_id: 'N-1002', product: 'GPU', user: 'bernd', quantity: '1,25', start_time: '05.10.2026 16:00', description: 'Training; Lauf "B"' },
      },
      {
        kind: 'row',
        record: 3,
        line: 4,
        fields: { usage_id: 'N-1003', product: 'CPU', user: 'carla', quantity: '8,75', start_time: '06.10.2026 09:15', end_time: '06.10.2026 10:00' },
      },
      { kind: 'control', line: 5, recordCount: '3', quantitySum: '12,5' },
    ]);
  });

  it('namespaced.xml: prefixed elements, attribute and element fields, CDATA, and the root\'s control totals first', async () => {
    expect(await readFixture('namespaced.xml', 'namespaced')).toEqual([
      { kind: 'control', line: 3, recordCount: '3', quantitySum: '12.5' },
      {
        kind: 'row',
        record: 1,
        line: 4,
        fields: {
          usage_id: 'R-1',
          user: 'alice',
          product: 'CPU',
          quantity: '2.5',
          start_time: '2026-10-05T14:00:00+02:00',
          end_time: '2026-10-05T15:30:00+02:00',
          description: 'Nightly <batch> & "reports"',
        },
      },
      {
        kind: 'row',
        record: 2,
        line: 11,
        fields: { usage_id: 'R-2', user: 'bob', product: 'GPU', quantity: '1.25', start_time: '2026-10-05T16:00:00Z', description: 'Training & tuning' },
      },
      {
        kind: 'row',
        record: 3,
        line: 17,
        fields: { usage_id: 'R-3', user: 'carol', product: 'CPU', quantity: '8.75', start_time: '2026-10-06T09:15:00+02:00', end_time: '2026-10-06T10:00:00+02:00' },
      },
    ]);
  });

  it('namespaced.xml: sniff reads up to the profile\'s root and finds no declared partner', async () => {
    const profile = await profileOf('namespaced');
    expect(await adapterForFormat('xml').sniff!(createReadStream(new URL('namespaced.xml', FEEDS)), { fileName: 'namespaced.xml', profile })).toEqual({
      partner: undefined,
    });
  });

  it('each profile parses to exactly the settings written in its YAML', async () => {
    const csv = await profileOf('semicolon-decimal-comma');
    expect(csv).toMatchObject({
      decimal_separator: ',',
      timestamp_format: 'dd.MM.yyyy HH:mm',
      time_zone: 'Europe/Berlin',
      defaults: { account: 'ACME-DE' },
      csv: { delimiter: ';', ignore_columns: ['Kostenstelle'], trailer: { marker: 'SUMME', record_count_column: 'Produkt', quantity_sum_column: 'Menge' } },
    });
    const xml = await profileOf('namespaced');
    expect(xml.xml).toEqual({
      root_element: 'feed',
      record_element: 'record',
      fields: { usage_id: '@ref', user: '@user', quantity: 'amount', start_time: 'from', end_time: 'to', description: 'note' },
      record_count_attribute: 'count',
      quantity_sum_attribute: 'total',
    });
  });
});
