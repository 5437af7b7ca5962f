import { type Job, UnrecoverableError } from 'bullmq';
import { FeedFileError } from '../adapters/formats/types';
import type { Deps } from '../src/deps';
import { deliverInvoice } from '../src/use-cases/deliver-invoice';
import { PermanentError } from '../src/use-cases/errors';
import { ingestFile } from '../src/use-cases/ingest-file';
import { rateFile } from '../src/use-cases/rate-file';
import { reconcile } from '../src/use-cases/reconcile';
import { runBillingPeriod } from '../src/use-cases/run-billing-period';
import { scanInbox } from '../src/use-cases/scan-inbox';
import { type QueueName, queueCatalog } from './catalog';

type Processor = (job: Job) => Promise<unknown>;

/**
 * One thin processor per queue: parse the payload with the catalog's schema, call one use case,
 * map the outcome. Bad input becomes UnrecoverableError (failed at once, visible, retryable by an
 * operator); anything else is thrown as is and retried with backoff.
 */
export function createProcessors(deps: Deps): Record<QueueName, Processor> {
  const parse = <Q extends QueueName>(queue: Q, job: Job) => {
    const result = queueCatalog[queue].safeParse(job.data);
    if (!result.success) throw new UnrecoverableError(`invalid ${queue} payload: ${result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    return result.data as ReturnType<(typeof queueCatalog)[Q]['parse']>;
  };
  return {
    'inbox-scan': (job) => permanentAsUnrecoverable(async () => {
      parse('inbox-scan', job);
      const files = await scanInbox(deps);
      return { claimed: files.length };
    }),
    'ingest-file': (job) => permanentAsUnrecoverable(async () => {
      const { fileId } = parse('ingest-file', job);
      return ingestFile(deps, fileId, (records) => void job.updateProgress({ records }).catch(() => undefined));
    }),
    'rate-file': (job) => permanentAsUnrecoverable(() => rateFile(deps, parse('rate-file', job).fileId)),
    'billing-run': (job) => permanentAsUnrecoverable(() => runBillingPeriod(deps, parse('billing-run', job))),
    'deliver-email': (job) => permanentAsUnrecoverable(() => {
      const { deliveryId } = parse('deliver-email', job);
      const finalAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      return deliverInvoice(deps, deliveryId, { finalAttempt });
    }),
    reconcile: (job) => permanentAsUnrecoverable(() => {
      parse('reconcile', job);
      return reconcile(deps);
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
