import { z } from 'zod';
import { add, mul, toDecimalString } from '../decimal';
import { toPennies } from '../money';
import type { PricingCalculator } from './calculator';
import { productCodeSchema } from './rule-schema';
import { tiersSchema, volumePrice } from './tiers';

/**
 * Volume tiers: the whole period's quantity is priced at the tier it reaches. Until the period
 * closes a usage is charged provisionally at the tier reached so far (its own units included); at
 * close each usage is settled at the final tier, the difference being an adjustment.
 */
export const volumeTiersRuleSchema = z
  .object({ kind: z.literal('volume_tiers'), product: productCodeSchema, tiers: tiersSchema, description: z.string().min(1).max(200).optional() })
  .strict();
export type VolumeTiersRule = z.infer<typeof volumeTiersRuleSchema>;

export const volumeTiersCalculator: PricingCalculator<VolumeTiersRule> = {
  kind: 'volume_tiers',
  role: 'pricing',
  schema: volumeTiersRuleSchema,
  price(rule, window, usage, ctx) {
    const price = volumePrice(rule.tiers, add(window.before, window.quantity));
    return {
      kind: 'charge',
      amount: toPennies(mul(window.quantity, price), ctx.currency, ctx.roundingMode),
      unitPrice: price,
      description: `${rule.description ?? usage.productName}: ${toDecimalString(window.quantity)} ${usage.unit} at ${toDecimalString(price)} (provisional volume tier)`,
    };
  },
  settle(rule, window, periodQuantity, usage, ctx) {
    const price = volumePrice(rule.tiers, periodQuantity);
    return {
      kind: 'charge',
      amount: toPennies(mul(window.quantity, price), ctx.currency, ctx.roundingMode),
      unitPrice: price,
      description: `${rule.description ?? usage.productName}: ${toDecimalString(window.quantity)} ${usage.unit} at ${toDecimalString(price)}, the volume tier of ${toDecimalString(periodQuantity)} ${usage.unit} in the period`,
    };
  },
};
