import type { Knex } from 'knex';
import type { Temporal } from 'temporal-polyfill';
import { loadInvoiceDocument } from '../../adapters/db/invoice-repository';
import { nextInvoiceNumber } from '../../adapters/db/invoice-numbers';
import { insertInvoiceLines } from '../../adapters/db/receivables-repository';
import { loadPartnership } from '../../adapters/db/partnership-repository';
import type { InvoiceDocument } from '../core/invoice-document';
import { compareLines, describeLine, formatInvoiceNumber, invoiceTotal } from '../core/invoice';
import { pennies } from '../core/money';
import { addDays, isPeriodClosed, lastDayOfPeriod, localDateOf, previousPeriod } from '../core/period';
import { decimal, toDecimalString } from '../core/decimal';
import { renderInvoiceEmail } from '../core/invoice-email';
import type { Deps } from '../deps';
import { PermanentError } from './errors';
import { type SettlementSummary, settlePeriod } from './settle-period';

export interface PartnershipRunResult {
  partnership: string;
  outcome: 'invoiced' | 'already_invoiced' | 'nothing_to_bill' | 'period_open' | 'files_in_progress';
  invoiceId?: number;
  invoiceNumber?: string;
  totalPennies?: string;
  deliveryId?: number;
  /** Periods settled at close in this run (this one, and earlier ones changed by late usage). */
  settled?: SettlementSummary[];
  note?: string;
}

export interface BillingRunResult {
  billingRunId: number;
  period: string;
  invoicesCreated: number;
  partnerships: PartnershipRunResult[];
}

interface PartnershipRow {
  id: string;
  code: string;
  time_zone: string;
  currency: string;
  provider_partner_id: string;
  customer_partner_id: string;
  customer_code: string;
  provider_code: string;
  invoice_recipients: string[];
  customer_email: string | null;
  payment_terms_days: number;
}

/**
 * Records a billing run for a period as queued and enqueues its job; the run's row is where its
 * status is read (GET /billing-runs/:id), and where the reconciler finds it if Redis loses the job.
 * With a request key, asking again for the same key (a retried request) records nothing new: it
 * answers with the run already recorded under the key, carried on if it has work left (see
 * recordRun), and makes sure that run has a job.
 */
export async function requestBillingRun(
  deps: Deps,
  input: { period: string; requestedBy: string; requestKey?: string },
): Promise<{ billingRunId: number; created: boolean }> {
  const { billingRunId, created, status } = await recordRun(deps, input.period, input.requestedBy, input.requestKey);
  await enqueueRun(deps, billingRunId, !created && status === 'queued');
  return { billingRunId, created };
}

/**
 * Adds the run's job, { billingRunId } under its stable id billing-run-<id>: a no-op while that job
 * is waiting or running. `carriedOn`: the run was recorded before and has been put back to queued,
 * and a finished job of it may hold the stable id (adding under a taken id does nothing), so that
 * job is removed first.
 */
async function enqueueRun(deps: Deps, billingRunId: number, carriedOn: boolean): Promise<void> {
  if (carriedOn) {
    const queue = deps.queues.get('billing-run');
    const jobId = `billing-run-${billingRunId}`;
    const state = await queue.getJobState(jobId);
    if (state === 'completed' || state === 'failed') await queue.remove(jobId);
  }
  await deps.queues.enqueue('billing-run', { billingRunId });
}

export interface ScheduledRunRequest {
  billingRunId: number;
  period: string;
  /** Recorded by this request (the first firing for the period), not found under the period's request key. */
  created: boolean;
  /** The run's status after the request: 'queued' when it has work to do (its job was added), else as it stands. */
  status: string;
}

/**
 * What the monthly-close scheduler's job does (a 'billing-run' job naming no run and no period): it
 * records the close of the month before (in UTC) under the period's request key, or finds the run
 * already recorded and carries it on when it left work for a later day (see recordRun), and hands
 * the run to its own job, { billingRunId } under billing-run-<id>. It does not run the run itself:
 * the reconciler recognises a running run's job by its run id, and would otherwise enqueue a
 * second job for a run this one was running; and firings at once, or retried, share that one job.
 * A run finished with nothing left gets no job.
 */
