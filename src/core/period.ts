import { Temporal } from 'temporal-polyfill';

/** A billing period: a calendar month, 'YYYY-MM'. */
export type Period = string;

const PERIOD = /^(\d{4})-(0[1-9]|1[0-2])$/;

export function isPeriod(text: string): boolean {
  return PERIOD.test(text);
}

export function parsePeriod(text: string): Temporal.PlainYearMonth {
  if (!isPeriod(text)) throw new RangeError(`"${text}" is not a period; expected YYYY-MM`);
  return Temporal.PlainYearMonth.from(text);
}

export function isValidTimeZone(timeZone: string): boolean {
  try {
    Temporal.Instant.fromEpochMilliseconds(0).toZonedDateTimeISO(timeZone);
    return true;
  } catch {
    return false;
  }
}

/** The calendar month, in the partnership's time zone, that an instant belongs to. */
export function periodOf(instant: Temporal.Instant, timeZone: string): Period {
  return instant.toZonedDateTimeISO(timeZone).toPlainDate().toPlainYearMonth().toString();
}

/** The local calendar date of an instant in a time zone ('YYYY-MM-DD'). */
export function localDateOf(instant: Temporal.Instant, timeZone: string): string {
  return instant.toZonedDateTimeISO(timeZone).toPlainDate().toString();
}

/** The first instant of a local date (local midnight, or the first valid instant after a DST gap). */
export function startOfLocalDate(date: string, timeZone: string): Temporal.Instant {
  return Temporal.PlainDate.from(date).toZonedDateTime({ timeZone }).toInstant();
}

/** [start, end) of a period in a time zone. */
export function periodBounds(period: Period, timeZone: string): { start: Temporal.Instant; end: Temporal.Instant } {
  const ym = parsePeriod(period);
  const first = ym.toPlainDate({ day: 1 });
  return {
    start: first.toZonedDateTime({ timeZone }).toInstant(),
    end: first.add({ months: 1 }).toZonedDateTime({ timeZone }).toInstant(),
  };
}

/** The last calendar day of a period ('YYYY-MM-DD'), e.g. for comparing with contract dates. */
export function lastDayOfPeriod(period: Period): string {
  const ym = parsePeriod(period);
  return ym.toPlainDate({ day: ym.daysInMonth }).toString();
}

export function previousPeriod(period: Period): Period {
  return parsePeriod(period).subtract({ months: 1 }).toString();
}

export function nextPeriod(period: Period): Period {
  return parsePeriod(period).add({ months: 1 }).toString();
}

/** Whether the whole period has passed at `now` in the time zone, so it can be invoiced. */
export function isPeriodClosed(period: Period, timeZone: string, now: Temporal.Instant): boolean {
  return Temporal.Instant.compare(now, periodBounds(period, timeZone).end) >= 0;
}

export function addDays(date: string, days: number): string {
  return Temporal.PlainDate.from(date).add({ days }).toString();
}

export type TimestampParseResult = { ok: true; value: Temporal.Instant } | { ok: false; reason: string };

/**
 * Parses an ISO 8601 timestamp that carries its offset (Z or +hh:mm). A timestamp without an
 * offset is ambiguous, so it is refused rather than read in whatever zone the process runs in.
 */
export function parseTimestamp(text: string): TimestampParseResult {
  const trimmed = text.trim();
  if (trimmed.length === 0) return { ok: false, reason: 'is empty' };
  if (!/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(trimmed)) {
    return /^\d{4}-\d{2}-\d{2}$/.test(trimmed)
      ? { ok: false, reason: 'is a date without a time; expected e.g. 2026-10-01T09:00:00Z' }
      : { ok: false, reason: 'is not an ISO 8601 timestamp; expected e.g. 2026-10-01T09:00:00Z' };
  }
  if (!/(Z|[+-]\d{2}(:?\d{2})?)$/i.test(trimmed)) {
    return { ok: false, reason: 'has no UTC offset; expected Z or e.g. +01:00 at the end' };
  }
  try {
    const value = Temporal.Instant.from(trimmed);
    // PostgreSQL keeps microseconds: refuse what it would silently round.
    if (value.epochNanoseconds % 1000n !== 0n) return { ok: false, reason: 'is more precise than a microsecond' };
    return { ok: true, value };
  } catch {
    return { ok: false, reason: 'is not a valid date and time' };
  }
}
