import type { Knex } from 'knex';
import { compareLines } from '../../src/core/invoice';
import {
  type InvoiceDocument,
  type InvoiceDocumentLine,
  type InvoiceKind,
  type InvoiceParty,
  type InvoiceRecordRow,
  type InvoiceStatus,
} from '../../src/core/invoice-document';
import { type Pennies, formatAmount, minorUnits, pennies } from '../../src/core/money';
import { decimal, toDecimalString, toDecimalStringMinPlaces } from '../../src/core/decimal';
import type { Db } from './database';

type Reader = Db | Knex.Transaction;

// ---------------------------------------------------------------------------------------------
// The invoice document (what the email, CSV and PDF are rendered from)
// ---------------------------------------------------------------------------------------------

interface InvoiceHeadRow {
  id: string; kind: InvoiceKind; status: InvoiceStatus; number: string; period: string; currency: string;
  issue_date: string; due_date: string; total_pennies: string; reason: string | null; voided_on: string | null;
  partnership_code: string; payment_terms_days: number; invoice_recipients: string[];
  issuer_code: string; issuer_name: string; issuer_email: string | null; issuer_address: string | null;
  customer_code: string; customer_name: string; customer_email: string | null; customer_address: string | null;
  credits_id: string | null; credits_number: string | null; credits_issue_date: string | null;
}

interface LineRow {
  position: number; account_code: string; account_name: string; account_kind: string; product_code: string | null;
  product_name: string | null; unit: string | null; usage_period: string; kind: string; description: string;
  quantity: string; unit_price: string | null; amount_pennies: string;
}

/** Reads an invoice (or credit note) with its parties and lines into the plain document that renderers take. */
export async function loadInvoiceDocument(db: Reader, invoiceId: number): Promise<InvoiceDocument> {
  // Sequential on purpose: inside a transaction both queries share one connection.
  const head = await db('invoices as i')
    .join('partnerships as ps', 'ps.id', 'i.partnership_id')
    .join('partners as iss', 'iss.id', 'i.issuer_partner_id')
    .join('partners as cus', 'cus.id', 'i.customer_partner_id')
    .leftJoin('invoices as cr', 'cr.id', 'i.credits_invoice_id')
    .where('i.id', invoiceId)
    .first<InvoiceHeadRow | undefined>(
      'i.id', 'i.kind', 'i.status', 'i.number', 'i.period', 'i.currency', 'i.issue_date', 'i.due_date', 'i.total_pennies', 'i.reason',
      // The day it was voided where the customer is, like the issue date.
      db.raw(`(i.voided_at AT TIME ZONE ps.time_zone)::date::text AS voided_on`),
      'ps.code as partnership_code', 'ps.payment_terms_days', 'ps.invoice_recipients',
      'iss.code as issuer_code', 'iss.name as issuer_name', 'iss.email as issuer_email', 'iss.address as issuer_address',
      'cus.code as customer_code', 'cus.name as customer_name', 'cus.email as customer_email', 'cus.address as customer_address',
      'cr.id as credits_id', 'cr.number as credits_number', 'cr.issue_date as credits_issue_date',
    );
  if (!head) throw new Error(`invoice ${invoiceId} does not exist`);
  const lines = await db('invoice_lines as l')
    .join('accounts as a', 'a.id', 'l.account_id')
    .leftJoin('products as p', 'p.id', 'l.product_id')
    .where('l.invoice_id', invoiceId)
    .orderBy('l.position')
    .select<LineRow[]>(
      'l.position', 'a.code as account_code', 'a.name as account_name', 'a.kind as account_kind', 'p.code as product_code',
      'p.name as product_name', 'p.unit', 'l.usage_period', 'l.kind', 'l.description', 'l.quantity', 'l.unit_price', 'l.amount_pennies',
    );
  const currency = head.currency.trim();
  const party = (prefix: 'issuer' | 'customer'): InvoiceParty => ({
    code: head[`${prefix}_code`],
    name: head[`${prefix}_name`],
    email: head[`${prefix}_email`],
    address: head[`${prefix}_address`],
  });
  return {
    id: Number(head.id),
    kind: head.kind,
    status: head.status,
    number: head.number,
    period: head.period,
    currency,
    issueDate: head.issue_date,
    dueDate: head.due_date,
    paymentTermsDays: head.payment_terms_days,
    issuer: party('issuer'),
    customer: party('customer'),
    partnershipCode: head.partnership_code,
    recipients: head.invoice_recipients,
    credits:
      head.credits_id === null || head.credits_number === null || head.credits_issue_date === null
        ? null
        : { id: Number(head.credits_id), number: head.credits_number, issueDate: head.credits_issue_date },
    reason: head.reason,
    voidedOn: head.voided_on,
    total: pennies(head.total_pennies),
    lines: lines.map((l): InvoiceDocumentLine => ({
      position: l.position,
      accountCode: l.account_code,
      accountName: l.account_name,
      accountKind: l.account_kind,
      productCode: l.product_code ?? '',
      productName: l.product_name ?? '',
      unit: l.unit ?? '',
      usagePeriod: l.usage_period,
      kind: l.kind,
      description: l.description,
      quantity: toDecimalString(decimal(l.quantity)),
      unitPrice: price(l.unit_price, currency),
      amount: pennies(l.amount_pennies),
    })),
  };
}

