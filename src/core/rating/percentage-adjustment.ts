import { z } from 'zod';
import { decimal, mul, shift } from '../decimal';
import { penniesToDecimal, toPennies } from '../money';
import type { AdjustingCalculator } from './calculator';
import { decimalStringSchema, productCodeSchema } from './rule-schema';

const percentageSchema = <K extends 'discount' | 'surcharge'>(kind: K) =>
  z
    .object({
      kind: z.literal(kind),
      percent: decimalStringSchema(4, { positive: true }),
      /** Absent: every product of the partnership. */
      products: z.array(productCodeSchema).min(1).optional(),
      description: z.string().min(1).max(200).optional(),
    })
    .strict();

export const discountRuleSchema = percentageSchema('discount');
export const surchargeRuleSchema = percentageSchema('surcharge');
export type DiscountRule = z.infer<typeof discountRuleSchema>;
export type SurchargeRule = z.infer<typeof surchargeRuleSchema>;

/**
 * A percentage of the usage's rounded base charge, as its own transaction, rounded once: a 10 %
 * discount on 7438 pennies is -round(743.8) = -744.
 */
function percentageCalculator<R extends DiscountRule | SurchargeRule>(kind: R['kind'], schema: z.ZodType<R>): AdjustingCalculator<R> {
  return {
    kind,
    role: 'adjusting',
    schema,
    appliesTo: (rule, productCode) => rule.products === undefined || rule.products.includes(productCode),
    adjust(rule, base, usage, ctx) {
      const exact = mul(penniesToDecimal(base, ctx.currency), shift(decimal(rule.percent), -2));
      const amount = toPennies(exact, ctx.currency, ctx.roundingMode);
      if (amount === 0n) return undefined;
      return {
        kind,
        amount: (kind === 'discount' ? 0n - amount : amount) as typeof amount,
        unitPrice: null,
        description: rule.description ?? `${rule.percent}% ${kind} on ${usage.productName}`,
      };
    },
  };
}

export const discountCalculator = percentageCalculator('discount', discountRuleSchema);
export const surchargeCalculator = percentageCalculator('surcharge', surchargeRuleSchema);
