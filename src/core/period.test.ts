import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { Temporal } from 'temporal-polyfill';
import {
  addDays,
  isPeriod,
  isPeriodClosed,
  isValidTimeZone,
  localDateOf,
  nextPeriod,
  parsePeriod,
  parseTimestamp,
  periodBounds,
  periodOf,
  previousPeriod,
  startOfLocalDate,
  lastDayOfPeriod,
} from './period';

const LONDON = 'Europe/London';
const at = (iso: string): Temporal.Instant => Temporal.Instant.from(iso);

/** Parses a timestamp that the test expects to be accepted. */
function instantOf(text: string): Temporal.Instant {
  const r = parseTimestamp(text);
  if (!r.ok) throw new Error(`expected "${text}" to parse, got: ${r.reason}`);
  return r.value;
}

describe('parseTimestamp accepts timestamps that carry an offset', () => {
  it.each<[string, string]>([
    ['2026-10-01T09:00:00Z', '2026-10-01T09:00:00Z'],
    ['2026-10-01T09:00:00z', '2026-10-01T09:00:00Z'],
    ['2026-10-01 09:00:00Z', '2026-10-01T09:00:00Z'],
    ['2026-10-01T09:00Z', '2026-10-01T09:00:00Z'],
    ['2026-10-01T09:00:00+01:00', '2026-10-01T08:00:00Z'],
    ['2026-10-01T09:00:00+0100', '2026-10-01T08:00:00Z'],
    ['2026-10-01T09:00:00-05', '2026-10-01T14:00:00Z'],
    ['2026-10-01T09:00:00-00:00', '2026-10-01T09:00:00Z'],
    ['2026-10-01T09:00:00+14:00', '2026-09-30T19:00:00Z'],
    ['  2026-10-01T09:00:00Z  ', '2026-10-01T09:00:00Z'],
    // Microseconds are what PostgreSQL keeps, so they are accepted exactly.
    ['2026-10-01T09:00:00.123456Z', '2026-10-01T09:00:00.123456Z'],
    ['2026-10-01T09:00:00.000001000Z', '2026-10-01T09:00:00.000001Z'],
    // DST gap in London (01:00 -> 02:00 on 2026-03-29): with an explicit offset the instant is unambiguous.
    ['2026-03-29T01:30:00+00:00', '2026-03-29T01:30:00Z'],
    ['2026-03-29T01:30:00+01:00', '2026-03-29T00:30:00Z'],
    // DST overlap in London (02:00 -> 01:00 on 2026-10-25): 01:30 happens twice, the offset picks one.
    ['2026-10-25T01:30:00+01:00', '2026-10-25T00:30:00Z'],
    ['2026-10-25T01:30:00+00:00', '2026-10-25T01:30:00Z'],
    ['2028-02-29T12:00:00Z', '2028-02-29T12:00:00Z'],
    ['2026-10-31T23:30:00-01:00', '2026-11-01T00:30:00Z'],
  ])('%j -> %s', (text, expected) => {
    expect(instantOf(text).toString()).toBe(expected);
  });
});

describe('parseTimestamp refuses what it cannot place exactly, saying why', () => {
  it.each<[string, string]>([
    ['', 'is empty'],
    ['   ', 'is empty'],
    ['2026-10-01', 'is a date without a time; expected e.g. 2026-10-01T09:00:00Z'],
    ['2026-10-01T09:00:00', 'has no UTC offset; expected Z or e.g. +01:00 at the end'],
    // The London gap: 01:30 local on 2026-03-29 does not exist, and without an offset nothing is guessed.
    ['2026-03-29T01:30:00', 'has no UTC offset; expected Z or e.g. +01:00 at the end'],
    // The London overlap: 01:30 local on 2026-10-25 happens twice.
    ['2026-10-25T01:30:00', 'has no UTC offset; expected Z or e.g. +01:00 at the end'],
    ['2026-10-01T09:00:00UTC', 'has no UTC offset; expected Z or e.g. +01:00 at the end'],
    ['2026-10-01T09:00:00+01:00[Europe/London]', 'has no UTC offset; expected Z or e.g. +01:00 at the end'],
    ['10/01/2026 09:00', 'is not an ISO 8601 timestamp; expected e.g. 2026-10-01T09:00:00Z'],
    ['1 October 2026', 'is not an ISO 8601 timestamp; expected e.g. 2026-10-01T09:00:00Z'],
    ['+002026-10-01T09:00:00Z', 'is not an ISO 8601 timestamp; expected e.g. 2026-10-01T09:00:00Z'],
    ['2026-02-29T10:00:00Z', 'is not a valid date and time'],
    ['2026-02-30T00:00:00Z', 'is not a valid date and time'],
    ['2026-13-01T00:00:00Z', 'is not a valid date and time'],
    ['2026-10-01T24:00:00Z', 'is not a valid date and time'],
    ['2026-10-01T09:00:00 Z', 'is not a valid date and time'],
    ['2026-10-01T09:00:00.0000001Z', 'is more precise than a microsecond'],
    ['2026-10-01T09:00:00.123456789Z', 'is more precise than a microsecond'],
    ['1969-12-31T23:59:59.9999999Z', 'is more precise than a microsecond'],
  ])('%j: %s', (text, reason) => {
    expect(parseTimestamp(text)).toEqual({ ok: false, reason });
  });
});