export async function requestScheduledRun(deps: Deps, input: { requestedBy?: string } = {}): Promise<ScheduledRunRequest> {
  const period = scheduledPeriod(deps.clock.now());
  const { billingRunId, created, status } = await recordRun(deps, period, input.requestedBy ?? 'scheduler', scheduledRunKey(period));
  if (status !== 'completed') await enqueueRun(deps, billingRunId, !created && status === 'queued');
  return { billingRunId, period, created, status };
}

/** The period the scheduled close closes: the month before `now`'s, in UTC. */
function scheduledPeriod(now: Temporal.Instant): string {
  return previousPeriod(now.toZonedDateTimeISO('UTC').toPlainDate().toPlainYearMonth().toString());
}

/** The request key of the monthly scheduler's close of a period: one billing run per period, however often it is asked. */
export function scheduledRunKey(period: string): string {
  return `schedule:${period}`;
}

/** Outcomes that leave a partnership to a later run of the same period. */
const LEFT_FOR_LATER: ReadonlyArray<PartnershipRunResult['outcome']> = ['period_open', 'files_in_progress'];

/**
 * Records a billing run as queued. Without a request key every call is a new run. With one, the
 * unique index on billing_runs.request_key makes the insert happen once, in PostgreSQL, however
 * many callers race (a job retried, enqueued twice, run by two workers after a lost lock); the
 * others get the same run. A run already recorded under the key is carried on when it has work
 * left: it failed, or it completed with partnerships whose period had not ended yet in their time
 * zone or whose files were still being ingested (the scheduler fires on days 1-5 for them). It goes
 * back to queued and its next run invoices what is left; invoices already issued are found by
 * their unique (partnership, period) key and not issued again.
 */
async function recordRun(deps: Deps, period: string, requestedBy: string, requestKey?: string): Promise<{ billingRunId: number; created: boolean; status: string }> {
  const { db } = deps;
  const { rows } = await db.raw<{ rows: { id: string }[] }>(
    `INSERT INTO billing_runs (period, status, requested_by, request_key) VALUES (?, 'queued', ?, ?)
     ON CONFLICT (request_key) WHERE request_key IS NOT NULL DO NOTHING
     RETURNING id`,
    [period, requestedBy, requestKey ?? null],
  );
  if (rows[0]) return { billingRunId: Number(rows[0].id), created: true, status: 'queued' };
  // A conflict means a run under this key is committed (ON CONFLICT waits for a concurrent insert).
  const existing = await db('billing_runs').where('request_key', requestKey!).first<{ id: string; period: string; status: string }>('id', 'period', 'status');
  const billingRunId = Number(existing.id);
  if (existing.period !== period) throw new PermanentError(`billing run ${billingRunId} under request key ${requestKey} is for ${existing.period}, not ${period}`);
  const reopened = await db.raw<{ rowCount: number }>(
    `UPDATE billing_runs SET status = 'queued', queued_at = now(), finished_at = NULL, error = NULL
     WHERE id = ? AND (status = 'failed' OR (status = 'completed' AND jsonb_typeof(summary) = 'array'
       AND EXISTS (SELECT 1 FROM jsonb_array_elements(summary) e WHERE e->>'outcome' = ANY(?::text[]))))`,
    [billingRunId, [...LEFT_FOR_LATER]],
  );
  const carriedOn = reopened.rowCount > 0;
  deps.logger.info(
    { billingRunId, period, requestKey, status: existing.status, carriedOn },
    carriedOn ? 'billing run already recorded for this request; carrying it on for what it left' : 'billing run already recorded for this request; not recording another',
  );
  return { billingRunId, created: false, status: carriedOn ? 'queued' : existing.status };
}

