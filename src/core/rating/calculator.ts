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

/**
 * Where a usage sits among the period's usage of its product (partnership, product, calendar
 * month; ordered by start time, then usage id): `before` units came earlier in the period. Tiers
 * and allowances depend on it; a unit price does not.
 */
export interface Window {
  before: Decimal;
  quantity: Decimal;
}

/** One signed amount a rule produces for a usage, before it is split over accounts. */
export interface RatedAmount {
  kind: TransactionKind;
  amount: Pennies;
  description: string;
  unitPrice: Decimal | null;
}

interface CalculatorBase<R extends { kind: string }> {
  readonly kind: R['kind'];
  readonly schema: z.ZodType<R>;
}

/** Sets a product's price: exactly one per product in a rule version. */
export interface PricingCalculator<R extends { kind: string; product: string }> extends CalculatorBase<R> {
  readonly role: 'pricing';
  /** The exact charge for the chargeable units of the window, rounded once by the caller's mode. */
  price(rule: R, window: Window, usage: UsageToRate, ctx: RatingContext): RatedAmount;
  /**
   * For rules settled at period close (volume tiers): the usage's final charge once the period's
   * chargeable quantity is known. Settlement books the difference to the provisional charge as an
   * adjustment.
   */
  settle?(rule: R, window: Window, periodQuantity: Decimal, usage: UsageToRate, ctx: RatingContext): RatedAmount;
}

/** Changes which units are charged (an included allowance): at most one per product. */
export interface QuantityCalculator<R extends { kind: string; product: string }> extends CalculatorBase<R> {
  readonly role: 'quantity';
  chargeable(rule: R, window: Window): Window;
}

/** Adds an amount derived from the usage's rounded base charge (a discount or surcharge). */
export interface AdjustingCalculator<R extends { kind: string }> extends CalculatorBase<R> {
  readonly role: 'adjusting';
  appliesTo(rule: R, productCode: string): boolean;
  adjust(rule: R, base: Pennies, usage: UsageToRate, ctx: RatingContext): RatedAmount | undefined;
}

/** What a period-close rule sees: the partnership's usage total for the period (after discounts). */
export interface PeriodFacts {
  period: string;
  usageTotal: Pennies;
}

export interface PeriodAmount {
  kind: TransactionKind;
  amount: Pennies;
  description: string;
}

/** Settled once per partnership and period at close (commitments, caps, fees, vouchers). */
export interface PeriodCalculator<R extends { kind: string }> extends CalculatorBase<R> {
  readonly role: 'period';
  /** Lower runs first: caps and commitments look at usage, fees and credits come after them. */
  readonly order: number;
  settle(rule: R, facts: PeriodFacts, ctx: RatingContext): PeriodAmount | undefined;
}

export type RuleCalculator<R extends { kind: string }> =
  | (R extends { product: string } ? PricingCalculator<R> | QuantityCalculator<R> : never)
  | AdjustingCalculator<R>
  | PeriodCalculator<R>;
