import { type Decimal, coefficientAt, normalize } from './decimal';

/**
 * How a value exactly halfway between two representable values is rounded.
 * - half_up: away from zero (2.5 -> 3, -2.5 -> -3). The default for invoices: it is what people
 *   expect from a calculator and what most of our partners' contracts say.
 * - half_even: to the even neighbour (2.5 -> 2, 3.5 -> 4), "banker's rounding", on request.
 * Math.round is neither (it rounds -2.5 to -2) and is banned by the lint.
 */
export const ROUNDING_MODES = ['half_up', 'half_even'] as const;
export type RoundingMode = (typeof ROUNDING_MODES)[number];

/** The one rounding function: rounds `value` to `places` digits after the point, with the named mode. */
export function roundDecimal(value: Decimal, places: number, mode: RoundingMode): Decimal {
  // Normalised on both paths, so a rounded value has one representation whether or not it moved.
  if (value.scale <= places) return normalize(value);
  const divisor = 10n ** BigInt(value.scale - places);
  const c = value.coefficient;
  const negative = c < 0n;
  const magnitude = negative ? -c : c;
  let q = magnitude / divisor;
  const r = magnitude % divisor;
  const twice = r * 2n;
  if (twice > divisor) q += 1n;
  else if (twice === divisor) {
    if (mode === 'half_up' || q % 2n === 1n) q += 1n;
  }
  return normalize({ coefficient: negative ? -q : q, scale: places });
}

/** Rounds and returns the integer count of 10^-places units (pennies, for places = 2). */
export function roundToUnits(value: Decimal, places: number, mode: RoundingMode): bigint {
  return coefficientAt(roundDecimal(value, places, mode), places);
}
