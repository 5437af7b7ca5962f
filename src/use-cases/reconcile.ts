import { listStage } from '../../adapters/inbox/inbox-store';
import type { Deps } from '../deps';
import { registerFile } from './register-file';

export interface ReconcileSummary {
  orphansRegistered: number;
  ingestsQueued: number;
  ratingsQueued: number;
  deliveriesQueued: number;
}

// A claimed file younger than this may still be mid-registration by the scanner that claimed it.
const ORPHAN_AGE_MS = 60_000;

/**
 * Redis holds work, PostgreSQL holds facts: this puts back on the queues whatever the database
 * shows unfinished, so work lost from Redis (a flush, a failover, a crash between commit and
 * enqueue) is picked up again. Stable job ids make re-enqueueing work that is still queued a no-op,
 * and every use case is idempotent, so running this too often costs nothing but a few queries.
 */
export async function reconcile(deps: Deps): Promise<ReconcileSummary> {
  const { db, queues, config } = deps;
  const summary: ReconcileSummary = { orphansRegistered: 0, ingestsQueued: 0, ratingsQueued: 0, deliveriesQueued: 0 };

  const nowMs = Date.now(); // file modification times are wall-clock times
  const claimed = await listStage(config.inboxDir, 'processing');
  if (claimed.length > 0) {
    const known = new Set(
      (await db('usage_files').whereIn('id', claimed.map((c) => c.fileId)).select<{ id: string }[]>('id')).map((r) => Number(r.id)),
    );
    for (const c of claimed) {
      if (known.has(c.fileId) || nowMs - c.mtimeMs < ORPHAN_AGE_MS) continue;
      await registerFile(deps, { fileId: c.fileId, partnerCode: c.partnerCode, name: c.name, relative: c.relative, source: 'inbox' });
      summary.orphansRegistered += 1;
    }
  }

  const files = await db('usage_files').whereIn('status', ['received', 'parsing', 'parsed']).select<{ id: string; status: string }[]>('id', 'status');
  for (const f of files) {
    if (f.status === 'parsed') {
      await queues.enqueue('rate-file', { fileId: Number(f.id) });
      summary.ratingsQueued += 1;
    } else {
      await queues.enqueue('ingest-file', { fileId: Number(f.id) });
      summary.ingestsQueued += 1;
    }
  }
  const deliveries = await db('email_deliveries').where('status', 'pending').select<{ id: string }[]>('id');
  for (const d of deliveries) {
    await queues.enqueue('deliver-email', { deliveryId: Number(d.id) });
    summary.deliveriesQueued += 1;
  }
  return summary;
}
