import { z } from 'zod';
import { decimal } from '../decimal';
import { type Pennies, formatAmount, toPennies } from '../money';
import type { PeriodCalculator } from './calculator';
import { decimalStringSchema } from './rule-schema';

/*
 * Rules settled once per partnership and period when the period closes. Their amounts go to the
 * partnership's default account. Commitments and caps compare the partnership's usage total for the
 * period (all accounts, after discounts and surcharges); fees and vouchers are added after them.
 */

const money = decimalStringSchema(2, { positive: true });
const text = z.string().min(1).max(200).optional();
const amountOf = (s: string, currency: string): Pennies => toPennies(decimal(s), currency, 'half_up');

export const minimumCommitmentRuleSchema = z.object({ kind: z.literal('minimum_commitment'), amount: money, description: text }).strict();
export type MinimumCommitmentRule = z.infer<typeof minimumCommitmentRuleSchema>;
export const minimumCommitmentCalculator: PeriodCalculator<MinimumCommitmentRule> = {
  kind: 'minimum_commitment',
  role: 'period',
  order: 1,
  schema: minimumCommitmentRuleSchema,
  settle(rule, facts, ctx) {
    const minimum = amountOf(rule.amount, ctx.currency);
    if (facts.usageTotal >= minimum) return undefined;
    return {
      kind: 'adjustment',
      amount: (minimum - facts.usageTotal) as Pennies,
      description: rule.description ?? `Minimum commitment ${rule.amount} for ${facts.period}: usage came to ${formatAmount(facts.usageTotal, ctx.currency)}`,
    };
  },
};

export const periodCapRuleSchema = z.object({ kind: z.literal('cap'), amount: money, description: text }).strict();
export type PeriodCapRule = z.infer<typeof periodCapRuleSchema>;
export const periodCapCalculator: PeriodCalculator<PeriodCapRule> = {
  kind: 'cap',
  role: 'period',
  order: 1,
  schema: periodCapRuleSchema,
  settle(rule, facts, ctx) {
    const cap = amountOf(rule.amount, ctx.currency);
    if (facts.usageTotal <= cap) return undefined;
    return {
      kind: 'adjustment',
      amount: (cap - facts.usageTotal) as Pennies,
      description: rule.description ?? `Cap of ${rule.amount} for ${facts.period}: usage came to ${formatAmount(facts.usageTotal, ctx.currency)}`,
    };
  },
};

export const fixedFeeRuleSchema = z.object({ kind: z.literal('fixed_fee'), amount: money, description: z.string().min(1).max(200) }).strict();
export type FixedFeeRule = z.infer<typeof fixedFeeRuleSchema>;
export const fixedFeeCalculator: PeriodCalculator<FixedFeeRule> = {
  kind: 'fixed_fee',
  role: 'period',
  order: 2,
  schema: fixedFeeRuleSchema,
  settle: (rule, facts, ctx) => ({ kind: 'fee', amount: amountOf(rule.amount, ctx.currency), description: `${rule.description} (${facts.period})` }),
};

/** A one-off voucher: credited once, in the named period. */
export const oneOffCreditRuleSchema = z
  .object({ kind: z.literal('credit'), amount: money, period: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'a period is YYYY-MM'), description: z.string().min(1).max(200) })
  .strict();
export type OneOffCreditRule = z.infer<typeof oneOffCreditRuleSchema>;
export const oneOffCreditCalculator: PeriodCalculator<OneOffCreditRule> = {
  kind: 'credit',
  role: 'period',
  order: 3,
  schema: oneOffCreditRuleSchema,
  settle: (rule, facts, ctx) =>
    rule.period === facts.period ? { kind: 'credit', amount: (0n - amountOf(rule.amount, ctx.currency)) as Pennies, description: rule.description } : undefined,
};

/** A short, stable slug of free text, for keys: "Platform fee" -> "platform-fee". */
function slug(text: string): string {
  const s = text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 60);
  return s.length > 0 ? s : 'unnamed';
}

/**
 * One key per rule: a partnership has at most one minimum commitment and one cap, and names its
 * fees and vouchers; a fee renamed in a new rule version is a different fee (the old one is
 * withdrawn, the new one booked).
 */
export function settlementKey(rule: MinimumCommitmentRule | PeriodCapRule | FixedFeeRule | OneOffCreditRule): string {
  switch (rule.kind) {
    case 'minimum_commitment':
    case 'cap':
      return rule.kind;
    case 'fixed_fee':
      return `fixed_fee:${slug(rule.description)}`;
    case 'credit':
      return `credit:${slug(rule.description)}`;
  }
}
