import type { Knex } from 'knex';
import { Temporal } from 'temporal-polyfill';
import { bindings } from '../../adapters/db/bindings';
import { CopyWriter, copyText } from '../../adapters/db/copy-text';
import type { PartnershipContext } from '../../adapters/db/partnership-repository';
import { type Decimal, ZERO, add, decimal, toDecimalString } from '../core/decimal';
import { isStorable } from '../core/money';
import type { RatingContext } from '../core/rating/calculator';
import { type AccountShare, type RatedRecord, type RuleVersion, rateUsage, resolveAccounts, ruleVersionFor } from '../core/rating/rate-usage';
import type { BookedRecord, ReratePlan } from '../core/rating/rerate-plan';
import { dependsOnPosition } from '../core/rating/registry';
import { PermanentError } from './errors';

/*
 * What rating a file, re-rating a period and settling a period share: reading usages with their
 * place in the period, rating them under the partnership's rules, and writing or correcting their
 * billing records in bulk (a few statements per page, never one per usage).
 */

export interface UsageRow {
  id: string;
  external_id: string;
  partnership_id: string;
  product_id: string;
  product_code: string;
  product_name: string;
  unit: string;
  user_ref: string;
  account_id: string | null;
  quantity: string;
  started_at: Date;
  period: string;
  source_record: number;
}

/** The columns of UsageRow, for a query over product_usages u joined to products p. */
export const USAGE_COLUMNS = [
  'u.id', 'u.external_id', 'u.partnership_id', 'u.product_id', 'p.code as product_code', 'p.name as product_name', 'p.unit',
  'u.user_ref', 'u.account_id', 'u.quantity', 'u.started_at', 'u.period', 'u.source_record',
];
const USAGE_COLUMNS_SQL = USAGE_COLUMNS.map((c) => c.replace(' as ', ' AS ')).join(', ');

export interface PreparedRow {
  usage: UsageRow;
  where: string;
  version: RuleVersion;
  shares: AccountShare[];
  ctx: RatingContext;
  positional: boolean;
}

/** The rule version, accounts and currency a usage is rated with; a usage that cannot be rated is a PermanentError naming it. */
export function prepareRow(u: UsageRow, partnerships: ReadonlyMap<number, PartnershipContext>): PreparedRow {
  const where = `usage ${u.external_id} (id ${u.id}, file record ${u.source_record})`;
  const p = partnerships.get(Number(u.partnership_id));
  if (!p) throw new PermanentError(`${where}: partnership ${u.partnership_id} not found`);
  const startedAt = Temporal.Instant.fromEpochMilliseconds(u.started_at.getTime());
  const version = ruleVersionFor(p.ruleVersions, startedAt, p.timeZone);
  if (!version) throw new PermanentError(`${where}: partnership ${p.code} has no rules in force at ${startedAt.toString()}`);
  const accounts = resolveAccounts(
    { accountId: u.account_id === null ? null : Number(u.account_id), userRef: u.user_ref, productId: Number(u.product_id) },
    p.splits,
    p.defaultAccountId,
  );
  if (!accounts.ok) throw new PermanentError(`${where}: ${accounts.reason}`);
  return {
    usage: u,
    where,
    version,
    shares: accounts.shares,
    ctx: { currency: p.currency, roundingMode: p.roundingMode },
    positional: dependsOnPosition(version.rules, u.product_code),
  };
}

/** Rates a prepared usage at its place in the period; with `periodQuantity`, at its settled (final) price. */
export function rateRow(p: PreparedRow, before: Decimal, periodQuantity?: Decimal): RatedRecord[] {
  const u = p.usage;
  const rating = rateUsage(
    { productCode: u.product_code, productName: u.product_name, unit: u.unit, quantity: decimal(u.quantity) },
    p.version,
    p.shares,
    p.ctx,
    before,
    periodQuantity === undefined ? {} : { periodQuantity },
  );
  if (!rating.ok) throw new PermanentError(`${p.where}: ${rating.reason}`);
  for (const r of rating.records) {
    for (const t of r.transactions) {
      if (!isStorable(t.amount)) throw new PermanentError(`${p.where}: the charge of ${t.amount} pennies for quantity ${u.quantity} is beyond the largest amount the ledger stores`);
    }
  }
  return rating.records;
}

/** The advisory lock key of a period group: one partnership's usage of one product in one month. */
export function groupKey(partnershipId: string | number, productId: string | number, period: string): string {
  return `rate:${partnershipId}:${productId}:${period}`;
}

