import { copyFile, mkdir, readdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Config, type DemoConfig, loadConfig, loadDemoConfig, redactUrl } from '../config';
import { closeDeps, createDeps, type Deps, type DepsOverrides } from '../deps';
import { ensureDatabase, migrateLatest } from '../../adapters/db/database';
import { startEmbeddedPostgres } from '../../adapters/embedded/embedded-postgres';
import { postgresProblem, redisProblem } from '../../adapters/embedded/server-probe';
import { startWorkers } from '../../jobs/worker';
import { type Pennies, formatMoney, pennies } from '../core/money';
import { createLogger } from '../logger';
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
 * Where the demo runs. `server`: the configured PostgreSQL and Redis, as production does.
 * `embedded`: PostgreSQL inside the process (PGlite) with BullMQ on its PostgreSQL backend, for a
 * machine that has neither server; the pipeline code is the same.
 */
export type DemoMode = 'server' | 'embedded';

export const DEMO_MODE_NAMES: Record<DemoMode, string> = {
  server: 'PostgreSQL server + Redis',
  embedded: 'embedded PostgreSQL (pglite) + BullMQ on PostgreSQL',
};

/** How long the demo waits for each configured server to answer before running without it. */
const PROBE_TIMEOUT_MS = 2000;

export interface DemoModeChoice {
  mode: DemoMode;
  /** Why, in words for the first lines of the demo's output. */
  reason: string;
}

/**
 * DEMO_MODE=embedded runs embedded without looking for servers. Otherwise the configured PostgreSQL
 * and Redis are asked, at once and briefly: if both answer the demo uses them; if one does not,
 * DEMO_MODE=server stops with what is wrong, and auto (the default) runs embedded.
 */
export async function chooseDemoMode(config: Config, demo: DemoConfig, timeoutMs = PROBE_TIMEOUT_MS): Promise<DemoModeChoice> {
  if (demo.mode === 'embedded') return { mode: 'embedded', reason: 'DEMO_MODE=embedded' };
  const [pg, redis] = await Promise.all([postgresProblem(config.databaseUrl, timeoutMs), redisProblem(config.redisUrl, timeoutMs)]);
  const problems = [
    pg === undefined ? undefined : `PostgreSQL at ${redactUrl(config.databaseUrl)} unusable (${pg})`,
    redis === undefined ? undefined : `Redis at ${redactUrl(config.redisUrl)} unusable (${redis})`,
  ].filter((p): p is string => p !== undefined);
  if (problems.length === 0) {
    return { mode: 'server', reason: demo.mode === 'server' ? 'DEMO_MODE=server' : 'both servers answer; DEMO_MODE=embedded runs without them' };
  }
  if (demo.mode === 'server') throw new Error(`DEMO_MODE=server, but ${problems.join('; ')}. Start them (docker compose up -d) or check DATABASE_URL and REDIS_URL.`);
  return { mode: 'embedded', reason: `${problems.join('; ')}; DEMO_MODE=server insists on the servers` };
}

export interface DemoOptions {
  /** Settings (default process.env): DATABASE_URL, REDIS_URL, DEMO_MODE, DEMO_PGLITE_DIR, ... */
  env?: Record<string, string | undefined>;
  /** Where the output lines go (default the console). */
  print?: (line: string) => void;
}

export interface DemoResult {
  mode: DemoMode;
  summary: DemoSummary;
}

/**
 * The whole pipeline on the fixtures, in one process: database, schema, partnerships, feeds through
 * the inbox and the real queues, the October billing run, the invoice emails, and a summary.
 * Running it again shows the same invoices: the feeds come back as duplicates and the period is
 * already invoiced (in embedded mode too, while DEMO_PGLITE_DIR keeps the data).
 */
export async function runDemo(opts: DemoOptions = {}): Promise<void> {
  await performDemo(opts);
}

