import { type Decimal, coefficientAt } from './decimal';
import type { Pennies } from './money';

/**
 * Splits `total` pennies over parts weighted by `weights` (e.g. split percentages) so that the parts
 * always add up to exactly `total`: the largest-remainder (Hamilton) method on the absolute amount.
 * Each part is its exact share rounded down, and the pennies left over go one each to the parts with
 * the largest remainders; ties go to the part listed first, so the outcome is deterministic. The sign
 * of the total is applied to every part, so a credit splits into credits.
 */
export function allocate(total: Pennies, weights: readonly Decimal[]): Pennies[] {
  if (weights.length === 0) throw new RangeError('cannot allocate over no parts');
  const scale = Math.max(...weights.map((w) => w.scale));
  const ints = weights.map((w) => coefficientAt(w, scale));
  if (ints.some((w) => w < 0n)) throw new RangeError('allocation weights must not be negative');
  const weightSum = ints.reduce((a, b) => a + b, 0n);
  if (weightSum === 0n) throw new RangeError('allocation weights must not all be zero');

  const negative = total < 0n;
  const magnitude: bigint = negative ? 0n - total : total;
  const floors = ints.map((w) => (magnitude * w) / weightSum);
  const remainders = ints.map((w) => (magnitude * w) % weightSum);
  let leftover = magnitude - floors.reduce((a, b) => a + b, 0n);

  const order = remainders
    .map((r, i) => ({ r, i }))
    .sort((a, b) => (a.r === b.r ? a.i - b.i : a.r > b.r ? -1 : 1));
  for (const { i } of order) {
    if (leftover === 0n) break;
    floors[i] = (floors[i] ?? 0n) + 1n;
    leftover -= 1n;
  }
  return floors.map((f) => (negative ? -f : f) as Pennies);
}
