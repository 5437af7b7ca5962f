import fc from 'fast-check';
import { Temporal } from 'temporal-polyfill';
import { describe, expect, it } from 'vitest';
import { formatTimestamp, instantOfTimestamp, localDateAt, parseUtcTimestamp, timestampOfInstant } from './period';

/**
 * Ingestion reads every timestamp and places every usage in its partnership's month without
 * Temporal on the common path (Temporal costs tens of microseconds a call). These properties hold
 * the fast paths to exactly what Temporal says.
 */

/** What parseTimestamp said before the fast path: its checks, then Temporal.Instant.from. */
function reference(text: string): { ok: true; ns: bigint } | { ok: false; reason: string } {
  const trimmed = text.trim();
  if (trimmed.length === 0) return { ok: false, reason: 'is empty' };
  if (!/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(trimmed)) {
    return /^\d{4}-\d{2}-\d{2}$/.test(trimmed)
      ? { ok: false, reason: 'is a date without a time; expected e.g. 2026-10-01T09:00:00Z' }
      : { ok: false, reason: 'is not an ISO 8601 timestamp; expected e.g. 2026-10-01T09:00:00Z' };
  }
  if (!/(Z|[+-]\d{2}(:?\d{2})?)$/i.test(trimmed)) return { ok: false, reason: 'has no UTC offset; expected Z or e.g. +01:00 at the end' };
  try {
    const ns = Temporal.Instant.from(trimmed).epochNanoseconds;
    if (ns % 1000n !== 0n) return { ok: false, reason: 'is more precise than a microsecond' };
    return { ok: true, ns };
  } catch {
    return { ok: false, reason: 'is not a valid date and time' };
  }
}

function fast(text: string): { ok: true; ns: bigint } | { ok: false; reason: string } {
  const r = parseUtcTimestamp(text);
  return r.ok ? { ok: true, ns: instantOfTimestamp(r.value).epochNanoseconds } : r;
}

const two = (max: number) => fc.integer({ min: 0, max }).map((n) => String(n).padStart(2, '0'));

describe('parseUtcTimestamp gives what Temporal gives', () => {
  it('for timestamps in the everyday shape, fields in range or not (property)', () => {
    const text = fc
      .tuple(
        fc.integer({ min: 990, max: 2999 }).map((y) => String(y).padStart(4, '0')),
        two(13),
        two(32),
        fc.constantFrom('T', 't', ' '),
        two(25),
        two(61),
        fc.option(two(61), { nil: undefined }),
        fc.option(fc.stringMatching(/^[0-9]{1,10}$/), { nil: undefined }),
        fc.constantFrom('Z', 'z', '+00:00', '-00:00', '+01:00', '-05', '+0530', '+14:00', '-23:59', '+24:00', '+01:60', ' Z', ''),
        fc.constantFrom('', ' ', '  '),
      )
      .map(([y, mo, d, sep, h, mi, s, frac, off, pad]) => `${pad}${y}-${mo}-${d}${sep}${h}:${mi}${s === undefined ? '' : `:${s}${frac === undefined ? '' : `.${frac}`}`}${off}${pad}`);
    fc.assert(
      fc.property(text, (t) => {
        expect(fast(t)).toEqual(reference(t));
      }),
      { numRuns: 5000 },
    );
  });

  it('for anything else (property)', () => {
    const text = fc.string({ unit: fc.constantFrom('2', '0', '1', '9', '-', ':', 'T', 'Z', '+', '.', ' ', 'z', ','), maxLength: 30 });
    fc.assert(
      fc.property(text, (t) => {
        expect(fast(t)).toEqual(reference(t));
      }),
      { numRuns: 5000 },
    );
  });
});

describe('localDateAt gives the local date Temporal gives', () => {
  const zones = ['Europe/London', 'Europe/Berlin', 'America/New_York', 'America/Sao_Paulo', 'Pacific/Auckland', 'Asia/Kolkata', 'Australia/Lord_Howe', 'Pacific/Chatham', 'UTC', '+05:45', '-03:30'];

  it('for any instant from 1970 to 2100, in zones with and without daylight saving (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4_102_444_800_000 }), fc.constantFrom(...zones), (ms, zone) => {
        const expected = Temporal.Instant.fromEpochMilliseconds(ms).toZonedDateTimeISO(zone).toPlainDate().toString();
        expect(localDateAt(ms, zone)).toBe(expected);
      }),
      { numRuns: 5000 },
    );
  });

  it('on both sides of every transition of a zone, to the millisecond', () => {
    for (const zone of ['Europe/London', 'America/Sao_Paulo', 'Australia/Lord_Howe']) {
      let at = Temporal.Instant.from('2015-01-01T00:00:00Z').toZonedDateTimeISO(zone);
      for (let i = 0; i < 30; i += 1) {
        const next = at.getTimeZoneTransition('next');
        if (next === null) break;
        for (const ms of [next.epochMilliseconds - 1, next.epochMilliseconds, next.epochMilliseconds + 1]) {
          expect(localDateAt(ms, zone)).toBe(Temporal.Instant.fromEpochMilliseconds(ms).toZonedDateTimeISO(zone).toPlainDate().toString());
        }
        at = next;
      }
    }
  });
});

describe('formatTimestamp writes an instant as Temporal does', () => {
  it('(property)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 946_684_800_000_000n, max: 4_102_444_800_000_000n }), (micros) => {
        const instant = Temporal.Instant.fromEpochNanoseconds(micros * 1000n);
        expect(formatTimestamp(timestampOfInstant(instant))).toBe(instant.toString());
      }),
      { numRuns: 3000 },
    );
  });
});
