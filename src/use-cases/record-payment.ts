import { type PaymentRecord, findPayment, insertCreditEntry, paymentExcess, insertPayment, setInvoiceStatus, settlementOf, writeAudit } from '../../adapters/db/receivables-repository';
import { type Pennies, formatMoney } from '../core/money';
import { openAmount, paymentStatus, splitAgainstOpen } from '../core/receivables';
import type { Deps } from '../deps';
import { type InvoiceBalance, amountIn, laterDate, parseDate, refuse, requireInvoice, requireText, todayFor } from './receivables';

export interface RecordPaymentInput {
  invoiceId: number;
  /** In major units, exactly as typed: "12.34". */
  amount: string;
  /** The currency the money came in; refused unless it is the invoice's. Omitted: the invoice's. */
  currency?: string;
  /** The day the money was received, YYYY-MM-DD. */
  receivedOn: string;
  /** The bank's or the customer's reference; one payment per invoice and reference. */
  reference: string;
  actor: string;
}

export interface RecordPaymentResult {
  /** `already_recorded`: this invoice already has this payment (same reference, amount and date); nothing changed. */
  outcome: 'recorded' | 'already_recorded';
  payment: PaymentRecord;
  invoice: InvoiceBalance;
  /** The part of this payment beyond what the invoice still owed, now the customer's credit. */
  excess: Pennies;
}

/**
 * Records a payment against an invoice, in one transaction holding the invoice's row lock, so
 * payments racing on one invoice are applied one after the other and never settle more than it
 * owes: what is beyond the open amount becomes the customer's credit (dated the later of the
 * payment and whatever settled the invoice before it, since that is when it became excess).
 *
 * The same payment twice (same invoice and reference) is recorded once: the second call answers
 * `already_recorded`. A different amount or date under a reference already used is refused, since
 * it is either a typo or a second payment that needs its own reference.
 */
export async function recordPayment(deps: Deps, input: RecordPaymentInput): Promise<RecordPaymentResult> {
  const reference = requireText(input.reference, 'payment reference', 200);
  const receivedOn = parseDate(input.receivedOn, 'payment date');
  return deps.db.transaction(async (tx) => {
    const invoice = await requireInvoice(tx, input.invoiceId, { lock: true });
    const money = (p: Pennies) => formatMoney(p, invoice.currency);
    if (invoice.kind !== 'invoice') {
      throw refuse.conflict(`${invoice.number} is a credit note; payments are recorded against the invoice it credits`);
    }
    const currency = input.currency?.trim().toUpperCase();
    if (currency !== undefined && currency !== invoice.currency) {
      throw refuse.invalid(`a payment in ${currency || '(no currency)'} cannot settle ${invoice.number}, which is in ${invoice.currency}; record it in ${invoice.currency}`);
    }
    const amount = amountIn(input.amount, invoice.currency);

    const existing = await findPayment(tx, invoice.id, reference);
    if (existing) {
      if (existing.amount !== amount || existing.receivedOn !== receivedOn) {
        throw refuse.conflict(
          `${invoice.number} already has payment "${reference}" of ${money(existing.amount)} received on ${existing.receivedOn}; ` +
            'a different payment needs its own reference',
        );
      }
      const settlement = await settlementOf(tx, invoice);
      return {
        outcome: 'already_recorded' as const,
        payment: existing,
        invoice: { id: invoice.id, number: invoice.number, status: invoice.status, currency: invoice.currency, total: invoice.total, open: openAmount(settlement) },
        excess: await paymentExcess(tx, existing.id),
      };
    }
    if (invoice.status === 'void') {
      throw refuse.conflict(`${invoice.number} is void (${invoice.reason ?? 'no reason recorded'}); no payment can be recorded against it`);
    }
    const today = todayFor(deps, invoice);
    if (receivedOn > today) throw refuse.invalid(`payment date ${receivedOn} is in the future (today is ${today} in ${invoice.timeZone})`);
    if (receivedOn < invoice.issueDate) {
      throw refuse.invalid(`payment date ${receivedOn} is before ${invoice.number} was issued (${invoice.issueDate})`);
    }

    const settlement = await settlementOf(tx, invoice);
    const open = openAmount(settlement);
    const { excess } = splitAgainstOpen(open, amount);
    const payment = await insertPayment(tx, { invoiceId: invoice.id, amount, receivedOn, reference, recordedBy: input.actor });
    if (excess > 0n) {
      await insertCreditEntry(tx, {
        customerPartnerId: invoice.customerPartnerId,
        currency: invoice.currency,
        kind: 'overpayment',
        amount: excess,
        effectiveOn: laterDate(receivedOn, settlement.latestDate),
        invoiceId: invoice.id,
        paymentId: payment.id,
        createdBy: input.actor,
      });
    }
    const openAfter = openAmount({ ...settlement, paid: (settlement.paid + amount) as Pennies, ledger: (settlement.ledger + excess) as Pennies });
    const status = paymentStatus(invoice.total, openAfter);
    if (status !== invoice.status) await setInvoiceStatus(tx, invoice.id, status);
    await writeAudit(tx, {
      actor: input.actor,
      action: 'payment.recorded',
      entity: 'invoice',
      entityId: invoice.id,
      before: { number: invoice.number, status: invoice.status, open: open.toString() },
      after: {
        number: invoice.number,
        status,
        open: openAfter.toString(),
        payment: { id: payment.id, amount: amount.toString(), currency: invoice.currency, receivedOn, reference },
        ...(excess > 0n ? { creditedToCustomer: excess.toString(), customer: invoice.customerCode } : {}),
      },
    });
    return {
      outcome: 'recorded' as const,
      payment,
      invoice: { id: invoice.id, number: invoice.number, status, currency: invoice.currency, total: invoice.total, open: openAfter },
      excess,
    };
  });
}
