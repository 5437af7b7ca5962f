import { z } from 'zod';
import { compare, decimal } from '../decimal';
import type { AdjustingCalculator, PeriodCalculator, PricingCalculator, QuantityCalculator } from './calculator';
import { graduatedTiersCalculator, graduatedTiersRuleSchema } from './graduated-tiers';
import { includedAllowanceCalculator, includedAllowanceRuleSchema } from './included-allowance';
import { packagePriceCalculator, packagePriceRuleSchema } from './package-price';
import { discountCalculator, discountRuleSchema, surchargeCalculator, surchargeRuleSchema } from './percentage-adjustment';
import {
  settlementKey,
  fixedFeeCalculator,
  fixedFeeRuleSchema,
  minimumCommitmentCalculator,
  minimumCommitmentRuleSchema,
  oneOffCreditCalculator,
  oneOffCreditRuleSchema,
  periodCapCalculator,
  periodCapRuleSchema,
} from './period-rules';
import { unitPriceCalculator, unitPriceRuleSchema } from './unit-price';
import { volumeTiersCalculator, volumeTiersRuleSchema } from './volume-tiers';

/**
 * Every rule kind the engine knows. Adding a kind: one calculator file (schema + arithmetic), and
 * its schema and calculator listed here.
 */
export const ruleSchema = z.discriminatedUnion('kind', [
  unitPriceRuleSchema,
  graduatedTiersRuleSchema,
  volumeTiersRuleSchema,
  packagePriceRuleSchema,
  includedAllowanceRuleSchema,
  discountRuleSchema,
  surchargeRuleSchema,
  minimumCommitmentRuleSchema,
  periodCapRuleSchema,
  fixedFeeRuleSchema,
  oneOffCreditRuleSchema,
]);
export type Rule = z.infer<typeof ruleSchema>;
type RuleOf<K extends Rule['kind']> = Extract<Rule, { kind: K }>;

const calculators = {
  unit_price: unitPriceCalculator,
  graduated_tiers: graduatedTiersCalculator,
  volume_tiers: volumeTiersCalculator,
  package: packagePriceCalculator,
  included_allowance: includedAllowanceCalculator,
  discount: discountCalculator,
  surcharge: surchargeCalculator,
  minimum_commitment: minimumCommitmentCalculator,
  cap: periodCapCalculator,
  fixed_fee: fixedFeeCalculator,
  credit: oneOffCreditCalculator,
} as const;

export type PricingRule = RuleOf<'unit_price' | 'graduated_tiers' | 'volume_tiers' | 'package'>;
export type AllowanceRule = RuleOf<'included_allowance'>;
export type AdjustingRule = RuleOf<'discount' | 'surcharge'>;
export type PeriodRule = RuleOf<'minimum_commitment' | 'cap' | 'fixed_fee' | 'credit'>;

const isPricing = (r: Rule): r is PricingRule => calculators[r.kind].role === 'pricing';
const isAdjusting = (r: Rule): r is AdjustingRule => calculators[r.kind].role === 'adjusting';
const isPeriod = (r: Rule): r is PeriodRule => calculators[r.kind].role === 'period';

export function pricingCalculatorFor(rule: PricingRule): PricingCalculator<PricingRule> {
  return calculators[rule.kind];
}
export function adjustingCalculatorFor(rule: AdjustingRule): AdjustingCalculator<AdjustingRule> {
  return calculators[rule.kind];
}
export function periodCalculatorFor(rule: PeriodRule): PeriodCalculator<PeriodRule> {
  return calculators[rule.kind];
}
export const allowanceCalculator: QuantityCalculator<AllowanceRule> = includedAllowanceCalculator;

/**
 * A rule version's rules, validated: known kinds, well-formed values, exactly one price per
 * priced product, at most one allowance per product (and only for a priced product), and a
 * minimum commitment not above a cap.
 */
export const ruleSetSchema = z.array(ruleSchema).superRefine((rules, ctx) => {
  const priced = new Map<string, number>();
  const allowances = new Set<string>();
  rules.forEach((rule, index) => {
    if (isPricing(rule)) {
      const earlier = priced.get(rule.product);
      if (earlier !== undefined) ctx.addIssue({ code: 'custom', path: [index, 'product'], message: `product ${rule.product} is already priced by rule ${earlier + 1}` });
      priced.set(rule.product, index);
    }
    if (rule.kind === 'included_allowance') {
      if (allowances.has(rule.product)) ctx.addIssue({ code: 'custom', path: [index, 'product'], message: `product ${rule.product} has two allowances` });
      allowances.add(rule.product);
    }
  });
  rules.forEach((rule, index) => {
    if (rule.kind === 'included_allowance' && !priced.has(rule.product)) {
      ctx.addIssue({ code: 'custom', path: [index, 'product'], message: `allowance for ${rule.product}, which has no price` });
    }
  });
  // Each period rule settles into its own record, keyed by kind (and by name for fees and vouchers).
  const keys = new Map<string, number>();
  rules.forEach((rule, index) => {
    if (!isPeriod(rule)) return;
    const key = settlementKey(rule);
    const earlier = keys.get(key);
    if (earlier !== undefined) {
      ctx.addIssue({ code: 'custom', path: [index], message: `rule ${index + 1} settles like rule ${earlier + 1} (${rule.kind}${'description' in rule ? ` "${rule.description}"` : ''}): a rule set has one of each, and fees and credits need distinct descriptions` });
    }
    keys.set(key, index);
  });
  const min = rules.find((r) => r.kind === 'minimum_commitment');
  const cap = rules.find((r) => r.kind === 'cap');
  if (min && cap && compare(decimal(min.amount), decimal(cap.amount)) > 0) {
    ctx.addIssue({ code: 'custom', message: `the minimum commitment ${min.amount} is above the cap ${cap.amount}` });
  }
});
export type RuleSet = z.infer<typeof ruleSetSchema>;

/** The rule that sets the product's price, if the set has one. */
export function pricingRuleFor(rules: RuleSet, productCode: string): PricingRule | undefined {
  return rules.find((r): r is PricingRule => isPricing(r) && r.product === productCode);
}

export function allowanceRuleFor(rules: RuleSet, productCode: string): AllowanceRule | undefined {
  return rules.find((r): r is AllowanceRule => r.kind === 'included_allowance' && r.product === productCode);
}

export function adjustingRulesFor(rules: RuleSet, productCode: string): AdjustingRule[] {
  return rules.filter((r): r is AdjustingRule => isAdjusting(r) && adjustingCalculatorFor(r).appliesTo(r, productCode));
}

/** Period-close rules in the order they settle. */
export function periodRules(rules: RuleSet): PeriodRule[] {
  return rules.filter(isPeriod).sort((a, b) => periodCalculatorFor(a).order - periodCalculatorFor(b).order);
}

/** Whether a product's charges depend on the usage's position in the period (tiers, allowances). */
export function dependsOnPosition(rules: RuleSet, productCode: string): boolean {
  const pricing = pricingRuleFor(rules, productCode);
  return allowanceRuleFor(rules, productCode) !== undefined || pricing?.kind === 'graduated_tiers' || pricing?.kind === 'volume_tiers';
}