// A price reads with at least the currency's minor digits: 39.9 EUR prints as "39.90".
function price(value: string | null, currency: string): string | null {
  return value === null ? null : toDecimalStringMinPlaces(decimal(value), minorUnits(currency));
}

interface RecordRow {
  transaction_id: string; billing_record_id: string; account_code: string; account_name: string; product_code: string | null;
  product_name: string | null; unit: string | null; usage_period: string; usage_id: string | null; user_ref: string | null;
  started_at: Date | null; ended_at: Date | null; quantity: string; split_percent: string; kind: string; unit_price: string | null;
  amount_pennies: string; description: string; usage_description: string | null; currency: string;
}

/**
 * The transactions an invoice claimed, each with its billing record and usage, in the order of the
 * invoice's lines (then by usage start): the rows of the CSV accounting systems import. A document
 * that claimed no transactions of its own (a credit note) has none.
 */
export async function loadInvoiceRecords(db: Reader, invoiceId: number): Promise<InvoiceRecordRow[]> {
  const rows = await db('transactions as t')
    .join('billing_records as r', 'r.id', 't.billing_record_id')
    .join('accounts as a', 'a.id', 'r.account_id')
    .join('invoices as i', 'i.id', 't.invoice_id')
    .leftJoin('products as p', 'p.id', 'r.product_id')
    .leftJoin('product_usages as u', 'u.id', 'r.usage_id')
    .where('t.invoice_id', invoiceId)
    .select<RecordRow[]>(
      't.id as transaction_id', 'r.id as billing_record_id', 'a.code as account_code', 'a.name as account_name',
      'p.code as product_code', 'p.name as product_name', 'p.unit', 'r.period as usage_period', 'u.external_id as usage_id',
      'u.user_ref', 'u.started_at', 'u.ended_at', 'r.quantity', 'r.split_percent', 't.kind', 't.unit_price', 't.amount_pennies',
      't.description', 'u.description as usage_description', 'i.currency',
    );
  const records = rows.map((r): InvoiceRecordRow => {
    const currency = r.currency.trim();
    return {
      transactionId: Number(r.transaction_id),
      billingRecordId: Number(r.billing_record_id),
      accountCode: r.account_code,
      accountName: r.account_name,
      productCode: r.product_code ?? '',
      productName: r.product_name ?? '',
      unit: r.unit ?? '',
      usagePeriod: r.usage_period.trim(),
      usageId: r.usage_id ?? '',
      user: r.user_ref ?? '',
      startedAt: r.started_at ? r.started_at.toISOString() : '',
      endedAt: r.ended_at ? r.ended_at.toISOString() : '',
      quantity: toDecimalString(decimal(r.quantity)),
      splitPercent: toDecimalString(decimal(r.split_percent)),
      kind: r.kind,
      unitPrice: price(r.unit_price, currency),
      amount: pennies(r.amount_pennies),
      description: r.description,
      usageDescription: r.usage_description ?? '',
    };
  });
  return records.sort(
    (a, b) =>
      compareLines(a, b) ||
      (a.startedAt < b.startedAt ? -1 : a.startedAt > b.startedAt ? 1 : 0) ||
      (a.usageId < b.usageId ? -1 : a.usageId > b.usageId ? 1 : 0) ||
      a.transactionId - b.transactionId,
  );
}

