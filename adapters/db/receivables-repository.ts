import type { Knex } from 'knex';
import type { CreditableLine, CreditBalance, InvoiceSettlement, OpenInvoice } from '../../src/core/receivables';
import { type Pennies, pennies } from '../../src/core/money';
import { bindings } from './bindings';
import type { Db } from './database';

export type Conn = Db | Knex.Transaction;

/** An invoice as receivables sees it, with what it needs to refuse or settle a change. */
export interface ReceivableInvoice {
  id: number;
  kind: 'invoice' | 'credit_note';
  status: 'issued' | 'partially_paid' | 'paid' | 'void';
  number: string;
  period: string;
  currency: string;
  total: Pennies;
  issueDate: string;
  dueDate: string;
  voidedAt: string | null;
  reason: string | null;
  partnershipId: string;
  partnershipCode: string;
  timeZone: string;
  issuerPartnerId: string;
  issuerCode: string;
  customerPartnerId: string;
  customerCode: string;
  customerName: string;
  recipients: string[];
}

interface InvoiceRow {
  id: string; kind: 'invoice' | 'credit_note'; status: ReceivableInvoice['status']; number: string; period: string; currency: string;
  total_pennies: string; issue_date: string; due_date: string; voided_at: Date | null; reason: string | null; partnership_id: string;
  partnership_code: string; time_zone: string; issuer_partner_id: string; issuer_code: string; customer_partner_id: string;
  customer_code: string; customer_name: string; customer_email: string | null; invoice_recipients: string[];
}

const INVOICE_COLUMNS = `
  i.id, i.kind, i.status, i.number, i.period, i.currency, i.total_pennies, i.issue_date, i.due_date, i.voided_at, i.reason,
  i.partnership_id, ps.code AS partnership_code, ps.time_zone, i.issuer_partner_id, pr.code AS issuer_code,
  i.customer_partner_id, c.code AS customer_code, c.name AS customer_name, c.email AS customer_email, ps.invoice_recipients`;
const INVOICE_FROM = `
  FROM invoices i
  JOIN partnerships ps ON ps.id = i.partnership_id
  JOIN partners pr ON pr.id = i.issuer_partner_id
  JOIN partners c ON c.id = i.customer_partner_id`;

function toInvoice(r: InvoiceRow): ReceivableInvoice {
  return {
    id: Number(r.id),
    kind: r.kind,
    status: r.status,
    number: r.number,
    period: r.period,
    currency: r.currency.trim(),
    total: pennies(r.total_pennies),
    issueDate: r.issue_date,
    dueDate: r.due_date,
    voidedAt: r.voided_at ? r.voided_at.toISOString() : null,
    reason: r.reason,
    partnershipId: r.partnership_id,
    partnershipCode: r.partnership_code,
    timeZone: r.time_zone,
    issuerPartnerId: r.issuer_partner_id,
    issuerCode: r.issuer_code,
    customerPartnerId: r.customer_partner_id,
    customerCode: r.customer_code,
    customerName: r.customer_name,
    // The same rule as the billing run: the partnership's invoice recipients, else the customer's address.
    recipients: r.invoice_recipients.length > 0 ? r.invoice_recipients : r.customer_email ? [r.customer_email] : [],
  };
}

/** Reads an invoice; with `lock`, takes its row lock for the rest of the transaction. */
export async function getReceivableInvoice(db: Conn, invoiceId: number, opts: { lock?: boolean } = {}): Promise<ReceivableInvoice | undefined> {
  // FOR UPDATE OF i: only the invoice row is locked, not its partnership and partners.
  const { rows } = await db.raw<{ rows: InvoiceRow[] }>(`SELECT ${INVOICE_COLUMNS} ${INVOICE_FROM} WHERE i.id = ?${opts.lock ? ' FOR UPDATE OF i' : ''}`, [invoiceId]);
  return rows[0] ? toInvoice(rows[0]) : undefined;
}

/** Invoices (or credit notes) with this number, one per issuer that used it; narrowed by issuer code if given. */
export async function findInvoicesByNumber(db: Conn, number: string, issuerCode?: string): Promise<ReceivableInvoice[]> {
  const { rows } = await db.raw<{ rows: InvoiceRow[] }>(
    `SELECT ${INVOICE_COLUMNS} ${INVOICE_FROM} WHERE i.number = ? AND (?::text IS NULL OR pr.code = ?) ORDER BY pr.code`,
    [number, issuerCode ?? null, issuerCode ?? null],
  );
  return rows.map(toInvoice);
}

