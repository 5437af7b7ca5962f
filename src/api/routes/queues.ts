import { createRoute, z } from '@hono/zod-openapi';
import type { Job, Queue } from 'bullmq';
import type { Context } from 'hono';
import { QUEUE_NAMES, type QueueName } from '../../../jobs/catalog';
import { JOB_STATES, describeQueues, findQueueName, payloadIds } from '../../../jobs/queues';
import { shareInFlight } from '../../process';
import { type ApiDeps, ErrorSchema, Paging, errorResponse, newRouter, within } from '../common';

/** Redis answers in milliseconds; past this the answer is 503 rather than a hanging request. */
const REDIS_TIMEOUT_MS = 5000;

const LISTABLE_STATES = ['failed', 'active', 'waiting', 'delayed', 'completed'] as const;

const QueueStatusSchema = z.object({
  name: z.string(),
  paused: z.boolean(),
  counts: z.record(z.string(), z.number()).openapi({ example: Object.fromEntries(JOB_STATES.map((s) => [s, 0])) }),
  oldestWaitingAgeSeconds: z.number().nullable().openapi({ description: 'age of the oldest waiting job; null when none waits' }),
  workers: z.number().openapi({ description: 'worker connections on the queue, across all processes' }),
});

const Queues = z.object({ prefix: z.string(), queues: z.array(QueueStatusSchema) }).openapi('Queues');

const JobSummary = z
  .object({
    id: z.string(),
    name: z.string(),
    data: z.record(z.string(), z.union([z.number(), z.string()])).openapi({ description: "the payload's ids only", example: { fileId: 42 } }),
    attemptsMade: z.number(),
    failedReason: z.string().nullable(),
    createdAt: z.string().nullable(),
    processedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
    delayedUntil: z.string().nullable(),
  })
  .openapi('Job');

const UnknownQueue = ErrorSchema.extend({ queues: z.array(z.string()) }).openapi('UnknownQueue');
const unknownQueueResponse = { content: { 'application/json': { schema: UnknownQueue } }, description: 'No such queue; the body lists the queues' };

const NameParam = z.object({ name: z.string().openapi({ param: { name: 'name', in: 'path' }, example: 'ingest-file' }) });
const JobParams = NameParam.extend({
  id: z
    .string()
    .regex(/^[A-Za-z0-9:_.-]{1,200}$/, 'must be a job id (letters, digits, : _ . -)')
    .openapi({ param: { name: 'id', in: 'path' }, example: 'ingest-file-42' }),
});

const unavailable = errorResponse('Redis does not answer in time');

const listQueues = createRoute({
  method: 'get',
  path: '/queues',
  summary: 'Per queue: job counts by state, age of the oldest waiting job, workers connected, paused',
  responses: { 200: { content: { 'application/json': { schema: Queues } }, description: 'Read from Redis' }, 503: unavailable },
});

const listJobs = createRoute({
  method: 'get',
  path: '/queues/{name}/jobs',
  summary: "A page of a queue's jobs in one state, newest first",
  request: { params: NameParam, query: Paging.extend({ state: z.enum(LISTABLE_STATES).default('failed') }) },
  responses: {
    200: {
      content: { 'application/json': { schema: z.object({ items: z.array(JobSummary), total: z.number(), page: z.number(), pageSize: z.number() }) } },
      description: 'A page of jobs',
    },
    404: unknownQueueResponse,
    503: unavailable,
  },
});

const retryJob = createRoute({
  method: 'post',
  path: '/queues/{name}/jobs/{id}/retry',
  summary: 'Move a failed job back to waiting, with a fresh set of attempts',
  request: { params: JobParams },
  responses: {
    200: { content: { 'application/json': { schema: z.object({ queue: z.string(), id: z.string(), state: z.string() }) } }, description: 'Waiting again' },
    404: errorResponse('No such queue or job'),
    409: errorResponse('The job is not failed (a second click of the same retry lands here)'),
    503: unavailable,
  },
});

const retryFailed = createRoute({
  method: 'post',
  path: '/queues/{name}/retry-failed',
  summary: "Move all of a queue's failed jobs back to waiting",
  request: { params: NameParam },
  responses: {
    200: { content: { 'application/json': { schema: z.object({ queue: z.string(), retried: z.number() }) } }, description: 'How many failed jobs there were to retry' },
    404: unknownQueueResponse,
    503: unavailable,
  },
});

const pauseRoute = (action: 'pause' | 'resume') =>
  createRoute({
    method: 'post',
    path: `/queues/{name}/${action}`,
    summary: action === 'pause' ? 'Pause a queue: workers everywhere finish their active jobs and take no new ones' : 'Resume a paused queue',
    request: { params: NameParam },
    responses: {
      200: { content: { 'application/json': { schema: z.object({ queue: z.string(), paused: z.boolean() }) } }, description: 'Done' },
      404: unknownQueueResponse,
      503: unavailable,
    },
  });

const iso = (ms: number | undefined | null) => (ms ? new Date(ms).toISOString() : null);

/** What an operator sees of a job: never the whole payload, only its ids. */
function summarizeJob(job: Job) {
  return {
    id: job.id ?? '',
    name: job.name,
    data: payloadIds(job.data),
    attemptsMade: job.attemptsMade,
    failedReason: job.failedReason || null,
    createdAt: iso(job.timestamp),
    processedAt: iso(job.processedOn),
    finishedAt: iso(job.finishedOn),
    delayedUntil: job.delay > 0 ? iso(job.timestamp + job.delay) : null,
  };
}

