import type { Knex } from 'knex';
import { Temporal } from 'temporal-polyfill';
import { bindings } from '../../adapters/db/bindings';
import { loadPartnershipsOfCustomer, type PartnershipContext } from '../../adapters/db/partnership-repository';
import { type Decimal, ZERO, decimal, toDecimalString } from '../core/decimal';
import { isStorable } from '../core/money';
import type { RatingContext } from '../core/rating/calculator';
import { type AccountShare, type RatedRecord, type RuleVersion, rateUsage, resolveAccounts, ruleVersionFor } from '../core/rating/rate-usage';
import { dependsOnPosition } from '../core/rating/registry';
import type { Deps } from '../deps';
import { PermanentError } from './errors';

const PAGE = 5000;

interface UsageRow {
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

export type RateOutcome =
  | { kind: 'rated'; fileId: number; usages: number; records: number; transactions: number }
  | { kind: 'skipped'; fileId: number; status: string };

/**
 * Turns a parsed file's usages into billing records and transactions, a page at a time. Each page
 * commits with the file row locked and only picks usages that have no record yet, so a retry or a
 * second worker never rates a usage twice (and the unique (usage, account) key backs that up).
 */
export async function rateFile(deps: Deps, fileId: number): Promise<RateOutcome> {
  const { db } = deps;
  const file = await db('usage_files').where('id', fileId).first<{ status: string; partner_id: string | null } | undefined>('status', 'partner_id');
  if (!file) throw new PermanentError(`file ${fileId} does not exist`);
  if (file.status !== 'parsed' || file.partner_id === null) return { kind: 'skipped', fileId, status: file.status };

  const partnerships = new Map((await loadPartnershipsOfCustomer(db, Number(file.partner_id))).map((p) => [p.id, p]));
  const totals = { usages: 0, records: 0, transactions: 0 };
  try {
    await ratePages(deps, fileId, partnerships, totals);
  } catch (err) {
    // Leave the file parsed so a retry after the fix (a missing price, say) rates it; show why it stopped.
    if (err instanceof PermanentError) await db('usage_files').where('id', fileId).update({ error: `rating stopped: ${err.message}`, updated_at: db.fn.now() });
    throw err;
  }
  await db('usage_files').where('id', fileId).update({ error: null });
  deps.logger.info({ fileId, ...totals }, 'file rated');
  return { kind: 'rated', fileId, ...totals };
}

async function ratePages(
  deps: Deps,
  fileId: number,
  partnerships: Map<number, PartnershipContext>,
  totals: { usages: number; records: number; transactions: number },
): Promise<void> {
  const { db } = deps;
  // A keyset cursor: each page starts after the last usage of the previous one, so a page costs the
  // same at the end of a million-row file as at its start. Every usage of the file exists before
  // rating starts (the ingest commits them all first), so none can appear behind the cursor.
  let afterId = '0';
  for (;;) {
    const page = await db.transaction(async (tx) => {
      const locked = await tx('usage_files').where('id', fileId).forUpdate().first<{ status: string }>('status');
      if (locked.status !== 'parsed') return undefined;
      const usages = await unratedUsages(tx, fileId, afterId);
      if (usages.length === 0) {
        await tx('usage_files').where('id', fileId).update({ status: 'rated', rated_at: tx.fn.now(), updated_at: tx.fn.now() });
        return undefined;
      }
      const prepared = usages.map((u) => prepareRow(u, partnerships));
      const positional = prepared.filter((p) => p.positional);
      // Tiers and allowances price a usage by its place in the period: lock each period group (so two
      // files of one partnership rate in turn) and read every usage's position from the database.
      const groups = await lockGroups(tx, positional.map((p) => p.usage));
      const before = positional.length > 0 ? await positionsOf(tx, positional.map((p) => p.usage.id)) : new Map<string, Decimal>();
      const rated = prepared.map((p) => ({ usage: p.usage, records: rateRow(p, before.get(p.usage.id) ?? ZERO) }));
      const counts = await writeRecords(tx, rated);
      // A usage that starts before usages already rated moves them along the tiers: re-rate them.
      if (groups.length > 0) await rerateLaterUsages(tx, positional.map((p) => p.usage.id), partnerships);
      return { usages: usages.length, lastId: usages[usages.length - 1]!.id, ...counts };
    });
    if (!page) break;
    afterId = page.lastId;
    totals.usages += page.usages;
    totals.records += page.records;
    totals.transactions += page.transactions;
  }
}

function unratedUsages(tx: Knex.Transaction, fileId: number, afterId: string): Promise<UsageRow[]> {
  return tx('product_usages as u')
    .join('products as p', 'p.id', 'u.product_id')
    .where('u.source_file_id', fileId)
    .where('u.id', '>', afterId)
    .whereNotExists(tx('billing_records as r').whereRaw('r.usage_id = u.id'))
    .orderBy('u.id')
    .limit(PAGE)
    .select<UsageRow[]>(
      'u.id', 'u.external_id', 'u.partnership_id', 'u.product_id', 'p.code as product_code', 'p.name as product_name', 'p.unit',
      'u.user_ref', 'u.account_id', 'u.quantity', 'u.started_at', 'u.period', 'u.source_record',
    );
}

interface PreparedRow {
  usage: UsageRow;
  where: string;
  version: RuleVersion;
  shares: AccountShare[];
  ctx: RatingContext;
  positional: boolean;
}

function prepareRow(u: UsageRow, partnerships: Map<number, PartnershipContext>): PreparedRow {
  const where = `usage ${u.id} (file record ${u.source_record})`;
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

function rateRow(p: PreparedRow, before: Decimal): RatedRecord[] {
  const u = p.usage;
  const rating = rateUsage({ productCode: u.product_code, productName: u.product_name, unit: u.unit, quantity: decimal(u.quantity) }, p.version, p.shares, p.ctx, before);
  if (!rating.ok) throw new PermanentError(`${p.where}: ${rating.reason}`);
  for (const r of rating.records) {
    for (const t of r.transactions) {
      if (!isStorable(t.amount)) throw new PermanentError(`${p.where}: the charge of ${t.amount} pennies for quantity ${u.quantity} is beyond the largest amount the ledger stores`);
    }
  }
  return rating.records;
}

/**
 * The order within a period group: start time, then usage id compared byte by byte (COLLATE "C"),
 * so the order, and hence the tiers, never depend on a database's locale.
 */
const EARLIER = `(o.started_at < u.started_at OR (o.started_at = u.started_at AND o.external_id COLLATE "C" < u.external_id COLLATE "C"))`;
const SAME_GROUP = `o.partnership_id = u.partnership_id AND o.product_id = u.product_id AND o.period = u.period AND o.superseded_at IS NULL`;

/** Takes the period groups' locks in a fixed order, so two transactions never wait on each other in a cycle. */
async function lockGroups(tx: Knex.Transaction, usages: UsageRow[]): Promise<string[]> {
  const keys = [...new Set(usages.map((u) => `rate:${u.partnership_id}:${u.product_id}:${u.period}`))].sort();
  for (const key of keys) await tx.raw('SELECT pg_advisory_xact_lock(hashtextextended(?, 0))', [key]);
  return keys;
}

/** How much of each usage's product the partnership used earlier in the same period (live usages of every file). */
async function positionsOf(tx: Knex.Transaction, usageIds: string[]): Promise<Map<string, Decimal>> {
  const { rows } = await tx.raw<{ rows: { id: string; before: string }[] }>(
    `SELECT u.id, coalesce((SELECT sum(o.quantity) FROM product_usages o WHERE ${SAME_GROUP} AND ${EARLIER}), 0)::text AS before
     FROM product_usages u WHERE u.id = ANY(?::bigint[])`,
    [usageIds],
  );
  return new Map(rows.map((r) => [r.id, decimal(r.before)]));
}

/**
 * Usages already rated that come after the ones just rated, in the same groups, are priced again at
 * their new place. Not yet invoiced: their records are replaced. Invoiced: the difference per
 * account is an adjustment on the next invoice; an issued invoice never changes.
 */
async function rerateLaterUsages(tx: Knex.Transaction, newIds: string[], partnerships: Map<number, PartnershipContext>): Promise<void> {
  const { rows: later } = await tx.raw<{ rows: UsageRow[] }>(
    `SELECT DISTINCT u.id, u.external_id, u.partnership_id, u.product_id, p.code AS product_code, p.name AS product_name, p.unit,
            u.user_ref, u.account_id, u.quantity, u.started_at, u.period, u.source_record
     FROM product_usages n
     JOIN product_usages u ON u.partnership_id = n.partnership_id AND u.product_id = n.product_id AND u.period = n.period
       AND u.superseded_at IS NULL AND u.id <> ALL(?::bigint[])
       AND (u.started_at > n.started_at OR (u.started_at = n.started_at AND u.external_id COLLATE "C" > n.external_id COLLATE "C"))
     JOIN products p ON p.id = u.product_id
     WHERE n.id = ANY(?::bigint[]) AND EXISTS (SELECT 1 FROM billing_records r WHERE r.usage_id = u.id)`,
    [newIds, newIds],
  );
  if (later.length === 0) return;
  const before = await positionsOf(tx, later.map((u) => u.id));
  const { rows: current } = await tx.raw<{ rows: { usage_id: string; record_id: string; account_id: string; total: string; invoiced: boolean }[] }>(
    `SELECT r.usage_id, r.id AS record_id, r.account_id, sum(t.amount_pennies)::text AS total, bool_or(t.invoice_id IS NOT NULL) AS invoiced
     FROM billing_records r JOIN transactions t ON t.billing_record_id = r.id
     WHERE r.usage_id = ANY(?::bigint[]) GROUP BY r.usage_id, r.id, r.account_id`,
    [later.map((u) => u.id)],
  );
  const replace: Array<{ usage: UsageRow; records: RatedRecord[] }> = [];
  const adjustments: Array<{ recordId: string; amount: bigint; ruleVersionId: number; description: string }> = [];
  for (const u of later) {
    const prepared = prepareRow(u, partnerships);
    const records = rateRow(prepared, before.get(u.id) ?? ZERO);
    const mine = current.filter((c) => c.usage_id === u.id);
    const changed = records.filter((r) => {
      const now = r.transactions.reduce((sum, t) => sum + t.amount, 0n);
      return mine.find((c) => c.account_id === String(r.accountId))?.total !== now.toString();
    });
    if (changed.length === 0) continue;
    if (!mine.some((c) => c.invoiced)) {
      replace.push({ usage: u, records });
      continue;
    }
    for (const r of changed) {
      const existing = mine.find((c) => c.account_id === String(r.accountId));
      if (!existing) throw new PermanentError(`${prepared.where}: re-rating would charge account ${r.accountId}, which its invoiced records do not`);
      adjustments.push({
        recordId: existing.record_id,
        amount: r.transactions.reduce((sum, t) => sum + t.amount, 0n) - BigInt(existing.total),
        ruleVersionId: prepared.version.id,
        description: `Re-rated ${u.external_id}: an earlier usage arrived after it was invoiced`,
      });
    }
  }
  if (replace.length > 0) {
    const ids = replace.map((r) => r.usage.id);
    await tx.raw(`DELETE FROM transactions WHERE billing_record_id IN (SELECT id FROM billing_records WHERE usage_id = ANY(?::bigint[]))`, [ids]);
    await tx.raw(`DELETE FROM billing_records WHERE usage_id = ANY(?::bigint[])`, [ids]);
    await writeRecords(tx, replace);
  }
  if (adjustments.length > 0) {
    await tx.raw(
      `INSERT INTO transactions (billing_record_id, kind, amount_pennies, description, rule_version_id)
       SELECT * FROM unnest(?::bigint[], ?::text[], ?::bigint[], ?::text[], ?::bigint[])`,
      bindings(
        adjustments.map((a) => a.recordId),
        adjustments.map(() => 'adjustment'),
        adjustments.map((a) => a.amount.toString()),
        adjustments.map((a) => a.description),
        adjustments.map((a) => a.ruleVersionId),
      ),
    );
  }
}

/** Two statements per page whatever its size: records, then their transactions. */
async function writeRecords(
  tx: Knex.Transaction,
  rated: Array<{ usage: UsageRow; records: RatedRecord[] }>,
): Promise<{ records: number; transactions: number }> {
  const flat = rated.flatMap(({ usage, records }) => records.map((record) => ({ usage, record })));
  const { rows } = await tx.raw<{ rows: { id: string; usage_id: string; account_id: string }[] }>(
    `INSERT INTO billing_records (usage_id, partnership_id, account_id, product_id, period, quantity, split_percent)
     SELECT * FROM unnest(?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[], ?::text[], ?::numeric[], ?::numeric[])
     RETURNING id, usage_id, account_id`,
    bindings(
      flat.map((f) => f.usage.id),
      flat.map((f) => f.usage.partnership_id),
      flat.map((f) => f.record.accountId),
      flat.map((f) => f.usage.product_id),
      flat.map((f) => f.usage.period),
      flat.map((f) => toDecimalString(f.record.quantity)),
      flat.map((f) => toDecimalString(f.record.splitPercent)),
    ),
  );
  const recordIds = new Map(rows.map((r) => [`${r.usage_id}/${r.account_id}`, r.id]));
  const txs = flat.flatMap(({ usage, record }) => {
    const recordId = recordIds.get(`${usage.id}/${record.accountId}`);
    if (recordId === undefined) throw new Error(`record for usage ${usage.id} account ${record.accountId} was not returned`);
    return record.transactions.map((t) => ({ recordId, t }));
  });
  await tx.raw(
    `INSERT INTO transactions (billing_record_id, kind, amount_pennies, description, unit_price, rule_version_id)
     SELECT * FROM unnest(?::bigint[], ?::text[], ?::bigint[], ?::text[], ?::numeric[], ?::bigint[])`,
    bindings(
      txs.map((x) => x.recordId),
      txs.map((x) => x.t.kind),
      txs.map((x) => x.t.amount.toString()),
      txs.map((x) => x.t.description),
      txs.map((x) => (x.t.unitPrice ? toDecimalString(x.t.unitPrice) : null)),
      txs.map((x) => x.t.ruleVersionId),
    ),
  );
  return { records: rows.length, transactions: txs.length };
}