/**
 * Takes the lock that serialises changes to a customer's credit balance. A row lock on the partner
 * (FOR NO KEY UPDATE, so rows referencing the partner can still be inserted meanwhile).
 */
export async function lockCustomerCredit(tx: Knex.Transaction, customerPartnerId: string): Promise<void> {
  await tx.raw('SELECT id FROM partners WHERE id = ? FOR NO KEY UPDATE', [customerPartnerId]);
}

export interface SettlementState extends InvoiceSettlement {
  paymentCount: number;
  creditNoteNumbers: string[];
  ledgerEntries: number;
  /** The latest date among the invoice's payments, credit notes and ledger entries, or null. */
  latestDate: string | null;
}

/** What has settled an invoice so far (everything recorded, whatever its date). */
export async function settlementOf(db: Conn, invoice: { id: number; total: Pennies }): Promise<SettlementState> {
  const { rows } = await db.raw<{ rows: Array<{ paid: string; payments: number; credited: string; credit_notes: string[]; ledger: string; entries: number; latest: string | null }> }>(
    `SELECT
       (SELECT coalesce(sum(amount_pennies), 0)::text FROM payments WHERE invoice_id = ?) AS paid,
       (SELECT count(*)::int FROM payments WHERE invoice_id = ?) AS payments,
       (SELECT coalesce(-sum(total_pennies), 0)::text FROM invoices WHERE credits_invoice_id = ?) AS credited,
       (SELECT coalesce(array_agg(number ORDER BY number_seq), '{}') FROM invoices WHERE credits_invoice_id = ?) AS credit_notes,
       (SELECT coalesce(sum(amount_pennies), 0)::text FROM customer_credit_entries WHERE invoice_id = ?) AS ledger,
       (SELECT count(*)::int FROM customer_credit_entries WHERE invoice_id = ?) AS entries,
       (SELECT max(d)::text FROM (
          SELECT received_on AS d FROM payments WHERE invoice_id = ?
          UNION ALL SELECT issue_date FROM invoices WHERE credits_invoice_id = ?
          UNION ALL SELECT effective_on FROM customer_credit_entries WHERE invoice_id = ?) dates) AS latest`,
    [invoice.id, invoice.id, invoice.id, invoice.id, invoice.id, invoice.id, invoice.id, invoice.id, invoice.id],
  );
  const r = rows[0]!;
  return {
    total: invoice.total,
    paid: pennies(r.paid),
    credited: pennies(r.credited),
    ledger: pennies(r.ledger),
    paymentCount: r.payments,
    creditNoteNumbers: r.credit_notes,
    ledgerEntries: r.entries,
    latestDate: r.latest,
  };
}

export interface PaymentRecord {
  id: number;
  invoiceId: number;
  amount: Pennies;
  receivedOn: string;
  reference: string;
  recordedBy: string | null;
  createdAt: string;
}

interface PaymentRow { id: string; invoice_id: string; amount_pennies: string; received_on: string; reference: string; recorded_by: string | null; created_at: Date }

const toPayment = (r: PaymentRow): PaymentRecord => ({
  id: Number(r.id),
  invoiceId: Number(r.invoice_id),
  amount: pennies(r.amount_pennies),
  receivedOn: r.received_on,
  reference: r.reference,
  recordedBy: r.recorded_by,
  createdAt: r.created_at.toISOString(),
});

export async function findPayment(db: Conn, invoiceId: number, reference: string): Promise<PaymentRecord | undefined> {
  const row = await db('payments').where({ invoice_id: invoiceId, reference }).first<PaymentRow | undefined>('*');
  return row ? toPayment(row) : undefined;
}

export async function insertPayment(tx: Knex.Transaction, p: { invoiceId: number; amount: Pennies; receivedOn: string; reference: string; recordedBy: string }): Promise<PaymentRecord> {
  const [row] = await tx('payments')
    .insert({ invoice_id: p.invoiceId, amount_pennies: p.amount.toString(), received_on: p.receivedOn, reference: p.reference, recorded_by: p.recordedBy })
    .returning<PaymentRow[]>('*');
  return toPayment(row!);
}

