import { mkdir, readdir, readFile, rename, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEMO_DIR, DEMO_PERIOD } from '../../src/cli/demo';
import type { Deps } from '../../src/deps';
import { importPartnerships, readImportFile } from '../../src/use-cases/import-partnerships';
import { ingestFile } from '../../src/use-cases/ingest-file';
import { rateFile } from '../../src/use-cases/rate-file';
import { runBillingPeriod } from '../../src/use-cases/run-billing-period';
import { scanInbox } from '../../src/use-cases/scan-inbox';

/**
 * Drops a file into a partner folder of the inbox the way an upstream system does (write aside,
 * then rename), dated an hour ago, so it has settled however long the inbox waits for writers.
 */
export async function dropSettled(deps: Deps, partnerCode: string, name: string, content: string | Buffer): Promise<string> {
  const folder = path.join(deps.config.inboxDir, partnerCode);
  await mkdir(folder, { recursive: true });
  const target = path.join(folder, name);
  await writeFile(`${target}.part`, content);
  await rename(`${target}.part`, target);
  const settledAt = new Date(Date.now() - 3_600_000);
  await utimes(target, settledAt, settledAt);
  return target;
}

/** Loads the demo partners, products and partnerships (fixtures/demo/partnerships.yaml). */
export async function importDemoPartnerships(deps: Deps): Promise<void> {
  await importPartnerships(deps, await readImportFile(path.join(DEMO_DIR, 'partnerships.yaml')), 'test');
}

/**
 * Drops every demo feed into the inbox and takes each through the use cases (scan, ingest, rate)
 * in this process, without workers, so a test decides when anything is sent.
 */
export async function ingestDemoFeeds(deps: Deps): Promise<void> {
  const feeds = path.join(DEMO_DIR, 'feeds');
  for (const partner of await readdir(feeds)) {
    for (const name of await readdir(path.join(feeds, partner))) {
      await dropSettled(deps, partner, name, await readFile(path.join(feeds, partner, name)));
    }
  }
  const registered = await scanInbox(deps);
  if (registered.length !== 4 || registered.some((r) => r.status !== 'received')) {
    throw new Error(`expected the 4 demo feeds to be received, got ${JSON.stringify(registered)}`);
  }
  for (const r of registered) {
    const ingested = await ingestFile(deps, r.fileId);
    if (ingested.kind !== 'parsed') throw new Error(`demo feed ${r.fileId} was not parsed: ${JSON.stringify(ingested)}`);
    const rated = await rateFile(deps, r.fileId);
    if (rated.kind !== 'rated') throw new Error(`demo feed ${r.fileId} was not rated: ${JSON.stringify(rated)}`);
  }
}

export interface IssuedInvoice {
  invoiceId: number;
  number: string;
  deliveryId: number;
}

/**
 * Closes the demo period by calling runBillingPeriod directly: both partnerships are invoiced, each
 * with a pending email delivery (and a deliver-email job waiting in Redis for a worker).
 */
export async function issueDemoInvoices(deps: Deps): Promise<{ acme: IssuedInvoice; jsmith: IssuedInvoice }> {
  const run = await runBillingPeriod(deps, { period: DEMO_PERIOD, requestedBy: 'test' });
  const issued = (code: string): IssuedInvoice => {
    const r = run.partnerships.find((p) => p.partnership === code);
    if (r?.outcome !== 'invoiced' || r.invoiceId === undefined || r.invoiceNumber === undefined || r.deliveryId === undefined) {
      throw new Error(`expected ${code} to be invoiced with a delivery, got ${JSON.stringify(r)}`);
    }
    return { invoiceId: r.invoiceId, number: r.invoiceNumber, deliveryId: r.deliveryId };
  };
  return { acme: issued('NRF-ACME'), jsmith: issued('NRF-JSMITH') };
}
