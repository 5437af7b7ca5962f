import type { Knex } from 'knex';
import { bindings } from '../../adapters/db/bindings';
import { loadInvoiceDocument } from '../../adapters/db/invoice-repository';
import { nextInvoiceNumber } from '../../adapters/db/invoice-numbers';
import { compareLines, describeLine, formatInvoiceNumber, invoiceTotal } from '../core/invoice';
import { pennies } from '../core/money';
import { addDays, isPeriodClosed, lastDayOfPeriod, localDateOf, previousPeriod } from '../core/period';
import { decimal, toDecimalString } from '../core/decimal';
import { renderInvoiceEmail } from '../core/invoice-email';
import type { Deps } from '../deps';

export interface PartnershipRunResult {
  partnership: string;
  outcome: 'invoiced' | 'already_invoiced' | 'nothing_to_bill' | 'period_open' | 'files_in_progress' | 'rules_not_settled';
  invoiceId?: number;
  invoiceNumber?: string;
  totalPennies?: string;
  deliveryId?: number;
  note?: string;
}

export interface BillingRunResult {
  billingRunId: number;
  period: string;
  invoicesCreated: number;
  partnerships: PartnershipRunResult[];
}

interface PartnershipRow {
  id: string;
  code: string;
  time_zone: string;
  currency: string;
  provider_partner_id: string;
  customer_partner_id: string;
  customer_code: string;
  provider_code: string;
  invoice_recipients: string[];
  customer_email: string | null;
  payment_terms_days: number;
}

/**
 * Closes a period: one invoice per partnership, with lines per account and product, built from
 * every transaction not yet invoiced whose usage falls in this period or before it (late items).
 * Each invoice is issued in one transaction that also takes its gapless number, marks its
 * transactions invoiced and writes its email to the outbox table; the unique (partnership, period)
 * key makes a second run find nothing to do.
 */