/** The part of a payment that went to the customer's credit (0 if none). */
export async function paymentExcess(db: Conn, paymentId: number): Promise<Pennies> {
  const row = await db('customer_credit_entries').where('payment_id', paymentId).first<{ amount_pennies: string } | undefined>('amount_pennies');
  return pennies(row?.amount_pennies ?? 0);
}

export async function listPayments(db: Conn, invoiceId: number): Promise<PaymentRecord[]> {
  const rows = await db('payments').where('invoice_id', invoiceId).orderBy([{ column: 'received_on' }, { column: 'id' }]).select<PaymentRow[]>('*');
  return rows.map(toPayment);
}

export type CreditEntryKind = 'overpayment' | 'credit_note_excess' | 'applied';

export async function insertCreditEntry(
  tx: Knex.Transaction,
  e: { customerPartnerId: string; currency: string; kind: CreditEntryKind; amount: Pennies; effectiveOn: string; invoiceId: number; paymentId?: number; creditNoteId?: number; createdBy: string },
): Promise<number> {
  const [row] = await tx('customer_credit_entries')
    .insert({
      customer_partner_id: e.customerPartnerId,
      currency: e.currency,
      kind: e.kind,
      amount_pennies: e.amount.toString(),
      effective_on: e.effectiveOn,
      invoice_id: e.invoiceId,
      payment_id: e.paymentId ?? null,
      credit_note_id: e.creditNoteId ?? null,
      created_by: e.createdBy,
    })
    .returning<{ id: string }[]>('id');
  return Number(row!.id);
}

/** A customer's credit balance in one currency, from the ledger. */
export async function creditBalance(db: Conn, customerPartnerId: string, currency: string): Promise<Pennies> {
  const row = await db('customer_credit_entries')
    .where({ customer_partner_id: customerPartnerId, currency })
    .first<{ balance: string }>(db.raw('coalesce(sum(amount_pennies), 0)::text AS balance'));
  return pennies(row.balance);
}

export async function setInvoiceStatus(tx: Knex.Transaction, invoiceId: number, status: 'issued' | 'partially_paid' | 'paid'): Promise<void> {
  await tx('invoices').where('id', invoiceId).update({ status });
}

/** The lines of an invoice, in position order, as a credit note mirrors them. */
export async function invoiceLines(db: Conn, invoiceId: number): Promise<CreditableLine[]> {
  const rows = await db('invoice_lines').where('invoice_id', invoiceId).orderBy('position').select<Array<{
    account_id: string; product_id: string | null; usage_period: string; kind: string; description: string; quantity: string; unit_price: string | null; amount_pennies: string;
  }>>('account_id', 'product_id', 'usage_period', 'kind', 'description', 'quantity', 'unit_price', 'amount_pennies');
  return rows.map((r) => ({
    accountId: r.account_id,
    productId: r.product_id,
    usagePeriod: r.usage_period,
    kind: r.kind,
    description: r.description,
    quantity: r.quantity,
    unitPrice: r.unit_price,
    amount: pennies(r.amount_pennies),
  }));
}

/** Writes lines of an invoice or credit note in one statement. */
export async function insertInvoiceLines(tx: Knex.Transaction, invoiceId: number, lines: readonly CreditableLine[]): Promise<void> {
  if (lines.length === 0) return;
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
}

export async function writeAudit(
  tx: Knex.Transaction,
  entry: { actor: string; action: string; entity: string; entityId: string | number; before: unknown; after: unknown },
): Promise<void> {
  await tx('audit_log').insert({
    actor: entry.actor,
    action: entry.action,
    entity: entry.entity,
    entity_id: String(entry.entityId),
    before: entry.before === null ? null : JSON.stringify(entry.before),
    after: entry.after === null ? null : JSON.stringify(entry.after),
  });
}

/**
 * Every invoice with something open as of a date (or now, without one), with what settled it by
 * then: payments received on or before the date, credit notes issued on or before it, ledger
 * entries effective on or before it. An invoice counts from its issue date until the day it was
 * voided (in its partnership's time zone). Of one customer, if given. The SQL filter on the open amount only saves shipping
 * settled invoices; the open amount itself is computed by the core from the four figures.
 */
