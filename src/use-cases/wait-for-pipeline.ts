import type { Deps } from '../deps';
import type { QueueName } from '../../jobs/catalog';
import { openQueueEvents } from '../../jobs/queues';

/**
 * Resolves once `settled()` is true. It re-checks PostgreSQL whenever a job on the given queues
 * completes or fails (QueueEvents), with a slow periodic re-check as a safety net, so callers wait on
 * events rather than on sleeps.
 */
export async function waitUntilSettled(
  deps: Deps,
  queues: readonly QueueName[],
  settled: () => Promise<boolean>,
  timeoutMs = 120_000,
): Promise<void> {
  const events = queues.map((name) => openQueueEvents(deps.queueStore, name, deps.config.redisUrl, deps.config.queuePrefix));
  try {
    await Promise.all(events.map((e) => e.waitUntilReady()));
    await new Promise<void>((resolve, reject) => {
      let checking = false;
      let again = false;
      const check = () => {
        if (checking) {
          again = true;
          return;
        }
        checking = true;
        settled().then(
          (ok) => {
            checking = false;
            if (ok) {
              cleanup();
              resolve();
            }
            else if (again) {
              again = false;
              check();
            }
          },
          (err: unknown) => {
            cleanup();
            reject(err instanceof Error ? err : new Error(String(err)));
          },
        );
      };
      const timer = setInterval(check, 2000);
      const deadline = setTimeout(() => {
        cleanup();
        reject(new Error(`pipeline did not settle within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearInterval(timer);
        clearTimeout(deadline);
        for (const e of events) e.removeAllListeners();
      };
      for (const e of events) {
        e.on('completed', check);
        e.on('failed', check);
      }
      check();
    });
  } finally {
    await Promise.all(events.map((e) => e.close()));
  }
}

/** True when no file is waiting to be ingested or rated and no invoice email is pending or mid-send. */
export async function pipelineIsIdle(deps: Deps): Promise<boolean> {
  const [files, deliveries] = await Promise.all([
    deps.db('usage_files').whereIn('status', ['received', 'parsing', 'parsed']).count<{ count: string }[]>('* as count'),
    deps.db('email_deliveries').whereIn('status', ['pending', 'sending']).count<{ count: string }[]>('* as count'),
  ]);
  return Number(files[0]?.count) === 0 && Number(deliveries[0]?.count) === 0;
}
