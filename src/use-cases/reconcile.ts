import { stat } from 'node:fs/promises';
import { listStage, resolveInside } from '../../adapters/inbox/inbox-store';
import { type Payload, type QueueName, jobIdFor } from '../../jobs/catalog';
import type { Deps } from '../deps';
import { registerFile } from './register-file';

/** Unfinished work whose job failed for good: it stays failed, visible, for an operator to retry. */
export interface AwaitingOperator {
  queue: QueueName;
  jobId: string;
  reason: string;
}

export interface ReconcileSummary {
  orphansRegistered: number;
  ingestsQueued: number;
  ratingsQueued: number;
  billingRunsQueued: number;
  deliveriesQueued: number;
  /** Unfinished work whose job is failed in Redis (stalled twice, attempts used up, a permanent error). */
  awaitingOperator: AwaitingOperator[];
}

// A claimed file younger than this may still be mid-registration by the scanner that claimed it.
const ORPHAN_AGE_MS = 60_000;
// A billing run is recorded 'queued' just before its job is added; younger than this, its requester
// may not have added the job yet. Older and without a job, the request was lost between the two.
const QUEUED_RUN_GRACE_SECONDS = 30;

// Job states in which the job will still run (or is running): the work is in hand.
const IN_HAND = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'paused']);

/**
 * Redis holds work, PostgreSQL holds facts: this puts back on the queues whatever the database
 * shows unfinished, so work lost from Redis (a flush, a failover, a crash between commit and
 * enqueue) is picked up again. Every use case is safe to run twice, so re-enqueueing work that a
 * live worker is still doing costs a little time, never a second effect.
 *
 * Per unit of work it looks at the job under its stable id:
 * - waiting, active, delayed: in hand, nothing to do;
 * - missing (flushed, trimmed, never added): enqueued again;
 * - completed although PostgreSQL says unfinished: the id is taken by a finished job, so adding
 *   would be a no-op; the finished job is removed and the work enqueued again;
 * - failed: left failed and reported. A job that stalled twice or used up its attempts waits for an
 *   operator to look and retry (reliability case 25); re-running it here every minute would turn a
 *   job that crashes workers into a crash loop.
 */
export async function reconcile(deps: Deps, opts: { orphanAgeMs?: number } = {}): Promise<ReconcileSummary> {
  const summary: ReconcileSummary = {
    orphansRegistered: 0,
    ingestsQueued: 0,
    ratingsQueued: 0,
    billingRunsQueued: 0,
    deliveriesQueued: 0,
    awaitingOperator: [],
  };
  summary.orphansRegistered = await registerOrphans(deps, opts.orphanAgeMs ?? ORPHAN_AGE_MS);
  await requeueFiles(deps, summary);
  await requeueBillingRuns(deps, summary);
  await requeueDeliveries(deps, summary);
  const queued = summary.ingestsQueued + summary.ratingsQueued + summary.billingRunsQueued + summary.deliveriesQueued;
  if (queued > 0 || summary.orphansRegistered > 0 || summary.awaitingOperator.length > 0) {
    deps.logger.warn(summary, 'reconciler found unfinished work without a live job');
  }
  return summary;
}

/** Files claimed into processing/ whose registration never committed (the claimer died in between). */
async function registerOrphans(deps: Deps, orphanAgeMs: number): Promise<number> {
  const { db, config } = deps;
  const nowMs = Date.now(); // file modification times are wall-clock times
  const claimed = await listStage(config.inboxDir, 'processing');
  if (claimed.length === 0) return 0;
  const known = new Set(
    (await db('usage_files').whereIn('id', claimed.map((c) => c.fileId)).select<{ id: string }[]>('id')).map((r) => Number(r.id)),
  );
  let registered = 0;
  for (const c of claimed) {
    if (known.has(c.fileId) || nowMs - c.mtimeMs < orphanAgeMs) continue;
    // The claim is a rename, which keeps the modification time of the drop (often long settled) but
    // sets the change time: that is when the file was claimed.
    const claimedAt = await stat(resolveInside(config.inboxDir, c.relative)).then((s) => s.ctimeMs, () => undefined);
    if (claimedAt === undefined || nowMs - claimedAt < orphanAgeMs) continue;
    await registerFile(deps, { fileId: c.fileId, partnerCode: c.partnerCode, name: c.name, relative: c.relative, source: 'inbox' });
    registered += 1;
  }
  return registered;
}

