import { type Decimal, normalize, toDecimalString } from './decimal';
import { type RoundingMode, roundToUnits } from './rounding';

/**
 * Money is an integer count of the currency's minor unit ("pennies"), as a bigint so that sums of
 * PostgreSQL bigint columns never lose precision above 2^53 and never concatenate as strings.
 * The brand keeps a quantity or a price from being passed where money is expected.
 */
export type Pennies = bigint & { readonly __brand: 'Pennies' };

export function pennies(value: bigint | number | string): Pennies {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new RangeError(`${value} is not a whole number of pennies`);
  }
  if (typeof value === 'string' && !/^-?\d+$/.test(value)) {
    throw new RangeError(`"${value}" is not a whole number of pennies`);
  }
  return BigInt(value) as Pennies;
}

export const ZERO_PENNIES = 0n as Pennies;

/** The largest amount the ledger stores (PostgreSQL bigint). Anything beyond is refused, never wrapped or rounded. */
export const MAX_STORABLE_PENNIES = 2n ** 63n - 1n;

export function isStorable(p: Pennies): boolean {
  return p <= MAX_STORABLE_PENNIES && p >= -MAX_STORABLE_PENNIES;
}

export function addPennies(...values: Pennies[]): Pennies {
  let total = 0n;
  for (const v of values) total += v;
  return total as Pennies;
}

export function sumPennies(values: Iterable<Pennies>): Pennies {
  let total = 0n;
  for (const v of values) total += v;
  return total as Pennies;
}

export function negatePennies(p: Pennies): Pennies {
  return (0n - p) as Pennies;
}

/**
 * ISO 4217 minor units for the currencies we bill in. Unknown codes are refused rather than
 * guessed: a wrong exponent bills a hundred times too much or too little.
 */
const MINOR_UNITS: Record<string, number> = {
  GBP: 2, EUR: 2, USD: 2, CHF: 2, CAD: 2, AUD: 2, NZD: 2, SEK: 2, NOK: 2, DKK: 2, PLN: 2, CZK: 2,
  SGD: 2, HKD: 2, CNY: 2, INR: 2, ZAR: 2, BRL: 2, MXN: 2, JPY: 0, KRW: 0, ISK: 0, BHD: 3, KWD: 3,
};

export const SUPPORTED_CURRENCIES = Object.keys(MINOR_UNITS);

export function minorUnits(currency: string): number {
  // Own keys only: a plain object also answers "constructor", "toString" and "__proto__".
  const units = Object.hasOwn(MINOR_UNITS, currency) ? MINOR_UNITS[currency] : undefined;
  if (units === undefined) throw new RangeError(`unsupported currency "${currency}"`);
  return units;
}

/** Rounds an exact amount in major units (pounds) to pennies, once, with the named mode. */
export function toPennies(amount: Decimal, currency: string, mode: RoundingMode): Pennies {
  return roundToUnits(amount, minorUnits(currency), mode) as Pennies;
}

/** The exact major-unit value of an amount of pennies. */
export function penniesToDecimal(p: Pennies, currency: string): Decimal {
  return normalize({ coefficient: p, scale: minorUnits(currency) });
}

/** "1234.50" for 123450 GBP pennies: fixed minor digits, no grouping. For CSV and machine use. */
export function formatAmount(p: Pennies, currency: string): string {
  const units = minorUnits(currency);
  const negative = p < 0n;
  const digits = (negative ? 0n - p : p).toString().padStart(units + 1, '0');
  const body = units === 0 ? digits : `${digits.slice(0, -units)}.${digits.slice(-units)}`;
  return (negative ? '-' : '') + body;
}

/** "£1,234.50" style for people: grouping and symbol, computed from the exact digits (no floats). */
export function formatMoney(p: Pennies, currency: string): string {
  const plain = formatAmount(p, currency);
  const negative = plain.startsWith('-');
  const [int = '0', frac] = (negative ? plain.slice(1) : plain).split('.');
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const symbol = CURRENCY_SYMBOLS[currency];
  const body = frac === undefined ? grouped : `${grouped}.${frac}`;
  return `${negative ? '-' : ''}${symbol ?? ''}${body}${symbol ? '' : ` ${currency}`}`;
}

const CURRENCY_SYMBOLS: Record<string, string> = { GBP: '£', EUR: '€', USD: '$', JPY: '¥' };

export { toDecimalString };