/** runDemo, answering with what it did (the tests compare the two modes with it). */
export async function performDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  const env = opts.env ?? process.env;
  const print = opts.print ?? ((line: string) => console.log(line));
  // The demo drops its feeds at once, so it does not wait for files to settle.
  // Logs stay quiet unless asked for, so the summary is readable.
  const configured = loadConfig({ INBOX_SETTLE_MS: '0', LOG_LEVEL: 'warn', ...env });
  const demo = loadDemoConfig(env);
  const choice = await chooseDemoMode(configured, demo);
  print(`billing demo, mode: ${DEMO_MODE_NAMES[choice.mode]}`);
  print(`  (${choice.reason})`);
  const email = configured.smtpUrl ? `SMTP ${redactUrl(configured.smtpUrl)}` : `.eml files in ${configured.outboxDir}`;

  if (choice.mode === 'server') {
    const created = await ensureDatabase(configured.databaseUrl);
    const summary = await runPipeline(configured, {}, print, (applied) => [
      `database: ${redactUrl(configured.databaseUrl)}${created ? ' (created)' : ''}, ${applied} migration(s) applied`,
      `queues:   Redis ${redactUrl(configured.redisUrl)} prefix "${configured.queuePrefix}"; email as ${email}`,
    ]);
    return { mode: 'server', summary };
  }

  const logger = createLogger(configured.logLevel);
  const embedded = await startEmbeddedPostgres({ dataDir: demo.pgliteDir, onWarning: (message) => logger.warn(message) });
  try {
    const config: Config = { ...configured, databaseUrl: embedded.databaseUrl };
    const kept = embedded.dataDir ? `kept in ${embedded.dataDir}` : 'in memory, gone after the run';
    const summary = await runPipeline(config, { logger, queueStore: { kind: 'postgres', url: embedded.queueUrl } }, print, (applied) => [
      `database: embedded, ${kept}${embedded.created ? ' (created)' : ''}, served at ${embedded.databaseUrl}, ${applied} migration(s) applied`,
      `queues:   BullMQ on an embedded PostgreSQL served at ${embedded.queueUrl}; email as ${email}`,
    ]);
    return { mode: 'embedded', summary };
  } finally {
    await embedded.stop();
  }
}

async function runPipeline(config: Config, overrides: DepsOverrides, print: (line: string) => void, header: (migrations: number) => string[]): Promise<DemoSummary> {
  const deps = createDeps(config, overrides);
  const workers = startWorkers(deps);
  try {
    await waitForServices(deps);
    const applied = await migrateLatest(deps.db);
    for (const line of header(applied.length)) print(line);

    const imported = await importPartnerships(deps, await readImportFile(path.join(DEMO_DIR, 'partnerships.yaml')), 'demo');
    print(`imported ${imported.partnerships} partnerships (${imported.changed} changes)`);

    const startedAt = new Date();
    const dropped = await ingestThroughInbox(deps, path.join(DEMO_DIR, 'feeds'), startedAt);
    print(`dropped ${dropped.length} feeds into ${config.inboxDir}`);
    const run = await billPeriodThroughQueue(deps, DEMO_PERIOD, 'demo');
    const summary = await readSummary(deps, startedAt, run);
    printSummary(summary, print);
    return summary;
  } finally {
    await workers.close(10_000);
    await closeDeps(deps);
  }
}

/** What the demo did, as read back from the database. */
export interface DemoSummary {
  files: Array<{ id: string; partner: string; name: string; status: string; counts: string }>;
  rowErrors: string[];
  usages: number;
  records: number;
  transactions: number;
  run: BillingRunResult;
  invoices: DemoInvoice[];
  /** Usages of a later period, waiting for its billing run. */
  laterUsages: number;
}

export interface DemoInvoice {
  number: string;
  partnership: string;
  currency: string;
  total: Pennies;
  issueDate: string;
  dueDate: string;
  /** Issued by this run, or by an earlier one. */
  isNew: boolean;
  accounts: Record<string, Pennies>;
  emails: Array<{ recipients: string[]; status: string; response: string | null; error: string | null }>;
}

