import type { Temporal } from 'temporal-polyfill';
import { allocate } from '../allocation';
import { type Decimal, ZERO, compare, decimal, mul, shift, sub, toDecimalString } from '../decimal';
import { startOfLocalDate } from '../period';
import type { RatedAmount, RatingContext, UsageToRate, Window } from './calculator';
import { type RuleSet, adjustingCalculatorFor, adjustingRulesFor, allowanceCalculator, allowanceRuleFor, pricingCalculatorFor, pricingRuleFor } from './registry';

export interface RuleVersion {
  id: number;
  /** 'YYYY-MM-DD': applies from local midnight of this date in the partnership's time zone. */
  effectiveFrom: string;
  rules: RuleSet;
}

// The first instant of each version in each zone, computed once: this runs for every usage.
const versionStarts = new WeakMap<RuleVersion, Map<string, bigint>>();

function versionStart(version: RuleVersion, timeZone: string): bigint {
  let byZone = versionStarts.get(version);
  if (!byZone) versionStarts.set(version, (byZone = new Map<string, bigint>()));
  let start = byZone.get(timeZone);
  if (start === undefined) byZone.set(timeZone, (start = startOfLocalDate(version.effectiveFrom, timeZone).epochNanoseconds));
  return start;
}

/** The version in force for a usage starting at `startedAt`: the latest that began at or before it. */
export function ruleVersionFor(
  versions: readonly RuleVersion[],
  startedAt: Temporal.Instant,
  timeZone: string,
): RuleVersion | undefined {
  let best: RuleVersion | undefined;
  const at = startedAt.epochNanoseconds;
  for (const v of versions) {
    if (versionStart(v, timeZone) > at) continue;
    if (!best || v.effectiveFrom > best.effectiveFrom) best = v;
  }
  return best;
}

export interface SplitRule {
  userRef: string;
  /** null: all of the user's products. */
  productId: number | null;
  accountId: number;
  percent: Decimal;
  position: number;
}

export interface AccountShare {
  accountId: number;
  percent: Decimal;
}

export type AccountResolution = { ok: true; shares: AccountShare[] } | { ok: false; reason: string };

const HUNDRED = decimal('100');

/**
 * Which accounts a usage charges. The feed's own account wins (upstream said so); otherwise the
 * user's split for this product, then the user's split for all products; otherwise the partnership's
 * default account. Shares keep the order the split lists them in, because allocation ties go to
 * the first listed.
 */
export function resolveAccounts(
  usage: { accountId: number | null; userRef: string; productId: number },
  splits: readonly SplitRule[],
  defaultAccountId: number | null,
): AccountResolution {
  if (usage.accountId !== null) return { ok: true, shares: [{ accountId: usage.accountId, percent: HUNDRED }] };
  const mine = splits.filter((s) => s.userRef === usage.userRef);
  const forProduct = mine.filter((s) => s.productId === usage.productId);
  const chosen = forProduct.length > 0 ? forProduct : mine.filter((s) => s.productId === null);
  if (chosen.length > 0) {
    return {
      ok: true,
      shares: [...chosen].sort((a, b) => a.position - b.position).map((s) => ({ accountId: s.accountId, percent: s.percent })),
    };
  }
  if (defaultAccountId !== null) return { ok: true, shares: [{ accountId: defaultAccountId, percent: HUNDRED }] };
  return { ok: false, reason: `no account given, no split for user ${usage.userRef} and no default account` };
}

export interface RatedTransaction extends RatedAmount {
  ruleVersionId: number;
}

export interface RatedRecord {
  accountId: number;
  splitPercent: Decimal;
  /** This account's exact share of the usage's quantity. */
  quantity: Decimal;
  transactions: RatedTransaction[];
}

export type UsageRating = { ok: true; records: RatedRecord[]; chargeable: Window } | { ok: false; reason: string };

/**
 * Rates one usage under one rule version and splits every resulting amount over the accounts by
 * largest remainder, so that for every usage the records add up exactly to the unsplit charge.
 * `before` is the quantity of the product that came earlier in the period (tiers, allowances).
 *
 * Order: the allowance decides which units are chargeable; the pricing rule prices them, exactly,
 * rounded once; each discount or surcharge is its own transaction on that rounded charge.
 * `periodQuantity`, once the period is closed, is its total quantity of the product: pricing rules
 * settled at close (volume tiers) then give the usage's final charge instead of a provisional one.
 */
export function rateUsage(
  usage: UsageToRate,
  version: RuleVersion,
  shares: readonly AccountShare[],
  ctx: RatingContext,
  before: Decimal = ZERO,
  opts: { periodQuantity?: Decimal } = {},
): UsageRating {
  const pricing = pricingRuleFor(version.rules, usage.productCode);
  if (!pricing) {
    return { ok: false, reason: `no price for product ${usage.productCode} in rules effective ${version.effectiveFrom}` };
  }
  const window: Window = { before, quantity: usage.quantity };
  const allowance = allowanceRuleFor(version.rules, usage.productCode);
  const chargeable = allowance ? allowanceCalculator.chargeable(allowance, window) : window;
  const calculator = pricingCalculatorFor(pricing);
  // At period close a rule that settles (volume tiers) prices the usage at its final price, given
  // the period's chargeable quantity: the allowance's free units never reach a tier.
  const periodChargeable =
    opts.periodQuantity === undefined ? undefined : allowance ? allowanceCalculator.chargeable(allowance, { before: ZERO, quantity: opts.periodQuantity }).quantity : opts.periodQuantity;
  const base =
    periodChargeable !== undefined && calculator.settle
      ? calculator.settle(pricing, chargeable, periodChargeable, usage, ctx)
      : calculator.price(pricing, chargeable, usage, ctx);
  if (allowance && compare(chargeable.quantity, usage.quantity) !== 0) {
    base.description += `; ${toDecimalString(sub(usage.quantity, chargeable.quantity))} ${usage.unit} included in the allowance of ${allowance.units}`;
  }
  const amounts: RatedAmount[] = [base];
  for (const rule of adjustingRulesFor(version.rules, usage.productCode)) {
    const adjustment = adjustingCalculatorFor(rule).adjust(rule, base.amount, usage, ctx);
    if (adjustment) amounts.push(adjustment);
  }
  return { ok: true, records: splitAmounts(usage.quantity, amounts, shares, version.id), chargeable };
}

/** Splits each amount over the accounts by largest remainder (ties to the account listed first). */
export function splitAmounts(quantity: Decimal, amounts: readonly RatedAmount[], shares: readonly AccountShare[], ruleVersionId: number): RatedRecord[] {
  const weights = shares.map((s) => s.percent);
  const perAccount = amounts.map((a) => allocate(a.amount, weights));
  return shares.map((share, i) => ({
    accountId: share.accountId,
    splitPercent: share.percent,
    quantity: mul(quantity, shift(share.percent, -2)),
    transactions: amounts.map((a, j) => ({ ...a, amount: perAccount[j]![i]!, ruleVersionId })),
  }));
}