/** Takes the groups' locks in a fixed order, so two transactions never wait on each other in a cycle. */
export async function lockGroups(tx: Knex.Transaction, keys: Iterable<string>): Promise<string[]> {
  const sorted = [...new Set(keys)].sort();
  for (const key of sorted) await tx.raw('SELECT pg_advisory_xact_lock(hashtextextended(?, 0))', [key]);
  return sorted;
}

/** The period order of a group: start time, then usage id byte by byte (COLLATE "C"), so tiers never depend on a database's locale. */
const KEY = (alias: string) => `(${alias}.started_at, ${alias}.external_id COLLATE "C")`;

/**
 * How much of each usage's product the partnership used earlier in the same period (live usages of
 * every file). Per group the page touches: one index range sum for everything before the page's
 * earliest usage, and one window over the range the page spans (an index range scan per group,
 * through LATERAL: a join let the planner, misled by the page's row estimate, scan the whole table
 * and compare every page row with every ranged row, 1.4 s of a 5,000-usage page at 100k usages).
 * A file in time order spans little of its group per page.
 */
export async function positionsOf(tx: Knex.Transaction, usageIds: string[]): Promise<Map<string, Decimal>> {
  const { rows } = await tx.raw<{ rows: { id: string; before: string }[] }>(
    `WITH page AS MATERIALIZED (
       SELECT u.id, u.partnership_id, u.product_id, u.period, u.started_at, u.external_id COLLATE "C" AS xid
       FROM product_usages u WHERE u.id = ANY(?::bigint[])
     ),
     bounds AS MATERIALIZED (
       SELECT partnership_id, product_id, period,
              (array_agg(started_at ORDER BY started_at, xid))[1] AS lo_t, (array_agg(xid ORDER BY started_at, xid))[1] AS lo_x,
              (array_agg(started_at ORDER BY started_at DESC, xid DESC))[1] AS hi_t, (array_agg(xid ORDER BY started_at DESC, xid DESC))[1] AS hi_x
       FROM page GROUP BY 1, 2, 3
     ),
     base AS MATERIALIZED (
       SELECT b.*, s.before FROM bounds b CROSS JOIN LATERAL (
         SELECT coalesce(sum(o.quantity), 0) AS before FROM product_usages o
         WHERE o.partnership_id = b.partnership_id AND o.product_id = b.product_id AND o.period = b.period AND o.superseded_at IS NULL
           AND ${KEY('o')} < (b.lo_t, b.lo_x COLLATE "C")
       ) s
     ),
     ranged AS (
       SELECT x.id, b.before + coalesce(sum(x.quantity) OVER (PARTITION BY b.partnership_id, b.product_id, b.period ORDER BY x.started_at, x.xid
                                                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
       FROM base b CROSS JOIN LATERAL (
         SELECT o.id, o.quantity, o.started_at, o.external_id COLLATE "C" AS xid FROM product_usages o
         WHERE o.partnership_id = b.partnership_id AND o.product_id = b.product_id AND o.period = b.period AND o.superseded_at IS NULL
           AND ${KEY('o')} >= (b.lo_t, b.lo_x COLLATE "C") AND ${KEY('o')} <= (b.hi_t, b.hi_x COLLATE "C")
       ) x
     )
     SELECT r.id, r.before::text AS before FROM ranged r WHERE r.id = ANY(?::bigint[])`,
    [usageIds, usageIds],
  );
  return new Map(rows.map((r) => [r.id, decimal(r.before)]));
}

/**
 * Rated usages that come after the earliest of `usageIds` in its group, other than `usageIds`
 * themselves: a usage that arrives before them moves them along the tiers. rating_groups says
 * where each group's rated usages end, so a page that starts after that (files in time order)
 * finds nothing without looking.
 */
