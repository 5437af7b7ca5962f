import { z } from 'zod';
import { decimal, mul, toDecimalString } from '../decimal';
import { toPennies } from '../money';
import type { PricingCalculator } from './calculator';
import { decimalStringSchema, productCodeSchema } from './rule-schema';

/** A price per unit of a product, as an exact decimal with up to 6 places (0.045 per hour). */
export const unitPriceRuleSchema = z
  .object({
    kind: z.literal('unit_price'),
    product: productCodeSchema,
    price: decimalStringSchema(6),
    description: z.string().min(1).max(200).optional(),
  })
  .strict();
export type UnitPriceRule = z.infer<typeof unitPriceRuleSchema>;

export const unitPriceCalculator: PricingCalculator<UnitPriceRule> = {
  kind: 'unit_price',
  role: 'pricing',
  schema: unitPriceRuleSchema,
  price(rule, window, usage, ctx) {
    const price = decimal(rule.price);
    // Exact product, rounded once: 1234.567891 h x 0.045 = 55.555555095 -> 55.56.
    return {
      kind: 'charge',
      amount: toPennies(mul(window.quantity, price), ctx.currency, ctx.roundingMode),
      unitPrice: price,
      description: `${rule.description ?? usage.productName}: ${toDecimalString(window.quantity)} ${usage.unit} at ${rule.price}`,
    };
  },
};
