import { z } from 'zod';
import { mul, toDecimalString } from '../decimal';
import { toPennies } from '../money';
import { decimalStringSchema, productCodeSchema } from './rule-schema';
import { decimal } from '../decimal';
import type { RuleCalculator } from './calculator';

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

export const unitPriceCalculator: RuleCalculator<UnitPriceRule> = {
  kind: 'unit_price',
  schema: unitPriceRuleSchema,
  pricesProduct: (rule, productCode) => rule.product === productCode,
  rate(rule, usage, ctx) {
    const price = decimal(rule.price);
    // Exact product, rounded once: 1234.567891 h x 0.045 = 55.555555095 -> 55.56.
    const amount = toPennies(mul(usage.quantity, price), ctx.currency, ctx.roundingMode);
    const label = rule.description ?? usage.productName;
    return [
      {
        kind: 'charge',
        amount,
        unitPrice: price,
        description: `${label}: ${toDecimalString(usage.quantity)} ${usage.unit} at ${rule.price}`,
      },
    ];
  },
};
