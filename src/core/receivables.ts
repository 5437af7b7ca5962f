import { allocate } from './allocation';
import { coefficientAt, decimal, fractionDigits, negate, parseDecimal, toDecimalString } from './decimal';
import { type Pennies, ZERO_PENNIES, formatMoney, isStorable, minorUnits, sumPennies } from './money';

/**
 * Accounts receivable arithmetic: what an invoice still owes, how a payment or credit note settles
 * it, what a credit note's lines are. Plain functions over pennies; the use cases read and lock the
 * rows and write what these functions decide.
 *
 * The model: an invoice's open amount is its total, less payments, less credit notes against it,
 * plus its entries in the customer's credit ledger. An entry is positive when part of a payment or
 * credit note was more than the invoice still owed (that excess becomes customer credit) and
 * negative when credit was applied to the invoice. So open is always between 0 and the total, and
 * every penny received or credited is either on an invoice or in the customer's credit balance.
 */

/** Credit notes have their own gapless series per issuer and year: CN-2026-000001. */
export function formatCreditNoteNumber(year: number, seq: number): string {
  return `CN-${year}-${String(seq).padStart(6, '0')}`;
}

export type AmountParseResult = { ok: true; value: Pennies } | { ok: false; reason: string };

/**
 * Reads an amount typed by a person ("12.34", "1250", "0.5") exactly, in the currency's minor
 * units. More decimals than the currency has is refused, never rounded: 12.345 GBP is a typo, not
 * 12.35. Only positive amounts are accepted (a payment or a credit is never zero or negative).
 */
export function parseAmount(text: string, currency: string): AmountParseResult {
  const units = minorUnits(currency);
  const parsed = parseDecimal(text);
  if (!parsed.ok) return { ok: false, reason: `amount "${text}" ${parsed.reason}` };
  const places = fractionDigits(parsed.value);
  if (places > units) {
    return { ok: false, reason: `amount "${text}" has ${places} decimal places; ${currency} has ${units === 0 ? 'none' : units}` };
  }
  const value = coefficientAt(parsed.value, units) as Pennies;
  if (value <= 0n) return { ok: false, reason: `amount "${text}" must be more than zero` };
  if (!isStorable(value)) return { ok: false, reason: `amount "${text}" is too large` };
  return { ok: true, value };
}

/** What has settled an invoice so far. Every figure is in the invoice's currency. */
export interface InvoiceSettlement {
  total: Pennies;
  /** Sum of the payments recorded against the invoice, overpayments included. */
  paid: Pennies;
  /** Sum of the credit notes against the invoice, as a positive amount. */
  credited: Pennies;
  /** Net of the customer-credit ledger entries on this invoice: excesses (+) and applied credit (-). */
  ledger: Pennies;
}

export function openAmount(s: InvoiceSettlement): Pennies {
  return (s.total - s.paid - s.credited + s.ledger) as Pennies;
}

export type PaymentStatus = 'issued' | 'partially_paid' | 'paid';

/**
 * An invoice's status from what is still open: nothing settled yet is `issued`, something settled
 * and something still open is `partially_paid`, nothing open is `paid` (settled, whether by
 * payments, credit notes or applied credit). A void invoice keeps `void` and never gets here.
 */
export function paymentStatus(total: Pennies, open: Pennies): PaymentStatus {
  if (total - open <= 0n) return 'issued';
  if (open <= 0n) return 'paid';
  return 'partially_paid';
}

/**
 * Splits money arriving at an invoice (a payment or a credit note) into the part that settles what
 * is open and the excess that becomes the customer's credit. applied + excess = amount, always.
 */
export function splitAgainstOpen(open: Pennies, amount: Pennies): { applied: Pennies; excess: Pennies } {
  if (amount < 0n) throw new RangeError('cannot settle a negative amount');
  const room = open > 0n ? open : ZERO_PENNIES;
  const applied = amount < room ? amount : room;
  return { applied, excess: (amount - applied) as Pennies };
}

/** A line of the invoice being credited, as stored. */
export interface CreditableLine {
  accountId: string;
  productId: string | null;
  usagePeriod: string;
  kind: string;
  description: string;
  /** Exact decimal text. */
  quantity: string;
  unitPrice: string | null;
  amount: Pennies;
}

/** A line of a credit note: negative amounts that mirror the credited invoice's lines. */
export type CreditNoteLine = CreditableLine;

export type CreditNotePlan =
  | { ok: true; amount: Pennies; mirrored: boolean; lines: CreditNoteLine[] }
  | { ok: false; reason: string };

/**
 * Plans a credit note for an invoice: how much, and its lines.
 *
 * - No amount asked for: the whole amount not yet credited.
 * - The sum of an invoice's credit notes never exceeds its total.
 * - Crediting the whole invoice in one credit note mirrors every line exactly (same account,
 *   product, period, kind and unit price; quantity and amount negated), so the credit note reads as
 *   the invoice undone.
 * - Any other amount is spread over the invoice's positive lines in proportion to their amounts,
 *   largest remainder (the parts add up to the amount exactly, and no line is credited more than
 *   its own amount). Those lines carry no quantity or unit price: they return money, not units.
 */
