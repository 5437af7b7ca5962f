import { z } from 'zod';
import { abs, coefficientAt, decimal, mul, sign, toDecimalString } from '../decimal';
import { toPennies } from '../money';
import type { PricingCalculator } from './calculator';
import { decimalStringSchema, productCodeSchema } from './rule-schema';

/** Package pricing: a price per started block of N units of a usage (1-100 GB: one block, 101: two). */
export const packagePriceRuleSchema = z
  .object({
    kind: z.literal('package'),
    product: productCodeSchema,
    block: decimalStringSchema(6, { positive: true }),
    price: decimalStringSchema(6),
    description: z.string().min(1).max(200).optional(),
  })
  .strict();
export type PackagePriceRule = z.infer<typeof packagePriceRuleSchema>;

export const packagePriceCalculator: PricingCalculator<PackagePriceRule> = {
  kind: 'package',
  role: 'pricing',
  schema: packagePriceRuleSchema,
  price(rule, window, usage, ctx) {
    const block = decimal(rule.block);
    const q = abs(window.quantity);
    // Whole blocks started: ceil(q / block), exactly, on integers at a common scale.
    const scale = Math.max(q.scale, block.scale);
    const qi = coefficientAt(q, scale);
    const bi = coefficientAt(block, scale);
    const blocks = (qi + bi - 1n) / bi;
    const signed = sign(window.quantity) < 0 ? -blocks : blocks;
    return {
      kind: 'charge',
      amount: toPennies(mul(decimal(signed), decimal(rule.price)), ctx.currency, ctx.roundingMode),
      unitPrice: null,
      description: `${rule.description ?? usage.productName}: ${toDecimalString(window.quantity)} ${usage.unit} = ${signed} block(s) of ${rule.block} at ${rule.price}`,
    };
  },
};
