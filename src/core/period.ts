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
  return localDateOf(instant, timeZone).slice(0, 7);
}

/** The local calendar date of an instant in a time zone ('YYYY-MM-DD'). */
export function localDateOf(instant: Temporal.Instant, timeZone: string): string {
  return localDateAt(instant.epochMilliseconds, timeZone);
}

/**
 * The local calendar date ('YYYY-MM-DD') of the instant `epochMs` (whole milliseconds since the
 * epoch; a sub-millisecond remainder never moves a date, as offsets are whole seconds) in a time zone.
 *
 * This runs for every row of every feed, where Temporal's zone arithmetic costs tens of
 * microseconds a call. A zone's offset only changes at its transitions, so the offset is looked up
 * once per stretch between two transitions (Temporal says where they are) and the date is then
 * plain arithmetic. Outside years 1000-9999, or for offsets that are not whole milliseconds, it
 * asks Temporal directly.
 */
export function localDateAt(epochMs: number, timeZone: string): string {
  const offsetMs = offsetAt(epochMs, timeZone);
  if (offsetMs !== undefined) {
    const date = civilDate(epochMs + offsetMs);
    if (date !== undefined) return date;
  }
  return Temporal.Instant.fromEpochMilliseconds(epochMs).toZonedDateTimeISO(timeZone).toPlainDate().toString();
}

/** The calendar month of the instant `epochMs` in a time zone (see localDateAt). */
export function periodAt(epochMs: number, timeZone: string): Period {
  return localDateAt(epochMs, timeZone).slice(0, 7);
}

/** A stretch of time [fromMs, untilMs) over which a zone keeps one UTC offset. */
interface OffsetSpan {
  fromMs: number;
  untilMs: number;
  offsetMs: number;
}

const MAX_SPANS_PER_ZONE = 32;
const offsetSpans = new Map<string, OffsetSpan[]>();

function offsetAt(epochMs: number, timeZone: string): number | undefined {
  let spans = offsetSpans.get(timeZone);
  if (spans === undefined) offsetSpans.set(timeZone, (spans = []));
  for (const span of spans) {
    if (epochMs >= span.fromMs && epochMs < span.untilMs) return span.offsetMs;
  }
  const zoned = Temporal.Instant.fromEpochMilliseconds(epochMs).toZonedDateTimeISO(timeZone);
  const offsetNs = zoned.offsetNanoseconds;
  if (offsetNs % 1_000_000 !== 0) return undefined;
  const offsetMs = offsetNs / 1_000_000;
  const previous = zoned.getTimeZoneTransition('previous');
  const next = zoned.getTimeZoneTransition('next');
  // 'previous' is strictly before this instant: when the instant is itself a transition, the
  // stretch starts here, not at the transition before (whose offset is the old one).
  const fromMs = previous === null ? -Infinity : previous.offsetNanoseconds === offsetNs ? previous.epochMilliseconds : epochMs;
  const span = { fromMs, untilMs: next === null ? Infinity : next.epochMilliseconds, offsetMs };
  if (spans.length >= MAX_SPANS_PER_ZONE) spans.pop();
  spans.unshift(span);
  return offsetMs;
}

const DAY_MS = 86_400_000;