export async function runBillingPeriod(
  deps: Deps,
  input: { period?: string; requestedBy: string },
): Promise<BillingRunResult> {
  const { db, clock, logger } = deps;
  const now = clock.now();
  const period = input.period ?? previousPeriod(now.toZonedDateTimeISO('UTC').toPlainDate().toPlainYearMonth().toString());
  const [run] = await db('billing_runs').insert({ period, status: 'running', requested_by: input.requestedBy, started_at: db.fn.now() }).returning<{ id: string }[]>('id');
  const billingRunId = Number(run!.id);
  const results: PartnershipRunResult[] = [];
  try {
    const partnerships = await activePartnerships(db, period);
    for (const p of partnerships) {
      results.push(await invoicePartnership(deps, p, period, billingRunId));
    }
    for (const r of results) {
      if (r.deliveryId !== undefined) await deps.queues.enqueue('deliver-email', { deliveryId: r.deliveryId });
    }
    const invoicesCreated = results.filter((r) => r.outcome === 'invoiced').length;
    await db('billing_runs').where('id', billingRunId).update({
      status: 'completed',
      invoices_created: invoicesCreated,
      summary: JSON.stringify(results),
      finished_at: db.fn.now(),
    });
    logger.info({ billingRunId, period, invoicesCreated }, 'billing run completed');
    return { billingRunId, period, invoicesCreated, partnerships: results };
  } catch (err) {
    await db('billing_runs').where('id', billingRunId).update({
      status: 'failed',
      error: err instanceof Error ? err.message : String(err),
      summary: JSON.stringify(results),
      finished_at: db.fn.now(),
    });
    throw err;
  }

  async function invoicePartnership(d: Deps, p: PartnershipRow, per: string, runId: number): Promise<PartnershipRunResult> {
    const base = { partnership: p.code };
    if (!isPeriodClosed(per, p.time_zone, now)) return { ...base, outcome: 'period_open', note: `${per} has not ended in ${p.time_zone}` };
    const inFlight = await d.db('usage_files').where('partner_id', p.customer_partner_id).whereIn('status', ['received', 'parsing', 'parsed']).count<{ count: string }[]>('* as count');
    if (Number(inFlight[0]?.count ?? 0) > 0) {
      return { ...base, outcome: 'files_in_progress', note: `${inFlight[0]?.count} file(s) of ${p.customer_code} still being ingested or rated` };
    }
    const unsettled = await unsettledRuleKinds(d.db, p.id, per);
    if (unsettled.length > 0) {
      // Invoicing without them would bill the period wrongly (no fee, no true-up, provisional volume
      // prices); the partnership waits, visibly, until period-close settlement exists.
      return { ...base, outcome: 'rules_not_settled', note: `rules of kind ${unsettled.join(', ')} are settled at period close, which this version of the engine does not do yet` };
    }
    return d.db.transaction(async (tx): Promise<PartnershipRunResult> => {
      // One billing run at a time per partnership; the unique index is the guarantee, the lock avoids wasted work.
      await tx('partnerships').where('id', p.id).forUpdate().first('id');
      const existing = await tx('invoices').where({ partnership_id: p.id, period: per, kind: 'invoice' }).first<{ id: string; number: string } | undefined>('id', 'number');
      if (existing) return { ...base, outcome: 'already_invoiced' as const, invoiceId: Number(existing.id), invoiceNumber: existing.number };

      const issueDate = localDateOf(now, p.time_zone);
      const year = Number(issueDate.slice(0, 4));
      const seq = await nextInvoiceNumber(tx, p.provider_partner_id, year);
      const number = formatInvoiceNumber(year, seq);
      const [inv] = await tx('invoices')
        .insert({
          partnership_id: p.id,
          issuer_partner_id: p.provider_partner_id,
          customer_partner_id: p.customer_partner_id,
          period: per,
          status: 'issued',
          number,
          number_year: year,
          number_seq: seq,
          currency: p.currency,
          issue_date: issueDate,
          due_date: addDays(issueDate, p.payment_terms_days),
          total_pennies: 0,
          billing_run_id: runId,
        })
        .returning<{ id: string }[]>('id');
      const invoiceId = Number(inv!.id);

      const claimed = await claimTransactions(tx, p.id, per, invoiceId);
      if (claimed === 0) {
        // Rolling back returns the number to the sequence, so numbers stay gapless.
        throw new NothingToBill();
      }
      const lines = await buildLines(tx, invoiceId, per);
      await tx.raw(
        `INSERT INTO invoice_lines (invoice_id, position, account_id, product_id, usage_period, kind, description, quantity, unit_price, amount_pennies)
         SELECT ?, * FROM unnest(?::int[], ?::bigint[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::numeric[], ?::numeric[], ?::bigint[])`,
        bindings(
          invoiceId,
          lines.map((_, i) => i + 1),
          lines.map((l) => l.accountId),
          lines.map((l) => l.productId),
          lines.map((l) => l.usagePeriod),
          lines.map((l) => l.kind),
          lines.map((l) => l.description),
          lines.map((l) => l.quantity),
          lines.map((l) => l.unitPrice),
          lines.map((l) => l.amount.toString()),
        ),
      );
      const total = invoiceTotal(lines);
      await tx('invoices').where('id', invoiceId).update({ total_pennies: total.toString() });

      const recipients = p.invoice_recipients.length > 0 ? p.invoice_recipients : p.customer_email ? [p.customer_email] : [];
      let deliveryId: number | undefined;
      let note: string | undefined;
      if (recipients.length > 0) {
        const doc = await loadInvoiceDocument(tx, invoiceId);
        const [delivery] = await tx('email_deliveries')
          .insert({
            invoice_id: invoiceId,
            recipients,
            subject: renderInvoiceEmail(doc).subject,
            message_id: messageIdFor(number, p.provider_code, d.config.mailFrom),
            status: 'pending',
          })
          .returning<{ id: string }[]>('id');
        deliveryId = Number(delivery!.id);
      } else note = 'no invoice recipients and no customer email: not sent';
      await tx('audit_log').insert({
        actor: input.requestedBy,
        action: 'invoice.issued',
        entity: 'invoice',
        entity_id: String(invoiceId),
        after: JSON.stringify({ number, period: per, partnership: p.code, total: total.toString(), lines: lines.length }),
      });
      return { ...base, outcome: 'invoiced' as const, invoiceId, invoiceNumber: number, totalPennies: total.toString(), ...(deliveryId !== undefined ? { deliveryId } : {}), ...(note ? { note } : {}) };
    }).catch((err: unknown): PartnershipRunResult => {
      if (err instanceof NothingToBill) return { ...base, outcome: 'nothing_to_bill' as const };
      throw err;
    });
  }
}

class NothingToBill extends Error {}

const PERIOD_CLOSE_KINDS = ['volume_tiers', 'minimum_commitment', 'cap', 'fixed_fee', 'credit'];

