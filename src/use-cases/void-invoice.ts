import { settlementOf, writeAudit } from '../../adapters/db/receivables-repository';
import { formatMoney } from '../core/money';
import type { Deps } from '../deps';
import { refuse, requireInvoice, requireText } from './receivables';

export interface VoidInvoiceResult {
  /** `already_void`: the invoice was void before this call (a repeated request); nothing changed. */
  outcome: 'voided' | 'already_void';
  invoice: { id: number; number: string; status: 'void'; voidedAt: string; reason: string };
  /** Whether an unsent email of the invoice was stopped. */
  emailStopped: boolean;
}

/**
 * Voids an issued invoice that nothing has settled: no payment, no credit note, no credit applied.
 * It keeps its number (the series stays gapless) and leaves the open amounts and aging from the day
 * it is voided.
 *
 * Its billed transactions stay attached to it and are not billed again by a later run: a void
 * invoice's charges are cancelled, not moved. Re-billing is a deliberate act (see the README,
 * "Payments, credit notes and aging"). An invoice something has settled is corrected with a credit
 * note instead, which keeps the history of what was paid against what.
 *
 * If its email has not been sent yet, it is stopped (marked failed with the reason), so a customer
 * is never sent an invoice that is already void.
 */
export async function voidInvoice(deps: Deps, input: { invoiceId: number; reason: string; actor: string }): Promise<VoidInvoiceResult> {
  const reason = requireText(input.reason, 'reason', 500);
  return deps.db.transaction(async (tx): Promise<VoidInvoiceResult> => {
    const invoice = await requireInvoice(tx, input.invoiceId, { lock: true });
    if (invoice.kind !== 'invoice') throw refuse.conflict(`${invoice.number} is a credit note; credit notes cannot be voided`);
    if (invoice.status === 'void') {
      return { outcome: 'already_void', invoice: { id: invoice.id, number: invoice.number, status: 'void', voidedAt: invoice.voidedAt!, reason: invoice.reason ?? '' }, emailStopped: false };
    }
    const settlement = await settlementOf(tx, invoice);
    if (settlement.paymentCount > 0) {
      throw refuse.conflict(
        `${invoice.number} has ${settlement.paymentCount} payment(s) totalling ${formatMoney(settlement.paid, invoice.currency)}; ` +
          'an invoice with payments cannot be voided: issue a credit note instead',
      );
    }
    if (settlement.creditNoteNumbers.length > 0) {
      throw refuse.conflict(`${invoice.number} has been credited by ${settlement.creditNoteNumbers.join(', ')}; it cannot be voided: credit the rest instead`);
    }
    if (settlement.ledgerEntries > 0) {
      throw refuse.conflict(`${invoice.number} has customer credit applied to it; it cannot be voided: issue a credit note instead`);
    }
    const voidedAt = new Date(deps.clock.now().epochMilliseconds).toISOString();
    await tx('invoices').where('id', invoice.id).update({ status: 'void', voided_at: voidedAt, reason });
    const stopped = await tx('email_deliveries')
      .where({ invoice_id: invoice.id, status: 'pending' })
      .update({ status: 'failed', last_error: `not sent: ${invoice.number} was voided before it was sent (${reason})`, updated_at: tx.fn.now() });
    await writeAudit(tx, {
      actor: input.actor,
      action: 'invoice.voided',
      entity: 'invoice',
      entityId: invoice.id,
      before: { number: invoice.number, status: invoice.status, voidedAt: null, open: invoice.total.toString() },
      after: { number: invoice.number, status: 'void', voidedAt, reason, open: '0', emailStopped: stopped > 0 },
    });
    return { outcome: 'voided', invoice: { id: invoice.id, number: invoice.number, status: 'void', voidedAt, reason }, emailStopped: stopped > 0 };
  });
}
