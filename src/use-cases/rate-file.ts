import type { Knex } from 'knex';
import { Temporal } from 'temporal-polyfill';
import { bindings } from '../../adapters/db/bindings';
import { loadPartnershipsOfCustomer, type PartnershipContext } from '../../adapters/db/partnership-repository';
import { decimal, toDecimalString } from '../core/decimal';
import { isStorable } from '../core/money';
import { type RatedRecord, rateUsage, resolveAccounts, ruleVersionFor } from '../core/rating/rate-usage';
import { dependsOnPosition } from '../core/rating/registry';
import type { Deps } from '../deps';
import { PermanentError } from './errors';

const PAGE = 5000;

interface UsageRow {
  id: string;
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
      const rated = usages.map((u) => ({ usage: u, records: rateRow(u, partnerships) }));
      const counts = await writeRecords(tx, rated);
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
      'u.id', 'u.partnership_id', 'u.product_id', 'p.code as product_code', 'p.name as product_name', 'p.unit',
      'u.user_ref', 'u.account_id', 'u.quantity', 'u.started_at', 'u.period', 'u.source_record',
    );
}

function rateRow(u: UsageRow, partnerships: Map<number, PartnershipContext>): RatedRecord[] {
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
  if (dependsOnPosition(version.rules, u.product_code)) {
    // Tiers and allowances need the usage's position in its period; until rating tracks it, refuse
    // rather than bill every usage as if it were the period's first.
    throw new PermanentError(`${where}: ${u.product_code} is priced by tiers or an allowance, which this version of the engine does not rate yet`);
  }
  const rating = rateUsage(
    { productCode: u.product_code, productName: u.product_name, unit: u.unit, quantity: decimal(u.quantity) },
    version,
    accounts.shares,
    { currency: p.currency, roundingMode: p.roundingMode },
  );
  if (!rating.ok) throw new PermanentError(`${where}: ${rating.reason}`);
  for (const r of rating.records) {
    for (const t of r.transactions) {
      if (!isStorable(t.amount)) throw new PermanentError(`${where}: the charge of ${t.amount} pennies for quantity ${u.quantity} is beyond the largest amount the ledger stores`);
    }
  }
  return rating.records;
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