describe('periodOf and localDateOf read the instant in the partnership time zone', () => {
  it.each<[string, string, string, string]>([
    // [timestamp, zone, period, local date]
    ['2026-10-01T09:00:00Z', LONDON, '2026-10', '2026-10-01'],
    ['2026-09-30T23:30:00Z', LONDON, '2026-10', '2026-10-01'], // 00:30 BST
    ['2026-09-30T22:59:59.999999Z', LONDON, '2026-09', '2026-09-30'],
    ['2026-10-31T23:30:00Z', LONDON, '2026-10', '2026-10-31'], // GMT again after 25 October
    ['2026-10-31T23:30:00-01:00', LONDON, '2026-11', '2026-11-01'],
    ['2026-03-29T01:30:00+00:00', LONDON, '2026-03', '2026-03-29'], // 02:30 BST, just after the gap
    ['2026-03-29T01:30:00+01:00', LONDON, '2026-03', '2026-03-29'], // 00:30 GMT, just before it
    ['2026-10-25T01:30:00+01:00', LONDON, '2026-10', '2026-10-25'], // first 01:30
    ['2026-10-25T01:30:00+00:00', LONDON, '2026-10', '2026-10-25'], // second 01:30
    ['2028-02-29T12:00:00Z', LONDON, '2028-02', '2028-02-29'],
    ['2028-02-29T23:30:00-01:00', LONDON, '2028-03', '2028-03-01'],
    ['2028-02-29T23:30:00Z', 'Europe/Berlin', '2028-03', '2028-03-01'],
    ['2026-12-31T23:59:59Z', 'UTC', '2026-12', '2026-12-31'],
    ['2027-01-01T00:00:00Z', 'UTC', '2027-01', '2027-01-01'],
    ['2027-01-01T03:00:00Z', 'America/New_York', '2026-12', '2026-12-31'],
    ['2026-06-30T15:00:00Z', 'Pacific/Auckland', '2026-07', '2026-07-01'],
  ])('%s in %s -> %s, %s', (text, zone, period, date) => {
    const instant = instantOf(text);
    expect(periodOf(instant, zone)).toBe(period);
    expect(localDateOf(instant, zone)).toBe(date);
  });

  it('keeps the two readings of the London overlap apart, both in October', () => {
    const first = instantOf('2026-10-25T01:30:00+01:00');
    const second = instantOf('2026-10-25T01:30:00+00:00');
    expect(second.since(first).total('minutes')).toBe(60);
    const bounds = periodBounds('2026-10', LONDON);
    for (const i of [first, second]) {
      expect(Temporal.Instant.compare(i, bounds.start)).toBeGreaterThanOrEqual(0);
      expect(Temporal.Instant.compare(i, bounds.end)).toBeLessThan(0);
    }
  });
});

describe('startOfLocalDate', () => {
  it.each<[string, string, string]>([
    ['2026-10-01', LONDON, '2026-09-30T23:00:00Z'],
    ['2026-11-01', LONDON, '2026-11-01T00:00:00Z'],
    ['2026-03-29', LONDON, '2026-03-29T00:00:00Z'], // the gap is at 01:00, midnight exists
    ['2026-07-01', 'Europe/Berlin', '2026-06-30T22:00:00Z'],
    ['2026-01-01', 'UTC', '2026-01-01T00:00:00Z'],
    // Sao Paulo skipped midnight on 2018-11-04 (00:00 -03 -> 01:00 -02): the day starts at 01:00.
    ['2018-11-04', 'America/Sao_Paulo', '2018-11-04T03:00:00Z'],
  ])('%s in %s starts at %s', (date, zone, expected) => {
    expect(startOfLocalDate(date, zone).toString()).toBe(expected);
  });
});

