import type { Knex } from 'knex';
import { bindings } from '../../adapters/db/bindings';
import type { PartnershipContext } from '../../adapters/db/partnership-repository';
import type { Pennies } from '../core/money';
import { lastDayOfPeriod, startOfLocalDate } from '../core/period';
import type { TransactionKind } from '../core/rating/calculator';
import { type RuleVersion, ruleVersionFor } from '../core/rating/rate-usage';
import { pricingRuleFor } from '../core/rating/registry';
import { type BookedSettlement, settlementDeltas, settlementTargets } from '../core/rating/settlement';
import { PermanentError } from './errors';
import { type RerateSummary, reratePeriodInTx } from './rerate-period';

export interface SettlementSummary {
  period: string;
  /** Usages whose volume-tier charge moved to its final price. */
  volumeSettled: number;
  /** Usage total of the period after volume settlement: what commitments and caps compare. */
  usageTotal: string;
  /** Settlement transactions written, by key. */
  booked: Array<{ key: string; kind: TransactionKind; amount: string }>;
}

/**
 * Settles a partnership's period at close, inside the caller's transaction (the billing run's, so
 * settlement and invoice commit together): volume-tier usages move from provisional to final prices,
 * then minimum commitment, cap, fixed fees and vouchers are booked on the partnership's default
 * account. Each step books only the difference to what is already there, so settling twice adds
 * nothing and settling again after late usage adds just the change.
 */
export async function settlePeriod(tx: Knex.Transaction, p: PartnershipContext, period: string, actor: string): Promise<SettlementSummary> {
  const volume = await settleVolumeTiers(tx, p, period);
  const usageTotal = await periodUsageTotal(tx, p.id, period);
  const version = periodRuleVersion(p, period);
  const targets = version ? settlementTargets(version.rules, { period, usageTotal }, { currency: p.currency, roundingMode: p.roundingMode }) : [];
  const booked = await bookedSettlements(tx, p.id, period);
  const deltas = settlementDeltas(targets, booked, period);
  if (deltas.length > 0) {
    if (p.defaultAccountId === null) {
      throw new PermanentError(`partnership ${p.code} has period-close rules for ${period} but no default account to book them on`);
    }
    const recordIds = await settlementRecords(tx, p, period, deltas.map((d) => d.key));
    await tx.raw(
      `INSERT INTO transactions (billing_record_id, kind, amount_pennies, description, rule_version_id)
       SELECT * FROM unnest(?::bigint[], ?::text[], ?::bigint[], ?::text[], ?::bigint[])`,
      bindings(
        deltas.map((d) => recordIds.get(d.key)!),
        deltas.map((d) => d.kind),
        deltas.map((d) => d.amount.toString()),
        deltas.map((d) => d.description),
        deltas.map(() => version?.id ?? null),
      ),
    );
    await tx('audit_log').insert({
      actor,
      action: 'period.settled',
      entity: 'partnership',
      entity_id: String(p.id),
      after: JSON.stringify({ period, usageTotal: usageTotal.toString(), deltas: deltas.map((d) => ({ key: d.key, kind: d.kind, amount: d.amount.toString() })) }),
    });
  }
  return {
    period,
    volumeSettled: volume.replaced + volume.adjusted,
    usageTotal: usageTotal.toString(),
    booked: deltas.map((d) => ({ key: d.key, kind: d.kind, amount: d.amount.toString() })),
  };
}

/**
 * Period-close rules come from the rule version in force on the period's last day: a contract
 * that changes its fee mid-month pays the new fee for that month.
 */
export function periodRuleVersion(p: PartnershipContext, period: string): RuleVersion | undefined {
  return ruleVersionFor(p.ruleVersions, startOfLocalDate(lastDayOfPeriod(period), p.timeZone), p.timeZone);
}

/** Products priced by volume tiers in any rule version in force during the period. */
function volumeProducts(p: PartnershipContext, period: string): Set<string> {
  const first = `${period}-01`;
  const last = lastDayOfPeriod(period);
  const versions = [...p.ruleVersions].sort((a, b) => a.effectiveFrom.localeCompare(b.effectiveFrom));
  const inForce = versions.filter((v, i) => v.effectiveFrom <= last && !(versions[i + 1] && versions[i + 1]!.effectiveFrom <= first));
  const out = new Set<string>();
  for (const v of inForce) {
    for (const rule of v.rules) if (rule.kind === 'volume_tiers' && pricingRuleFor(v.rules, rule.product) === rule) out.add(rule.product);
  }
  return out;
}

async function settleVolumeTiers(tx: Knex.Transaction, p: PartnershipContext, period: string): Promise<RerateSummary> {
  const codes = volumeProducts(p, period);
  if (codes.size === 0) return { replaced: 0, adjusted: 0, unchanged: 0, totals: [] };
  const products = await tx('products').whereIn('code', [...codes]).select<{ id: string }[]>('id');
  return reratePeriodInTx(tx, p, period, {
    productIds: products.map((r) => Number(r.id)),
    settled: true,
    reason: (externalId) => `Volume tier settled for ${period}: ${externalId} at the period's final tier`,
    dryRun: false,
  });
}

/** The partnership's usage charges for the period, all accounts, after discounts and adjustments. */
async function periodUsageTotal(tx: Knex.Transaction, partnershipId: number, period: string): Promise<Pennies> {
  const { rows } = await tx.raw<{ rows: { total: string }[] }>(
    `SELECT coalesce(sum(t.amount_pennies), 0)::text AS total
     FROM billing_records r JOIN transactions t ON t.billing_record_id = r.id
     WHERE r.partnership_id = ? AND r.period = ? AND r.usage_id IS NOT NULL`,
    [partnershipId, period],
  );
  return BigInt(rows[0]!.total) as Pennies;
}

async function bookedSettlements(tx: Knex.Transaction, partnershipId: number, period: string): Promise<BookedSettlement[]> {
  const { rows } = await tx.raw<{ rows: { settlement: string; kind: TransactionKind; total: string }[] }>(
    `SELECT r.settlement, (array_agg(t.kind ORDER BY t.id))[1] AS kind, coalesce(sum(t.amount_pennies), 0)::text AS total
     FROM billing_records r JOIN transactions t ON t.billing_record_id = r.id
     WHERE r.partnership_id = ? AND r.period = ? AND r.settlement IS NOT NULL
     GROUP BY r.settlement`,
    [partnershipId, period],
  );
  return rows.map((r) => ({ key: r.settlement, kind: r.kind, total: BigInt(r.total) as Pennies }));
}

/** The settlement record of each key on the default account, created the first time it is needed. */
async function settlementRecords(tx: Knex.Transaction, p: PartnershipContext, period: string, keys: string[]): Promise<Map<string, string>> {
  await tx.raw(
    `INSERT INTO billing_records (partnership_id, account_id, period, quantity, settlement)
     SELECT ?, ?, ?, ?, k FROM unnest(?::text[]) AS k
     ON CONFLICT (partnership_id, period, settlement, account_id) WHERE settlement IS NOT NULL DO NOTHING`,
    [p.id, p.defaultAccountId, period, '1', keys],
  );
  const rows = await tx('billing_records')
    .where({ partnership_id: p.id, period, account_id: p.defaultAccountId })
    .whereIn('settlement', keys)
    .select<{ id: string; settlement: string }[]>('id', 'settlement');
  return new Map(rows.map((r) => [r.settlement, r.id]));
}
