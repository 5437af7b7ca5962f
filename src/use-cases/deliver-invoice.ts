import { setTimeout as sleep } from 'node:timers/promises';
import type { Knex } from 'knex';
import type { Db } from '../../adapters/db/database';
import { loadInvoiceDocument, loadInvoiceRecords } from '../../adapters/db/invoice-repository';
import { type OutgoingMail, type SendResult, classifySendError } from '../../adapters/mail/mail-transport';
import { renderInvoicePdf } from '../../adapters/render/invoice-pdf';
import { renderInvoiceCsv, renderInvoiceEmail } from '../core/invoice-email';
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
  resend_requested_by: string | null;
}

// What the communication log says about an attempt nobody saw finish.
const INTERRUPTED =
  'an earlier attempt was interrupted after it started sending; it may or may not have been delivered, so it is not resent automatically';

/**
 * Sends one invoice email from the outbox table, with the invoice as a PDF and its transactions
 * as a CSV. The row moves pending -> sending -> sent. If a worker dies after the SMTP server took
 * the message but before we recorded it, the row is found in `sending`: we cannot know whether it
 * went, so it becomes `unknown` for an operator to decide (and resend on purpose), rather than
 * being sent a second time blindly. Transient SMTP replies go back to pending and are retried with
 * backoff; permanent ones fail the delivery visibly.
 *
 * Every attempt is written to the communication log (email_attempts) when it starts, in the same
 * statement that claims the delivery, and finished with the outcome and the server's reply in the
 * same statement that records the delivery's new state: the log and the delivery never disagree,
 * and an attempt a crash interrupted is still in the log, finished later as `unknown`.
 */
export async function deliverInvoice(deps: Deps, deliveryId: number, opts: { finalAttempt: boolean }): Promise<DeliveryOutcome> {
  const { db, mailer, logger, config } = deps;
  const delivery = await db('email_deliveries').where('id', deliveryId).first<{ invoice_id: string; status: string } | undefined>('invoice_id', 'status');
  if (!delivery) throw new PermanentError(`email delivery ${deliveryId} does not exist`);
  // A job for a delivery that is finished (a duplicate, an operator's retry) has nothing to render.
  if (delivery.status !== 'pending' && delivery.status !== 'sending') return { kind: 'unchanged', deliveryId, status: delivery.status };
  // Render before claiming: a rendering fault must leave the delivery pending, not stuck in `sending`.
  const message = await renderMessage(deps, Number(delivery.invoice_id));

  const known = { transport: mailer.mode, sender: config.mailFrom, subject: message.subject };
  const claimed = (await claimPending(db, deliveryId, known)) ?? (await claimOtherwise(db, deliveryId, known));
  if (claimed.next === 'unknown') {
    logger.warn({ deliveryId }, 'delivery found mid-send after a crash; marked unknown');
    return { kind: 'unknown', deliveryId };
  }
  if (claimed.next === 'unchanged') return { kind: 'unchanged', deliveryId, status: claimed.status };

  const { attempt, recipients, messageId } = claimed;
  let result: SendResult;
  try {
    result = await mailer.send({ ...message, messageId, to: recipients });
  } catch (err) {
    const failure = classifySendError(err);
    const giveUp = failure.kind === 'permanent' || opts.finalAttempt;
    // The server answered, so the outcome is known: recorded through a database outage (retried
    // with backoff), so that the delivery does not stay `sending` and later turn `unknown`.
    await recordKnownOutcome(deps, deliveryId, attempt, { status: giveUp ? 'failed' : 'pending', lastError: failure.message }, {
      outcome: failure.kind === 'permanent' ? 'permanent_failure' : 'transient_failure',
      reply_code: failure.code ?? null,
      reply: failure.message,
      rejected: rejectedOf(err),
    });
    logger.warn({ deliveryId, invoice: message.invoiceNumber, code: failure.code, kind: failure.kind }, `invoice email not sent: ${failure.message}`);
    if (failure.kind === 'permanent') throw new PermanentError(`delivery ${deliveryId} of ${message.invoiceNumber}: ${failure.message}`);
    throw new RetryableError(`delivery ${deliveryId} of ${message.invoiceNumber}: ${failure.message}`);
  }
  // Outside the try on purpose: the server has the message now. Recording that is retried through a
  // database outage; only if it still fails (or the process dies first) does the row stay `sending`,
  // and the retry then marks it `unknown` instead of sending a second copy.
  await recordKnownOutcome(
    deps,
    deliveryId,
    attempt,
    { status: 'sent', lastError: result.rejected.length > 0 ? `rejected recipients: ${result.rejected.join(', ')}` : null, lastResponse: result.response },
    {
      outcome: 'sent',
      reply_code: replyCodeOf(result.response),
      reply: result.rejectedReasons?.length
        ? `${result.response}; rejected: ${result.rejectedReasons.map((r) => `${r.recipient}: ${r.message}`).join('; ')}`
        : result.response,
      rejected: result.rejected,
    },
  );
  logger.info({ deliveryId, invoice: message.invoiceNumber, messageId }, 'invoice email sent');
  return { kind: 'sent', deliveryId, messageId, response: result.response };
}

