import { z } from 'zod';
import { type Decimal, ZERO, add, compare, decimal, sub } from '../decimal';
import type { QuantityCalculator } from './calculator';
import { decimalStringSchema, productCodeSchema } from './rule-schema';

/**
 * The first N units of a product in a period are free. Free units do not count towards tiers: the
 * pricing rule sees only the chargeable part of each usage, positioned among chargeable units.
 */
export const includedAllowanceRuleSchema = z
  .object({ kind: z.literal('included_allowance'), product: productCodeSchema, units: decimalStringSchema(6, { positive: true }) })
  .strict();
export type IncludedAllowanceRule = z.infer<typeof includedAllowanceRuleSchema>;

const atLeast = (v: Decimal, floor: Decimal) => (compare(v, floor) >= 0 ? v : floor);

export const includedAllowanceCalculator: QuantityCalculator<IncludedAllowanceRule> = {
  kind: 'included_allowance',
  role: 'quantity',
  schema: includedAllowanceRuleSchema,
  chargeable(rule, window) {
    const free = decimal(rule.units);
    const start = atLeast(sub(window.before, free), ZERO);
    const end = atLeast(sub(add(window.before, window.quantity), free), ZERO);
    return { before: start, quantity: sub(end, start) };
  },
};