export async function openInvoices(db: Conn, asOf: string | null, customerCode?: string): Promise<OpenInvoice[]> {
  const { rows } = await db.raw<{ rows: Array<{
    id: string; number: string; customer_code: string; customer_name: string; currency: string; issue_date: string; due_date: string;
    total_pennies: string; paid: string; credited: string; ledger: string;
  }> }>(
    `SELECT * FROM (
       SELECT i.id, i.number, c.code AS customer_code, c.name AS customer_name, i.currency, i.issue_date, i.due_date, i.total_pennies,
         (SELECT coalesce(sum(p.amount_pennies), 0) FROM payments p WHERE p.invoice_id = i.id AND (?::date IS NULL OR p.received_on <= ?::date)) AS paid,
         (SELECT coalesce(-sum(cn.total_pennies), 0) FROM invoices cn WHERE cn.credits_invoice_id = i.id AND (?::date IS NULL OR cn.issue_date <= ?::date)) AS credited,
         (SELECT coalesce(sum(e.amount_pennies), 0) FROM customer_credit_entries e WHERE e.invoice_id = i.id AND (?::date IS NULL OR e.effective_on <= ?::date)) AS ledger
       FROM invoices i
       JOIN partnerships ps ON ps.id = i.partnership_id
       JOIN partners c ON c.id = i.customer_partner_id
       WHERE i.kind = 'invoice'
         AND (?::text IS NULL OR c.code = ?)
         AND (?::date IS NULL OR i.issue_date <= ?::date)
         AND (i.voided_at IS NULL OR (?::date IS NOT NULL AND (i.voided_at AT TIME ZONE ps.time_zone)::date > ?::date))
     ) x
     WHERE total_pennies - paid - credited + ledger <> 0
     ORDER BY customer_code, currency, due_date, number`,
    [asOf, asOf, asOf, asOf, asOf, asOf, customerCode ?? null, customerCode ?? null, asOf, asOf, asOf, asOf],
  );
  return rows.map((r) => ({
    invoiceId: Number(r.id),
    number: r.number,
    customerCode: r.customer_code,
    customerName: r.customer_name,
    currency: r.currency.trim(),
    issueDate: r.issue_date,
    dueDate: r.due_date,
    total: pennies(r.total_pennies),
    paid: pennies(r.paid),
    credited: pennies(r.credited),
    ledger: pennies(r.ledger),
  }));
}

/** Every non-zero credit balance per customer and currency, as of a date (or now), of one customer if given. */
export async function creditBalances(db: Conn, asOf: string | null, customerCode?: string): Promise<CreditBalance[]> {
  const { rows } = await db.raw<{ rows: Array<{ code: string; name: string; currency: string; balance: string }> }>(
    `SELECT c.code, c.name, e.currency, sum(e.amount_pennies)::text AS balance
     FROM customer_credit_entries e JOIN partners c ON c.id = e.customer_partner_id
     WHERE (?::date IS NULL OR e.effective_on <= ?::date) AND (?::text IS NULL OR c.code = ?)
     GROUP BY c.code, c.name, e.currency
     HAVING sum(e.amount_pennies) <> 0
     ORDER BY c.code, e.currency`,
    [asOf, asOf, customerCode ?? null, customerCode ?? null],
  );
  return rows.map((r) => ({ customerCode: r.code, customerName: r.name, currency: r.currency.trim(), balance: pennies(r.balance) }));
}

export interface CreditEntry {
  id: number;
  kind: CreditEntryKind;
  currency: string;
  amount: Pennies;
  effectiveOn: string;
  invoiceId: number;
  invoiceNumber: string;
  paymentReference: string | null;
  creditNoteNumber: string | null;
  createdBy: string;
  createdAt: string;
}

/** A customer's credit ledger, oldest first. */
export async function creditEntries(db: Conn, customerPartnerId: string): Promise<CreditEntry[]> {
  const rows = await db('customer_credit_entries as e')
    .join('invoices as i', 'i.id', 'e.invoice_id')
    .leftJoin('payments as p', 'p.id', 'e.payment_id')
    .leftJoin('invoices as cn', 'cn.id', 'e.credit_note_id')
    .where('e.customer_partner_id', customerPartnerId)
    .orderBy([{ column: 'e.effective_on' }, { column: 'e.id' }])
    .select<Array<{ id: string; kind: CreditEntryKind; currency: string; amount_pennies: string; effective_on: string; invoice_id: string; invoice_number: string; reference: string | null; credit_note_number: string | null; created_by: string; created_at: Date }>>(
      'e.id', 'e.kind', 'e.currency', 'e.amount_pennies', 'e.effective_on', 'e.invoice_id', 'i.number as invoice_number', 'p.reference',
      'cn.number as credit_note_number', 'e.created_by', 'e.created_at',
    );
  return rows.map((r) => ({
    id: Number(r.id),
    kind: r.kind,
    currency: r.currency.trim(),
    amount: pennies(r.amount_pennies),
    effectiveOn: r.effective_on,
    invoiceId: Number(r.invoice_id),
    invoiceNumber: r.invoice_number,
    paymentReference: r.reference,
    creditNoteNumber: r.credit_note_number,
    createdBy: r.created_by,
    createdAt: r.created_at.toISOString(),
  }));
}