function unknownQueue(c: Context, name: string) {
  return c.json({ error: 'not_found', message: `no queue "${name}"; the queues are: ${QUEUE_NAMES.join(', ')}`, queues: [...QUEUE_NAMES] }, 404);
}

function redisUnavailable(c: Context, err: unknown) {
  return c.json({ error: 'unavailable', message: `queues unreachable: ${(err as Error).message}` }, 503);
}

/** Retries a failed job; the answer says why not otherwise. */
async function retryFailedJob(queue: Queue, id: string): Promise<{ status: 200 | 404 | 409; message: string; state?: string }> {
  const job = await queue.getJob(id);
  if (!job) return { status: 404, message: `no job "${id}" in queue ${queue.name}` };
  const notFailed = (state: string) => ({ status: 409 as const, message: `job ${id} is ${state}, not failed; only failed jobs can be retried`, state });
  const before = await job.getState();
  if (before !== 'failed') return notFailed(before);
  try {
    // The move is one Redis script that checks the job is still in the failed set: of two clicks
    // at once, exactly one moves it and the other gets the 409 below.
    await job.retry('failed', { resetAttemptsMade: true });
  } catch (err) {
    const now = await job.getState();
    if (now !== 'failed') return notFailed(now);
    throw err;
  }
  return { status: 200, message: 'retried', state: await job.getState() };
}

export function queueRoutes(deps: ApiDeps) {
  const known = (name: string): QueueName | undefined => findQueueName(name);
  // Requests that arrive while a look at the queues is under way share it: a dashboard polling from
  // many tabs (or 200 requests a second) costs Redis one round of counts and CLIENT LISTs at a time,
  // not one per request. Nothing is kept once it is answered, and a look that hangs ends at the timeout.
  const lookAtQueues = shareInFlight(() => within(REDIS_TIMEOUT_MS, describeQueues(deps.queues, Date.now())));
  return newRouter()
    .openapi(listQueues, async (c) => {
      try {
        const queues = await lookAtQueues();
        return c.json({ prefix: deps.queues.prefix, queues }, 200);
      } catch (err) {
        return redisUnavailable(c, err);
      }
    })
    .openapi(listJobs, async (c) => {
      const { page, pageSize, state } = c.req.valid('query');
      const name = known(c.req.valid('param').name);
      if (!name) return unknownQueue(c, c.req.valid('param').name);
      try {
        const queue = deps.queues.get(name);
        const start = (page - 1) * pageSize;
        const [jobs, total] = await within(
          REDIS_TIMEOUT_MS,
          Promise.all([queue.getJobs([state], start, start + pageSize - 1, false), queue.getJobCountByTypes(state)]),
        );
        return c.json({ items: jobs.map(summarizeJob), total, page, pageSize }, 200);
      } catch (err) {
        return redisUnavailable(c, err);
      }
    })
    .openapi(retryJob, async (c) => {
      const { id } = c.req.valid('param');
      const name = known(c.req.valid('param').name);
      if (!name) return unknownQueue(c, c.req.valid('param').name);
      try {
        const outcome = await within(REDIS_TIMEOUT_MS, retryFailedJob(deps.queues.get(name), id));
        if (outcome.status === 404) return c.json({ error: 'not_found', message: outcome.message }, 404);
        if (outcome.status === 409) return c.json({ error: 'conflict', message: outcome.message }, 409);
        deps.logger.info({ queue: name, jobId: id }, 'failed job retried by an operator');
        return c.json({ queue: name, id, state: outcome.state ?? 'waiting' }, 200);
      } catch (err) {
        return redisUnavailable(c, err);
      }
    })
    .openapi(retryFailed, async (c) => {
      const name = known(c.req.valid('param').name);
      if (!name) return unknownQueue(c, c.req.valid('param').name);
      try {
        const queue = deps.queues.get(name);
        const failed = await within(REDIS_TIMEOUT_MS, queue.getJobCountByTypes('failed'));
        // Moves every job failed by now, in batches of 1000 per Redis call.
        await within(REDIS_TIMEOUT_MS, queue.retryJobs({ state: 'failed', count: 1000 }));
        deps.logger.info({ queue: name, failed }, 'all failed jobs retried by an operator');
        return c.json({ queue: name, retried: failed }, 200);
      } catch (err) {
        return redisUnavailable(c, err);
      }
    })
    .openapi(pauseRoute('pause'), (c) => setPaused(c, true))
    .openapi(pauseRoute('resume'), (c) => setPaused(c, false));

  async function setPaused(c: Context, paused: boolean) {
    const name = known(c.req.param('name') ?? '');
    if (!name) return unknownQueue(c, c.req.param('name') ?? '');
    try {
      const queue = deps.queues.get(name);
      await within(REDIS_TIMEOUT_MS, paused ? queue.pause() : queue.resume());
      deps.logger.info({ queue: name }, paused ? 'queue paused by an operator' : 'queue resumed by an operator');
      return c.json({ queue: name, paused: await within(REDIS_TIMEOUT_MS, queue.isPaused()) }, 200);
    } catch (err) {
      return redisUnavailable(c, err);
    }
  }
}
