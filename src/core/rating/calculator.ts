import type { z } from 'zod';
import type { Decimal } from '../decimal';
import type { Pennies } from '../money';
import type { RoundingMode } from '../rounding';

export const TRANSACTION_KINDS = ['charge', 'discount', 'surcharge', 'adjustment', 'credit', 'fee'] as const;
export type TransactionKind = (typeof TRANSACTION_KINDS)[number];

/** What a calculator sees of one usage. */
export interface UsageToRate {
  productCode: string;
  productName: string;
  unit: string;
  quantity: Decimal;
}

export interface RatingContext {
  currency: string;
  roundingMode: RoundingMode;
}

/** One signed amount a rule produces for a usage, before it is split over accounts. */
export interface RatedAmount {
  kind: TransactionKind;
  amount: Pennies;
  description: string;
  unitPrice: Decimal | null;
}

/**
 * One rule kind. Rules are data (validated by `schema`); the arithmetic for a kind lives in exactly
 * one calculator, registered in registry.ts, so a new pricing model is one new file.
 */
export interface RuleCalculator<R extends { kind: string }> {
  readonly kind: R['kind'];
  readonly schema: z.ZodType<R>;
  /** Whether this rule sets the base price of the product (every usage needs exactly one such rule). */
  pricesProduct(rule: R, productCode: string): boolean;
  rate(rule: R, usage: UsageToRate, ctx: RatingContext): RatedAmount[];
}
