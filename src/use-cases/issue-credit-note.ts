import { nextCreditNoteNumber } from '../../adapters/db/credit-note-numbers';
import { loadInvoiceDocument } from '../../adapters/db/invoice-repository';
import {
  insertCreditEntry,
  insertInvoiceLines,
  invoiceLines,
  setInvoiceStatus,
  settlementOf,
  writeAudit,
} from '../../adapters/db/receivables-repository';
import { renderInvoiceEmail } from '../core/invoice-email';
import type { Pennies } from '../core/money';
import { creditNoteTotal, formatCreditNoteNumber, openAmount, paymentStatus, planCreditNote, splitAgainstOpen } from '../core/receivables';
import type { Deps } from '../deps';
import { type InvoiceBalance, amountIn, laterDate, refuse, requireInvoice, requireText, todayFor } from './receivables';
import { messageIdFor } from './run-billing-period';

export interface IssueCreditNoteInput {
  invoiceId: number;
  /** In major units, exactly as typed; omitted: everything not yet credited. */
  amount?: string;
  reason: string;
  actor: string;
}

export interface IssueCreditNoteResult {
  creditNote: { id: number; number: string; issueDate: string; total: Pennies; mirrored: boolean; lines: number };
  /** The credited invoice after the credit note (its status and what is still open). */
  invoice: InvoiceBalance;
  /** The part of the credit beyond what the invoice still owed (it had been paid): now the customer's credit. */
  excess: Pennies;
  deliveryId?: number;
  note?: string;
}

/**
 * Issues a credit note against an invoice: a negative document of kind credit_note that references
 * it, numbered in the issuer's CN series for the year, with lines that mirror the credited lines,
 * and its email in the outbox, all in one transaction. The credited invoice is never changed except
 * for its payment status; its row lock serialises credit notes, so their sum can never pass its
 * total. If the invoice was already (partly) paid, what the credit note returns beyond the open
 * amount becomes the customer's credit.
 */
export async function issueCreditNote(deps: Deps, input: IssueCreditNoteInput): Promise<IssueCreditNoteResult> {
  const reason = requireText(input.reason, 'reason', 500);
  const result = await deps.db.transaction(async (tx): Promise<IssueCreditNoteResult> => {
    const invoice = await requireInvoice(tx, input.invoiceId, { lock: true });
    if (invoice.kind !== 'invoice') throw refuse.conflict(`${invoice.number} is itself a credit note; credit notes are issued against invoices`);
    if (invoice.status === 'void') throw refuse.conflict(`${invoice.number} is void; there is nothing to credit`);
    const requested = input.amount === undefined ? undefined : amountIn(input.amount, invoice.currency);
    const settlement = await settlementOf(tx, invoice);
    const plan = planCreditNote({
      invoiceNumber: invoice.number,
      currency: invoice.currency,
      total: invoice.total,
      alreadyCredited: settlement.credited,
      lines: await invoiceLines(tx, invoice.id),
      ...(requested !== undefined ? { requested } : {}),
    });
    if (!plan.ok) throw refuse.conflict(plan.reason);

    const issueDate = todayFor(deps, invoice);
    const year = Number(issueDate.slice(0, 4));
    const seq = await nextCreditNoteNumber(tx, invoice.issuerPartnerId, year);
    const number = formatCreditNoteNumber(year, seq);
    const total = creditNoteTotal(plan.lines);
    const [row] = await tx('invoices')
      .insert({
        partnership_id: invoice.partnershipId,
        issuer_partner_id: invoice.issuerPartnerId,
        customer_partner_id: invoice.customerPartnerId,
        period: invoice.period,
        kind: 'credit_note',
        status: 'issued',
        number,
        number_year: year,
        number_seq: seq,
        currency: invoice.currency,
        issue_date: issueDate,
        // Nothing is due on a credit note; the date says it takes effect on issue.
        due_date: issueDate,
        total_pennies: total.toString(),
        credits_invoice_id: invoice.id,
        reason,
      })
      .returning<{ id: string }[]>('id');
    const creditNoteId = Number(row!.id);
    await insertInvoiceLines(tx, creditNoteId, plan.lines);

    const open = openAmount(settlement);
    const { excess } = splitAgainstOpen(open, plan.amount);
    if (excess > 0n) {
      await insertCreditEntry(tx, {
        customerPartnerId: invoice.customerPartnerId,
        currency: invoice.currency,
        kind: 'credit_note_excess',
        amount: excess,
        effectiveOn: laterDate(issueDate, settlement.latestDate),
        invoiceId: invoice.id,
        creditNoteId,
        createdBy: input.actor,
      });
    }
    const openAfter = openAmount({ ...settlement, credited: (settlement.credited + plan.amount) as Pennies, ledger: (settlement.ledger + excess) as Pennies });
    const status = paymentStatus(invoice.total, openAfter);
    if (status !== invoice.status) await setInvoiceStatus(tx, invoice.id, status);

    let deliveryId: number | undefined;
    let note: string | undefined;
    if (invoice.recipients.length > 0) {
      const doc = await loadInvoiceDocument(tx, creditNoteId);
      const [delivery] = await tx('email_deliveries')
        .insert({
          invoice_id: creditNoteId,
          recipients: invoice.recipients,
          subject: renderInvoiceEmail(doc).subject,
          message_id: messageIdFor(number, invoice.issuerCode, deps.config.mailFrom),
          status: 'pending',
        })
        .returning<{ id: string }[]>('id');
      deliveryId = Number(delivery!.id);
    } else note = 'no invoice recipients and no customer email: not sent';

    const creditNote = { id: creditNoteId, number, issueDate, total, mirrored: plan.mirrored, lines: plan.lines.length };
    await writeAudit(tx, {
      actor: input.actor,
      action: 'credit_note.issued',
      entity: 'invoice',
      entityId: creditNoteId,
      before: null,
      after: { number, credits: invoice.number, total: total.toString(), currency: invoice.currency, reason, lines: plan.lines.length, mirrored: plan.mirrored },
    });
    await writeAudit(tx, {
      actor: input.actor,
      action: 'invoice.credited',
      entity: 'invoice',
      entityId: invoice.id,
      before: { number: invoice.number, status: invoice.status, open: open.toString(), credited: settlement.credited.toString() },
      after: {
        number: invoice.number,
        status,
        open: openAfter.toString(),
        credited: (settlement.credited + plan.amount).toString(),
        creditNote: number,
        ...(excess > 0n ? { creditedToCustomer: excess.toString(), customer: invoice.customerCode } : {}),
      },
    });
    return {
      creditNote,
      invoice: { id: invoice.id, number: invoice.number, status, currency: invoice.currency, total: invoice.total, open: openAfter },
      excess,
      ...(deliveryId !== undefined ? { deliveryId } : {}),
      ...(note ? { note } : {}),
    };
  });
  // After commit: the job only says which delivery to send; the reconciler re-enqueues it if this is lost.
  if (result.deliveryId !== undefined) await deps.queues.enqueue('deliver-email', { deliveryId: result.deliveryId });
  return result;
}
