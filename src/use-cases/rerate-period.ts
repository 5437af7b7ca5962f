import type { Knex } from 'knex';
import { type PartnershipContext, loadPartnership } from '../../adapters/db/partnership-repository';
import { type Decimal, decimal } from '../core/decimal';
import { formatMoney, pennies } from '../core/money';
import { isPeriodClosed } from '../core/period';
import type { RuleVersion } from '../core/rating/rate-usage';
import { emptyPlan, planRerating } from '../core/rating/rerate-plan';
import type { Deps } from '../deps';
import { PermanentError } from './errors';
import { applyPlan, bookedRecords, groupKey, lockGroups, periodUsagePages, prepareRow, rateRow } from './usage-rating';

export interface RerateSummary {
  replaced: number;
  adjusted: number;
  unchanged: number;
  /** Per account: the period's usage charges before and after. */
  totals: Array<{ accountId: number; before: bigint; after: bigint }>;
}

export interface RerateOptions {
  /** Only these products; null for all. */
  productIds: readonly number[] | null;
  /** Price volume tiers at their final, period-close price (the period is closed). */
  settled: boolean;
  reason: (externalId: string) => string;
  /** Plan only: read, compute and report, write nothing. */
  dryRun: boolean;
}

/**
 * Rates every live usage of a partnership's period again under the rules in `p` and brings what is
 * booked to it, a page at a time: records of usages not yet invoiced are replaced, invoiced usages
 * get adjustments for the next invoice. The period's groups are locked first, so file rating and
 * billing wait; running it twice finds nothing to change the second time.
 */
export async function reratePeriodInTx(tx: Knex.Transaction, p: PartnershipContext, period: string, opts: RerateOptions): Promise<RerateSummary> {
  const productRows = await tx('product_usages')
    .where({ partnership_id: p.id, period })
    .whereNull('superseded_at')
    .modify((q) => void (opts.productIds ? q.whereIn('product_id', [...opts.productIds]) : q))
    .distinct<{ product_id: string }[]>('product_id');
  if (!opts.dryRun) await lockGroups(tx, productRows.map((r) => groupKey(p.id, r.product_id, period)));

  const periodQuantities = new Map<string, Decimal>();
  if (opts.settled) {
    const { rows } = await tx.raw<{ rows: { product_id: string; quantity: string }[] }>(
      `SELECT product_id, sum(quantity)::text AS quantity FROM product_usages
       WHERE partnership_id = ? AND period = ? AND superseded_at IS NULL GROUP BY product_id`,
      [p.id, period],
    );
    for (const r of rows) periodQuantities.set(r.product_id, decimal(r.quantity));
  }

  const partnerships = new Map([[p.id, p]]);
  const plan = emptyPlan();
  let replaced = 0;
  let adjusted = 0;
  for await (const page of periodUsagePages(tx, p.id, period, opts.productIds)) {
    const booked = await bookedRecords(tx, page.map((u) => u.id));
    const rated = new Set(booked.map((b) => b.usageId));
    // A usage without records is still being rated by its file's job, which will rate it under these rules.
    const mine = page.filter((u) => rated.has(u.id));
    const targets = mine.map((u) => {
      const prepared = prepareRow(u, partnerships);
      return {
        usageId: u.id,
        records: rateRow(prepared, u.before, opts.settled ? periodQuantities.get(u.product_id) : undefined),
        ruleVersionId: prepared.version.id,
        reason: opts.reason(u.external_id),
      };
    });
    const pagePlan = planRerating(targets, booked);
    plan.unchanged += pagePlan.unchanged;
    plan.conflicts.push(...pagePlan.conflicts);
    for (const [account, t] of pagePlan.totals) {
      const sum = plan.totals.get(account) ?? { before: 0n, after: 0n };
      sum.before += t.before;
      sum.after += t.after;
      plan.totals.set(account, sum);
    }
    if (opts.dryRun) {
      replaced += pagePlan.replace.length;
      adjusted += new Set(pagePlan.adjustments.map((a) => a.usageId)).size;
    } else {
      const done = await applyPlan(tx, pagePlan, new Map(mine.map((u) => [u.id, u])));
      replaced += done.replaced;
      adjusted += done.adjusted;
    }
  }
  if (opts.dryRun && plan.conflicts.length > 0) {
    throw new PermanentError(`cannot re-rate ${p.code} ${period}: ${plan.conflicts.slice(0, 3).map((c) => c.message).join('; ')}`);
  }
  return {
    replaced,
    adjusted,
    unchanged: plan.unchanged,
    totals: [...plan.totals].map(([accountId, t]) => ({ accountId, before: t.before, after: t.after })).sort((a, b) => a.accountId - b.accountId),
  };
}

