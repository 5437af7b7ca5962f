import { Temporal } from 'temporal-polyfill';
import type { FeedProfile } from './feed-profile';
import type { CanonicalField, RawUsageFields } from './usage-fields';
import type { FieldError } from './validate-usage';

export type NormalizeResult = { ok: true; fields: RawUsageFields } | { ok: false; errors: FieldError[] };

const ESCAPE = /[.*+?^${}()|[\]\\]/g;
const esc = (s: string) => s.replace(ESCAPE, '\\$&');

/**
 * Turns one row from a partner's spelling into the canonical one that validation reads: decimal
 * commas and grouping separators (only those the profile names, and only in their exact places),
 * local timestamps (read in the profile's time zone; a local time that does not exist or happens
 * twice there is refused rather than guessed), and default product and account. Pure.
 */
export function normalizeRow(raw: RawUsageFields, profile: FeedProfile): NormalizeResult {
  // The canonical spelling (most partners, every row of a big feed): nothing to convert.
  if (passesThrough(profile)) return { ok: true, fields: raw };
  const fields: RawUsageFields = { ...raw };
  const errors: FieldError[] = [];
  const blank = (v: string | undefined) => v === undefined || v.trim() === '';

  if (blank(fields.product) && profile.defaults.product) fields.product = profile.defaults.product;
  if (blank(fields.account) && profile.defaults.account) fields.account = profile.defaults.account;

  const quantity = fields.quantity;
  if (quantity !== undefined && !blank(quantity) && (profile.decimal_separator !== '.' || profile.thousands_separator !== undefined)) {
    const converted = canonicalQuantity(quantity, profile.decimal_separator, profile.thousands_separator);
    if (converted === undefined) {
      const grouping = profile.thousands_separator ? ` and "${profile.thousands_separator}" between groups of three digits` : '';
      errors.push({ field: 'quantity', code: 'invalid_quantity', message: `quantity "${quantity}" is not a number written with "${profile.decimal_separator}" as the decimal separator${grouping}`, raw: quantity });
    } else fields.quantity = converted;
  }

  for (const field of ['start_time', 'end_time'] as const) {
    const value = fields[field];
    if (value === undefined || blank(value)) continue;
    const result = canonicalTimestamp(value, profile);
    if (result.ok) fields[field] = result.value;
    else errors.push({ field, code: 'invalid_timestamp', message: `${field} "${value}" ${result.reason}`, raw: value });
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, fields };
}

const passThrough = new WeakMap<FeedProfile, boolean>();

/** Whether the profile changes nothing: no defaults, plain decimals, ISO timestamps that must carry their offset. */
function passesThrough(profile: FeedProfile): boolean {
  let verdict = passThrough.get(profile);
  if (verdict === undefined) {
    verdict =
      profile.defaults.product === undefined &&
      profile.defaults.account === undefined &&
      profile.decimal_separator === '.' &&
      profile.thousands_separator === undefined &&
      profile.timestamp_format === 'iso8601' &&
      profile.time_zone === undefined;
    passThrough.set(profile, verdict);
  }
  return verdict;
}

function canonicalQuantity(text: string, decimal: '.' | ',', thousands: string | undefined): string | undefined {
  const d = esc(decimal);
  const plain = new RegExp(`^([+-]?)(\\d+)(?:${d}(\\d+))?$`);
  const grouped = thousands === undefined ? undefined : new RegExp(`^([+-]?)(\\d{1,3}(?:${esc(thousands)}\\d{3})+)(?:${d}(\\d+))?$`);
  const m = plain.exec(text) ?? grouped?.exec(text);
  if (!m) return undefined;
  const [, sign = '', int = '', frac] = m;
  const digits = thousands === undefined ? int : int.split(thousands).join('');
  return `${sign}${digits}${frac === undefined ? '' : `.${frac}`}`;
}

// An offset only counts after a time: the "-01" that ends "2026-11-01" is the day, not an offset.
const HAS_OFFSET = /[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)$/i;
// A local date, or date and time, and nothing more. Temporal's PlainDateTime.from would also take an
// offset followed by a bracketed zone ("09:00+05:00[Asia/Karachi]") and silently drop both, reading
// 09:00 in the profile's zone: a different instant from the one the partner wrote.
const LOCAL_ISO = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?$/;
const PATTERNS: Record<Exclude<FeedProfile['timestamp_format'], 'iso8601'>, { re: RegExp; order: Array<'y' | 'M' | 'd' | 'H' | 'm' | 's'> }> = {
  'yyyy-MM-dd HH:mm:ss': { re: /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/, order: ['y', 'M', 'd', 'H', 'm', 's'] },
  'dd.MM.yyyy HH:mm': { re: /^(\d{2})\.(\d{2})\.(\d{4}) (\d{2}):(\d{2})$/, order: ['d', 'M', 'y', 'H', 'm'] },
  'dd.MM.yyyy HH:mm:ss': { re: /^(\d{2})\.(\d{2})\.(\d{4}) (\d{2}):(\d{2}):(\d{2})$/, order: ['d', 'M', 'y', 'H', 'm', 's'] },
  'dd/MM/yyyy HH:mm': { re: /^(\d{2})\/(\d{2})\/(\d{4}) (\d{2}):(\d{2})$/, order: ['d', 'M', 'y', 'H', 'm'] },
  'MM/dd/yyyy HH:mm': { re: /^(\d{2})\/(\d{2})\/(\d{4}) (\d{2}):(\d{2})$/, order: ['M', 'd', 'y', 'H', 'm'] },
};

function canonicalTimestamp(text: string, profile: FeedProfile): { ok: true; value: string } | { ok: false; reason: string } {
  let local: Temporal.PlainDateTime;
  if (profile.timestamp_format === 'iso8601') {
    // Timestamps with an offset are already canonical; validation checks them.
    const trimmed = text.trim();
    if (HAS_OFFSET.test(trimmed) || profile.time_zone === undefined) return { ok: true, value: text };
    if (!LOCAL_ISO.test(trimmed)) return { ok: false, reason: 'is not an ISO 8601 date and time' };
    try {
      local = trimmed.length === 10 ? Temporal.PlainDate.from(trimmed).toPlainDateTime() : Temporal.PlainDateTime.from(trimmed);
    } catch {
      // The right shape, but no such day or time (2027-02-29, 24:00).
      return { ok: false, reason: 'is not a valid date and time' };
    }
  } else {
    const pattern = PATTERNS[profile.timestamp_format];
    const m = pattern.re.exec(text);
    if (!m) return { ok: false, reason: `does not match the format ${profile.timestamp_format}` };
    const parts: Record<string, number> = { s: 0 };
    pattern.order.forEach((key, i) => (parts[key] = Number(m[i + 1])));
    try {
      local = Temporal.PlainDateTime.from(
        { year: parts.y!, month: parts.M!, day: parts.d!, hour: parts.H!, minute: parts.m!, second: parts.s! },
        { overflow: 'reject' },
      );
    } catch {
      return { ok: false, reason: 'is not a valid date and time' };
    }
  }
  const zone = profile.time_zone;
  if (zone === undefined) return { ok: false, reason: 'has no UTC offset and the feed profile names no time zone' };
  try {
    return { ok: true, value: local.toZonedDateTime(zone, { disambiguation: 'reject' }).toInstant().toString() };
  } catch {
    return { ok: false, reason: `does not exist or happens twice in ${zone} (a daylight-saving change); give it with an offset` };
  }
}

export type { CanonicalField };
