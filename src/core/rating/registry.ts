import { z } from 'zod';
import type { RuleCalculator } from './calculator';
import { unitPriceCalculator, unitPriceRuleSchema } from './unit-price';

/** Every rule kind the engine knows. Adding a kind: one calculator file, one schema and one entry here. */
export const ruleSchema = z.discriminatedUnion('kind', [unitPriceRuleSchema]);
export type Rule = z.infer<typeof ruleSchema>;

const calculators: { [K in Rule['kind']]: RuleCalculator<Extract<Rule, { kind: K }>> } = {
  unit_price: unitPriceCalculator,
};

export function calculatorFor<R extends Rule>(rule: R): RuleCalculator<R> {
  return calculators[rule.kind as Rule['kind']] as unknown as RuleCalculator<R>;
}

/** A rule version's rules, validated: a known kind, well-formed values, one base price per product. */
export const ruleSetSchema = z.array(ruleSchema).superRefine((rules, ctx) => {
  const priced = new Map<string, number>();
  rules.forEach((rule, index) => {
    if (rule.kind === 'unit_price') {
      const earlier = priced.get(rule.product);
      if (earlier !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [index, 'product'],
          message: `product ${rule.product} is already priced by rule ${earlier + 1}`,
        });
      }
      priced.set(rule.product, index);
    }
  });
});
export type RuleSet = z.infer<typeof ruleSetSchema>;

/** The rule that sets the product's base price, if the set has one. */
export function pricingRuleFor(rules: RuleSet, productCode: string): Rule | undefined {
  return rules.find((r) => calculatorFor(r).pricesProduct(r, productCode));
}