/** 'YYYY-MM-DD' of a count of milliseconds since 1970-01-01T00:00 on a plain (zone-free) clock. */
function civilDate(localMs: number): string | undefined {
  // Howard Hinnant's days-to-civil, in integers.
  const days = Math.floor(localMs / DAY_MS) + 719_468;
  const era = Math.floor(days / 146_097);
  const dayOfEra = days - era * 146_097;
  const yearOfEra = Math.floor((dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365);
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const mp = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  if (year < 1000 || year > 9999) return undefined;
  return `${year}-${month < 10 ? '0' : ''}${month}-${day < 10 ? '0' : ''}${day}`;
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
 * An instant as PostgreSQL keeps it (microseconds), in plain numbers: whole milliseconds since the
 * epoch and the microseconds within the millisecond. Ingestion works with these rather than with
 * Temporal objects, which cost microseconds each to build and print, on every row of every feed.
 */
export interface UtcTimestamp {
  epochMs: number;
  /** 0-999 */
  micros: number;
}

export type UtcTimestampParseResult = { ok: true; value: UtcTimestamp } | { ok: false; reason: string };

/**
 * Parses an ISO 8601 timestamp that carries its offset (Z or +hh:mm). A timestamp without an
 * offset is ambiguous, so it is refused rather than read in whatever zone the process runs in.
 */
export function parseTimestamp(text: string): TimestampParseResult {
  const r = parseUtcTimestamp(text);
  return r.ok ? { ok: true, value: instantOfTimestamp(r.value) } : r;
}

// The everyday spelling, parsed without Temporal: date, time to the minute, second or fraction,
// and Z or an offset. Anything else, and any field out of its range, goes to Temporal, which
// accepts or refuses it exactly as before.
const PLAIN_TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:[Zz]|([+-])(\d{2})(?::?(\d{2}))?)$/;

/** parseTimestamp without the Temporal object: the same acceptance, the same reasons. */
export function parseUtcTimestamp(text: string): UtcTimestampParseResult {
  const trimmed = text.trim();
  if (trimmed.length === 0) return { ok: false, reason: 'is empty' };
  const m = PLAIN_TIMESTAMP.exec(trimmed);
  if (m !== null) {
    const fast = plainTimestamp(m);
    if (fast !== undefined) return fast;
  }
  if (!/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(trimmed)) {
    return /^\d{4}-\d{2}-\d{2}$/.test(trimmed)
      ? { ok: false, reason: 'is a date without a time; expected e.g. 2026-10-01T09:00:00Z' }
      : { ok: false, reason: 'is not an ISO 8601 timestamp; expected e.g. 2026-10-01T09:00:00Z' };
  }
  if (!/(Z|[+-]\d{2}(:?\d{2})?)$/i.test(trimmed)) {
    return { ok: false, reason: 'has no UTC offset; expected Z or e.g. +01:00 at the end' };
  }
  let ns: bigint;
  try {
    ns = Temporal.Instant.from(trimmed).epochNanoseconds;
  } catch {
    return { ok: false, reason: 'is not a valid date and time' };
  }
  // PostgreSQL keeps microseconds: refuse what it would silently round.
  if (ns % 1000n !== 0n) return { ok: false, reason: 'is more precise than a microsecond' };
  const micros = ns / 1000n;
  const epochMs = micros / 1000n - (micros % 1000n < 0n ? 1n : 0n);
  return { ok: true, value: { epochMs: Number(epochMs), micros: Number(micros - epochMs * 1000n) } };
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** The fast path's result, or undefined to let Temporal decide (a field out of range, a leap second, a year before 1000). */
function plainTimestamp(m: RegExpExecArray): UtcTimestampParseResult | undefined {
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = m[6] === undefined ? 0 : Number(m[6]);
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const daysInMonth = month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1];
  if (year < 1000 || daysInMonth === undefined || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) return undefined;
  const offsetHours = m[9] === undefined ? 0 : Number(m[9]);
  const offsetMinutes = m[10] === undefined ? 0 : Number(m[10]);
  if (offsetHours > 23 || offsetMinutes > 59) return undefined;
  const fraction = m[7] ?? '';
  if (fraction.length > 6 && !/^0+$/.test(fraction.slice(6))) return { ok: false, reason: 'is more precise than a microsecond' };
  const micros6 = fraction.length === 0 ? 0 : Number(fraction.slice(0, 6).padEnd(6, '0'));
  const millis = Math.floor(micros6 / 1000);
  const offsetMs = (offsetHours * 60 + offsetMinutes) * 60_000 * (m[8] === '-' ? -1 : 1);
  const epochMs = Date.UTC(year, month - 1, day, hour, minute, second, millis) - offsetMs;
  return { ok: true, value: { epochMs, micros: micros6 - millis * 1000 } };
}

export function instantOfTimestamp(t: UtcTimestamp): Temporal.Instant {
  return Temporal.Instant.fromEpochNanoseconds(BigInt(t.epochMs) * 1_000_000n + BigInt(t.micros) * 1000n);
}

export function timestampOfInstant(instant: Temporal.Instant): UtcTimestamp {
  const micros = instant.epochNanoseconds / 1000n;
  const epochMs = micros / 1000n - (micros % 1000n < 0n ? 1n : 0n);
  return { epochMs: Number(epochMs), micros: Number(micros - epochMs * 1000n) };
}

/** a < b: -1, a = b: 0, a > b: 1 */
export function compareTimestamps(a: UtcTimestamp, b: UtcTimestamp): -1 | 0 | 1 {
  if (a.epochMs !== b.epochMs) return a.epochMs < b.epochMs ? -1 : 1;
  return a.micros === b.micros ? 0 : a.micros < b.micros ? -1 : 1;
}

/**
 * The instant as Temporal.Instant#toString() writes it ('2026-10-01T09:00:00Z', '...:00.5Z'), for
 * messages; years 1000-9999 (the only ones a usage can have), else through Temporal.
 */
export function formatTimestamp(t: UtcTimestamp): string {
  const iso = new Date(t.epochMs).toISOString();
  if (iso.length !== 24) return instantOfTimestamp(t).toString();
  const fraction = (Number(iso.slice(20, 23)) * 1000 + t.micros).toString().padStart(6, '0').replace(/0+$/, '');
  return `${iso.slice(0, 19)}${fraction ? `.${fraction}` : ''}Z`;
}