/**
 * Closes a period: for each partnership, settles the period-close rules and issues one invoice with
 * lines per account and product, from every transaction not yet invoiced whose usage falls in this
 * period or before it (late items). Each invoice is issued in one transaction that also settles the
 * period, takes the gapless number, marks its transactions invoiced and writes its email to the
 * outbox table; the unique (partnership, period) key makes a second run find nothing to do. Running
 * the same run id again (a worker died) carries on where it stopped.
 */
export async function runBillingPeriod(
  deps: Deps,
  input: { billingRunId?: number; period?: string; requestedBy?: string },
): Promise<BillingRunResult> {
  const { db, clock, logger } = deps;
  const now = clock.now();
  const billingRunId = input.billingRunId ?? (await recordRequestedRun(deps, input, now));
  const claimed = await db('billing_runs')
    .where('id', billingRunId)
    .whereIn('status', ['queued', 'running'])
    .update({ status: 'running', started_at: db.raw('coalesce(started_at, now())') })
    .returning<{ period: string; requested_by: string }[]>(['period', 'requested_by']);
  if (claimed.length === 0) {
    const done = await db('billing_runs').where('id', billingRunId).first<{ period: string; status: string; summary: PartnershipRunResult[] | null; invoices_created: number } | undefined>('period', 'status', 'summary', 'invoices_created');
    if (!done) throw new PermanentError(`billing run ${billingRunId} does not exist`);
    // Finished already (a duplicate job): report what it did.
    return { billingRunId, period: done.period, invoicesCreated: done.invoices_created, partnerships: done.summary ?? [] };
  }
  const period = claimed[0]!.period;
  const requestedBy = claimed[0]!.requested_by;
  const results: PartnershipRunResult[] = [];
  try {
    const partnerships = await activePartnerships(db, period);
    for (const p of partnerships) {
      results.push(await invoicePartnership(deps, p, period, billingRunId, requestedBy, now));
    }
    // Every pending delivery of this run's invoices, including those of an earlier attempt that died before enqueueing.
    const pending = await db('email_deliveries as d').join('invoices as i', 'i.id', 'd.invoice_id')
      .where('i.billing_run_id', billingRunId).where('d.status', 'pending').select<{ id: string }[]>('d.id');
    for (const d of pending) await deps.queues.enqueue('deliver-email', { deliveryId: Number(d.id) });
    const created = await db('invoices').where('billing_run_id', billingRunId).count<{ count: string }[]>('* as count');
    const invoicesCreated = Number(created[0]?.count ?? 0);
    await db('billing_runs').where('id', billingRunId).update({
      status: 'completed',
      invoices_created: invoicesCreated,
      summary: JSON.stringify(results),
      error: null,
      finished_at: db.fn.now(),
    });
    logger.info({ billingRunId, period, invoicesCreated }, 'billing run completed');
    return { billingRunId, period, invoicesCreated, partnerships: results };
  } catch (err) {
    // A permanent fault fails the run for good; anything else leaves it running for the retry.
    if (err instanceof PermanentError) {
      await db('billing_runs').where('id', billingRunId).update({
        status: 'failed',
        error: err.message,
        summary: JSON.stringify(results),
        finished_at: db.fn.now(),
      });
    } else {
      await db('billing_runs').where('id', billingRunId).update({ error: err instanceof Error ? err.message : String(err), summary: JSON.stringify(results) }).catch(() => undefined);
    }
    throw err;
  }
}

/**
 * The run of a call that names no run (the CLI, the demo's job, tests). With a period, a new run of
 * that period. Without one it is the scheduled close of the month before (in UTC), recorded once
 * per period under its request key however often it is called, and run here, in this call; the
 * scheduler's job goes through requestScheduledRun instead, which gives the run a job of its own.
 */
async function recordRequestedRun(deps: Deps, input: { period?: string; requestedBy?: string }, now: Temporal.Instant): Promise<number> {
  const requestedBy = input.requestedBy ?? 'scheduler';
  if (input.period !== undefined) return (await recordRun(deps, input.period, requestedBy)).billingRunId;
  const period = scheduledPeriod(now);
  return (await recordRun(deps, period, requestedBy, scheduledRunKey(period))).billingRunId;
}