type RenderedMessage = Omit<OutgoingMail, 'messageId' | 'to'> & { invoiceNumber: string };

/** The email as it goes out: bodies, the PDF and the CSV, all built from buffers in memory. */
async function renderMessage(deps: Deps, invoiceId: number): Promise<RenderedMessage> {
  const doc = await loadInvoiceDocument(deps.db, invoiceId);
  const records = await loadInvoiceRecords(deps.db, invoiceId);
  const email = renderInvoiceEmail(doc);
  const pdf = await renderInvoicePdf(doc);
  return {
    invoiceNumber: doc.number,
    subject: email.subject,
    text: email.text,
    html: email.html,
    attachments: [
      { filename: email.pdfFileName, content: pdf, contentType: 'application/pdf' },
      { filename: email.csvFileName, content: Buffer.from(renderInvoiceCsv(doc, records), 'utf8'), contentType: 'text/csv; charset=utf-8' },
    ],
  };
}

interface AttemptResult {
  outcome: 'sent' | 'transient_failure' | 'permanent_failure' | 'unknown';
  reply_code: number | null;
  reply: string;
  rejected: string[];
}

interface KnownAtClaim {
  transport: string;
  sender: string;
  subject: string;
}

type Claim =
  | { next: 'send'; attempt: number; recipients: string[]; messageId: string }
  | { next: 'unknown' }
  | { next: 'unchanged'; status: string };

/**
 * Claims a pending delivery for one attempt and writes the attempt to the log, in one statement:
 * this runs for every invoice email, so it is one round trip, and atomic like a transaction. A
 * concurrent claimer waits for the row and then finds it no longer pending. Returns undefined when
 * the delivery is not pending.
 */
async function claimPending(db: Db | Knex.Transaction, deliveryId: number, known: KnownAtClaim): Promise<Claim | undefined> {
  const { rows } = await db.raw<{ rows: { attempt: number; recipients: string[]; message_id: string }[] }>(
    `WITH prior AS (SELECT id, resend_requested_by FROM email_deliveries WHERE id = ?),
     claimed AS (
       UPDATE email_deliveries d
       -- The resend request is consumed by the attempt that carries it (and logged there).
       SET status = 'sending', attempts = d.attempts + 1, transport = ?, resend_requested_by = NULL, resend_requested_at = NULL, updated_at = now()
       FROM prior WHERE d.id = prior.id AND d.status = 'pending'
       RETURNING d.id, d.attempts, d.recipients, d.message_id, prior.resend_requested_by
     ),
     logged AS (
       INSERT INTO email_attempts (delivery_id, attempt, trigger, requested_by, transport, sender, recipients, subject, message_id)
       SELECT id, attempts, CASE WHEN resend_requested_by IS NULL THEN 'automatic' ELSE 'resend' END, resend_requested_by, ?, ?, recipients, ?, message_id
       FROM claimed
       RETURNING attempt
     )
     SELECT c.attempts AS attempt, c.recipients, c.message_id FROM claimed c JOIN logged l ON l.attempt = c.attempts`,
    [deliveryId, known.transport, known.transport, known.sender, known.subject],
  );
  const row = rows[0];
  return row ? { next: 'send', attempt: row.attempt, recipients: row.recipients, messageId: row.message_id } : undefined;
}