export async function laterRatedUsages(tx: Knex.Transaction, usageIds: string[]): Promise<UsageRow[]> {
  const { rows } = await tx.raw<{ rows: UsageRow[] }>(
    `WITH page AS MATERIALIZED (
       SELECT u.id, u.partnership_id, u.product_id, u.period, u.started_at, u.external_id COLLATE "C" AS xid
       FROM product_usages u WHERE u.id = ANY(?::bigint[])
     ),
     earliest AS (
       SELECT partnership_id, product_id, period,
              (array_agg(started_at ORDER BY started_at, xid))[1] AS lo_t, (array_agg(xid ORDER BY started_at, xid))[1] AS lo_x
       FROM page GROUP BY 1, 2, 3
     ),
     moved AS (
       SELECT e.* FROM earliest e JOIN rating_groups g USING (partnership_id, product_id, period)
       WHERE (e.lo_t, e.lo_x COLLATE "C") < (g.last_started_at, g.last_external_id)
     )
     SELECT ${USAGE_COLUMNS_SQL}
     FROM moved m
     JOIN product_usages u ON u.partnership_id = m.partnership_id AND u.product_id = m.product_id AND u.period = m.period
       AND u.superseded_at IS NULL AND ${KEY('u')} > (m.lo_t, m.lo_x COLLATE "C")
     JOIN products p ON p.id = u.product_id
     WHERE u.id <> ALL(?::bigint[]) AND EXISTS (SELECT 1 FROM billing_records r WHERE r.usage_id = u.id)`,
    [usageIds, usageIds],
  );
  return rows;
}

/** Moves each group's mark of its latest rated usage forward to cover these (call under the group locks). */
export async function markRated(tx: Knex.Transaction, usageIds: string[]): Promise<void> {
  await tx.raw(
    `INSERT INTO rating_groups (partnership_id, product_id, period, last_started_at, last_external_id)
     SELECT DISTINCT ON (partnership_id, product_id, period) partnership_id, product_id, period, started_at, external_id COLLATE "C"
     FROM product_usages WHERE id = ANY(?::bigint[])
     ORDER BY partnership_id, product_id, period, started_at DESC, external_id COLLATE "C" DESC
     ON CONFLICT (partnership_id, product_id, period) DO UPDATE
       SET last_started_at = excluded.last_started_at, last_external_id = excluded.last_external_id
       WHERE (excluded.last_started_at, excluded.last_external_id) > (rating_groups.last_started_at, rating_groups.last_external_id)`,
    [usageIds],
  );
}

export interface PositionedUsage extends UsageRow {
  /** Quantity of the product used earlier in the period. */
  before: Decimal;
}

/**
 * Every live usage of a partnership's period (optionally of some products), in period order, a page
 * at a time, each with its position. Per product, a keyset cursor over (start, usage id) on the
 * group-order index and a running sum carried from page to page: linear in the period's size.
 */
export async function* periodUsagePages(
  tx: Knex.Transaction,
  partnershipId: number,
  period: string,
  productIds: readonly number[] | null,
  pageSize = 5000,
): AsyncGenerator<PositionedUsage[]> {
  const products = productIds
    ? [...productIds].sort((a, b) => a - b).map(String)
    : (
        await tx('product_usages').where({ partnership_id: partnershipId, period }).whereNull('superseded_at').distinct<{ product_id: string }[]>('product_id').orderBy('product_id')
      ).map((r) => r.product_id);
  for (const productId of products) {
    let cursor: { startedAt: string; externalId: string } | undefined;
    let carried = ZERO;
    for (;;) {
      const { rows } = await tx.raw<{ rows: Array<UsageRow & { started_key: string }> }>(
        `SELECT ${USAGE_COLUMNS_SQL}, u.started_at::text AS started_key
         FROM product_usages u JOIN products p ON p.id = u.product_id
         WHERE u.partnership_id = ? AND u.product_id = ? AND u.period = ? AND u.superseded_at IS NULL
           ${cursor ? `AND ${KEY('u')} > (?::timestamptz, ?::text COLLATE "C")` : ''}
         ORDER BY u.started_at, u.external_id COLLATE "C"
         LIMIT ?`,
        [partnershipId, productId, period, ...(cursor ? [cursor.startedAt, cursor.externalId] : []), pageSize],
      );
      if (rows.length === 0) break;
      const page: PositionedUsage[] = [];
      for (const { started_key: _, ...row } of rows) {
        page.push({ ...row, before: carried });
        carried = add(carried, decimal(row.quantity));
      }
      const last = rows[rows.length - 1]!;
      cursor = { startedAt: last.started_key, externalId: last.external_id };
      yield page;
      if (rows.length < pageSize) break;
    }
  }
}

/** What each usage's records book now: one row per record, its transactions summed. */
export async function bookedRecords(tx: Knex.Transaction, usageIds: readonly string[]): Promise<BookedRecord[]> {
  if (usageIds.length === 0) return [];
  const { rows } = await tx.raw<{ rows: { usage_id: string; record_id: string; account_id: string; total: string; invoiced: boolean }[] }>(
    `SELECT r.usage_id, r.id AS record_id, r.account_id, coalesce(sum(t.amount_pennies), 0)::text AS total, coalesce(bool_or(t.invoice_id IS NOT NULL), false) AS invoiced
     FROM billing_records r LEFT JOIN transactions t ON t.billing_record_id = r.id
     WHERE r.usage_id = ANY(?::bigint[]) GROUP BY r.usage_id, r.id, r.account_id`,
    [[...usageIds]],
  );
  return rows.map((r) => ({ recordId: r.record_id, usageId: r.usage_id, accountId: Number(r.account_id), total: BigInt(r.total), invoiced: r.invoiced }));
}

