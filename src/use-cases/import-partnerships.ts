import { readFile } from 'node:fs/promises';
import type { Knex } from 'knex';
import YAML from 'yaml';
import { isReservedPartnerCode } from '../../adapters/inbox/inbox-store';
import { type ImportDocument, importDocumentSchema } from '../core/partnership-import-schema';
import type { Deps } from '../deps';
import { PermanentError } from './errors';

export interface ImportSummary {
  partners: number;
  products: number;
  partnerships: number;
  changed: number;
}

/** Reads and validates a partnerships file; every problem is listed with its path in the document. */
export async function readImportFile(path: string): Promise<ImportDocument> {
  const text = await readFile(path, 'utf8');
  let raw: unknown;
  try {
    raw = path.endsWith('.json') ? JSON.parse(text) : YAML.parse(text, { schema: 'failsafe' });
  } catch (err) {
    throw new PermanentError(`${path}: not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
  const parsed = importDocumentSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `  - ${i.path.join('.')}: ${i.message}`).join('\n');
    throw new PermanentError(`${path}: invalid partnerships file:\n${problems}`);
  }
  return parsed.data;
}

/**
 * Loads partners, products, partnerships, accounts, splits and rule versions. Everything is keyed
 * by code, so importing the same file twice changes nothing; each real change is written to the
 * audit log with its before and after.
 */
export async function importPartnerships(deps: Deps, doc: ImportDocument, actor: string): Promise<ImportSummary> {
  for (const p of doc.partners) {
    if (isReservedPartnerCode(p.code)) throw new PermanentError(`partner code "${p.code}" is reserved for the inbox's own folders`);
  }
  let changed = 0;
  await deps.db.transaction(async (tx) => {
    const upsert = async (table: string, key: Record<string, unknown>, values: Record<string, unknown>): Promise<string> => {
      const before = await tx(table).where(key).first<Record<string, unknown> | undefined>();
      if (!before) {
        const [row] = await tx(table).insert({ ...key, ...values }).returning<{ id: string }[]>('id');
        await audit(tx, actor, `${table}.created`, table, String(row!.id), null, { ...key, ...values });
        changed += 1;
        return String(row!.id);
      }
      const differs = Object.entries(values).some(([k, v]) => JSON.stringify(normalise(before[k])) !== JSON.stringify(normalise(v)));
      if (differs) {
        await tx(table).where('id', before.id as string).update({ ...values, ...(table === 'account_splits' ? {} : { updated_at: tx.fn.now() }) });
        await audit(tx, actor, `${table}.updated`, table, String(before.id), pick(before, Object.keys(values)), values);
        changed += 1;
      }
      return String(before.id);
    };

    const partnerIds = new Map<string, string>();
    for (const p of doc.partners) {
      partnerIds.set(p.code, await upsert('partners', { code: p.code }, {
        kind: p.kind,
        name: p.name,
        email: p.email ?? null,
        address: p.address ?? null,
        feed_profile: p.feed_profile ? JSON.stringify(p.feed_profile) : null,
      }));
    }
    const productIds = new Map<string, string>();
    for (const p of doc.products) {
      productIds.set(p.code, await upsert('products', { code: p.code }, { name: p.name, unit: p.unit, quantity_scale: p.quantity_scale }));
    }
    const idOf = async (table: 'partners' | 'products', known: Map<string, string>, c: string, what: string): Promise<string> => {
      const id = known.get(c) ?? (await tx(table).where('code', c).first<{ id: string } | undefined>('id'))?.id;
      if (id === undefined) throw new PermanentError(`${what} "${c}" is neither in this file nor already loaded`);
      known.set(c, id);
      return id;
    };

    for (const ps of doc.partnerships) {
      const provider = await idOf('partners', partnerIds, ps.provider, `provider of ${ps.code}`);
      const customer = await idOf('partners', partnerIds, ps.customer, `customer of ${ps.code}`);
      const partnershipId = await upsert('partnerships', { code: ps.code }, {
        provider_partner_id: provider,
        customer_partner_id: customer,
        currency: ps.currency,
        time_zone: ps.time_zone,
        contract_start: ps.contract_start,
        contract_end: ps.contract_end ?? null,
        payment_terms_days: ps.payment_terms_days,
        rounding_mode: ps.rounding_mode,
        allow_credits: ps.allow_credits,
        invoice_recipients: ps.invoice_recipients,
      });
      const accountIds = new Map<string, string>();
      for (const a of ps.accounts) {
        accountIds.set(a.code, await upsert('accounts', { partnership_id: partnershipId, code: a.code }, { name: a.name, kind: a.kind }));
      }
      await upsert('partnerships', { code: ps.code }, { default_account_id: ps.default_account ? accountIds.get(ps.default_account) : null });

      // Splits are replaced as a whole set: the file says what the split is now.
      const wanted = [] as Array<{ user_ref: string; product_id: string | null; account_id: string; percent: string; position: number }>;
      for (const s of ps.splits) {
        const productId = s.product ? await idOf('products', productIds, s.product, `product of a split in ${ps.code}`) : null;
        s.shares.forEach((sh, i) => wanted.push({ user_ref: s.user, product_id: productId, account_id: accountIds.get(sh.account)!, percent: sh.percent, position: i + 1 }));
      }
      const current = await tx('account_splits').where('partnership_id', partnershipId).orderBy(['user_ref', 'product_id', 'position'])
        .select<Array<{ user_ref: string; product_id: string | null; account_id: string; percent: string; position: number }>>('user_ref', 'product_id', 'account_id', 'percent', 'position');
      const key = (rows: typeof wanted) => JSON.stringify(rows.map((r) => [r.user_ref, r.product_id, String(r.account_id), Number(r.position), normalise(r.percent)]).sort());
      if (key(current) !== key(wanted)) {
        await tx('account_splits').where('partnership_id', partnershipId).delete();
        if (wanted.length > 0) await tx('account_splits').insert(wanted.map((w) => ({ ...w, partnership_id: partnershipId })));
        await audit(tx, actor, 'account_splits.replaced', 'partnership', partnershipId, current, wanted);
        changed += 1;
      }

      for (const r of ps.rules) {
        for (const rule of r.rules) {
          if ('product' in rule) await idOf('products', productIds, rule.product, `product in rules of ${ps.code}`);
        }
        await putRuleVersion(tx, actor, partnershipId, r.effective_from, r.rules).then((did) => void (changed += did ? 1 : 0));
      }
    }
  });
  deps.logger.info({ changed }, 'partnerships imported');
  return { partners: doc.partners.length, products: doc.products.length, partnerships: doc.partnerships.length, changed };
}

/**
 * Rule versions are immutable: transactions name the version that produced them. New rules for an
 * effective date that already has a version retire it (superseded_at) and add a new version; the
 * same rules again change nothing. Re-rating the affected periods is then an explicit step.
 */
async function putRuleVersion(tx: Knex.Transaction, actor: string, partnershipId: string, effectiveFrom: string, rules: unknown): Promise<boolean> {
  const live = await tx('rule_versions')
    .where({ partnership_id: partnershipId, effective_from: effectiveFrom })
    .whereNull('superseded_at')
    .forUpdate()
    .first<{ id: string; rules: unknown } | undefined>('id', 'rules');
  if (live && JSON.stringify(normalise(live.rules)) === JSON.stringify(normalise(rules))) return false;
  if (live) await tx('rule_versions').where('id', live.id).update({ superseded_at: tx.fn.now() });
  const [row] = await tx('rule_versions').insert({ partnership_id: partnershipId, effective_from: effectiveFrom, rules: JSON.stringify(rules) }).returning<{ id: string }[]>('id');
  await audit(tx, actor, live ? 'rule_versions.replaced' : 'rule_versions.created', 'rule_versions', String(row!.id), live ? { id: live.id, rules: live.rules } : null, { effective_from: effectiveFrom, rules });
  return true;
}

async function audit(tx: Knex.Transaction, actor: string, action: string, entity: string, entityId: string, before: unknown, after: unknown): Promise<void> {
  await tx('audit_log').insert({
    actor,
    action,
    entity,
    entity_id: entityId,
    before: before === null ? null : JSON.stringify(before),
    after: JSON.stringify(after),
  });
}

/** Compares database values with file values: numeric text without trailing zeros, JSON by content with keys sorted (jsonb reorders them). */
function normalise(v: unknown): unknown {
  if (typeof v === 'string' && /^-?\d+\.\d+$/.test(v)) return v.replace(/\.?0+$/, '');
  if (typeof v === 'string' && (v.startsWith('[') || v.startsWith('{'))) {
    try {
      return sortKeys(JSON.parse(v));
    } catch {
      return v;
    }
  }
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  return sortKeys(v);
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === 'object' && !(v instanceof Date)) {
    return Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => [k, sortKeys(x)]));
  }
  return v;
}

function pick(row: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, row[k]]));
}