/**
 * The delivery was not pending: under its row lock, decide why. Found in `sending`, an earlier
 * attempt died mid-send and the delivery becomes `unknown`; a delivery that became pending since
 * (a resend just now) is claimed after all; anything else is left as it is.
 */
function claimOtherwise(db: Db, deliveryId: number, known: KnownAtClaim): Promise<Claim> {
  return db.transaction(async (tx): Promise<Claim> => {
    const row = await tx('email_deliveries').where('id', deliveryId).forUpdate().first<DeliveryRow | undefined>('*');
    if (!row) throw new PermanentError(`email delivery ${deliveryId} does not exist`);
    if (row.status === 'sending') {
      await tx('email_deliveries').where('id', deliveryId).update({ status: 'unknown', last_error: INTERRUPTED, updated_at: tx.fn.now() });
      await finishInterruptedAttempt(tx, row, known);
      return { next: 'unknown' };
    }
    if (row.status === 'pending') {
      const claim = await claimPending(tx, deliveryId, known);
      if (claim) return claim;
    }
    return { next: 'unchanged', status: row.status };
  });
}

/**
 * How long an outcome the SMTP server gave is retried through a database outage before giving up:
 * first after 200 ms, doubling to at most 5 s, for up to 30 s in all (well inside a worker's lock,
 * which is renewed while the job runs). PostgreSQL restarting, failing over or dropping the
 * connection takes seconds; giving up leaves the delivery `sending`, and its next attempt marks it
 * `unknown` for an operator, which is the right answer only when nobody knows what happened.
 */
export const RECORD_OUTCOME_RETRY = { firstDelayMs: 200, maxDelayMs: 5000, budgetMs: 30_000 } as const;

type DeliveryUpdate = { status: 'sent' | 'pending' | 'failed'; lastError: string | null; lastResponse?: string };

/**
 * Records what the SMTP server answered, retrying while the database is unreachable (the
 * connection dropped, the server restarting, no connection to be had). Any other database error is
 * thrown at once: retrying a statement the database refuses does not make it succeed.
 */
async function recordKnownOutcome(deps: Deps, deliveryId: number, attempt: number, delivery: DeliveryUpdate, result: AttemptResult): Promise<void> {
  const started = Date.now();
  let delay: number = RECORD_OUTCOME_RETRY.firstDelayMs;
  for (let tries = 1; ; tries += 1) {
    try {
      await recordOutcome(deps, deliveryId, attempt, delivery, result);
      if (tries > 1) deps.logger.info({ deliveryId, attempt, outcome: result.outcome, tries }, 'email outcome recorded after the database came back');
      return;
    } catch (err) {
      if (!isDatabaseUnavailable(err) || Date.now() - started + delay > RECORD_OUTCOME_RETRY.budgetMs) throw err;
      deps.logger.warn(
        { deliveryId, attempt, outcome: result.outcome, tries, retryInMs: delay, err: (err as Error).message },
        'could not record the email outcome: the database is unavailable; trying again',
      );
      await sleep(delay);
      delay = Math.min(delay * 2, RECORD_OUTCOME_RETRY.maxDelayMs);
    }
  }
}

// SQLSTATEs of a connection lost or refused: connection exceptions (08), the server shutting down or
// starting up (57P01-57P03), too many connections (53300).
const UNAVAILABLE_SQLSTATES = new Set(['08000', '08001', '08003', '08004', '08006', '08007', '57P01', '57P02', '57P03', '53300']);
const UNAVAILABLE_SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/** A database error that says the server could not be reached or dropped the connection, not that it refused the statement. */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const { code, name, message } = err as { code?: unknown; name?: unknown; message?: unknown };
  if (typeof code === 'string' && (UNAVAILABLE_SQLSTATES.has(code) || UNAVAILABLE_SOCKET_CODES.has(code))) return true;
  // knex: no connection could be had from the pool in time.
  if (name === 'KnexTimeoutError') return true;
  // node-postgres: the socket closed under a query, or a client already broken was used.
  return typeof message === 'string' && /Connection terminated|is not queryable/i.test(message);
}

