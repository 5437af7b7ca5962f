import { z } from 'zod';
import { toDecimalString } from '../decimal';
import { toPennies } from '../money';
import type { PricingCalculator } from './calculator';
import { productCodeSchema } from './rule-schema';
import { graduatedAmount, tiersSchema } from './tiers';

/**
 * Graduated tiers over the billing period: the first 100 units at 2.35, the next 400 at 2.00,
 * above 500 at 1.65. A usage that crosses a boundary pays each part at its tier's price, summed
 * exactly and rounded once.
 */
export const graduatedTiersRuleSchema = z
  .object({ kind: z.literal('graduated_tiers'), product: productCodeSchema, tiers: tiersSchema, description: z.string().min(1).max(200).optional() })
  .strict();
export type GraduatedTiersRule = z.infer<typeof graduatedTiersRuleSchema>;

export const graduatedTiersCalculator: PricingCalculator<GraduatedTiersRule> = {
  kind: 'graduated_tiers',
  role: 'pricing',
  schema: graduatedTiersRuleSchema,
  price(rule, window, usage, ctx) {
    const { amount, parts } = graduatedAmount(rule.tiers, window.before, window.quantity);
    const single = parts.length === 1 ? parts[0] : undefined;
    const breakdown = parts.map((p) => `${toDecimalString(p.quantity)} at ${toDecimalString(p.price)}`).join(' + ');
    return {
      kind: 'charge',
      amount: toPennies(amount, ctx.currency, ctx.roundingMode),
      unitPrice: single ? single.price : null,
      description: `${rule.description ?? usage.productName}: ${toDecimalString(window.quantity)} ${usage.unit}${breakdown ? ` (${breakdown})` : ''}`,
    };
  },
};
