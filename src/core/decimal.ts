/**
 * Exact decimal numbers as a scaled BigInt: value = coefficient / 10^scale.
 *
 * Quantities and unit prices are never JavaScript numbers: 0.1 + 0.2 must be 0.3, and a
 * quantity of 34100000000000000001 must stay that number. Nothing here rounds; rounding lives
 * in one place, `roundDecimal` in rounding.ts, with the mode named at the call.
 */
export interface Decimal {
  readonly coefficient: bigint;
  readonly scale: number;
}

export type DecimalParseResult = { ok: true; value: Decimal } | { ok: false; reason: string };

/** The longest decimal we accept from outside: PostgreSQL numeric handles far more, people never need more. */
export const MAX_DECIMAL_DIGITS = 38;

const PLAIN_DECIMAL = /^([+-]?)(\d+)(?:\.(\d+))?$/;

/**
 * Parses a plain decimal such as "12", "-3", "0.000001" or "+4.50". Anything else is refused with
 * a reason a person can act on: exponents (1e3), hex (0x10), separators (1,000), NaN, Infinity,
 * blanks. Leading zeros are allowed ("007" is 7): they are unambiguous in a decimal feed.
 */
export function parseDecimal(text: string): DecimalParseResult {
  if (text.length === 0 || text.trim().length === 0) return { ok: false, reason: 'is empty' };
  if (text !== text.trim()) return { ok: false, reason: 'has leading or trailing spaces' };
  const m = PLAIN_DECIMAL.exec(text);
  if (!m) {
    if (/^[+-]?(nan|infinity|inf)$/i.test(text)) return { ok: false, reason: 'is not a finite number' };
    if (/^[+-]?0x/i.test(text)) return { ok: false, reason: 'is hexadecimal, not a decimal' };
    if (/^[+-]?[\d.]+e[+-]?\d+$/i.test(text)) return { ok: false, reason: 'uses an exponent; write the plain decimal' };
    if (/^[+-]?(\d+\.|\.\d+)$/.test(text)) return { ok: false, reason: 'needs digits on both sides of the "."' };
    if (/^[+-]?\d[\d,.' ]*$/.test(text)) return { ok: false, reason: 'has thousands or decimal separators other than a single "."' };
    return { ok: false, reason: 'is not a decimal number' };
  }
  const [, sign = '', intPart = '', fracPart = ''] = m;
  const digits = intPart.replace(/^0+(?=\d)/, '') + fracPart;
  if (digits.replace(/^0+/, '').length > MAX_DECIMAL_DIGITS) {
    return { ok: false, reason: `has more than ${MAX_DECIMAL_DIGITS} significant digits` };
  }
  const coefficient = BigInt(intPart + fracPart) * (sign === '-' ? -1n : 1n);
  return { ok: true, value: normalize({ coefficient, scale: fracPart.length }) };
}

/** Parses a decimal that is known to be well formed (configuration, database values); throws otherwise. */
export function decimal(text: string | bigint): Decimal {
  if (typeof text === 'bigint') return { coefficient: text, scale: 0 };
  const r = parseDecimal(text);
  if (!r.ok) throw new RangeError(`"${text}" ${r.reason}`);
  return r.value;
}

/** Drops trailing fractional zeros, so equal values have one representation. */
export function normalize(d: Decimal): Decimal {
  let { coefficient, scale } = d;
  if (coefficient === 0n) return ZERO;
  while (scale > 0 && coefficient % 10n === 0n) {
    coefficient /= 10n;
    scale -= 1;
  }
  return { coefficient, scale };
}

export const ZERO: Decimal = { coefficient: 0n, scale: 0 };

function pow10(n: number): bigint {
  return 10n ** BigInt(n);
}

/** The coefficient of `d` expressed at `scale` (scale must be >= d.scale). */
export function coefficientAt(d: Decimal, scale: number): bigint {
  if (scale < d.scale) throw new RangeError(`cannot express scale ${d.scale} at scale ${scale} without rounding`);
  return d.coefficient * pow10(scale - d.scale);
}

export function add(a: Decimal, b: Decimal): Decimal {
  const scale = Math.max(a.scale, b.scale);
  return normalize({ coefficient: coefficientAt(a, scale) + coefficientAt(b, scale), scale });
}

export function sub(a: Decimal, b: Decimal): Decimal {
  return add(a, negate(b));
}

export function mul(a: Decimal, b: Decimal): Decimal {
  return normalize({ coefficient: a.coefficient * b.coefficient, scale: a.scale + b.scale });
}

/** Exact division by a power of ten, e.g. a percentage to a fraction: shift(d, -2). */
export function shift(d: Decimal, places: number): Decimal {
  if (places >= 0) return normalize({ coefficient: d.coefficient * pow10(places), scale: d.scale });
  return normalize({ coefficient: d.coefficient, scale: d.scale - places });
}

export function negate(d: Decimal): Decimal {
  return { coefficient: -d.coefficient, scale: d.scale };
}

export function abs(d: Decimal): Decimal {
  return d.coefficient < 0n ? negate(d) : d;
}

export function sign(d: Decimal): -1 | 0 | 1 {
  return d.coefficient < 0n ? -1 : d.coefficient > 0n ? 1 : 0;
}

export function compare(a: Decimal, b: Decimal): -1 | 0 | 1 {
  const scale = Math.max(a.scale, b.scale);
  const x = coefficientAt(a, scale);
  const y = coefficientAt(b, scale);
  return x < y ? -1 : x > y ? 1 : 0;
}

export function isZero(d: Decimal): boolean {
  return d.coefficient === 0n;
}

export function sum(values: Iterable<Decimal>): Decimal {
  let total = ZERO;
  for (const v of values) total = add(total, v);
  return total;
}

/** Canonical text: no exponent, no trailing zeros, "-" for negatives. Round-trips through parseDecimal and PostgreSQL numeric. */
export function toDecimalString(d: Decimal): string {
  // Normalised first: a hand-built 1.50 ({150, 2}) prints as "1.5", and a negative scale (what
  // rounding to tens or hundreds produces) prints its zeros rather than a dangling ".".
  const { coefficient, scale } = normalize(d);
  const negative = coefficient < 0n;
  const digits = (negative ? -coefficient : coefficient).toString();
  if (scale <= 0) return (negative ? '-' : '') + (coefficient === 0n ? '0' : digits + '0'.repeat(-scale));
  const padded = digits.padStart(scale + 1, '0');
  const int = padded.slice(0, padded.length - scale);
  const frac = padded.slice(padded.length - scale);
  return `${negative ? '-' : ''}${int}.${frac}`;
}

/** Number of digits after the point once trailing zeros are dropped. */
export function fractionDigits(d: Decimal): number {
  return normalize(d).scale;
}

/** Canonical text with at least `places` digits after the point: a price of 39.9 EUR reads "39.90". */
export function toDecimalStringMinPlaces(d: Decimal, places: number): string {
  const text = toDecimalString(d);
  const point = text.indexOf('.');
  const have = point === -1 ? 0 : text.length - point - 1;
  if (have >= places) return text;
  return (point === -1 ? `${text}.` : text) + '0'.repeat(places - have);
}