// ---------------------------------------------------------------------------------------------
// Invoice listings for the admin API
// ---------------------------------------------------------------------------------------------

export interface InvoiceSummary {
  id: number;
  number: string;
  kind: InvoiceKind;
  status: InvoiceStatus;
  partnership: string;
  issuer: { code: string; name: string };
  customer: { code: string; name: string };
  period: string;
  currency: string;
  issueDate: string;
  dueDate: string;
  /** Major units as exact decimal text ("291.64"), and the integer pennies as text, never a float. */
  total: string;
  totalPennies: string;
  creditsInvoice: { id: number; number: string } | null;
  reason: string | null;
  voidedAt: string | null;
  createdAt: string;
}

export interface InvoiceFilter {
  partnership?: string;
  customer?: string;
  period?: string;
  status?: InvoiceStatus;
  kind?: InvoiceKind;
}

interface SummaryRow {
  id: string; number: string; kind: InvoiceKind; status: InvoiceStatus; partnership: string; issuer_code: string; issuer_name: string;
  customer_code: string; customer_name: string; period: string; currency: string; issue_date: string; due_date: string;
  total_pennies: string; credits_id: string | null; credits_number: string | null; reason: string | null; voided_at: Date | null;
  created_at: Date;
}

function summaryQuery(db: Db) {
  return db('invoices as i')
    .join('partnerships as ps', 'ps.id', 'i.partnership_id')
    .join('partners as iss', 'iss.id', 'i.issuer_partner_id')
    .join('partners as cus', 'cus.id', 'i.customer_partner_id')
    .leftJoin('invoices as cr', 'cr.id', 'i.credits_invoice_id');
}

const SUMMARY_COLUMNS = [
  'i.id', 'i.number', 'i.kind', 'i.status', 'ps.code as partnership', 'iss.code as issuer_code', 'iss.name as issuer_name',
  'cus.code as customer_code', 'cus.name as customer_name', 'i.period', 'i.currency', 'i.issue_date', 'i.due_date',
  'i.total_pennies', 'cr.id as credits_id', 'cr.number as credits_number', 'i.reason', 'i.voided_at', 'i.created_at',
];

function toSummary(r: SummaryRow): InvoiceSummary {
  const currency = r.currency.trim();
  const total: Pennies = pennies(r.total_pennies);
  return {
    id: Number(r.id),
    number: r.number,
    kind: r.kind,
    status: r.status,
    partnership: r.partnership,
    issuer: { code: r.issuer_code, name: r.issuer_name },
    customer: { code: r.customer_code, name: r.customer_name },
    period: r.period,
    currency,
    issueDate: r.issue_date,
    dueDate: r.due_date,
    total: formatAmount(total, currency),
    totalPennies: total.toString(),
    creditsInvoice: r.credits_id === null || r.credits_number === null ? null : { id: Number(r.credits_id), number: r.credits_number },
    reason: r.reason,
    voidedAt: r.voided_at ? r.voided_at.toISOString() : null,
    createdAt: r.created_at.toISOString(),
  };
}