export async function findPartnerByCode(db: Conn, code: string): Promise<{ id: string; code: string; name: string } | undefined> {
  return db('partners').where('code', code).first<{ id: string; code: string; name: string } | undefined>('id', 'code', 'name');
}

// ---- read-only views for the admin API: billing runs and the audit log ----

export interface BillingRunView {
  id: number;
  period: string;
  status: 'queued' | 'running' | 'completed' | 'failed';
  requestedBy: string;
  invoicesCreated: number;
  summary: unknown;
  error: string | null;
  queuedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

interface BillingRunRow { id: string; period: string; status: BillingRunView['status']; requested_by: string; invoices_created: number; summary: unknown; error: string | null; queued_at: Date; started_at: Date | null; finished_at: Date | null }

const iso = (d: Date | null) => (d ? d.toISOString() : null);

const toRun = (r: BillingRunRow): BillingRunView => ({
  id: Number(r.id),
  period: r.period,
  status: r.status,
  requestedBy: r.requested_by,
  invoicesCreated: r.invoices_created,
  summary: r.summary ?? null,
  error: r.error,
  queuedAt: r.queued_at.toISOString(),
  startedAt: iso(r.started_at),
  finishedAt: iso(r.finished_at),
});

const RUN_COLUMNS = ['id', 'period', 'status', 'requested_by', 'invoices_created', 'summary', 'error', 'queued_at', 'started_at', 'finished_at'];

export async function listBillingRuns(db: Db, f: { status?: string; period?: string; page: number; pageSize: number }): Promise<{ items: BillingRunView[]; total: number }> {
  const base = db('billing_runs').modify((q) => {
    if (f.status) void q.where('status', f.status);
    if (f.period) void q.where('period', f.period);
  });
  const [rows, count] = await Promise.all([
    base.clone().orderBy([{ column: 'queued_at', order: 'desc' }, { column: 'id', order: 'desc' }]).limit(f.pageSize).offset((f.page - 1) * f.pageSize).select<BillingRunRow[]>(RUN_COLUMNS),
    base.clone().count<{ count: string }[]>('* as count'),
  ]);
  return { items: rows.map(toRun), total: Number(count[0]?.count ?? 0) };
}

export async function getBillingRun(db: Db, id: number): Promise<BillingRunView | undefined> {
  const row = await db('billing_runs').where('id', id).first<BillingRunRow | undefined>(RUN_COLUMNS);
  return row ? toRun(row) : undefined;
}

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  entity: string;
  entityId: string;
  before: unknown;
  after: unknown;
}

export async function listAudit(db: Db, f: { entity?: string; entityId?: string; page: number; pageSize: number }): Promise<{ items: AuditEntry[]; total: number }> {
  const base = db('audit_log').modify((q) => {
    if (f.entity) void q.where('entity', f.entity);
    if (f.entityId) void q.where('entity_id', f.entityId);
  });
  const [rows, count] = await Promise.all([
    base.clone().orderBy([{ column: 'at', order: 'desc' }, { column: 'id', order: 'desc' }]).limit(f.pageSize).offset((f.page - 1) * f.pageSize)
      .select<Array<{ id: string; at: Date; actor: string; action: string; entity: string; entity_id: string; before: unknown; after: unknown }>>('*'),
    base.clone().count<{ count: string }[]>('* as count'),
  ]);
  return {
    items: rows.map((r) => ({ id: Number(r.id), at: r.at.toISOString(), actor: r.actor, action: r.action, entity: r.entity, entityId: r.entity_id, before: r.before ?? null, after: r.after ?? null })),
    total: Number(count[0]?.count ?? 0),
  };
}