export function planCreditNote(input: {
  invoiceNumber: string;
  currency: string;
  total: Pennies;
  alreadyCredited: Pennies;
  lines: readonly CreditableLine[];
  requested?: Pennies;
}): CreditNotePlan {
  const { invoiceNumber, currency, total, alreadyCredited, lines, requested } = input;
  const money = (p: Pennies) => formatMoney(p, currency);
  const creditable = (total - alreadyCredited) as Pennies;
  if (creditable <= 0n) {
    return {
      ok: false,
      reason: alreadyCredited > 0n
        ? `${invoiceNumber} is already credited in full (${money(alreadyCredited)} of ${money(total)}); nothing is left to credit`
        : `${invoiceNumber} has a total of ${money(total)}; there is nothing to credit`,
    };
  }
  const amount = requested ?? creditable;
  if (amount <= 0n) return { ok: false, reason: `a credit note must be for more than ${money(ZERO_PENNIES)}` };
  if (amount > creditable) {
    return {
      ok: false,
      reason: `a credit note of ${money(amount)} would take the credit notes of ${invoiceNumber} beyond its total of ${money(total)}` +
        (alreadyCredited > 0n ? ` (${money(alreadyCredited)} already credited; at most ${money(creditable)} can still be credited)` : ''),
    };
  }
  if (alreadyCredited === 0n && amount === total) {
    const mirrored = lines
      .filter((l) => l.amount !== 0n)
      .map((l): CreditNoteLine => ({ ...l, quantity: toDecimalString(negate(decimal(l.quantity))), amount: (0n - l.amount) as Pennies }));
    return { ok: true, amount, mirrored: true, lines: mirrored };
  }
  const positive = lines.filter((l) => l.amount > 0n);
  if (positive.length === 0) return { ok: false, reason: `${invoiceNumber} has no charged lines to credit` };
  const parts = allocate(amount, positive.map((l) => decimal(l.amount)));
  const proportional = positive
    .map((l, i): CreditNoteLine => ({
      ...l,
      description: `${l.description} (partial credit)`,
      quantity: '0',
      unitPrice: null,
      amount: (0n - (parts[i] ?? 0n)) as Pennies,
    }))
    .filter((l) => l.amount !== 0n);
  return { ok: true, amount, mirrored: false, lines: proportional };
}

/** The credit note's total: minus the credited amount, equal to the sum of its lines. */
export function creditNoteTotal(lines: readonly CreditNoteLine[]): Pennies {
  return sumPennies(lines.map((l) => l.amount));
}

/** One invoice that still has something open, with what settled it. */
export interface OpenInvoice extends InvoiceSettlement {
  invoiceId: number;
  number: string;
  customerCode: string;
  customerName: string;
  currency: string;
  issueDate: string;
  dueDate: string;
}

/** A customer's credit balance in one currency. */
export interface CreditBalance {
  customerCode: string;
  customerName: string;
  currency: string;
  balance: Pennies;
}

export interface OpenAmountRow {
  customerCode: string;
  customerName: string;
  currency: string;
  openInvoices: number;
  /** What the customer's open invoices still owe. */
  open: Pennies;
  /** The customer's unapplied credit in this currency. */
  credit: Pennies;
  /** open - credit: what the customer owes once their credit is used. */
  net: Pennies;
  invoices: Array<{ invoiceId: number; number: string; issueDate: string; dueDate: string; total: Pennies; open: Pennies }>;
}

export interface CurrencyTotals {
  currency: string;
  open: Pennies;
  credit: Pennies;
  net: Pennies;
}

// A fixed collation, so the report's order does not depend on the machine's LANG.
const collate = new Intl.Collator('en').compare;

/**
 * Open amounts per customer and currency: open invoices, credit balance, and the net. Different
 * currencies are never added together: a customer billed in GBP and EUR has two rows, and the
 * totals are per currency.
 */
export function summarizeOpenAmounts(invoices: readonly OpenInvoice[], credits: readonly CreditBalance[]): { rows: OpenAmountRow[]; totals: CurrencyTotals[] } {
  const rows = new Map<string, OpenAmountRow>();
  const rowFor = (customerCode: string, customerName: string, currency: string): OpenAmountRow => {
    const key = `${customerCode}\u0000${currency}`;
    let row = rows.get(key);
    if (!row) {
      row = { customerCode, customerName, currency, openInvoices: 0, open: ZERO_PENNIES, credit: ZERO_PENNIES, net: ZERO_PENNIES, invoices: [] };
      rows.set(key, row);
    }
    return row;
  };
  for (const inv of invoices) {
    const open = openAmount(inv);
    if (open === 0n) continue;
    const row = rowFor(inv.customerCode, inv.customerName, inv.currency);
    row.openInvoices += 1;
    row.open = (row.open + open) as Pennies;
    row.invoices.push({ invoiceId: inv.invoiceId, number: inv.number, issueDate: inv.issueDate, dueDate: inv.dueDate, total: inv.total, open });
  }
  for (const c of credits) {
    if (c.balance === 0n) continue;
    const row = rowFor(c.customerCode, c.customerName, c.currency);
    row.credit = (row.credit + c.balance) as Pennies;
  }
  const sorted = [...rows.values()].sort((a, b) => collate(a.customerCode, b.customerCode) || collate(a.currency, b.currency));
  for (const row of sorted) {
    row.net = (row.open - row.credit) as Pennies;
    row.invoices.sort((a, b) => collate(a.dueDate, b.dueDate) || collate(a.number, b.number));
  }
  return { rows: sorted, totals: totalsPerCurrency(sorted) };
}

function totalsPerCurrency(rows: readonly OpenAmountRow[]): CurrencyTotals[] {
  const totals = new Map<string, CurrencyTotals>();
  for (const r of rows) {
    const t = totals.get(r.currency) ?? { currency: r.currency, open: ZERO_PENNIES, credit: ZERO_PENNIES, net: ZERO_PENNIES };
    t.open = (t.open + r.open) as Pennies;
    t.credit = (t.credit + r.credit) as Pennies;
    t.net = (t.net + r.net) as Pennies;
    totals.set(r.currency, t);
  }
  return [...totals.values()].sort((a, b) => collate(a.currency, b.currency));
}
