import type { Temporal } from 'temporal-polyfill';
import { allocate } from '../allocation';
import { type Decimal, decimal, mul, shift } from '../decimal';
import { startOfLocalDate } from '../period';
import type { RatedAmount, RatingContext, UsageToRate } from './calculator';
import { type RuleSet, calculatorFor, pricingRuleFor } from './registry';

export interface RuleVersion {
  id: number;
  /** 'YYYY-MM-DD': applies from local midnight of this date in the partnership's time zone. */
  effectiveFrom: string;
  rules: RuleSet;
}

/** The version in force for a usage starting at `startedAt`: the latest that began at or before it. */
export function ruleVersionFor(
  versions: readonly RuleVersion[],
  startedAt: Temporal.Instant,
  timeZone: string,
): RuleVersion | undefined {
  let best: RuleVersion | undefined;
  for (const v of versions) {
    if (startOfLocalDate(v.effectiveFrom, timeZone).epochNanoseconds > startedAt.epochNanoseconds) continue;
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

export type UsageRating = { ok: true; records: RatedRecord[] } | { ok: false; reason: string };

/**
 * Rates one usage under one rule version and splits every resulting amount over the accounts by
 * largest remainder, so that for every usage the records add up exactly to the unsplit charge.
 */
export function rateUsage(
  usage: UsageToRate,
  version: RuleVersion,
  shares: readonly AccountShare[],
  ctx: RatingContext,
): UsageRating {
  const pricing = pricingRuleFor(version.rules, usage.productCode);
  if (!pricing) {
    return { ok: false, reason: `no price for product ${usage.productCode} in rules effective ${version.effectiveFrom}` };
  }
  const amounts: RatedAmount[] = calculatorFor(pricing).rate(pricing, usage, ctx);
  const weights = shares.map((s) => s.percent);
  const perAccount = amounts.map((a) => allocate(a.amount, weights));
  return {
    ok: true,
    records: shares.map((share, i) => ({
      accountId: share.accountId,
      splitPercent: share.percent,
      quantity: mul(usage.quantity, shift(share.percent, -2)),
      transactions: amounts.map((a, j) => ({ ...a, amount: perAccount[j]![i]!, ruleVersionId: version.id })),
    })),
  };
}