describe('periodBounds', () => {
  it.each<[string, string, string, string]>([
    ['2026-10', LONDON, '2026-09-30T23:00:00Z', '2026-11-01T00:00:00Z'],
    ['2026-03', LONDON, '2026-03-01T00:00:00Z', '2026-03-31T23:00:00Z'],
    ['2028-02', LONDON, '2028-02-01T00:00:00Z', '2028-03-01T00:00:00Z'],
    ['2026-12', 'UTC', '2026-12-01T00:00:00Z', '2027-01-01T00:00:00Z'],
    ['2026-07', 'Europe/Berlin', '2026-06-30T22:00:00Z', '2026-07-31T22:00:00Z'],
    ['2026-01', 'America/New_York', '2026-01-01T05:00:00Z', '2026-02-01T05:00:00Z'],
  ])('%s in %s is [%s, %s)', (period, zone, start, end) => {
    const b = periodBounds(period, zone);
    expect(b.start.toString()).toBe(start);
    expect(b.end.toString()).toBe(end);
  });

  it('October 2026 in London ends at 2026-10-31T24:00Z, which is 2026-11-01T00:00:00Z', () => {
    const { end } = periodBounds('2026-10', LONDON);
    expect(end.equals(at('2026-11-01T00:00:00Z'))).toBe(true);
    expect(periodOf(end, LONDON)).toBe('2026-11');
    expect(periodOf(end.subtract({ nanoseconds: 1 }), LONDON)).toBe('2026-10');
  });

  it.each(['2026-13', '2026-00', '2026-1', '202610', '2026-10-01', '', ' 2026-10'])('refuses the period %j', (text) => {
    expect(isPeriod(text)).toBe(false);
    expect(() => periodBounds(text, LONDON)).toThrow(`"${text}" is not a period; expected YYYY-MM`);
  });
});

/** Instants from 1990 to 2060, at microsecond precision. */
const instant = fc
  .bigInt({ min: 631152000000000n, max: 2840140800000000n })
  .map((micros) => Temporal.Instant.fromEpochNanoseconds(micros * 1000n));
const zone = fc.constantFrom(LONDON, 'Europe/Berlin', 'America/New_York', 'America/Sao_Paulo', 'Pacific/Auckland', 'Asia/Kolkata', 'Australia/Lord_Howe', 'UTC');