/** A draft of what the partnership's invoice for the period would be, computed and rolled back: nothing is written. */
export async function previewInvoice(deps: Deps, input: { partnership: string; period: string }): Promise<{ outcome: PartnershipRunResult; document?: InvoiceDocument }> {
  const [p] = (await activePartnerships(deps.db, input.period)).filter((x) => x.code === input.partnership);
  if (!p) throw new PermanentError(`partnership ${input.partnership} does not exist or has no contract in ${input.period}`);
  let captured: { outcome: PartnershipRunResult; document?: InvoiceDocument } | undefined;
  await deps.db
    .transaction(async (tx) => {
      const outcome = await issueInvoice(tx, deps, p, input.period, null, 'preview', deps.clock.now());
      captured = { outcome, ...(outcome.invoiceId !== undefined ? { document: await loadInvoiceDocument(tx, outcome.invoiceId) } : {}) };
      throw new RollBack();
    })
    .catch((err: unknown) => {
      if (!(err instanceof RollBack) && !(err instanceof NothingToBill)) throw err;
    });
  return captured ?? { outcome: { partnership: p.code, outcome: 'nothing_to_bill' } };
}

class RollBack extends Error {}

async function invoicePartnership(d: Deps, p: PartnershipRow, per: string, runId: number, actor: string, now: Temporal.Instant): Promise<PartnershipRunResult> {
  const base = { partnership: p.code };
  if (!isPeriodClosed(per, p.time_zone, now)) return { ...base, outcome: 'period_open', note: `${per} has not ended in ${p.time_zone}` };
  const inFlight = await d.db('usage_files').where('partner_id', p.customer_partner_id).whereIn('status', ['received', 'parsing', 'parsed']).count<{ count: string }[]>('* as count');
  if (Number(inFlight[0]?.count ?? 0) > 0) {
    return { ...base, outcome: 'files_in_progress', note: `${inFlight[0]?.count} file(s) of ${p.customer_code} still being ingested or rated` };
  }
  return d.db
    .transaction((tx) => issueInvoice(tx, d, p, per, runId, actor, now))
    .catch((err: unknown): PartnershipRunResult => {
      if (err instanceof NothingToBill) return { ...base, outcome: 'nothing_to_bill' as const, ...(err.settled.length > 0 ? { settled: err.settled } : {}) };
      throw err;
    });
}

