import { decimal } from '../../src/core/decimal';
import type { RoundingMode } from '../../src/core/rounding';
import type { RuleVersion, SplitRule } from '../../src/core/rating/rate-usage';
import { ruleSetSchema } from '../../src/core/rating/registry';
import type { PartnershipForValidation, ProductForValidation } from '../../src/core/validate-usage';
import type { Knex } from 'knex';
import type { Db } from './database';

export interface PartnershipContext extends PartnershipForValidation {
  currency: string;
  roundingMode: RoundingMode;
  providerPartnerId: number;
  customerPartnerId: number;
}

export interface ProductInfo extends ProductForValidation {
  name: string;
  unit: string;
}

interface PartnershipRow {
  id: string;
  code: string;
  time_zone: string;
  contract_start: string;
  contract_end: string | null;
  allow_credits: boolean;
  default_account_id: string | null;
  currency: string;
  rounding_mode: RoundingMode;
  provider_partner_id: string;
  customer_partner_id: string;
}

/** Everything validation and rating need about a customer's partnerships, in four queries. */
export function loadPartnershipsOfCustomer(db: Db | Knex.Transaction, customerPartnerId: number): Promise<PartnershipContext[]> {
  return loadPartnerships(db, { customer_partner_id: customerPartnerId });
}

/** One partnership by id or code, with its accounts, splits and live rule versions. */
export async function loadPartnership(db: Db | Knex.Transaction, key: { id: number } | { code: string }): Promise<PartnershipContext | undefined> {
  const [p] = await loadPartnerships(db, key);
  return p;
}

async function loadPartnerships(db: Db | Knex.Transaction, where: Record<string, string | number>): Promise<PartnershipContext[]> {
  const rows = await db('partnerships').where(where).orderBy('code').select<PartnershipRow[]>('*');
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id);
  // One after another: inside a transaction they share one connection, and pg deprecates overlapping queries on it.
  const accounts = await db('accounts').whereIn('partnership_id', ids).select<{ id: string; partnership_id: string; code: string }[]>('id', 'partnership_id', 'code');
  const splits = await db('account_splits')
      .whereIn('partnership_id', ids)
      .orderBy('position')
      .select<{ partnership_id: string; user_ref: string; product_id: string | null; account_id: string; percent: string; position: number }[]>(
        'partnership_id', 'user_ref', 'product_id', 'account_id', 'percent', 'position',
      );
  const versions = await db('rule_versions')
      .whereIn('partnership_id', ids)
      .whereNull('superseded_at')
      .orderBy('effective_from')
      .select<{ id: string; partnership_id: string; effective_from: string; rules: unknown }[]>('id', 'partnership_id', 'effective_from', 'rules');
  return rows.map((p): PartnershipContext => ({
    id: Number(p.id),
    code: p.code,
    timeZone: p.time_zone,
    contractStart: p.contract_start,
    contractEnd: p.contract_end,
    allowCredits: p.allow_credits,
    defaultAccountId: p.default_account_id === null ? null : Number(p.default_account_id),
    currency: p.currency.trim(),
    roundingMode: p.rounding_mode,
    providerPartnerId: Number(p.provider_partner_id),
    customerPartnerId: Number(p.customer_partner_id),
    accountsByCode: new Map(accounts.filter((a) => a.partnership_id === p.id).map((a) => [a.code, Number(a.id)])),
    splits: splits
      .filter((s) => s.partnership_id === p.id)
      .map((s): SplitRule => ({
        userRef: s.user_ref,
        productId: s.product_id === null ? null : Number(s.product_id),
        accountId: Number(s.account_id),
        percent: decimal(s.percent),
        position: s.position,
      })),
    ruleVersions: versions
      .filter((v) => v.partnership_id === p.id)
      .map((v): RuleVersion => ({ id: Number(v.id), effectiveFrom: v.effective_from, rules: ruleSetSchema.parse(v.rules) })),
  }));
}

export async function loadProducts(db: Db): Promise<Map<string, ProductInfo>> {
  const rows = await db('products').select<{ id: string; code: string; name: string; unit: string; quantity_scale: number }[]>(
    'id', 'code', 'name', 'unit', 'quantity_scale',
  );
  return new Map(rows.map((r) => [r.code, { id: Number(r.id), code: r.code, name: r.name, unit: r.unit, quantityScale: r.quantity_scale }]));
}