/** Invoices and credit notes, newest first, filtered by partnership, customer, period, status and kind. */
export async function listInvoices(
  db: Db,
  filter: InvoiceFilter & { page: number; pageSize: number },
): Promise<{ items: InvoiceSummary[]; total: number }> {
  const base = summaryQuery(db).modify((q) => {
    if (filter.partnership) void q.where('ps.code', filter.partnership);
    if (filter.customer) void q.where('cus.code', filter.customer);
    if (filter.period) void q.where('i.period', filter.period);
    if (filter.status) void q.where('i.status', filter.status);
    if (filter.kind) void q.where('i.kind', filter.kind);
  });
  const [rows, count] = await Promise.all([
    base.clone().orderBy('i.id', 'desc').limit(filter.pageSize).offset((filter.page - 1) * filter.pageSize).select<SummaryRow[]>(SUMMARY_COLUMNS),
    base.clone().count<{ count: string }[]>('* as count'),
  ]);
  return { items: rows.map(toSummary), total: Number(count[0]?.count ?? 0) };
}

export async function getInvoiceSummary(db: Db, invoiceId: number): Promise<InvoiceSummary | undefined> {
  const row = await summaryQuery(db).where('i.id', invoiceId).first<SummaryRow | undefined>(SUMMARY_COLUMNS);
  return row ? toSummary(row) : undefined;
}

/** Credit notes issued against an invoice, oldest first. */
export async function creditNotesOf(db: Db, invoiceId: number): Promise<{ id: number; number: string; total: string; issueDate: string }[]> {
  const rows = await db('invoices').where('credits_invoice_id', invoiceId).orderBy('id')
    .select<{ id: string; number: string; currency: string; total_pennies: string; issue_date: string }[]>('id', 'number', 'currency', 'total_pennies', 'issue_date');
  return rows.map((r) => ({ id: Number(r.id), number: r.number, total: formatAmount(pennies(r.total_pennies), r.currency.trim()), issueDate: r.issue_date }));
}

// ---------------------------------------------------------------------------------------------
// Email deliveries and their attempts (the communication log)
// ---------------------------------------------------------------------------------------------

