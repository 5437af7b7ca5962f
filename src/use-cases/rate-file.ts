import type { Knex } from 'knex';
import { loadPartnershipsOfCustomer, type PartnershipContext } from '../../adapters/db/partnership-repository';
import { type Decimal, ZERO } from '../core/decimal';
import { planRerating } from '../core/rating/rerate-plan';
import type { Deps } from '../deps';
import { PermanentError } from './errors';
import {
  type UsageRow,
  USAGE_COLUMNS,
  applyPlan,
  bookedRecords,
  groupKey,
  laterRatedUsages,
  lockGroups,
  markRated,
  positionsOf,
  prepareRow,
  rateRow,
  writeRecords,
} from './usage-rating';

const PAGE = 5000;

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
  // Each period group of the file (partnership, product, month) is rated in period order, a page at
  // a time from a keyset cursor on the group-order index: a page then spans a narrow stretch of its
  // group, so reading its positions costs the page, not the group. (Pages in file order were spread
  // over the whole period when a feed is not sorted by time, and each read the whole group: 4 s a
  // page at 1M rows.) Every usage of the file exists before rating starts (the ingest commits them
  // all first), so none can appear behind a cursor. Whatever is left unrated after the groups
  // (usages superseded before they were rated) is rated in id order, as before.
  const groups = await db('product_usages')
    .where('source_file_id', fileId)
    .whereNull('superseded_at')
    .distinct('partnership_id', 'product_id', 'period')
    .orderBy(['partnership_id', 'product_id', 'period']) as Array<{ partnership_id: string; product_id: string; period: string }>;
  const sources: PageSource[] = [
    ...groups.map((g): PageSource => {
      let after: { t: string; x: string } | undefined;
      return {
        read: (tx) => groupPage(tx, fileId, g, after),
        advance: (last) => (after = { t: last.started_at_text, x: last.external_id }),
      };
    }),
    (() => {
      let afterId = '0';
      return {
        read: (tx: Knex.Transaction) => unratedUsages(tx, fileId, afterId),
        advance: (last: PagedUsage) => (afterId = last.id),
        last: true,
      };
    })(),
  ];
  for (const source of sources) {
    for (;;) {
      const page = await db.transaction((tx) => ratePage(tx, fileId, source, partnerships));
      if (page === 'file not parsed') return;
      if (!page) break;
      source.advance(page.last);
      totals.usages += page.usages;
      totals.records += page.records;
      totals.transactions += page.transactions;
    }
  }
}

type PagedUsage = UsageRow & { started_at_text: string };

interface PageSource {
  read(tx: Knex.Transaction): Promise<PagedUsage[]>;
  advance(last: PagedUsage): void;
  /** The id-order sweep that ends the file: when it finds nothing, the file is rated (in that transaction). */
  last?: boolean;
}

/** One page in one transaction, with the file row locked: a retry or a second worker never rates a usage twice. */
async function ratePage(
  tx: Knex.Transaction,
  fileId: number,
  source: PageSource,
  partnerships: Map<number, PartnershipContext>,
): Promise<'file not parsed' | undefined | { usages: number; records: number; transactions: number; last: PagedUsage }> {
  const locked = await tx('usage_files').where('id', fileId).forUpdate().first<{ status: string }>('status');
  if (locked.status !== 'parsed') return 'file not parsed';
  const usages = await source.read(tx);
  if (usages.length === 0) {
    if (source.last) await tx('usage_files').where('id', fileId).update({ status: 'rated', rated_at: tx.fn.now(), updated_at: tx.fn.now() });
    return undefined;
  }
  const prepared = usages.map((u) => prepareRow(u, partnerships));
  const positional = prepared.filter((p) => p.positional);
  // Tiers and allowances price a usage by its place in the period: lock each period group (so two
  // files of one partnership rate in turn) and read every usage's position from the database.
  const groups = await lockGroups(tx, positional.map((p) => groupKey(p.usage.partnership_id, p.usage.product_id, p.usage.period)));
  const before = positional.length > 0 ? await positionsOf(tx, positional.map((p) => p.usage.id)) : new Map<string, Decimal>();
  const rated = prepared.map((p) => ({ usage: p.usage, records: rateRow(p, before.get(p.usage.id) ?? ZERO) }));
  const counts = await writeRecords(tx, rated);
  // A usage that starts before usages already rated moves them along the tiers: re-rate them.
  if (groups.length > 0) {
    const ids = positional.map((p) => p.usage.id);
    await rerateLaterUsages(tx, ids, partnerships);
    await markRated(tx, ids);
  }
  return { usages: usages.length, last: usages[usages.length - 1]!, ...counts };
}

/** The next page of a group's unrated usages of the file, in period order after `after`. */
function groupPage(
  tx: Knex.Transaction,
  fileId: number,
  g: { partnership_id: string; product_id: string; period: string },
  after: { t: string; x: string } | undefined,
): Promise<PagedUsage[]> {
  const q = tx('product_usages as u')
    .join('products as p', 'p.id', 'u.product_id')
    .where({ 'u.partnership_id': g.partnership_id, 'u.product_id': g.product_id, 'u.period': g.period, 'u.source_file_id': fileId })
    .whereNull('u.superseded_at')
    .whereNotExists(tx('billing_records as r').whereRaw('r.usage_id = u.id'));
  if (after) q.whereRaw(`(u.started_at, u.external_id COLLATE "C") > (?::timestamptz, ? COLLATE "C")`, [after.t, after.x]);
  return q
    .orderByRaw('u.started_at, u.external_id COLLATE "C"')
    .limit(PAGE)
    .select<PagedUsage[]>([...USAGE_COLUMNS, tx.raw('u.started_at::text AS started_at_text')]);
}

function unratedUsages(tx: Knex.Transaction, fileId: number, afterId: string): Promise<PagedUsage[]> {
  return tx('product_usages as u')
    .join('products as p', 'p.id', 'u.product_id')
    .where('u.source_file_id', fileId)
    .where('u.id', '>', afterId)
    .whereNotExists(tx('billing_records as r').whereRaw('r.usage_id = u.id'))
    .orderBy('u.id')
    .limit(PAGE)
    .select<PagedUsage[]>([...USAGE_COLUMNS, tx.raw('u.started_at::text AS started_at_text')]);
}

/**
 * Usages already rated that come after the ones just rated, in the same groups, are priced again at
 * their new place. Not yet invoiced: their records are replaced. Invoiced: the difference per
 * account is an adjustment on the next invoice; an issued invoice never changes.
 */
async function rerateLaterUsages(tx: Knex.Transaction, newIds: string[], partnerships: Map<number, PartnershipContext>): Promise<void> {
  const later = await laterRatedUsages(tx, newIds);
  if (later.length === 0) return;
  const before = await positionsOf(tx, later.map((u) => u.id));
  const targets = later.map((u) => {
    const prepared = prepareRow(u, partnerships);
    return {
      usageId: u.id,
      records: rateRow(prepared, before.get(u.id) ?? ZERO),
      ruleVersionId: prepared.version.id,
      reason: `Re-rated ${u.external_id}: an earlier usage arrived after it was invoiced`,
    };
  });
  const plan = planRerating(targets, await bookedRecords(tx, later.map((u) => u.id)));
  await applyPlan(tx, plan, new Map(later.map((u) => [u.id, u])));
}
