import { Temporal } from 'temporal-polyfill';
import { loadPartnership } from '../../adapters/db/partnership-repository';
import { parseDecimal, toDecimalString } from '../core/decimal';
import { type Pennies, formatMoney } from '../core/money';
import { periodOf } from '../core/period';
import { type RuleVersion, rateUsage, resolveAccounts, ruleVersionFor } from '../core/rating/rate-usage';
import { pricingRuleFor } from '../core/rating/registry';
import type { Deps } from '../deps';
import { readImportFile } from './import-partnerships';
import { PermanentError } from './errors';

export interface Quote {
  partnership: string;
  product: string;
  quantity: string;
  period: string;
  /** Units of the product the partnership already used earlier in the period (tiers, allowances). */
  before: string;
  ruleVersion: { effectiveFrom: string; proposed: boolean };
  provisional: boolean;
  currency: string;
  accounts: Array<{ account: string; percent: string; transactions: Array<{ kind: string; description: string; amount: string; text: string }>; total: string; totalText: string }>;
  total: string;
  totalText: string;
}

/**
 * What a usage would cost (`billing quote`): rated exactly as a usage of this partnership starting
 * at `at` would be, at its place among the period's usage so far, under the stored rules or under
 * proposed ones from a partnerships file. Nothing is written.
 */
export async function quoteUsage(
  deps: Deps,
  input: { partnership: string; product: string; quantity: string; user?: string; account?: string; at?: string; rulesFile?: string },
): Promise<Quote> {
  const { db } = deps;
  const stored = await db.transaction((tx) => loadPartnership(tx, { code: input.partnership }), { readOnly: true });
  if (!stored) throw new PermanentError(`no partnership ${input.partnership}`);
  const proposed = input.rulesFile ? await proposedRuleVersions(input.rulesFile, input.partnership) : undefined;
  const p = proposed ? { ...stored, ruleVersions: proposed } : stored;

  const product = await db('products').where('code', input.product).first<{ id: string; name: string; unit: string; quantity_scale: number } | undefined>('id', 'name', 'unit', 'quantity_scale');
  if (!product) throw new PermanentError(`no product ${input.product}`);
  const quantity = parseDecimal(input.quantity);
  if (!quantity.ok) throw new PermanentError(`quantity "${input.quantity}" ${quantity.reason}`);
  if (quantity.value.scale > product.quantity_scale) throw new PermanentError(`quantity "${input.quantity}" has more than ${product.quantity_scale} decimal places, the precision of ${input.product}`);

  let at: Temporal.Instant;
  try {
    at = input.at ? Temporal.Instant.from(input.at) : deps.clock.now();
  } catch {
    throw new PermanentError(`--at "${input.at}" is not a timestamp with an offset, e.g. 2026-10-14T09:00:00Z`);
  }
  const period = periodOf(at, p.timeZone);
  const version = ruleVersionFor(p.ruleVersions, at, p.timeZone);
  if (!version) throw new PermanentError(`${p.code} has no rules in force at ${at.toString()}`);
  let accountId: number | null = null;
  if (input.account) {
    accountId = p.accountsByCode.get(input.account) ?? null;
    if (accountId === null) throw new PermanentError(`${p.code} has no account ${input.account}`);
  }
  const accounts = resolveAccounts({ accountId, userRef: input.user ?? '', productId: Number(product.id) }, p.splits, p.defaultAccountId);
  if (!accounts.ok) throw new PermanentError(accounts.reason);

  // Its place in the period: everything of the product that started before it, from every file.
  const { rows } = await db.raw<{ rows: { before: string }[] }>(
    `SELECT coalesce(sum(quantity), 0)::text AS before FROM product_usages
     WHERE partnership_id = ? AND product_id = ? AND period = ? AND superseded_at IS NULL AND started_at <= ?`,
    [p.id, product.id, period, new Date(at.epochMilliseconds)],
  );
  const before = parseDecimal(rows[0]!.before);
  if (!before.ok) throw new Error(`position ${rows[0]!.before} is not a decimal`);

  const rating = rateUsage(
    { productCode: input.product, productName: product.name, unit: product.unit, quantity: quantity.value },
    version,
    accounts.shares,
    { currency: p.currency, roundingMode: p.roundingMode },
    before.value,
  );
  if (!rating.ok) throw new PermanentError(rating.reason);

  const codes = new Map([...p.accountsByCode].map(([code, id]) => [id, code]));
  const money = (amount: bigint) => formatMoney(amount as Pennies, p.currency);
  const total = rating.records.flatMap((r) => r.transactions).reduce((sum, t) => sum + t.amount, 0n);
  return {
    partnership: p.code,
    product: input.product,
    quantity: toDecimalString(quantity.value),
    period,
    before: toDecimalString(before.value),
    ruleVersion: { effectiveFrom: version.effectiveFrom, proposed: proposed !== undefined },
    provisional: pricingRuleFor(version.rules, input.product)?.kind === 'volume_tiers',
    currency: p.currency,
    accounts: rating.records.map((r) => {
      const sum = r.transactions.reduce((s, t) => s + t.amount, 0n);
      return {
        account: codes.get(r.accountId) ?? String(r.accountId),
        percent: toDecimalString(r.splitPercent),
        transactions: r.transactions.map((t) => ({ kind: t.kind, description: t.description, amount: t.amount.toString(), text: money(t.amount) })),
        total: sum.toString(),
        totalText: money(sum),
      };
    }),
    total: total.toString(),
    totalText: money(total),
  };
}

/** A partnership's rule versions as a partnerships file proposes them (validated like an import). */
export async function proposedRuleVersions(file: string, partnership: string): Promise<RuleVersion[]> {
  const doc = await readImportFile(file);
  const p = doc.partnerships.find((x) => x.code === partnership);
  if (!p) throw new PermanentError(`${file} has no partnership ${partnership}`);
  // Negative ids: these versions exist only for this calculation and are never written.
  return p.rules.map((r, i) => ({ id: -(i + 1), effectiveFrom: r.effective_from, rules: r.rules }));
}