export interface RerateReport {
  partnership: string;
  period: string;
  currency: string;
  dryRun: boolean;
  replaced: number;
  adjusted: number;
  unchanged: number;
  accounts: Array<{ account: string; before: string; after: string; difference: string; beforeText: string; afterText: string; differenceText: string }>;
}

/**
 * Re-rates a partnership's period after a rule change (`billing rerate`). With `dryRun` it reads in
 * a read-only transaction and writes nothing; with `ruleVersions` it rates under proposed rules
 * instead of the stored ones (a quotation of the whole period), which only a dry run may do.
 */
export async function reratePeriod(
  deps: Deps,
  input: { partnership: string; period: string; dryRun: boolean; product?: string; ruleVersions?: RuleVersion[]; actor: string },
): Promise<RerateReport> {
  if (input.ruleVersions && !input.dryRun) throw new PermanentError('proposed rules can only be tried in a dry run: import them first to re-rate for real');
  const run = async (tx: Knex.Transaction): Promise<RerateReport> => {
    const stored = await loadPartnership(tx, { code: input.partnership });
    if (!stored) throw new PermanentError(`no partnership ${input.partnership}`);
    const p: PartnershipContext = input.ruleVersions ? { ...stored, ruleVersions: input.ruleVersions } : stored;
    let productIds: number[] | null = null;
    if (input.product) {
      const product = await tx('products').where('code', input.product).first<{ id: string } | undefined>('id');
      if (!product) throw new PermanentError(`no product ${input.product}`);
      productIds = [Number(product.id)];
    }
    const summary = await reratePeriodInTx(tx, p, input.period, {
      productIds,
      settled: isPeriodClosed(input.period, p.timeZone, deps.clock.now()),
      reason: (externalId) => `Re-rated ${externalId} under the rules in force (${input.period})`,
      dryRun: input.dryRun,
    });
    if (!input.dryRun && summary.replaced + summary.adjusted > 0) {
      await tx('audit_log').insert({
        actor: input.actor,
        action: 'period.rerated',
        entity: 'partnership',
        entity_id: String(p.id),
        after: JSON.stringify({ period: input.period, product: input.product ?? null, replaced: summary.replaced, adjusted: summary.adjusted }),
      });
    }
    const codes = new Map(
      (await tx('accounts').where('partnership_id', p.id).select<{ id: string; code: string }[]>('id', 'code')).map((a) => [Number(a.id), a.code]),
    );
    return {
      partnership: p.code,
      period: input.period,
      currency: p.currency,
      dryRun: input.dryRun,
      replaced: summary.replaced,
      adjusted: summary.adjusted,
      unchanged: summary.unchanged,
      accounts: summary.totals.map((t) => ({
        account: codes.get(t.accountId) ?? String(t.accountId),
        before: t.before.toString(),
        after: t.after.toString(),
        difference: (t.after - t.before).toString(),
        beforeText: formatMoney(pennies(t.before), p.currency),
        afterText: formatMoney(pennies(t.after), p.currency),
        differenceText: formatMoney(pennies(t.after - t.before), p.currency),
      })),
    };
  };
  return input.dryRun
    ? deps.db.transaction(run, { isolationLevel: 'repeatable read', readOnly: true })
    : deps.db.transaction(run);
}
