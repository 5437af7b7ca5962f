/**
 * `npm run render-example`: regenerates docs/invoice-example.pdf and docs/invoice-example.png, the
 * picture in the README, from the demo data through the real pipeline: a scratch database, the demo
 * partnerships and feeds ingested and rated, the October 2026 billing run (clock pinned to
 * 2026-11-21, so the dates never move), and NRF-ACME's invoice rendered as the email attaches it.
 * Needs PostgreSQL, Redis (the billing run enqueues its emails; they are discarded) and pdftoppm.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { fixedClock } from '../../src/clock';
import { DEMO_DIR, DEMO_PERIOD } from '../../src/cli/demo';
import { loadConfig } from '../../src/config';
import { closeDeps, createDeps } from '../../src/deps';
import { importPartnerships, readImportFile } from '../../src/use-cases/import-partnerships';
import { ingestLocalFile } from '../../src/use-cases/ingest-local-file';
import { runBillingPeriod } from '../../src/use-cases/run-billing-period';
import { dropDatabase, ensureDatabase, migrateLatest } from '../db/database';
import { loadInvoiceDocument } from '../db/invoice-repository';
import { renderInvoicePdf } from './invoice-pdf';

const DOCS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs');
const PARTNERSHIP = 'NRF-ACME';
// 60 dpi keeps the picture small enough for a README (about 60 KB) and still legible.
const RESOLUTION = '60';

async function renderExample(): Promise<void> {
  const base = loadConfig();
  const url = new URL(base.databaseUrl);
  url.pathname = '/billing_docs_example';
  const databaseUrl = url.toString();
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'billing-docs-example-'));
  const queuePrefix = `docs-example-${randomBytes(4).toString('hex')}`;

  await dropDatabase(databaseUrl);
  await ensureDatabase(databaseUrl);
  const deps = createDeps(
    loadConfig({
      ...process.env,
      DATABASE_URL: databaseUrl,
      QUEUE_PREFIX: queuePrefix,
      INBOX_DIR: path.join(scratch, 'inbox'),
      OUTBOX_DIR: path.join(scratch, 'outbox'),
      LOG_LEVEL: 'warn',
    }),
    { clock: fixedClock('2026-11-21T10:00:00Z') },
  );
  try {
    await migrateLatest(deps.db);
    await importPartnerships(deps, await readImportFile(path.join(DEMO_DIR, 'partnerships.yaml')), 'render-example');
    const feeds = path.join(DEMO_DIR, 'feeds');
    for (const partner of (await readdir(feeds)).sort()) {
      for (const name of (await readdir(path.join(feeds, partner))).sort()) {
        await ingestLocalFile(deps, { file: path.join(feeds, partner, name), partnerCode: partner });
      }
    }
    const run = await runBillingPeriod(deps, { period: DEMO_PERIOD, requestedBy: 'render-example' });
    const invoiced = run.partnerships.find((p) => p.partnership === PARTNERSHIP);
    if (invoiced?.invoiceId === undefined) throw new Error(`${PARTNERSHIP} was not invoiced: ${JSON.stringify(invoiced)}`);

    const pdf = await renderInvoicePdf(await loadInvoiceDocument(deps.db, invoiced.invoiceId));
    const pdfFile = path.join(DOCS_DIR, 'invoice-example.pdf');
    await writeFile(pdfFile, pdf);
    await promisify(execFile)('pdftoppm', ['-png', '-r', RESOLUTION, '-singlefile', pdfFile, path.join(DOCS_DIR, 'invoice-example')]);
    console.log(`${invoiced.invoiceNumber}: wrote ${path.relative(process.cwd(), pdfFile)} (${pdf.length} bytes) and docs/invoice-example.png`);
  } finally {
    // The billing run queued its emails: they go with the scratch queue prefix.
    for (const queue of deps.queues.all()) await queue.obliterate({ force: true }).catch(() => undefined);
    await closeDeps(deps);
    await dropDatabase(databaseUrl);
    await rm(scratch, { recursive: true, force: true });
  }
}

await renderExample();
