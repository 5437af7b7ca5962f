import { Temporal } from 'temporal-polyfill';
import {
  type Conn,
  type CreditEntry,
  type ReceivableInvoice,
  creditBalance,
  creditBalances,
  creditEntries,
  findInvoicesByNumber,
  findPartnerByCode,
  getReceivableInvoice,
  insertCreditEntry,
  lockCustomerCredit,
  openInvoices,
  setInvoiceStatus,
  settlementOf,
  writeAudit,
} from '../../adapters/db/receivables-repository';
import { type AgingReport, buildAgingReport } from '../core/aging';
import { type Pennies, formatMoney } from '../core/money';
import { localDateOf } from '../core/period';
import { type CreditBalance, type OpenAmountRow, type CurrencyTotals, openAmount, parseAmount, paymentStatus, summarizeOpenAmounts } from '../core/receivables';
import type { Deps } from '../deps';
import { PermanentError } from './errors';

/**
 * Why a receivables change was refused, for the person who asked. `status` is what the API
 * answers: 400 for input that can never work (a bad amount, the wrong currency), 404 for an unknown
 * invoice or customer, 409 for a change the invoice's state does not allow (void, already credited).
 * A PermanentError, so the CLI prints the message and exits 2.
 */
export class ReceivablesRefusal extends PermanentError {
  constructor(
    readonly status: 400 | 404 | 409,
    message: string,
  ) {
    super(message);
  }
}

export const refuse = {
  invalid: (message: string) => new ReceivablesRefusal(400, message),
  notFound: (message: string) => new ReceivablesRefusal(404, message),
  conflict: (message: string) => new ReceivablesRefusal(409, message),
};

/** A calendar date given by a person: YYYY-MM-DD and a real day (2026-02-30 is refused, not rolled over). */
export function parseDate(text: string, what: string): string {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) throw refuse.invalid(`${what} "${text}" is not a date; expected YYYY-MM-DD, e.g. 2026-11-30`);
  try {
    return Temporal.PlainDate.from(text, { overflow: 'reject' }).toString();
  } catch {
    throw refuse.invalid(`${what} "${text}" is not a real calendar date`);
  }
}

