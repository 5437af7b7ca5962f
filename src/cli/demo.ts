import { copyFile, mkdir, readdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, redactUrl } from '../config';
import { closeDeps, createDeps, type Deps } from '../deps';
import { ensureDatabase, migrateLatest } from '../../adapters/db/database';
import { startWorkers } from '../../jobs/worker';
import { formatMoney, pennies } from '../core/money';
import { waitForServices } from '../process';
import { importPartnerships, readImportFile } from '../use-cases/import-partnerships';
import { pipelineIsIdle, waitUntilSettled } from '../use-cases/wait-for-pipeline';
import type { BillingRunResult } from '../use-cases/run-billing-period';

export const DEMO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/demo');
export const DEMO_PERIOD = '2026-10';

/** Drops every fixture feed into the inbox the way an upstream system would: write aside, then rename. */
export async function dropDemoFeeds(inboxDir: string, feedsDir = path.join(DEMO_DIR, 'feeds')): Promise<string[]> {
  const dropped: string[] = [];
  for (const partner of await readdir(feedsDir)) {
    await mkdir(path.join(inboxDir, partner), { recursive: true });
    for (const name of await readdir(path.join(feedsDir, partner))) {
      const target = path.join(inboxDir, partner, name);
      await copyFile(path.join(feedsDir, partner, name), `${target}.part`);
      await rename(`${target}.part`, target);
      dropped.push(`${partner}/${name}`);
    }
  }
  return dropped;
}

/**
 * Drops the feeds into the inbox, asks for a scan, and waits (on queue events) until every dropped
 * file has been claimed and nothing is left to ingest, rate or send.
 */
export async function ingestThroughInbox(deps: Deps, feedsDir: string, since: Date): Promise<string[]> {
  const dropped = await dropDemoFeeds(deps.config.inboxDir, feedsDir);
  await deps.queues.get('inbox-scan').add('inbox-scan', {});
  await waitUntilSettled(deps, ['inbox-scan', 'ingest-file', 'rate-file'], async () => {
    const claimed = await deps.db('usage_files').where('received_at', '>=', since).count<{ count: string }[]>('* as count');
    return Number(claimed[0]?.count) >= dropped.length && (await pipelineIsIdle(deps));
  });
  return dropped;
}

/** Runs the billing period as a job on the real queue and waits until its emails are settled. */
export async function billPeriodThroughQueue(deps: Deps, period: string, requestedBy: string): Promise<BillingRunResult> {
  const queue = deps.queues.get('billing-run');
  const job = await queue.add('billing-run', { period, requestedBy });
  await waitUntilSettled(deps, ['billing-run', 'deliver-email'], async () => {
    const state = await job.getState();
    if (state === 'failed') throw new Error(`billing run failed: ${(await queue.getJob(job.id!))?.failedReason}`);
    return state === 'completed' && (await pipelineIsIdle(deps));
  });
  return (await queue.getJob(job.id!))?.returnvalue as BillingRunResult;
}

/**
 * The whole pipeline on the fixtures, in one process: database, schema, partnerships, feeds through
 * the inbox and the real queues, the October billing run, the invoice emails, and a summary.
 * Running it again shows the same invoices: the feeds come back as duplicates and the period is
 * already invoiced.
 */
export async function runDemo(): Promise<void> {
  // The demo drops its feeds at once, so it does not wait for files to settle.
  // Logs stay quiet unless asked for, so the summary is readable.
  const config = loadConfig({ INBOX_SETTLE_MS: '0', LOG_LEVEL: 'warn', ...process.env });
  const createdDb = await ensureDatabase(config.databaseUrl);
  const deps = createDeps(config);
  const workers = startWorkers(deps);
  try {
    await waitForServices(deps);
    const applied = await migrateLatest(deps.db);
    const mode = config.smtpUrl ? `SMTP ${redactUrl(config.smtpUrl)}` : `.eml files in ${config.outboxDir}`;
    console.log(`billing demo: database ${redactUrl(config.databaseUrl)}${createdDb ? ' (created)' : ''}, ${applied.length} migration(s) applied`);
    console.log(`              redis ${redactUrl(config.redisUrl)} prefix "${config.queuePrefix}", email as ${mode}`);

    const imported = await importPartnerships(deps, await readImportFile(path.join(DEMO_DIR, 'partnerships.yaml')), 'demo');
    console.log(`imported ${imported.partnerships} partnerships (${imported.changed} changes)`);

    const startedAt = new Date();
    const dropped = await ingestThroughInbox(deps, path.join(DEMO_DIR, 'feeds'), startedAt);
    console.log(`dropped ${dropped.length} feeds into ${config.inboxDir}`);
    const run = await billPeriodThroughQueue(deps, DEMO_PERIOD, 'demo');
    await printSummary(deps, startedAt, run);
  } finally {
    await workers.close(10_000);
    await closeDeps(deps);
  }
}