export const DELIVERY_STATUSES = ['pending', 'sending', 'sent', 'failed', 'unknown'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export const ATTEMPT_OUTCOMES = ['sent', 'transient_failure', 'permanent_failure', 'unknown'] as const;
export type AttemptOutcome = (typeof ATTEMPT_OUTCOMES)[number];

export interface DeliverySummary {
  id: number;
  invoiceId: number;
  invoiceNumber: string;
  purpose: string;
  recipients: string[];
  subject: string;
  messageId: string;
  status: DeliveryStatus;
  attempts: number;
  lastError: string | null;
  lastResponse: string | null;
  transport: string | null;
  resendRequested: { by: string; at: string } | null;
  createdAt: string;
  updatedAt: string;
  sentAt: string | null;
}

export interface DeliveryAttempt {
  attempt: number;
  trigger: 'automatic' | 'resend';
  requestedBy: string | null;
  transport: string;
  sender: string;
  recipients: string[];
  subject: string;
  messageId: string;
  attemptedAt: string;
  finishedAt: string | null;
  /** null while the attempt is in progress. */
  outcome: AttemptOutcome | null;
  replyCode: number | null;
  reply: string | null;
  rejected: string[];
}

interface DeliveryRow {
  id: string; invoice_id: string; invoice_number: string; purpose: string; recipients: string[]; subject: string; message_id: string;
  status: DeliveryStatus; attempts: number; last_error: string | null; last_response: string | null; transport: string | null;
  resend_requested_by: string | null; resend_requested_at: Date | null; created_at: Date; updated_at: Date; sent_at: Date | null;
}

const DELIVERY_COLUMNS = [
  'd.id', 'd.invoice_id', 'i.number as invoice_number', 'd.purpose', 'd.recipients', 'd.subject', 'd.message_id', 'd.status',
  'd.attempts', 'd.last_error', 'd.last_response', 'd.transport', 'd.resend_requested_by', 'd.resend_requested_at',
  'd.created_at', 'd.updated_at', 'd.sent_at',
];

function toDelivery(r: DeliveryRow): DeliverySummary {
  return {
    id: Number(r.id),
    invoiceId: Number(r.invoice_id),
    invoiceNumber: r.invoice_number,
    purpose: r.purpose,
    recipients: r.recipients,
    subject: r.subject,
    messageId: r.message_id,
    status: r.status,
    attempts: r.attempts,
    lastError: r.last_error,
    lastResponse: r.last_response,
    transport: r.transport,
    resendRequested: r.resend_requested_by && r.resend_requested_at ? { by: r.resend_requested_by, at: r.resend_requested_at.toISOString() } : null,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    sentAt: r.sent_at ? r.sent_at.toISOString() : null,
  };
}

/** Deliveries, newest first; `status: 'unknown'` or `'failed'` is what an operator looks at. */
export async function listDeliveries(
  db: Db,
  filter: { status?: DeliveryStatus; invoiceId?: number; page: number; pageSize: number },
): Promise<{ items: DeliverySummary[]; total: number }> {
  const base = db('email_deliveries as d').join('invoices as i', 'i.id', 'd.invoice_id').modify((q) => {
    if (filter.status) void q.where('d.status', filter.status);
    if (filter.invoiceId !== undefined) void q.where('d.invoice_id', filter.invoiceId);
  });
  const [rows, count] = await Promise.all([
    base.clone().orderBy('d.id', 'desc').limit(filter.pageSize).offset((filter.page - 1) * filter.pageSize).select<DeliveryRow[]>(DELIVERY_COLUMNS),
    base.clone().count<{ count: string }[]>('* as count'),
  ]);
  return { items: rows.map(toDelivery), total: Number(count[0]?.count ?? 0) };
}

export async function getDelivery(db: Db, deliveryId: number): Promise<DeliverySummary | undefined> {
  const row = await db('email_deliveries as d').join('invoices as i', 'i.id', 'd.invoice_id').where('d.id', deliveryId).first<DeliveryRow | undefined>(DELIVERY_COLUMNS);
  return row ? toDelivery(row) : undefined;
}

/** An invoice's deliveries, oldest first. */
export async function deliveriesOfInvoice(db: Db, invoiceId: number): Promise<DeliverySummary[]> {
  const rows = await db('email_deliveries as d').join('invoices as i', 'i.id', 'd.invoice_id').where('d.invoice_id', invoiceId).orderBy('d.id').select<DeliveryRow[]>(DELIVERY_COLUMNS);
  return rows.map(toDelivery);
}

interface AttemptRow {
  attempt: number; trigger: 'automatic' | 'resend'; requested_by: string | null; transport: string; sender: string; recipients: string[];
  subject: string; message_id: string; attempted_at: Date; finished_at: Date | null; outcome: AttemptOutcome | null;
  reply_code: number | null; reply: string | null; rejected: string[];
}

/** A delivery's communication log, in the order the attempts were made. */
export async function attemptsOfDelivery(db: Db, deliveryId: number): Promise<DeliveryAttempt[]> {
  const rows = await db('email_attempts').where('delivery_id', deliveryId).orderBy('attempt').select<AttemptRow[]>(
    'attempt', 'trigger', 'requested_by', 'transport', 'sender', 'recipients', 'subject', 'message_id', 'attempted_at',
    'finished_at', 'outcome', 'reply_code', 'reply', 'rejected',
  );
  return rows.map((r) => ({
    attempt: r.attempt,
    trigger: r.trigger,
    requestedBy: r.requested_by,
    transport: r.transport,
    sender: r.sender,
    recipients: r.recipients,
    subject: r.subject,
    messageId: r.message_id,
    attemptedAt: r.attempted_at.toISOString(),
    finishedAt: r.finished_at ? r.finished_at.toISOString() : null,
    outcome: r.outcome,
    replyCode: r.reply_code,
    reply: r.reply,
    rejected: r.rejected,
  }));
}
