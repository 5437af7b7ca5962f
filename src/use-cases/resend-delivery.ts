import type { Deps } from '../deps';
import { PermanentError } from './errors';

/** The delivery cannot be resent in its current state; `status` says why. */
export class ResendRefused extends Error {
  override readonly name = 'ResendRefused';
  constructor(
    readonly reason: 'not_found' | 'in_progress',
    message: string,
    readonly status?: string,
  ) {
    super(message);
  }
}

export interface ResendRequested {
  deliveryId: number;
  invoiceNumber: string;
  /** The delivery's status before the request: failed, unknown or sent. */
  previousStatus: string;
  messageId: string;
  /** The deliver-email job that will make the attempt, or undefined when the caller sends in-process. */
  jobId?: string;
}

// Statuses an operator may resend from. `pending` and `sending` already have an attempt on the
// way, so a second request (a double click) is refused rather than sending twice.
const RESENDABLE = ['failed', 'unknown', 'sent'];

/**
 * An operator resends an invoice email on purpose: after a permanent failure was fixed (a mailbox
 * restored), after a crash left it `unknown`, or because the customer asks for it again. The
 * delivery goes back to `pending` with the request recorded (who, when) and the same Message-ID,
 * so the recipient's mail system can tell it is the same message; the attempt that follows is
 * logged as a resend in the communication log, and the request is in the audit log.
 *
 * With `enqueue` (the default) a deliver-email job makes the attempt; without it the caller sends
 * in its own process with deliverInvoice (the CLI's --send-now).
 */
export async function resendDelivery(
  deps: Deps,
  deliveryId: number,
  input: { requestedBy: string; enqueue?: boolean },
): Promise<ResendRequested> {
  const { db, logger } = deps;
  if (!input.requestedBy.trim()) throw new PermanentError('a resend must say who asked for it');

  const requested = await db.transaction(async (tx) => {
    const row = await tx('email_deliveries as d')
      .join('invoices as i', 'i.id', 'd.invoice_id')
      .where('d.id', deliveryId)
      .forUpdate('d')
      .first<{ status: string; message_id: string; number: string; attempts: number } | undefined>('d.status', 'd.message_id', 'i.number', 'd.attempts');
    if (!row) throw new ResendRefused('not_found', `email delivery ${deliveryId} does not exist`);
    if (!RESENDABLE.includes(row.status)) {
      throw new ResendRefused(
        'in_progress',
        `email delivery ${deliveryId} of ${row.number} is ${row.status}: an attempt is already on its way, so it is not resent`,
        row.status,
      );
    }
    await tx('email_deliveries').where('id', deliveryId).update({
      status: 'pending',
      resend_requested_by: input.requestedBy,
      resend_requested_at: tx.fn.now(),
      updated_at: tx.fn.now(),
    });
    await tx('audit_log').insert({
      actor: input.requestedBy,
      action: 'delivery.resend_requested',
      entity: 'email_delivery',
      entity_id: String(deliveryId),
      before: JSON.stringify({ status: row.status, attempts: row.attempts }),
      after: JSON.stringify({ status: 'pending', message_id: row.message_id }),
    });
    return { deliveryId, invoiceNumber: row.number, previousStatus: row.status, messageId: row.message_id, nextAttempt: row.attempts + 1 };
  });

  logger.info({ deliveryId, invoice: requested.invoiceNumber, requestedBy: input.requestedBy, was: requested.previousStatus }, 'invoice email resend requested');
  const { nextAttempt, ...result } = requested;
  if (input.enqueue === false) return result;
  return { ...result, jobId: await enqueueResend(deps, deliveryId, nextAttempt) };
}

/**
 * Jobs have a stable id per delivery (`deliver-email-<id>`) so the same work is never queued twice,
 * but the finished job of the earlier attempt may still be kept in Redis under that id, and adding
 * a job whose id exists does nothing. That finished job is removed first, so the new attempt gets
 * the stable id (and the reconciler's re-enqueue of a pending delivery keeps working). If it
 * cannot be removed (a worker still holds it), the attempt gets an id of its own.
 */
async function enqueueResend(deps: Deps, deliveryId: number, attempt: number): Promise<string | undefined> {
  const { queues } = deps;
  const stableId = `deliver-email-${deliveryId}`;
  const queue = queues.get('deliver-email');
  const existing = await queue.getJob(stableId);
  if (existing) {
    const state = await existing.getState();
    if (state === 'completed' || state === 'failed') await queue.remove(stableId);
  }
  const stillThere = await queue.getJob(stableId);
  if (!stillThere) return queues.enqueue('deliver-email', { deliveryId });
  const state = await stillThere.getState();
  // A waiting or delayed job for this delivery will find it pending and send it: nothing to add.
  if (state === 'waiting' || state === 'delayed' || state === 'prioritized') return stableId;
  deps.logger.warn({ deliveryId, state }, 'earlier deliver-email job still held by a worker; queuing the resend under its own id');
  return queues.enqueue('deliver-email', { deliveryId }, { jobId: `${stableId}-attempt-${attempt}` });
}