/**
 * The delivery's new state and the attempt's outcome, together, in one statement, for the attempt
 * that claimed the delivery: it is still `sending` under that attempt, or `unknown` (a second job for
 * the delivery, after a lost lock, found it mid-send; what the server answered is better than
 * unknown). Anything else means this attempt's outcome was recorded already (a retry after a
 * commit whose reply was lost) or the delivery has moved on (an operator resent it): it is left as
 * it is.
 */
async function recordOutcome(deps: Deps, deliveryId: number, attempt: number, delivery: DeliveryUpdate, result: AttemptResult): Promise<void> {
  const { rows } = await deps.db.raw<{ rows: { recorded: number }[] }>(
    `WITH d AS (
       UPDATE email_deliveries
       SET status = ?, last_error = ?, last_response = coalesce(?, last_response),
           sent_at = CASE WHEN ? = 'sent' THEN now() ELSE sent_at END, updated_at = now()
       WHERE id = ? AND attempts = ? AND status IN ('sending', 'unknown')
       RETURNING id
     ),
     a AS (
       UPDATE email_attempts a SET outcome = ?, reply_code = ?, reply = ?, rejected = ?::text[], finished_at = now()
       FROM d WHERE a.delivery_id = d.id AND a.attempt = ?
       RETURNING a.attempt
     )
     SELECT count(*)::int AS recorded FROM d`,
    [delivery.status, delivery.lastError, delivery.lastResponse ?? null, delivery.status, deliveryId, attempt, result.outcome, result.reply_code, result.reply, result.rejected, attempt],
  );
  if ((rows[0]?.recorded ?? 0) > 0) return;
  const now = await deps.db('email_deliveries as d')
    .leftJoin('email_attempts as a', (j) => void j.on('a.delivery_id', 'd.id').andOn('a.attempt', deps.db.raw('?', [attempt])))
    .where('d.id', deliveryId)
    .first<{ status: string; attempts: number; outcome: string | null } | undefined>('d.status', 'd.attempts', 'a.outcome');
  if (now?.attempts === attempt && now.status === delivery.status && now.outcome === result.outcome) return;
  deps.logger.warn(
    { deliveryId, attempt, outcome: result.outcome, found: now ?? null },
    'the delivery moved on while this attempt was recording its outcome; left as it is',
  );
}

/**
 * Finishes the attempt a crash interrupted as `unknown`. Normally its row was written when it
 * started; a delivery put in `sending` some other way (by hand, or before the log existed) gets a
 * row for that attempt now, so the log still shows it.
 */
async function finishInterruptedAttempt(tx: Knex.Transaction, row: DeliveryRow, known: KnownAtClaim): Promise<void> {
  const attempt = Math.max(row.attempts, 1);
  await tx.raw(
    `INSERT INTO email_attempts (delivery_id, attempt, trigger, transport, sender, recipients, subject, message_id, outcome, reply, finished_at)
     VALUES (?, ?, 'automatic', ?, ?, ?, ?, ?, 'unknown', ?, now())
     ON CONFLICT (delivery_id, attempt) DO UPDATE SET outcome = 'unknown', reply = EXCLUDED.reply, finished_at = now()
     WHERE email_attempts.outcome IS NULL`,
    [row.id, attempt, known.transport, known.sender, row.recipients, known.subject, row.message_id, INTERRUPTED],
  );
}

/** The leading reply code of an SMTP response such as "250 OK: queued as 123"; null for the outbox. */
function replyCodeOf(response: string): number | null {
  const m = /^([2-5]\d\d)[\s-]/.exec(response);
  return m ? Number(m[1]) : null;
}

// Nodemailer lists the refused recipients on an EENVELOPE error.
function rejectedOf(err: unknown): string[] {
  const rejected = (err as { rejected?: unknown } | null)?.rejected;
  return Array.isArray(rejected) ? rejected.filter((r): r is string => typeof r === 'string') : [];
}
