import { loadInvoiceDocument } from '../../adapters/db/invoice-repository';
import { type SendResult, classifySendError } from '../../adapters/mail/mail-transport';
import { renderInvoiceEmail } from '../core/invoice-email';
import type { Deps } from '../deps';
import { PermanentError, RetryableError } from './errors';

export type DeliveryOutcome =
  | { kind: 'sent'; deliveryId: number; messageId: string; response: string }
  | { kind: 'unchanged'; deliveryId: number; status: string }
  | { kind: 'unknown'; deliveryId: number };

interface DeliveryRow {
  id: string;
  invoice_id: string;
  recipients: string[];
  message_id: string;
  status: string;
  attempts: number;
}

/**
 * Sends one invoice email from the outbox table. The row moves pending -> sending -> sent. If a
 * worker dies after the SMTP server took the message but before we recorded it, the row is found
 * in `sending`: we cannot know whether it went, so it becomes `unknown` for an operator to decide,
 * rather than being sent a second time blindly. Transient SMTP replies go back to pending and are
 * retried with backoff; permanent ones fail the delivery visibly.
 */
export async function deliverInvoice(deps: Deps, deliveryId: number, opts: { finalAttempt: boolean }): Promise<DeliveryOutcome> {
  const { db, mailer, logger } = deps;
  // Render first: a rendering fault must leave the delivery pending, not stuck in `sending`.
  const invoice = await db('email_deliveries').where('id', deliveryId).first<{ invoice_id: string } | undefined>('invoice_id');
  if (!invoice) throw new PermanentError(`email delivery ${deliveryId} does not exist`);
  const doc = await loadInvoiceDocument(db, Number(invoice.invoice_id));
  const email = renderInvoiceEmail(doc);

  const claimed = await db.transaction(async (tx) => {
    const row = await tx('email_deliveries').where('id', deliveryId).forUpdate().first<DeliveryRow | undefined>('*');
    if (!row) throw new PermanentError(`email delivery ${deliveryId} does not exist`);
    if (row.status === 'sending') {
      await tx('email_deliveries').where('id', deliveryId).update({
        status: 'unknown',
        last_error: 'an earlier attempt was interrupted after it started sending; it may or may not have been delivered, so it is not resent automatically',
        updated_at: tx.fn.now(),
      });
      return { row, next: 'unknown' as const };
    }
    if (row.status !== 'pending') return { row, next: 'unchanged' as const };
    await tx('email_deliveries').where('id', deliveryId).update({ status: 'sending', attempts: row.attempts + 1, transport: mailer.mode, updated_at: tx.fn.now() });
    return { row, next: 'send' as const };
  });
  if (claimed.next === 'unknown') {
    logger.warn({ deliveryId }, 'delivery found mid-send after a crash; marked unknown');
    return { kind: 'unknown', deliveryId };
  }
  if (claimed.next === 'unchanged') return { kind: 'unchanged', deliveryId, status: claimed.row.status };

  const { row } = claimed;
  let result: SendResult;
  try {
    result = await mailer.send({
      messageId: row.message_id,
      to: row.recipients,
      subject: email.subject,
      text: email.text,
      html: email.html,
      attachments: [{ filename: email.csvFileName, content: Buffer.from(email.csv, 'utf8'), contentType: 'text/csv; charset=utf-8' }],
    });
  } catch (err) {
    const failure = classifySendError(err);
    const giveUp = failure.kind === 'permanent' || opts.finalAttempt;
    await db('email_deliveries').where('id', deliveryId).update({
      status: giveUp ? 'failed' : 'pending',
      last_error: failure.message,
      updated_at: db.fn.now(),
    });
    logger.warn({ deliveryId, invoice: doc.number, code: failure.code, kind: failure.kind }, `invoice email not sent: ${failure.message}`);
    if (failure.kind === 'permanent') throw new PermanentError(`delivery ${deliveryId} of ${doc.number}: ${failure.message}`);
    throw new RetryableError(`delivery ${deliveryId} of ${doc.number}: ${failure.message}`);
  }
  // Outside the try on purpose: the server has the message now. If recording that fails, the row
  // stays `sending` and the retry marks it `unknown` instead of sending a second copy.
  await db('email_deliveries').where('id', deliveryId).update({
    status: 'sent',
    sent_at: db.fn.now(),
    last_response: result.response,
    last_error: result.rejected.length > 0 ? `rejected recipients: ${result.rejected.join(', ')}` : null,
    updated_at: db.fn.now(),
  });
  logger.info({ deliveryId, invoice: doc.number, messageId: row.message_id }, 'invoice email sent');
  return { kind: 'sent', deliveryId, messageId: row.message_id, response: result.response };
}
