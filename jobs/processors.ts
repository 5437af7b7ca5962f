import { type Job, UnrecoverableError } from 'bullmq';
import { FeedFileError } from '../adapters/formats/types';
import type { Deps } from '../src/deps';
import type { Logger } from '../src/logger';
import { deliverInvoice } from '../src/use-cases/deliver-invoice';
import { PermanentError } from '../src/use-cases/errors';
import { ingestFile, ingestFileChunks } from '../src/use-cases/ingest-file';
import { rateFile } from '../src/use-cases/rate-file';
import { reconcile } from '../src/use-cases/reconcile';
import { type BillingRunResult, type ScheduledRunRequest, requestScheduledRun, runBillingPeriod } from '../src/use-cases/run-billing-period';
import { scanInbox } from '../src/use-cases/scan-inbox';
import { type QueueName, queueCatalog } from './catalog';

/** Runs one job; `log` is the job's own logger (queue, job id and payload ids on every line). */
export type Processor = (job: Job, log: Logger) => Promise<unknown>;

/**
 * One thin processor per queue: parse the payload with the catalog's schema, call one use case,
 * map the outcome. Bad input becomes UnrecoverableError (failed at once, visible, retryable by an
 * operator); anything else is thrown as is and retried with backoff. Each use case gets the job's
 * logger in its deps, so what it logs carries the job's ids.
 */
export function createProcessors(base: Deps): Record<QueueName, Processor> {
  const withLog = (log: Logger): Deps => ({ ...base, logger: log });
  const parse = <Q extends QueueName>(queue: Q, job: Job) => {
    const result = queueCatalog[queue].safeParse(job.data);
    if (!result.success) throw new UnrecoverableError(`invalid ${queue} payload: ${result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    return result.data as ReturnType<(typeof queueCatalog)[Q]['parse']>;
  };
  return {
    'inbox-scan': (job, log) => permanentAsUnrecoverable(async () => {
      parse('inbox-scan', job);
      const files = await scanInbox(withLog(log));
      return { claimed: files.length };
    }),
    'ingest-file': (job, log) => permanentAsUnrecoverable(async () => {
      const { fileId } = parse('ingest-file', job);
      return ingestFile(withLog(log), fileId, (records, total) => void job.updateProgress({ records, total }).catch(() => undefined));
    }),
    'ingest-chunk': (job, log) => permanentAsUnrecoverable(() => ingestFileChunks(withLog(log), parse('ingest-chunk', job).fileId)),
    'rate-file': (job, log) => permanentAsUnrecoverable(() => rateFile(withLog(log), parse('rate-file', job).fileId)),
    'billing-run': (job, log) => permanentAsUnrecoverable((): Promise<ScheduledRunRequest | BillingRunResult> => {
      const input = parse('billing-run', job);
      // The monthly-close scheduler's job names neither run nor period: it records the run and hands
      // it to a job that carries its id, the one the reconciler looks for (see requestScheduledRun).
      if (input.billingRunId === undefined && input.period === undefined) return requestScheduledRun(withLog(log), input);
      return runBillingPeriod(withLog(log), input);
    }),
    'deliver-email': (job, log) => permanentAsUnrecoverable(() => {
      const { deliveryId } = parse('deliver-email', job);
      const finalAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      return deliverInvoice(withLog(log), deliveryId, { finalAttempt });
    }),
    reconcile: (job, log) => permanentAsUnrecoverable(() => {
      parse('reconcile', job);
      return reconcile(withLog(log));
    }),
  };
}

async function permanentAsUnrecoverable<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof PermanentError || err instanceof FeedFileError) throw new UnrecoverableError(err.message);
    throw err;
  }
}