async function requeueFiles(deps: Deps, summary: ReconcileSummary): Promise<void> {
  const files = await deps.db('usage_files')
    .whereIn('status', ['received', 'parsing', 'parsed'])
    .orderBy('id')
    .select<{ id: string; status: string }[]>('id', 'status');
  for (const f of files) {
    const fileId = Number(f.id);
    if (f.status === 'parsed') {
      if (await ensureQueued(deps, 'rate-file', { fileId }, summary)) summary.ratingsQueued += 1;
    } else if (await ensureQueued(deps, 'ingest-file', { fileId }, summary)) {
      summary.ingestsQueued += 1;
    }
  }
}

/**
 * A billing run is a row in billing_runs from the moment it is requested ('queued'), and its job
 * carries { billingRunId }; running the same run again carries on where it stopped (see
 * runBillingPeriod). A 'queued' run past its grace period, or a 'running' one, whose job is gone is
 * enqueued again under its stable id. The monthly-close scheduler's job names no run: it records
 * its run and hands it to such a job (requestScheduledRun), so its run is recognised here too. A
 * job added with a period and no run id (the demo's) still runs its new run itself, unseen here.
 */
async function requeueBillingRuns(deps: Deps, summary: ReconcileSummary): Promise<void> {
  const runs = await deps.db('billing_runs')
    .where('status', 'running')
    .orWhere((q) => void q.where('status', 'queued').andWhereRaw(`queued_at < now() - make_interval(secs => ?)`, [QUEUED_RUN_GRACE_SECONDS]))
    .orderBy('id')
    .select<{ id: string }[]>('id');
  if (runs.length === 0) return;
  // The run's job may sit under an id other than its stable one (added by hand, or by an older
  // release): look for it by payload before adding a second.
  const live = await deps.queues.get('billing-run').getJobs(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children']);
  const inHand = new Set(live.map((j) => String((j.data as { billingRunId?: unknown } | undefined)?.billingRunId)));
  for (const run of runs) {
    if (inHand.has(run.id)) continue;
    if (await ensureQueued(deps, 'billing-run', { billingRunId: Number(run.id) }, summary)) summary.billingRunsQueued += 1;
  }
}

/**
 * Pending deliveries, and deliveries left 'sending' by a worker that died: sending the latter's job
 * again does not resend the email, it marks the delivery 'unknown' for an operator (case 31).
 */
async function requeueDeliveries(deps: Deps, summary: ReconcileSummary): Promise<void> {
  const deliveries = await deps.db('email_deliveries').whereIn('status', ['pending', 'sending']).orderBy('id').select<{ id: string }[]>('id');
  for (const d of deliveries) {
    if (await ensureQueued(deps, 'deliver-email', { deliveryId: Number(d.id) }, summary)) summary.deliveriesQueued += 1;
  }
}

/**
 * Makes sure the unit of work has a job that will run. Returns true when it had to enqueue one.
 * The stable job id makes this safe against a requester enqueueing the same work at the same moment.
 */
async function ensureQueued<Q extends QueueName>(deps: Deps, name: Q, payload: Payload<Q>, summary: ReconcileSummary): Promise<boolean> {
  const jobId = jobIdFor(name, payload);
  if (jobId === undefined) throw new Error(`reconcile: no stable job id for ${name} ${JSON.stringify(payload)}`);
  const queue = deps.queues.get(name);
  const state = await queue.getJobState(jobId);
  if (IN_HAND.has(state)) return false;
  if (state === 'failed') {
    const job = await queue.getJob(jobId);
    summary.awaitingOperator.push({ queue: name, jobId, reason: job?.failedReason ?? 'failed' });
    return false;
  }
  if (state === 'completed') await queue.remove(jobId);
  await deps.queues.enqueue(name, payload, { jobId });
  return true;
}