/**
 * Records and their transactions for a page, streamed with COPY: the records' ids are taken from
 * their sequence first (one statement), so both tables load without a round trip per row and
 * without RETURNING. Three statements per page whatever its size.
 */
export async function writeRecords(
  tx: Knex.Transaction,
  rated: ReadonlyArray<{ usage: UsageRow; records: RatedRecord[] }>,
): Promise<{ records: number; transactions: number }> {
  const flat = rated.flatMap(({ usage, records }) => records.map((record) => ({ usage, record })));
  if (flat.length === 0) return { records: 0, transactions: 0 };
  const { rows: ids } = await tx.raw<{ rows: { id: string }[] }>(`SELECT nextval('billing_records_id_seq')::text AS id FROM generate_series(1, ?)`, [flat.length]);
  const records = await CopyWriter.start(tx, 'COPY billing_records (id, usage_id, partnership_id, account_id, product_id, period, quantity, split_percent) FROM STDIN');
  flat.forEach(({ usage, record }, i) => {
    records.add(`${ids[i]!.id}\t${usage.id}\t${usage.partnership_id}\t${record.accountId}\t${usage.product_id}\t${usage.period}\t${toDecimalString(record.quantity)}\t${toDecimalString(record.splitPercent)}\n`);
  });
  await records.end();
  const transactions = await CopyWriter.start(tx, 'COPY transactions (billing_record_id, kind, amount_pennies, description, unit_price, rule_version_id) FROM STDIN');
  let count = 0;
  flat.forEach(({ record }, i) => {
    const recordId = ids[i]!.id;
    for (const t of record.transactions) {
      transactions.add(`${recordId}\t${t.kind}\t${t.amount}\t${copyText(t.description)}\t${t.unitPrice ? toDecimalString(t.unitPrice) : '\\N'}\t${t.ruleVersionId}\n`);
      count += 1;
    }
  });
  await transactions.end();
  return { records: flat.length, transactions: count };
}

/**
 * Carries out a re-rating plan: replaced usages lose their (uninvoiced) records and get new ones;
 * invoiced usages get adjustment transactions. A plan with conflicts is refused whole.
 */
export async function applyPlan(tx: Knex.Transaction, plan: ReratePlan, usages: ReadonlyMap<string, UsageRow>): Promise<{ replaced: number; adjusted: number }> {
  if (plan.conflicts.length > 0) {
    const more = plan.conflicts.length > 3 ? ` (and ${plan.conflicts.length - 3} more)` : '';
    throw new PermanentError(`cannot re-rate: ${plan.conflicts.slice(0, 3).map((c) => c.message).join('; ')}${more}`);
  }
  if (plan.replace.length > 0) {
    const ids = plan.replace.map((r) => r.usageId);
    await tx.raw(`DELETE FROM transactions WHERE billing_record_id IN (SELECT id FROM billing_records WHERE usage_id = ANY(?::bigint[])) AND invoice_id IS NULL`, [ids]);
    await tx.raw(`DELETE FROM billing_records WHERE usage_id = ANY(?::bigint[])`, [ids]);
    await writeRecords(
      tx,
      plan.replace.map((r) => {
        const usage = usages.get(r.usageId);
        if (!usage) throw new Error(`usage ${r.usageId} of the plan was not loaded`);
        return { usage, records: r.records };
      }),
    );
  }
  if (plan.adjustments.length > 0) {
    await tx.raw(
      `INSERT INTO transactions (billing_record_id, kind, amount_pennies, description, rule_version_id)
       SELECT * FROM unnest(?::bigint[], ?::text[], ?::bigint[], ?::text[], ?::bigint[])`,
      bindings(
        plan.adjustments.map((a) => a.recordId),
        plan.adjustments.map(() => 'adjustment'),
        plan.adjustments.map((a) => a.amount.toString()),
        plan.adjustments.map((a) => a.description),
        plan.adjustments.map((a) => a.ruleVersionId),
      ),
    );
  }
  return { replaced: plan.replace.length, adjusted: new Set(plan.adjustments.map((a) => a.usageId)).size };
}