/** Settles and issues one partnership's invoice inside `tx`; throws NothingToBill (rolling back) when there is nothing. */
async function issueInvoice(tx: Knex.Transaction, d: Deps, p: PartnershipRow, per: string, runId: number | null, actor: string, now: Temporal.Instant): Promise<PartnershipRunResult> {
  const base = { partnership: p.code };
  // One billing run at a time per partnership; the unique index is the guarantee, the lock avoids wasted work.
  await tx('partnerships').where('id', p.id).forUpdate().first('id');
  const existing = await tx('invoices').where({ partnership_id: p.id, period: per, kind: 'invoice' }).first<{ id: string; number: string } | undefined>('id', 'number');
  if (existing) return { ...base, outcome: 'already_invoiced' as const, invoiceId: Number(existing.id), invoiceNumber: existing.number };

  // Period-close settlement first, so the invoice claims what it books: this period, and any
  // earlier invoiced period that late usage or re-rating has changed since (its difference only).
  const ctx = await loadPartnership(tx, { id: Number(p.id) });
  if (!ctx) throw new PermanentError(`partnership ${p.code} disappeared during the billing run`);
  const settled: SettlementSummary[] = [];
  for (const q of [...(await changedInvoicedPeriods(tx, p.id, per)), per]) {
    const s = await settlePeriod(tx, ctx, q, actor);
    if (q === per || s.booked.length > 0 || s.volumeSettled > 0) settled.push(s);
  }

  const issueDate = localDateOf(now, p.time_zone);
  const year = Number(issueDate.slice(0, 4));
  const seq = await nextInvoiceNumber(tx, p.provider_partner_id, year);
  const number = formatInvoiceNumber(year, seq);
  const [inv] = await tx('invoices')
    .insert({
      partnership_id: p.id,
      issuer_partner_id: p.provider_partner_id,
      customer_partner_id: p.customer_partner_id,
      period: per,
      status: 'issued',
      number,
      number_year: year,
      number_seq: seq,
      currency: p.currency,
      issue_date: issueDate,
      due_date: addDays(issueDate, p.payment_terms_days),
      total_pennies: 0,
      billing_run_id: runId,
    })
    .returning<{ id: string }[]>('id');
  const invoiceId = Number(inv!.id);

  const claimed = await claimTransactions(tx, p.id, per, invoiceId);
  if (claimed === 0) {
    // Rolling back returns the number to the sequence, so numbers stay gapless.
    throw new NothingToBill(settled);
  }
  const lines = await buildLines(tx, invoiceId, per);
  await insertInvoiceLines(tx, invoiceId, lines);
  const total = invoiceTotal(lines);
  await tx('invoices').where('id', invoiceId).update({ total_pennies: total.toString() });

  const recipients = p.invoice_recipients.length > 0 ? p.invoice_recipients : p.customer_email ? [p.customer_email] : [];
  let deliveryId: number | undefined;
  let note: string | undefined;
  if (recipients.length > 0) {
    const doc = await loadInvoiceDocument(tx, invoiceId);
    const [delivery] = await tx('email_deliveries')
      .insert({
        invoice_id: invoiceId,
        recipients,
        subject: renderInvoiceEmail(doc).subject,
        message_id: messageIdFor(number, p.provider_code, d.config.mailFrom),
        status: 'pending',
      })
      .returning<{ id: string }[]>('id');
    deliveryId = Number(delivery!.id);
  } else note = 'no invoice recipients and no customer email: not sent';
  await tx('audit_log').insert({
    actor,
    action: 'invoice.issued',
    entity: 'invoice',
    entity_id: String(invoiceId),
    after: JSON.stringify({ number, period: per, partnership: p.code, total: total.toString(), lines: lines.length }),
  });
  return { ...base, outcome: 'invoiced' as const, invoiceId, invoiceNumber: number, totalPennies: total.toString(), settled, ...(deliveryId !== undefined ? { deliveryId } : {}), ...(note ? { note } : {}) };
    }

class NothingToBill extends Error {
  constructor(readonly settled: SettlementSummary[]) {
    super('nothing to bill');
  }
}

/** Earlier periods already invoiced that have uninvoiced usage transactions: late usage or re-rating changed them. */
async function changedInvoicedPeriods(tx: Knex.Transaction, partnershipId: string, period: string): Promise<string[]> {
  const { rows } = await tx.raw<{ rows: { period: string }[] }>(
    `SELECT DISTINCT r.period FROM billing_records r
     WHERE r.partnership_id = ? AND r.period < ? AND r.usage_id IS NOT NULL
       AND EXISTS (SELECT 1 FROM transactions t WHERE t.billing_record_id = r.id AND t.invoice_id IS NULL)
       AND EXISTS (SELECT 1 FROM invoices i WHERE i.partnership_id = r.partnership_id AND i.period = r.period AND i.kind = 'invoice')
     ORDER BY 1`,
    [partnershipId, period],
  );
  return rows.map((r) => r.period);
}

/** Partnerships whose contract overlaps the period, in code order so numbering is deterministic. */
function activePartnerships(db: Knex, period: string): Promise<PartnershipRow[]> {
  const first = `${period}-01`;
  const last = lastDayOfPeriod(period);
  return db('partnerships as ps')
    .join('partners as c', 'c.id', 'ps.customer_partner_id')
    .join('partners as pr', 'pr.id', 'ps.provider_partner_id')
    .where('ps.contract_start', '<=', last)
    .andWhere((q) => void q.whereNull('ps.contract_end').orWhere('ps.contract_end', '>=', first))
    .orderBy('ps.code')
    .select<PartnershipRow[]>(
      'ps.id', 'ps.code', 'ps.time_zone', 'ps.currency', 'ps.provider_partner_id', 'ps.customer_partner_id',
      'c.code as customer_code', 'pr.code as provider_code', 'ps.invoice_recipients', 'c.email as customer_email',
      'ps.payment_terms_days',
    );
}

