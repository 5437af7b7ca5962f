import { z } from 'zod';
import { type Decimal, ZERO, abs, add, compare, decimal, mul, negate, sign, sub } from '../decimal';
import { decimalStringSchema } from './rule-schema';

/**
 * Tiers as a partnership writes them: each tier up to a cumulative quantity, the last one open
 * ("first 100 at 2.35, the next 400 at 2.00, above 500 at 1.65" is up_to 100, up_to 500, open).
 */
export const tiersSchema = z
  .array(z.object({ up_to: decimalStringSchema(6, { positive: true }).optional(), price: decimalStringSchema(6) }).strict())
  .min(1)
  .superRefine((tiers, ctx) => {
    tiers.forEach((t, i) => {
      const last = i === tiers.length - 1;
      if (last && t.up_to !== undefined) ctx.addIssue({ code: 'custom', path: [i, 'up_to'], message: 'the last tier must be open (no up_to)' });
      if (!last && t.up_to === undefined) ctx.addIssue({ code: 'custom', path: [i, 'up_to'], message: 'only the last tier may be open' });
      const prev = tiers[i - 1]?.up_to;
      if (i > 0 && prev !== undefined && t.up_to !== undefined && compare(decimal(t.up_to), decimal(prev)) <= 0) {
        ctx.addIssue({ code: 'custom', path: [i, 'up_to'], message: `tiers must rise: ${t.up_to} is not above ${prev}` });
      }
    });
  });
export type Tiers = z.infer<typeof tiersSchema>;

interface Band {
  from: Decimal;
  to: Decimal | undefined;
  price: Decimal;
}

function bands(tiers: Tiers): Band[] {
  let from = ZERO;
  return tiers.map((t) => {
    const band = { from, to: t.up_to === undefined ? undefined : decimal(t.up_to), price: decimal(t.price) };
    if (band.to) from = band.to;
    return band;
  });
}

const min = (a: Decimal, b: Decimal) => (compare(a, b) <= 0 ? a : b);
const max = (a: Decimal, b: Decimal) => (compare(a, b) >= 0 ? a : b);

/**
 * Graduated: each unit of the window [before, before + quantity) pays the price of the tier it
 * falls in; the parts are summed exactly (the caller rounds once). A negative quantity (a credit)
 * gives back the units just below `before`, at their tiers' prices.
 */
export function graduatedAmount(tiers: Tiers, before: Decimal, quantity: Decimal): { amount: Decimal; parts: Array<{ quantity: Decimal; price: Decimal }> } {
  const negative = sign(quantity) < 0;
  const lo = negative ? add(before, quantity) : before;
  const hi = negative ? before : add(before, quantity);
  const parts: Array<{ quantity: Decimal; price: Decimal }> = [];
  let amount = ZERO;
  for (const b of bands(tiers)) {
    const start = max(lo, b.from);
    const end = b.to === undefined ? hi : min(hi, b.to);
    if (compare(end, start) <= 0) continue;
    const q = sub(end, start);
    parts.push({ quantity: q, price: b.price });
    amount = add(amount, mul(q, b.price));
  }
  return { amount: negative ? negate(amount) : amount, parts };
}

/** Volume: the price of the tier a cumulative quantity reaches (a boundary belongs to the tier it closes). */
export function volumePrice(tiers: Tiers, total: Decimal): Decimal {
  const reached = abs(total);
  for (const b of bands(tiers)) {
    if (b.to === undefined || compare(reached, b.to) <= 0) return b.price;
  }
  throw new Error('tiers end with an open tier');
}