async function readSummary(deps: Deps, since: Date, run: BillingRunResult): Promise<DemoSummary> {
  const { db } = deps;
  const files = await db('usage_files').where('received_at', '>=', since).orderBy('id')
    .select<{ id: string; partner_code: string; name: string; status: string; rows_read: number; rows_accepted: number; rows_rejected: number; rows_duplicate: number; error: string | null }[]>(
      'id', 'partner_code', 'name', 'status', 'rows_read', 'rows_accepted', 'rows_rejected', 'rows_duplicate', 'error');
  const errors = await db('usage_file_errors as e').join('usage_files as f', 'f.id', 'e.file_id').where('f.received_at', '>=', since).orderBy(['e.file_id', 'e.record'])
    .select<{ name: string; record: number | null; line: number | null; field: string | null; message: string }[]>('f.name', 'e.record', 'e.line', 'e.field', 'e.message');
  const [usages, records, transactions] = await Promise.all([
    db('product_usages').count<{ count: string }[]>('* as count'),
    db('billing_records').count<{ count: string }[]>('* as count'),
    db('transactions').count<{ count: string }[]>('* as count'),
  ]);
  const invoiceRows = await db('invoices as i').join('partnerships as p', 'p.id', 'i.partnership_id').where('i.period', run.period).orderBy('i.number')
    .select<{ id: string; number: string; code: string; currency: string; total_pennies: string; issue_date: string; due_date: string }[]>(
      'i.id', 'i.number', 'p.code', 'i.currency', 'i.total_pennies', 'i.issue_date', 'i.due_date');
  const invoices: DemoInvoice[] = [];
  for (const inv of invoiceRows) {
    const accounts = await db('invoice_lines as l').join('accounts as a', 'a.id', 'l.account_id').where('l.invoice_id', inv.id).groupBy('a.code').orderBy('a.code')
      .select<{ code: string; amount: string }[]>('a.code', db.raw('sum(l.amount_pennies)::text as amount'));
    const deliveries = await db('email_deliveries').where('invoice_id', inv.id)
      .select<{ recipients: string[]; status: string; last_response: string | null; last_error: string | null }[]>('recipients', 'status', 'last_response', 'last_error');
    invoices.push({
      number: inv.number,
      partnership: inv.code,
      currency: inv.currency.trim(),
      total: pennies(inv.total_pennies),
      issueDate: inv.issue_date,
      dueDate: inv.due_date,
      isNew: run.partnerships.find((r) => r.partnership === inv.code)?.outcome === 'invoiced',
      accounts: Object.fromEntries(accounts.map((a) => [a.code, pennies(a.amount)])),
      emails: deliveries.map((d) => ({ recipients: d.recipients, status: d.status, response: d.last_response, error: d.last_error })),
    });
  }
  const later = await db('product_usages').where('period', '>', run.period).count<{ count: string }[]>('* as count');
  return {
    files: files.map((f) => ({
      id: f.id,
      partner: f.partner_code,
      name: f.name,
      status: f.status,
      counts: f.status === 'duplicate' ? (f.error ?? '') : `read ${f.rows_read}, accepted ${f.rows_accepted}, rejected ${f.rows_rejected}, duplicate ${f.rows_duplicate}`,
    })),
    rowErrors: errors.map((e) => `${e.name} record ${e.record ?? '-'}${e.line ? ` (line ${e.line})` : ''} ${e.field ?? ''}: ${e.message}`),
    usages: Number(usages[0]?.count),
    records: Number(records[0]?.count),
    transactions: Number(transactions[0]?.count),
    run,
    invoices,
    laterUsages: Number(later[0]?.count),
  };
}

function printSummary(s: DemoSummary, print: (line: string) => void): void {
  print('\nFiles this run:');
  for (const f of s.files) print(`  #${f.id} ${f.partner}/${f.name}: ${f.status}; ${f.counts}`);
  for (const e of s.rowErrors) print(`    ${e}`);
  print(`\nIn the database: ${s.usages} usages, ${s.records} billing records, ${s.transactions} transactions`);
  print(`\nBilling run #${s.run.billingRunId} for ${s.run.period}: ${s.run.invoicesCreated} invoice(s) created`);
  for (const inv of s.invoices) {
    print(`  ${inv.number}  ${inv.partnership.padEnd(12)} ${formatMoney(inv.total, inv.currency).padStart(12)}  issued ${inv.issueDate}, due ${inv.dueDate}  (${inv.isNew ? 'new' : 'already issued'})`);
    for (const [code, amount] of Object.entries(inv.accounts)) print(`      ${code.padEnd(12)} ${formatMoney(amount, inv.currency).padStart(12)}`);
    for (const d of inv.emails) print(`      email to ${d.recipients.join(', ')}: ${d.status}${d.response ? ` (${d.response})` : ''}${d.error ? ` [${d.error}]` : ''}`);
  }
  for (const r of s.run.partnerships.filter((x) => x.outcome !== 'invoiced' && x.outcome !== 'already_invoiced')) {
    print(`  ${r.partnership}: ${r.outcome}${r.note ? ` (${r.note})` : ''}`);
  }
  if (s.laterUsages > 0) print(`\n${s.laterUsages} usage(s) belong to a later period and wait for its billing run.`);
}