describe('every instant lands in exactly one period (property)', () => {
  it('periodOf(i) = p exactly when i is in [start, end) of p; the neighbours do not contain it', () => {
    fc.assert(
      fc.property(instant, zone, (i, tz) => {
        const p = periodOf(i, tz);
        const b = periodBounds(p, tz);
        expect(Temporal.Instant.compare(b.start, i)).toBeLessThanOrEqual(0);
        expect(Temporal.Instant.compare(i, b.end)).toBeLessThan(0);
        expect(Temporal.Instant.compare(i, periodBounds(previousPeriod(p), tz).end)).toBeGreaterThanOrEqual(0);
        expect(Temporal.Instant.compare(i, periodBounds(nextPeriod(p), tz).start)).toBeLessThan(0);
        expect(localDateOf(i, tz).slice(0, 7)).toBe(p);
      }),
      { numRuns: 300 },
    );
  });

  it('consecutive periods tile time: the end of one is the start of the next', () => {
    fc.assert(
      fc.property(instant, zone, (i, tz) => {
        const p = periodOf(i, tz);
        expect(periodBounds(p, tz).end.equals(periodBounds(nextPeriod(p), tz).start)).toBe(true);
        expect(previousPeriod(nextPeriod(p))).toBe(p);
      }),
      { numRuns: 200 },
    );
  });

  it('a timestamp written with any offset parses to the instant it names', () => {
    fc.assert(
      fc.property(instant, fc.integer({ min: -14 * 60, max: 14 * 60 }), (i, offsetMinutes) => {
        const sign = offsetMinutes < 0 ? '-' : '+';
        const abs = Math.abs(offsetMinutes);
        const offset = `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
        const local = i.toZonedDateTimeISO(offset).toPlainDateTime().toString();
        const r = parseTimestamp(`${local}${offset}`);
        expect(r.ok && r.value.equals(i)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});

describe('previousPeriod and nextPeriod', () => {
  it.each<[string, string, string]>([
    ['2026-10', '2026-09', '2026-11'],
    ['2026-01', '2025-12', '2026-02'],
    ['2026-12', '2026-11', '2027-01'],
    ['2028-02', '2028-01', '2028-03'],
  ])('around %s: %s and %s', (period, previous, next) => {
    expect(previousPeriod(period)).toBe(previous);
    expect(nextPeriod(period)).toBe(next);
    expect(parsePeriod(period).toString()).toBe(period);
  });

  it('refuses a malformed period', () => {
    expect(() => nextPeriod('2026-13')).toThrow(RangeError);
    expect(() => previousPeriod('26-01')).toThrow('"26-01" is not a period; expected YYYY-MM');
  });
});

describe('isPeriodClosed', () => {
  const end = at('2026-11-01T00:00:00Z');
  it.each<[string, boolean, Temporal.Instant]>([
    ['exactly at the end', true, end],
    ['1 ns before the end', false, end.subtract({ nanoseconds: 1 })],
    ['1 ns after the end', true, end.add({ nanoseconds: 1 })],
    ['at the start', false, at('2026-09-30T23:00:00Z')],
    ['on 31 October at 23:30 UTC (still October in London)', false, at('2026-10-31T23:30:00Z')],
    ['a year later', true, at('2027-11-01T00:00:00Z')],
  ])('October 2026 in London, %s -> %s', (_label, closed, now) => {
    expect(isPeriodClosed('2026-10', LONDON, now)).toBe(closed);
  });

  it('depends on the zone: at 23:30 UTC on 31 October, October has ended in Berlin but not in London', () => {
    const now = at('2026-10-31T23:30:00Z');
    expect(isPeriodClosed('2026-10', 'Europe/Berlin', now)).toBe(true);
    expect(isPeriodClosed('2026-10', LONDON, now)).toBe(false);
  });
});

describe('isValidTimeZone', () => {
  it.each<[string, boolean]>([
    [LONDON, true],
    ['Europe/Berlin', true],
    ['UTC', true],
    ['America/Sao_Paulo', true],
    ['+01:00', true], // a fixed offset is a valid Temporal zone
    ['Mars/Olympus_Mons', false],
    ['', false],
    ['Z', false],
    ['London', false],
  ])('%j -> %s', (tz, valid) => {
    expect(isValidTimeZone(tz)).toBe(valid);
  });
});

describe('addDays', () => {
  it.each<[string, number, string]>([
    ['2026-10-01', 30, '2026-10-31'],
    ['2026-12-15', 30, '2027-01-14'],
    ['2028-02-28', 1, '2028-02-29'],
    ['2026-02-28', 1, '2026-03-01'],
    ['2026-03-01', -1, '2026-02-28'],
  ])('%s + %i = %s', (date, days, expected) => {
    expect(addDays(date, days)).toBe(expected);
  });
});

describe('results do not depend on the process time zone', () => {
  const inputs = [
    '2026-10-01T09:00:00Z',
    '2026-10-31T23:30:00Z',
    '2026-10-31T23:30:00-01:00',
    '2026-03-29T01:30:00+00:00',
    '2026-10-25T01:30:00+01:00',
    '2026-10-25T01:30:00+00:00',
    '2028-02-29T23:30:00-01:00',
    '2026-10-01',
    '2026-10-01T09:00:00',
  ];
  const zones = [LONDON, 'Europe/Berlin', 'UTC', 'America/New_York'];

  function snapshot(): unknown {
    return inputs.map((text) => {
      const r = parseTimestamp(text);
      if (!r.ok) return [text, r.reason];
      return [
        text,
        r.value.toString(),
        zones.map((tz) => [periodOf(r.value, tz), localDateOf(r.value, tz), isPeriodClosed('2026-10', tz, r.value)]),
      ];
    }).concat(
      zones.map((tz) => {
        const b = periodBounds('2026-10', tz);
        return [tz, b.start.toString(), b.end.toString(), startOfLocalDate('2026-03-29', tz).toString()];
      }),
    );
  }

  it('gives identical outputs with TZ=UTC and TZ=America/New_York', () => {
    const saved = process.env.TZ;
    try {
      process.env.TZ = 'UTC';
      const underUtc = snapshot();
      expect(new Date(Date.UTC(2026, 0, 1)).getTimezoneOffset()).toBe(0);
      process.env.TZ = 'America/New_York';
      // Proves the switch took effect in this process before comparing.
      expect(new Date(Date.UTC(2026, 0, 1)).getTimezoneOffset()).toBe(300);
      expect(snapshot()).toEqual(underUtc);
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });
});

describe('lastDayOfPeriod', () => {
  it.each([
    ['2026-10', '2026-10-31'],
    ['2026-02', '2026-02-28'],
    ['2028-02', '2028-02-29'],
    ['2026-12', '2026-12-31'],
  ])('%s ends on %s', (period, day) => {
    expect(lastDayOfPeriod(period)).toBe(day);
  });
});
