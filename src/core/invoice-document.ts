import { type Pennies, ZERO_PENNIES, formatAmount, sumPennies } from './money';

/** A party on an invoice, as printed. */
export interface InvoiceParty {
  code: string;
  name: string;
  email: string | null;
  /** Postal address, one line per line of text. */
  address: string | null;
}

export const INVOICE_KINDS = ['invoice', 'credit_note'] as const;
export type InvoiceKind = (typeof INVOICE_KINDS)[number];

export const INVOICE_STATUSES = ['issued', 'partially_paid', 'paid', 'void'] as const;
export type InvoiceStatus = (typeof INVOICE_STATUSES)[number];

/**
 * One invoice line: a product charged to an account, for a usage period, of one transaction kind.
 * A period-close settlement line (platform fee, minimum-commitment true-up, cap, voucher) has no
 * product: its product fields are empty and its description is its whole text.
 */
export interface InvoiceDocumentLine {
  position: number;
  accountCode: string;
  accountName: string;
  /** expense_code, purchase_order or cost_centre: a purchase order is quoted as such on the invoice. */
  accountKind: string;
  /** Empty for a settlement line. */
  productCode: string;
  productName: string;
  unit: string;
  /** The calendar month the usage belongs to (YYYY-MM); differs from the invoice's period for late items. */
  usagePeriod: string;
  /** charge, discount, adjustment, credit, fee ... */
  kind: string;
  description: string;
  /** Exact decimal text, e.g. "12.5". */
  quantity: string;
  /** Exact decimal text per unit, or null when the line mixes prices. */
  unitPrice: string | null;
  amount: Pennies;
}

/** The invoice a credit note corrects, as the credit note quotes it. */
export interface CreditedInvoice {
  id: number;
  number: string;
  issueDate: string;
}

/** Everything needed to render an issued invoice or credit note (email, CSV, PDF). Plain data, no I/O. */
export interface InvoiceDocument {
  id: number;
  kind: InvoiceKind;
  status: InvoiceStatus;
  number: string;
  period: string;
  currency: string;
  issueDate: string;
  dueDate: string;
  paymentTermsDays: number;
  issuer: InvoiceParty;
  customer: InvoiceParty;
  partnershipCode: string;
  recipients: string[];
  /** The invoice this credit note corrects; null for an invoice. */
  credits: CreditedInvoice | null;
  /** Why the credit note was issued or the invoice voided, as recorded. */
  reason: string | null;
  /** The day (YYYY-MM-DD, in the partnership's time zone) the invoice was voided; null unless it is void. */
  voidedOn: string | null;
  lines: InvoiceDocumentLine[];
  total: Pennies;
}

/** One invoiced transaction with the billing record and usage it belongs to: a row of the invoice's CSV. */
export interface InvoiceRecordRow {
  transactionId: number;
  billingRecordId: number;
  accountCode: string;
  accountName: string;
  /** Empty for a period-close settlement record. */
  productCode: string;
  productName: string;
  unit: string;
  /** The record's period (YYYY-MM). */
  usagePeriod: string;
  /** The partner's usage id; empty for a settlement record. */
  usageId: string;
  user: string;
  /** ISO 8601 instants (UTC); empty when unknown. */
  startedAt: string;
  endedAt: string;
  /** This account's share of the usage quantity, exact decimal text. */
  quantity: string;
  splitPercent: string;
  kind: string;
  unitPrice: string | null;
  amount: Pennies;
  /** The transaction's own text, e.g. "HPC CPU core-hours: 500 core-hour at 0.045". */
  description: string;
  /** The text the partner's feed gave the usage, if any. */
  usageDescription: string;
}

/** "Invoice" or "Credit note": the document's name wherever it is titled. */
export function documentTitle(kind: InvoiceKind): string {
  return kind === 'credit_note' ? 'Credit note' : 'Invoice';
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

/** "October 2026" for "2026-10"; the text itself when it is not a period (never throws on print). */
export function periodLabel(period: string): string {
  const m = /^(\d{4})-(\d{2})$/.exec(period);
  const month = m ? MONTHS[Number(m[2]) - 1] : undefined;
  return m && month ? `${month} ${m[1]}` : period;
}

/** "21 November 2026" for "2026-11-21": unambiguous in every country, unlike 11/21/2026. */
export function dateLabel(date: string): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  const month = m ? MONTHS[Number(m[2]) - 1] : undefined;
  return m && month ? `${Number(m[3])} ${month} ${m[1]}` : date;
}

/** An account's lines on an invoice and their subtotal. */
export interface AccountGroup {
  accountCode: string;
  accountName: string;
  accountKind: string;
  lines: InvoiceDocumentLine[];
  subtotal: Pennies;
}

/** The lines in position order. */
export function linesInOrder(doc: InvoiceDocument): InvoiceDocumentLine[] {
  return [...doc.lines].sort((a, b) => a.position - b.position);
}

/** Accounts in the order they first appear, each keeping its lines' order, with subtotals. */
export function groupByAccount(lines: readonly InvoiceDocumentLine[]): AccountGroup[] {
  const groups = new Map<string, AccountGroup>();
  for (const line of lines) {
    let group = groups.get(line.accountCode);
    if (!group) {
      group = { accountCode: line.accountCode, accountName: line.accountName, accountKind: line.accountKind, lines: [], subtotal: ZERO_PENNIES };
      groups.set(line.accountCode, group);
    }
    group.lines.push(line);
  }
  for (const group of groups.values()) group.subtotal = sumPennies(group.lines.map((l) => l.amount));
  return [...groups.values()];
}

/**
 * A document whose lines do not add up to its total would reach a customer as a contradiction;
 * refusing to render it makes the read-model bug visible instead.
 */
export function assertLinesAddUp(doc: InvoiceDocument): void {
  const sum = sumPennies(doc.lines.map((l) => l.amount));
  if (sum !== doc.total) {
    throw new Error(
      `${documentTitle(doc.kind).toLowerCase()} ${doc.number}: lines add up to ${formatAmount(sum, doc.currency)} but the total is ${formatAmount(doc.total, doc.currency)}`,
    );
  }
}

/** "Purchase order" for a purchase-order account, "Cost centre", "Expense code": how the account is quoted. */
export function accountKindLabel(kind: string): string {
  return ACCOUNT_KIND_LABELS.get(kind) ?? 'Account';
}

const ACCOUNT_KIND_LABELS = new Map([
  ['purchase_order', 'Purchase order'],
  ['cost_centre', 'Cost centre'],
  ['expense_code', 'Expense code'],
]);