/** Marks the partnership's uninvoiced transactions of this period and earlier as this invoice's. */
async function claimTransactions(tx: Knex.Transaction, partnershipId: string, period: string, invoiceId: number): Promise<number> {
  const result = await tx.raw<{ rowCount: number }>(
    `UPDATE transactions t SET invoice_id = ?
     FROM billing_records r
     WHERE t.billing_record_id = r.id AND r.partnership_id = ? AND r.period <= ? AND t.invoice_id IS NULL`,
    [invoiceId, partnershipId, period],
  );
  return result.rowCount;
}

interface BuiltLine {
  accountId: string;
  accountCode: string;
  accountName: string;
  productId: string | null;
  productCode: string;
  usagePeriod: string;
  kind: string;
  description: string;
  quantity: string;
  unitPrice: string | null;
  amount: ReturnType<typeof pennies>;
}

/**
 * Lines per account, product, usage period, kind and unit price, summed from the claimed
 * transactions. A period settlement (fee, true-up, cap, voucher) has no product: it is a line of
 * its own, worded by its transaction.
 */
async function buildLines(tx: Knex.Transaction, invoiceId: number, period: string): Promise<BuiltLine[]> {
  const { rows } = await tx.raw<{
    rows: { account_id: string; account_code: string; account_name: string; product_id: string | null; product_code: string | null; product_name: string | null; usage_period: string; kind: string; unit_price: string | null; settlement_text: string | null; quantity: string; amount: string }[];
  }>(
    `SELECT r.account_id, a.code AS account_code, a.name AS account_name, r.product_id, p.code AS product_code,
            p.name AS product_name, r.period AS usage_period, t.kind, t.unit_price,
            CASE WHEN r.settlement IS NOT NULL THEN t.description END AS settlement_text,
            CASE WHEN r.settlement IS NOT NULL THEN 1 ELSE sum(r.quantity) END AS quantity, sum(t.amount_pennies) AS amount
     FROM transactions t
     JOIN billing_records r ON r.id = t.billing_record_id
     JOIN accounts a ON a.id = r.account_id
     LEFT JOIN products p ON p.id = r.product_id
     WHERE t.invoice_id = ?
     GROUP BY r.account_id, a.code, a.name, r.product_id, p.code, p.name, r.period, t.kind, t.unit_price, r.settlement,
              CASE WHEN r.settlement IS NOT NULL THEN t.description END`,
    [invoiceId],
  );
  return rows
    .map((r): BuiltLine => ({
      accountId: r.account_id,
      accountCode: r.account_code,
      accountName: r.account_name,
      productId: r.product_id,
      productCode: r.product_code ?? '',
      usagePeriod: r.usage_period,
      kind: r.kind,
      description:
        r.settlement_text !== null
          ? r.usage_period === period || r.settlement_text.includes(r.usage_period) ? r.settlement_text : `${r.settlement_text} (${r.usage_period}, late)`
          : describeLine(r.product_name ?? '', r.kind, r.usage_period, period),
      quantity: toDecimalString(decimal(r.quantity)),
      unitPrice: r.unit_price === null ? null : toDecimalString(decimal(r.unit_price)),
      amount: pennies(r.amount),
    }))
    .filter((l) => l.amount !== 0n || l.productId !== null)
    .sort(compareLines);
}

/** Fixed per invoice before any attempt, so every send of this invoice carries the same Message-ID. */
export function messageIdFor(invoiceNumber: string, issuerCode: string, mailFrom: string): string {
  const domain = /@([A-Za-z0-9.-]+)>?\s*$/.exec(mailFrom)?.[1] ?? 'billing.invalid';
  return `<${invoiceNumber}.${issuerCode}@${domain}>`.toLowerCase();
}
