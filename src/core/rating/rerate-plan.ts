import type { RatedRecord } from './rate-usage';

/**
 * Bringing rated usages to new charges (a late usage moved them along the tiers, the rules changed,
 * the period closed and volume prices settled): what is booked is compared with what the rules now
 * give, per usage and account. Nothing invoiced is ever changed: a usage none of whose transactions
 * is invoiced has its records replaced; otherwise each account's difference becomes an adjustment
 * transaction that lands on the next invoice.
 */

/** A booked billing record of a usage: the sum of its transactions. */
export interface BookedRecord {
  recordId: string;
  usageId: string;
  accountId: number;
  total: bigint;
  invoiced: boolean;
}

/** What the rules now give a usage. */
export interface UsageTarget {
  usageId: string;
  records: RatedRecord[];
  ruleVersionId: number;
  /** Why it is re-rated, for the adjustment's description. */
  reason: string;
}

export interface RecordAdjustment {
  usageId: string;
  /** The record the adjustment goes on. */
  recordId: string;
  accountId: number;
  amount: bigint;
  ruleVersionId: number;
  description: string;
}

export interface ReratePlan {
  /** Usages whose records are deleted and written again from the target (nothing invoiced). */
  replace: UsageTarget[];
  adjustments: RecordAdjustment[];
  /**
   * Invoiced usages the rules now charge to other accounts (a split changed): an adjustment cannot
   * move a charge between accounts of an issued invoice, so these are refused, by usage id.
   */
  conflicts: Array<{ usageId: string; message: string }>;
  unchanged: number;
  /** Per account: the usages' total before and after. */
  totals: Map<number, { before: bigint; after: bigint }>;
}

export function emptyPlan(): ReratePlan {
  return { replace: [], adjustments: [], conflicts: [], unchanged: 0, totals: new Map() };
}

const recordTotal = (r: RatedRecord): bigint => r.transactions.reduce((sum, t) => sum + t.amount, 0n);

/** Adds the plan for these usages to `plan` (so a long period can be planned a page at a time). */
export function planRerating(targets: readonly UsageTarget[], booked: readonly BookedRecord[], plan: ReratePlan = emptyPlan()): ReratePlan {
  const bookedByUsage = new Map<string, BookedRecord[]>();
  for (const b of booked) {
    const list = bookedByUsage.get(b.usageId);
    if (list) list.push(b);
    else bookedByUsage.set(b.usageId, [b]);
  }
  const tally = (accountId: number, before: bigint, after: bigint) => {
    const t = plan.totals.get(accountId) ?? { before: 0n, after: 0n };
    t.before += before;
    t.after += after;
    plan.totals.set(accountId, t);
  };

  for (const target of targets) {
    const mine = bookedByUsage.get(target.usageId) ?? [];
    const bookedAccounts = new Set(mine.map((b) => b.accountId));
    const targetAccounts = new Set(target.records.map((r) => r.accountId));
    const sameAccounts = bookedAccounts.size === targetAccounts.size && [...bookedAccounts].every((a) => targetAccounts.has(a));
    const differences: Array<{ accountId: number; was: bigint; now: bigint }> = [];
    for (const accountId of new Set([...bookedAccounts, ...targetAccounts])) {
      const was = mine.filter((b) => b.accountId === accountId).reduce((sum, b) => sum + b.total, 0n);
      const rec = target.records.find((r) => r.accountId === accountId);
      const now = rec ? recordTotal(rec) : 0n;
      tally(accountId, was, now);
      if (was !== now) differences.push({ accountId, was, now });
    }
    if (sameAccounts && differences.length === 0) {
      plan.unchanged += 1;
    } else if (!mine.some((b) => b.invoiced)) {
      plan.replace.push(target);
    } else if (!sameAccounts) {
      plan.conflicts.push({
        usageId: target.usageId,
        message: `usage ${target.usageId} is invoiced to accounts ${[...bookedAccounts].join(', ')} but the rules now charge ${[...targetAccounts].join(', ')}: correct it with a credit note`,
      });
    } else {
      for (const d of differences) {
        const existing = mine.find((b) => b.accountId === d.accountId)!;
        plan.adjustments.push({
          usageId: target.usageId,
          recordId: existing.recordId,
          accountId: d.accountId,
          amount: d.now - d.was,
          ruleVersionId: target.ruleVersionId,
          description: target.reason,
        });
      }
    }
  }
  return plan;
}