/** Kinds in the partnership's rule versions in force during the period that need settling at close. */
async function unsettledRuleKinds(db: Knex, partnershipId: string, period: string): Promise<string[]> {
  const last = lastDayOfPeriod(period);
  const { rows } = await db.raw<{ rows: { kind: string }[] }>(
    `SELECT DISTINCT r->>'kind' AS kind FROM rule_versions v, jsonb_array_elements(v.rules) r
     WHERE v.partnership_id = ? AND v.superseded_at IS NULL AND v.effective_from <= ? AND r->>'kind' = ANY(?::text[]) ORDER BY 1`,
    [partnershipId, last, PERIOD_CLOSE_KINDS],
  );
  return rows.map((r) => r.kind);
}

/** Partnerships whose contract overlaps the period, in code order so numbering is deterministic. */
function activePartnerships(db: Knex, period: string): Promise<PartnershipRow[]> {
  const first = `${period}-01`;
  const last = lastDayOfPeriod(period);
  return db('partnerships as ps')
    .join('partners as c', 'c.id', 'ps.customer_partner_id')
    .join('partners as pr', 'pr.id', 'ps.provider_partner_id')
    .where('ps.contract_start', '<=', last)
    .andWhere((q) => void q.whereNull('ps.contract_end').orWhere('ps.contract_end', '>=', first))
    .orderBy('ps.code')
    .select<PartnershipRow[]>(
      'ps.id', 'ps.code', 'ps.time_zone', 'ps.currency', 'ps.provider_partner_id', 'ps.customer_partner_id',
      'c.code as customer_code', 'pr.code as provider_code', 'ps.invoice_recipients', 'c.email as customer_email',
      'ps.payment_terms_days',
    );
}

/** Marks the partnership's uninvoiced transactions of this period and earlier as this invoice's. */
async function claimTransactions(tx: Knex.Transaction, partnershipId: string, period: string, invoiceId: number): Promise<number> {
  const result = await tx.raw<{ rowCount: number }>(
    `UPDATE transactions t SET invoice_id = ?
     FROM billing_records r
     WHERE t.billing_record_id = r.id AND r.partnership_id = ? AND r.period <= ? AND t.invoice_id IS NULL`,
    [invoiceId, partnershipId, period],
  );
  return result.rowCount;
}

interface BuiltLine {
  accountId: string;
  accountCode: string;
  accountName: string;
  productId: string;
  productCode: string;
  usagePeriod: string;
  kind: string;
  description: string;
  quantity: string;
  unitPrice: string | null;
  amount: ReturnType<typeof pennies>;
}

/** Lines per account, product, usage period, kind and unit price, summed from the claimed transactions. */
async function buildLines(tx: Knex.Transaction, invoiceId: number, period: string): Promise<BuiltLine[]> {
  const { rows } = await tx.raw<{
    rows: { account_id: string; account_code: string; account_name: string; product_id: string; product_code: string; product_name: string; usage_period: string; kind: string; unit_price: string | null; quantity: string; amount: string }[];
  }>(
    `SELECT r.account_id, a.code AS account_code, a.name AS account_name, r.product_id, p.code AS product_code,
            p.name AS product_name, r.period AS usage_period, t.kind, t.unit_price,
            sum(r.quantity) AS quantity, sum(t.amount_pennies) AS amount
     FROM transactions t
     JOIN billing_records r ON r.id = t.billing_record_id
     JOIN accounts a ON a.id = r.account_id
     JOIN products p ON p.id = r.product_id
     WHERE t.invoice_id = ?
     GROUP BY r.account_id, a.code, a.name, r.product_id, p.code, p.name, r.period, t.kind, t.unit_price`,
    [invoiceId],
  );
  return rows
    .map((r): BuiltLine => ({
      accountId: r.account_id,
      accountCode: r.account_code,
      accountName: r.account_name,
      productId: r.product_id,
      productCode: r.product_code,
      usagePeriod: r.usage_period,
      kind: r.kind,
      description: describeLine(r.product_name, r.kind, r.usage_period, period),
      quantity: toDecimalString(decimal(r.quantity)),
      unitPrice: r.unit_price === null ? null : toDecimalString(decimal(r.unit_price)),
      amount: pennies(r.amount),
    }))
    .sort(compareLines);
}

/** Fixed per invoice before any attempt, so every send of this invoice carries the same Message-ID. */
export function messageIdFor(invoiceNumber: string, issuerCode: string, mailFrom: string): string {
  const domain = /@([A-Za-z0-9.-]+)>?\s*$/.exec(mailFrom)?.[1] ?? 'billing.invalid';
  return `<${invoiceNumber}.${issuerCode}@${domain}>`.toLowerCase();
}