async function printSummary(deps: Deps, since: Date, run: BillingRunResult): Promise<void> {
  const { db } = deps;
  const files = await db('usage_files').where('received_at', '>=', since).orderBy('id')
    .select<{ id: string; partner_code: string; name: string; status: string; rows_read: number; rows_accepted: number; rows_rejected: number; rows_duplicate: number; error: string | null }[]>(
      'id', 'partner_code', 'name', 'status', 'rows_read', 'rows_accepted', 'rows_rejected', 'rows_duplicate', 'error');
  console.log('\nFiles this run:');
  for (const f of files) {
    const counts = f.status === 'duplicate' ? (f.error ?? '') : `read ${f.rows_read}, accepted ${f.rows_accepted}, rejected ${f.rows_rejected}, duplicate ${f.rows_duplicate}`;
    console.log(`  #${f.id} ${f.partner_code}/${f.name}: ${f.status}; ${counts}`);
  }
  const errors = await db('usage_file_errors as e').join('usage_files as f', 'f.id', 'e.file_id').where('f.received_at', '>=', since).orderBy(['e.file_id', 'e.record'])
    .select<{ name: string; record: number | null; line: number | null; field: string | null; message: string }[]>('f.name', 'e.record', 'e.line', 'e.field', 'e.message');
  for (const e of errors) console.log(`    ${e.name} record ${e.record ?? '-'}${e.line ? ` (line ${e.line})` : ''} ${e.field ?? ''}: ${e.message}`);

  const [usages, records, transactions] = await Promise.all([
    db('product_usages').count<{ count: string }[]>('* as count'),
    db('billing_records').count<{ count: string }[]>('* as count'),
    db('transactions').count<{ count: string }[]>('* as count'),
  ]);
  console.log(`\nIn the database: ${usages[0]?.count} usages, ${records[0]?.count} billing records, ${transactions[0]?.count} transactions`);

  console.log(`\nBilling run #${run.billingRunId} for ${run.period}: ${run.invoicesCreated} invoice(s) created`);
  const invoices = await db('invoices as i').join('partnerships as p', 'p.id', 'i.partnership_id').where('i.period', run.period).orderBy('i.number')
    .select<{ id: string; number: string; code: string; currency: string; total_pennies: string; issue_date: string; due_date: string }[]>(
      'i.id', 'i.number', 'p.code', 'i.currency', 'i.total_pennies', 'i.issue_date', 'i.due_date');
  for (const inv of invoices) {
    const outcome = run.partnerships.find((r) => r.partnership === inv.code)?.outcome ?? '';
    console.log(`  ${inv.number}  ${inv.code.padEnd(12)} ${formatMoney(pennies(inv.total_pennies), inv.currency.trim()).padStart(12)}  issued ${inv.issue_date}, due ${inv.due_date}  (${outcome === 'invoiced' ? 'new' : 'already issued'})`);
    const accounts = await db('invoice_lines as l').join('accounts as a', 'a.id', 'l.account_id').where('l.invoice_id', inv.id).groupBy('a.code').orderBy('a.code')
      .select<{ code: string; amount: string }[]>('a.code', db.raw('sum(l.amount_pennies)::text as amount'));
    for (const a of accounts) console.log(`      ${a.code.padEnd(12)} ${formatMoney(pennies(a.amount), inv.currency.trim()).padStart(12)}`);
    const deliveries = await db('email_deliveries').where('invoice_id', inv.id).select<{ recipients: string[]; status: string; last_response: string | null; last_error: string | null }[]>('recipients', 'status', 'last_response', 'last_error');
    for (const d of deliveries) console.log(`      email to ${d.recipients.join(', ')}: ${d.status}${d.last_response ? ` (${d.last_response})` : ''}${d.last_error ? ` [${d.last_error}]` : ''}`);
  }
  for (const r of run.partnerships.filter((x) => x.outcome !== 'invoiced' && x.outcome !== 'already_invoiced')) {
    console.log(`  ${r.partnership}: ${r.outcome}${r.note ? ` (${r.note})` : ''}`);
  }
  const later = await db('product_usages').where('period', '>', run.period).count<{ count: string }[]>('* as count');
  if (Number(later[0]?.count) > 0) console.log(`\n${later[0]?.count} usage(s) belong to a later period and wait for its billing run.`);
}