/** Free text an operator must give (a payment reference, a reason): trimmed, on one line, bounded. */
export function requireText(text: string | undefined, what: string, max: number): string {
  const value = (text ?? '').trim();
  if (value.length === 0) throw refuse.invalid(`${what} is required`);
  if (value.length > max) throw refuse.invalid(`${what} is longer than ${max} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) throw refuse.invalid(`${what} must not contain control characters or line breaks`);
  return value;
}

/** Parses an amount typed in the invoice's currency, refusing with the reason. */
export function amountIn(text: string, currency: string): Pennies {
  const parsed = parseAmount(text, currency);
  if (!parsed.ok) throw refuse.invalid(parsed.reason);
  return parsed.value;
}

/** Loads an invoice, refusing with 404 if there is none. */
export async function requireInvoice(db: Conn, invoiceId: number, opts: { lock?: boolean } = {}): Promise<ReceivableInvoice> {
  const invoice = await getReceivableInvoice(db, invoiceId, opts);
  if (!invoice) throw refuse.notFound(`invoice ${invoiceId} does not exist`);
  return invoice;
}

/**
 * The invoice an operator means by its number. Numbers are unique per issuer, so when two issuers
 * have used the same number the issuer must be named.
 */
export async function resolveInvoiceNumber(deps: Pick<Deps, 'db'>, number: string, issuerCode?: string): Promise<ReceivableInvoice> {
  const found = await findInvoicesByNumber(deps.db, number.trim(), issuerCode);
  if (found.length === 0) {
    throw refuse.notFound(`no invoice or credit note numbered ${number}${issuerCode ? ` issued by ${issuerCode}` : ''}`);
  }
  if (found.length > 1) {
    throw refuse.invalid(`${number} was issued by ${found.length} issuers (${found.map((f) => f.issuerCode).join(', ')}); say which with --issuer`);
  }
  return found[0]!;
}

/** Today in the invoice's partnership's time zone: the date a change made now carries. */
export function todayFor(deps: Pick<Deps, 'clock'>, invoice: Pick<ReceivableInvoice, 'timeZone'>): string {
  return localDateOf(deps.clock.now(), invoice.timeZone);
}

/** The later of two dates (YYYY-MM-DD compares as text). */
export function laterDate(a: string, b: string | null): string {
  return b !== null && b > a ? b : a;
}

/** An invoice's receivables figures, for answers and the audit log. */
export interface InvoiceBalance {
  id: number;
  number: string;
  status: string;
  currency: string;
  total: Pennies;
  open: Pennies;
}

// ---- reports ----

export interface OpenAmountsReport {
  asOf: string | null;
  rows: OpenAmountRow[];
  totals: CurrencyTotals[];
}

/** Open amounts per customer and currency: open invoices, credit balance, net. Now, or as of a date. */
export async function openAmounts(deps: Pick<Deps, 'db'>, input: { asOf?: string; customer?: string } = {}): Promise<OpenAmountsReport> {
  const asOf = input.asOf === undefined ? null : parseDate(input.asOf, 'as-of date');
  const report = summarizeOpenAmounts(await openInvoices(deps.db, asOf, input.customer), await creditBalances(deps.db, asOf, input.customer));
  return { asOf, ...report };
}

/** The aging report as of a date: open amounts by days past due, per customer and currency. */
export async function agingReport(deps: Pick<Deps, 'db'>, input: { asOf: string }): Promise<AgingReport> {
  const asOf = parseDate(input.asOf, 'as-of date');
  return buildAgingReport(asOf, await openInvoices(deps.db, asOf), await creditBalances(deps.db, asOf));
}

export interface CustomerCredits {
  customer: { code: string; name: string };
  balances: CreditBalance[];
  entries: CreditEntry[];
}

/** A customer's credit balances per currency and the ledger behind them. */
export async function customerCredits(deps: Pick<Deps, 'db'>, customerCode: string): Promise<CustomerCredits> {
  const customer = await findPartnerByCode(deps.db, customerCode);
  if (!customer) throw refuse.notFound(`no partner with code ${customerCode}`);
  return {
    customer: { code: customer.code, name: customer.name },
    balances: await creditBalances(deps.db, null, customer.code),
    entries: await creditEntries(deps.db, customer.id),
  };
}

// ---- applying credit ----

export interface CreditApplication {
  entryId: number;
  amount: Pennies;
  invoice: InvoiceBalance;
  /** The customer's credit in the invoice's currency after the application. */
  remainingCredit: Pennies;
}

/**
 * Applies a customer's credit balance to one of their open invoices (all of what is open, or the
 * amount given, never more than the balance). Credit is never applied automatically: the customer
 * may want it refunded, or kept for a particular invoice, so an operator decides.
 *
 * Locks: the customer's credit first, then the invoice, in that order everywhere, so two
 * applications cannot spend the same credit and no two changes wait on each other in a circle.
 */
export async function applyCredit(deps: Deps, input: { invoiceId: number; amount?: string; actor: string }): Promise<CreditApplication> {
  const peek = await requireInvoice(deps.db, input.invoiceId);
  return deps.db.transaction(async (tx) => {
    await lockCustomerCredit(tx, peek.customerPartnerId);
    const invoice = await requireInvoice(tx, input.invoiceId, { lock: true });
    if (invoice.kind !== 'invoice') throw refuse.conflict(`${invoice.number} is a credit note; credit is applied to invoices`);
    if (invoice.status === 'void') throw refuse.conflict(`${invoice.number} is void; credit cannot be applied to it`);
    const money = (p: Pennies) => formatMoney(p, invoice.currency);
    const settlement = await settlementOf(tx, invoice);
    const open = openAmount(settlement);
    if (open <= 0n) throw refuse.conflict(`${invoice.number} has nothing open; there is nothing to apply credit to`);
    const balance = await creditBalance(tx, invoice.customerPartnerId, invoice.currency);
    if (balance <= 0n) throw refuse.conflict(`${invoice.customerCode} has no ${invoice.currency} credit to apply`);
    const amount = input.amount === undefined ? (open < balance ? open : balance) : amountIn(input.amount, invoice.currency);
    if (amount > balance) throw refuse.conflict(`${invoice.customerCode} has ${money(balance)} of credit; ${money(amount)} cannot be applied`);
    if (amount > open) throw refuse.conflict(`${invoice.number} has ${money(open)} open; ${money(amount)} of credit would be more than it owes`);

    const entryId = await insertCreditEntry(tx, {
      customerPartnerId: invoice.customerPartnerId,
      currency: invoice.currency,
      kind: 'applied',
      amount: (0n - amount) as Pennies,
      effectiveOn: laterDate(todayFor(deps, invoice), settlement.latestDate),
      invoiceId: invoice.id,
      createdBy: input.actor,
    });
    const openAfter = (open - amount) as Pennies;
    const status = paymentStatus(invoice.total, openAfter);
    if (status !== invoice.status) await setInvoiceStatus(tx, invoice.id, status);
    await writeAudit(tx, {
      actor: input.actor,
      action: 'credit.applied',
      entity: 'invoice',
      entityId: invoice.id,
      before: { number: invoice.number, status: invoice.status, open: open.toString(), customerCredit: balance.toString() },
      after: { number: invoice.number, status, open: openAfter.toString(), customerCredit: (balance - amount).toString(), applied: amount.toString(), currency: invoice.currency, customer: invoice.customerCode, entryId },
    });
    return {
      entryId,
      amount,
      invoice: { id: invoice.id, number: invoice.number, status, currency: invoice.currency, total: invoice.total, open: openAfter },
      remainingCredit: (balance - amount) as Pennies,
    };
  });
}
