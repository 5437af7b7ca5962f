import { z } from 'zod';
import type { DefaultJobOptions } from 'bullmq';

const id = z.number().int().positive();

/**
 * Every queue and the payload its jobs carry. Payloads hold ids, never rows or money: PostgreSQL
 * holds the facts, a job only says which fact to work on.
 */
export const queueCatalog = {
  'inbox-scan': z.object({}).strict(),
  'ingest-file': z.object({ fileId: id }).strict(),
  /** Help with a big file being ingested: work through its chunks (ingest_chunks) until none is left to claim. */
  'ingest-chunk': z.object({ fileId: id, chunk: id }).strict(),
  'rate-file': z.object({ fileId: id }).strict(),
  'billing-run': z
    .object({
      /** A run already recorded in billing_runs (requested through the API or CLI). */
      billingRunId: id.optional(),
      /** Without a run id: 'YYYY-MM'; absent means the month before the run (the scheduled close). */
      period: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/).optional(),
      requestedBy: z.string().min(1).default('scheduler'),
    })
    .strict()
    .refine((p) => p.billingRunId === undefined || p.period === undefined, { message: 'a billing run id already names its period' }),
  'deliver-email': z.object({ deliveryId: id }).strict(),
  reconcile: z.object({}).strict(),
} as const;

export type QueueName = keyof typeof queueCatalog;
export type Payload<Q extends QueueName> = z.input<(typeof queueCatalog)[Q]>;
export const QUEUE_NAMES = Object.keys(queueCatalog) as QueueName[];

/**
 * Retries with exponential backoff and jitter for infrastructure faults; bad input is thrown as
 * UnrecoverableError and never retried. Finished jobs are trimmed so Redis stays bounded: the
 * durable record of every file, run and delivery is in PostgreSQL.
 */
export const defaultJobOptions: DefaultJobOptions = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 1000, jitter: 0.5 },
  removeOnComplete: { count: 1000, age: 24 * 3600 },
  removeOnFail: { count: 5000, age: 14 * 24 * 3600 },
};

/** A stable job id per unit of work, so enqueueing the same work twice while it is queued is a no-op. */
export function jobIdFor<Q extends QueueName>(queue: Q, payload: Payload<Q>): string | undefined {
  if ('chunk' in payload) return `${queue}-${payload.fileId}-${payload.chunk}`;
  if ('fileId' in payload) return `${queue}-${payload.fileId}`;
  if ('deliveryId' in payload) return `${queue}-${payload.deliveryId}`;
  if ('billingRunId' in payload && payload.billingRunId !== undefined) return `${queue}-${payload.billingRunId}`;
  return undefined;
}
