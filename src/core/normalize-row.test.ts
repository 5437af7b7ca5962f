import { describe, expect, it } from 'vitest';
import { feedProfileSchema } from './feed-profile';
import { normalizeRow } from './normalize-row';

const profile = (p: Record<string, unknown>) => feedProfileSchema.parse(p);
const german = profile({ csv: { delimiter: ';' }, decimal_separator: ',', thousands_separator: '.', timestamp_format: 'dd.MM.yyyy HH:mm', time_zone: 'Europe/Berlin' });

describe('normalizeRow', () => {
  it('leaves a canonical row untouched under the default profile', () => {
    const row = { usage_id: 'U1', quantity: '1,000', start_time: '2026-10-01T09:00:00' };
    // The default profile converts nothing: validation then refuses "1,000" and the missing offset.
    expect(normalizeRow(row, profile({}))).toEqual({ ok: true, fields: row });
  });

  it.each([
    ['2,5', '2.5'],
    ['-3', '-3'],
    ['1.000,50', '1000.50'],
    ['12.345.678,9', '12345678.9'],
    ['007', '007'],
  ])('reads the quantity %s as %s with decimal commas and dot grouping', (input, expected) => {
    expect(normalizeRow({ quantity: input }, german)).toEqual({ ok: true, fields: { quantity: expected } });
  });

  it.each(['1.00,5', '1,000.50', '2.5', '1e3', '1,', ',5', '1.0000,5', ' 2,5'])('refuses the quantity %s under decimal commas', (input) => {
    expect(normalizeRow({ quantity: input }, german)).toEqual({
      ok: false,
      errors: [{ field: 'quantity', code: 'invalid_quantity', raw: input, message: `quantity "${input}" is not a number written with "," as the decimal separator and "." between groups of three digits` }],
    });
  });

  it('reads local times in the profile zone, across the DST change', () => {
    const result = normalizeRow({ start_time: '05.10.2026 14:00', end_time: '26.10.2026 09:30' }, german);
    // 5 Oct is CEST (+02:00); 26 Oct is CET (+01:00).
    expect(result).toEqual({ ok: true, fields: { start_time: '2026-10-05T12:00:00Z', end_time: '2026-10-26T08:30:00Z' } });
  });

  it.each([
    ['29.03.2026 02:30', 'Europe/Berlin'],
    ['25.10.2026 02:30', 'Europe/Berlin'],
  ])('refuses %s, which does not exist or happens twice in %s', (input, zone) => {
    const result = normalizeRow({ start_time: input }, german);
    expect(result).toEqual({
      ok: false,
      errors: [{ field: 'start_time', code: 'invalid_timestamp', raw: input, message: `start_time "${input}" does not exist or happens twice in ${zone} (a daylight-saving change); give it with an offset` }],
    });
  });

  it('refuses impossible dates and the wrong shape', () => {
    expect(normalizeRow({ start_time: '30.02.2026 10:00' }, german)).toMatchObject({ ok: false, errors: [{ message: 'start_time "30.02.2026 10:00" is not a valid date and time' }] });
    expect(normalizeRow({ start_time: '2026-10-05 14:00' }, german)).toMatchObject({ ok: false, errors: [{ message: 'start_time "2026-10-05 14:00" does not match the format dd.MM.yyyy HH:mm' }] });
  });

  it('reads ISO timestamps without an offset, and dates alone, in the profile zone; keeps those with one', () => {
    const london = profile({ time_zone: 'Europe/London' });
    expect(normalizeRow({ start_time: '2026-10-31T23:30:00', end_time: '2026-11-01' }, london)).toEqual({
      ok: true,
      fields: { start_time: '2026-10-31T23:30:00Z', end_time: '2026-11-01T00:00:00Z' },
    });
    expect(normalizeRow({ start_time: '2026-07-01T09:00:00+02:00' }, london)).toEqual({ ok: true, fields: { start_time: '2026-07-01T09:00:00+02:00' } });
  });

  it.each<[string, string]>([
    // Temporal would drop the offset and the zone and read 09:00 in London.
    ['2026-10-05T09:00:00+05:00[Asia/Karachi]', 'is not an ISO 8601 date and time'],
    ['2026-10-05T09:00:00[Europe/Paris]', 'is not an ISO 8601 date and time'],
    ['20261005T090000', 'is not an ISO 8601 date and time'],
    ['2026-W41-1', 'is not an ISO 8601 date and time'],
    ['2027-02-29T12:00:00', 'is not a valid date and time'],
    ['2027-02-29', 'is not a valid date and time'],
    ['2026-10-05T24:00:00', 'is not a valid date and time'],
  ])('refuses a local ISO timestamp %j that it cannot read exactly: %s', (text, reason) => {
    const london = profile({ time_zone: 'Europe/London' });
    expect(normalizeRow({ start_time: text }, london)).toEqual({
      ok: false,
      errors: [{ field: 'start_time', code: 'invalid_timestamp', message: `start_time "${text}" ${reason}`, raw: text }],
    });
  });

  it('gives the same instants whatever the process time zone is', () => {
    const before = process.env.TZ;
    const run = () => normalizeRow({ start_time: '05.10.2026 14:00' }, german);
    try {
      process.env.TZ = 'UTC';
      const utc = run();
      process.env.TZ = 'Pacific/Auckland';
      expect(run()).toEqual(utc);
    } finally {
      process.env.TZ = before;
    }
  });

  it('fills the default product and account only where the row has none', () => {
    const p = profile({ defaults: { product: 'CPU_HOUR', account: 'OPS' } });
    expect(normalizeRow({ product: ' ', account: 'GRANT' }, p)).toEqual({ ok: true, fields: { product: 'CPU_HOUR', account: 'GRANT' } });
  });

  it('reports every bad value of a row together', () => {
    const result = normalizeRow({ quantity: 'x', start_time: 'y', end_time: 'z' }, german);
    expect(result.ok ? [] : result.errors.map((e) => e.field)).toEqual(['quantity', 'start_time', 'end_time']);
  });
});

describe('feedProfileSchema', () => {
  it('refuses separators that collide', () => {
    expect(() => profile({ csv: { delimiter: ';' }, decimal_separator: ',', thousands_separator: ',' })).toThrow('must differ from the decimal separator');
    expect(() => profile({ decimal_separator: ',', csv: { delimiter: ',' } })).toThrow('must differ from the decimal and thousands separators');
  });
  it('accepts booleans spelled as strings (YAML failsafe)', () => {
    expect(profile({ reject_file_on_any_error: 'true' }).reject_file_on_any_error).toBe(true);
  });
});
