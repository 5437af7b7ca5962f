import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { dropDatabase } from '../adapters/db/database';
import { loadInvoiceDocument, loadInvoiceRecords } from '../adapters/db/invoice-repository';
import type { OutgoingMail } from '../adapters/mail/mail-transport';
import { renderInvoicePdf } from '../adapters/render/invoice-pdf';
import { jobIdFor } from '../jobs/catalog';
import { type RunningWorkers, startWorkers } from '../jobs/worker';
import { renderInvoiceCsv, renderInvoiceEmail } from '../src/core/invoice-email';
import { loadConfig, redactUrl } from '../src/config';
import { type Deps, createDeps } from '../src/deps';
import {
  BENCH_OUT_DIR,
  type BenchContext,
  BenchStoppedError,
  REPO_ROOT,
  type Services,
  closeBenchDeps,
  commandLine,
  deleteRedisKeys,
  describeError,
  freshBenchDatabase,
  prepareSchema,
  withTimeout,
} from './harness';
import { type BenchReport, type ReportRow, formatBytes, formatMb, formatRatio, formatSeconds } from './report';

/**
 * `bench invoices`: N issued invoices rendered (PDF, CSV, HTML and text) and emailed through the
 * real path (deliver-email jobs on BullMQ, deliverInvoice with its claim, communication log and
 * outcome in PostgreSQL, the pooled nodemailer transport) to a local SMTP sink, beside the rate of
 * sending pre-built messages of the same size over the same pool, in the same run.
 *
 * The invoices are generated with SQL (partners, partnerships, usages, billing records, claimed
 * transactions, lines, totals and pending deliveries, shaped like the billing run's), not by the
 * billing run itself: what is measured is rendering and delivery, and making 10,000 invoices through
 * ingest and rating would take longer than the measurement. The baseline runs before and after the
 * invoices, so a machine that gets busier during the run shows up as two different baselines.
 */

const RATIO_TARGET = 0.8;
// A small set of customers, each invoiced for many periods (one invoice per partnership and period).
const PARTNERSHIPS = 50;
const USAGES_PER_INVOICE = 12;
// Distinct rendered invoices the baseline cycles through: sizes like the invoices', built before timing.
const BASELINE_SAMPLES = 64;
const MAIL_FROM = 'Northbridge Billing <billing@northbridge.example>';

export interface InvoicesBenchOptions {
  invoices: number;
}

interface SendPhase {
  label: string;
  messages: number;
  ms: number;
  /** CPU time of the bench process (user + system) during the phase: what one message costs here. */
  cpuMs: number;
  sinkBytes: number;
}

function cpuMsSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

export async function runInvoicesBench(benchCtx: BenchContext, services: Services, opts: InvoicesBenchOptions): Promise<BenchReport> {
  // A database of its own beside the ingest bench's, so the two can run at the same time.
  const ctx = { ...benchCtx, databaseUrl: ownDatabase(benchCtx.databaseUrl) };
  const startedAt = new Date();
  const n = opts.invoices;
  const runId = `${startedAt.toISOString().replace(/[-:]/g, '').slice(0, 15)}-${randomBytes(3).toString('hex')}`;
  const runDir = path.join(BENCH_OUT_DIR, `invoices-${runId}`);
  const queuePrefix = `bench-${randomBytes(4).toString('hex')}-inv`;
  const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(ctx.phaseTimeoutMs)]);
  const whyStopped = () => (ctx.signal.aborted ? 'interrupted' : `the run did not finish within ${formatSeconds(ctx.phaseTimeoutMs)} (raise --timeout-min)`);

  const sink = await startSinkProcess();
  ctx.log(`SMTP sink pid ${sink.pid} listening on ${sink.url}`);
  await mkdir(runDir, { recursive: true });
  await freshBenchDatabase(ctx.databaseUrl);
  const deps = createDeps(
    loadConfig({
      ...process.env,
      DATABASE_URL: ctx.databaseUrl,
      REDIS_URL: ctx.redisUrl,
      QUEUE_PREFIX: queuePrefix,
      INBOX_DIR: path.join(runDir, 'inbox'),
      OUTBOX_DIR: path.join(runDir, 'outbox'),
      SMTP_URL: sink.url,
      MAIL_FROM,
      LOG_LEVEL: 'warn',
    }),
  );
  let workers: RunningWorkers | undefined;
  try {
    await prepareSchema(deps);
    const generation = performance.now();
    ctx.log(`generating ${n.toLocaleString('en-GB')} invoices with SQL (${PARTNERSHIPS} partnerships, ${USAGES_PER_INVOICE} usages each) in ${redactUrl(ctx.databaseUrl)}`);
    const generated = await generateInvoices(deps, n);
    const generationMs = performance.now() - generation;
    ctx.log(`  ${generated.invoices} invoices, ${generated.lines} lines, ${generated.transactions} transactions in ${formatSeconds(generationMs)}`);

    const samples = await prebuiltMessages(deps, BASELINE_SAMPLES);
    const render = await timeRendering(deps, samples.ids);
    ctx.log(`rendering one invoice (document, records, email, CSV, PDF) takes ${render.msPerInvoice.toFixed(2)} ms in this process; messages average ${formatBytes(samples.averageBytes)}`);

    // Warm the pool and both ends (connections, JIT) so neither measured phase pays for start-up.
    await sendPrebuilt(deps, samples.messages, Math.min(200, n), 'warm-up');
    await sink.stats(); // settles the sink's counters before the first phase

    const concurrency = deps.config.concurrency.deliver;
    const before = await withTimeout(ctx.phaseTimeoutMs, 'the first baseline', measureBaseline(deps, sink, samples.messages, n, 'before'));
    ctx.log(`baseline (before): ${n} pre-built messages in ${formatSeconds(before.ms)}, ${rate(n, before.ms)}`);

    const invoicePhase = await withTimeout(ctx.phaseTimeoutMs, 'the invoice deliveries', measureInvoices(ctx, deps, sink, generated.deliveryIds, signal, (w) => (workers = w)));
    await workers?.close(30_000);
    workers = undefined;
    ctx.log(`invoices: ${n} rendered and delivered in ${formatSeconds(invoicePhase.ms)}, ${rate(n, invoicePhase.ms)}`);

    const after = await withTimeout(ctx.phaseTimeoutMs, 'the second baseline', measureBaseline(deps, sink, samples.messages, n, 'after'));
    ctx.log(`baseline (after): ${n} pre-built messages in ${formatSeconds(after.ms)}, ${rate(n, after.ms)}`);

    const check = await verify(deps, n);
    return buildReport(ctx, services, { startedAt, n, generationMs, generated, render, samples, before, invoicePhase, after, check, concurrency, sink: sink.url });
  } catch (err) {
    throw signal.aborted ? new BenchStoppedError(whyStopped(), { cause: err }) : err;
  } finally {
    await workers?.close(5_000).catch(() => undefined);
    await closeBenchDeps(deps);
    await sink.stop();
    const deleted = await deleteRedisKeys(ctx.redisUrl, queuePrefix).catch((err: unknown) => {
      ctx.log(`could not delete Redis keys ${queuePrefix}:*: ${describeError(err)}`);
      return 0;
    });
    ctx.log(`deleted ${deleted} Redis keys under ${queuePrefix}:`);
    if (ctx.keep) ctx.log(`kept database ${redactUrl(ctx.databaseUrl)}`);
    else await dropDatabase(ctx.databaseUrl).catch((err: unknown) => ctx.log(`could not drop the bench database: ${describeError(err)}`));
    await rm(runDir, { recursive: true, force: true });
  }
}

function ownDatabase(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  url.pathname = `${url.pathname.replace(/_invoices$/, '')}_invoices`;
  return url.toString();
}

function rate(count: number, ms: number): string {
  return `${Math.trunc((count * 1000) / ms).toLocaleString('en-GB')}/s`;
}

// ---------------------------------------------------------------------------------------------
// The invoices, generated with SQL in the shape the billing run writes
// ---------------------------------------------------------------------------------------------

interface Generated {
  invoices: number;
  lines: number;
  transactions: number;
  deliveryIds: number[];
}

async function generateInvoices(deps: Deps, n: number): Promise<Generated> {
  const perPartnership = Math.ceil(n / PARTNERSHIPS);
  const partnerships = Math.min(PARTNERSHIPS, n);
  return deps.db.transaction(async (tx) => {
    await tx.raw(
      `INSERT INTO partners (code, kind, name, email, address)
       SELECT 'BENCH' || lpad(c::text, 3, '0'), 'company', 'Bench Customer ' || c || ' Ltd', 'finance@bench' || c || '.example',
              c || ' Harbour Road' || E'\\n' || 'Bristol BS1 5TT' || E'\\n' || 'United Kingdom'
       FROM generate_series(1, ?::int) c`,
      [partnerships],
    );
    await tx.raw(
      `INSERT INTO partnerships (code, provider_partner_id, customer_partner_id, currency, time_zone, contract_start, invoice_recipients, payment_terms_days)
       SELECT 'NRF-' || c.code, nrf.id, c.id, 'GBP', 'Europe/London', '2000-01-01', ARRAY['accounts-payable@' || lower(c.code) || '.example'], 30
       FROM partners c, partners nrf WHERE c.code LIKE 'BENCH%' AND nrf.code = 'NRF'`,
    );
    await tx.raw(
      `INSERT INTO accounts (partnership_id, code, name, kind)
       SELECT ps.id, a.code, a.name, a.kind FROM partnerships ps
       CROSS JOIN (VALUES (1, 'OPS', 'Operations', 'cost_centre'), (2, 'GRANT-4471', 'Wellcome grant 4471', 'expense_code'),
                          (3, 'PO-2026-118', 'Imaging purchase order', 'purchase_order')) a(n, code, name, kind)
       WHERE ps.code LIKE 'NRF-BENCH%'`,
    );
    await tx.raw(
      `INSERT INTO usage_files (partner_id, partner_code, name, sha256, size_bytes, format, source, stored_path, status, parsed_at, rated_at)
       SELECT ps.customer_partner_id, c.code, 'bench-usage.csv', md5(c.code) || md5(c.code || 'x'), 0, 'csv', 'cli', 'archive/bench', 'rated', now(), now()
       FROM partnerships ps JOIN partners c ON c.id = ps.customer_partner_id WHERE ps.code LIKE 'NRF-BENCH%'`,
    );
    // One invoice per partnership and month, numbered in one gapless series.
    await tx.raw(
      `INSERT INTO invoices (partnership_id, issuer_partner_id, customer_partner_id, period, status, number, number_year, number_seq, currency, issue_date, due_date, total_pennies)
       SELECT ps.id, ps.provider_partner_id, ps.customer_partner_id, to_char(m.start, 'YYYY-MM'), 'issued',
              'INV-2026-' || lpad(s.seq::text, 6, '0'), 2026, s.seq, 'GBP', (m.start + interval '1 month')::date, (m.start + interval '1 month' + interval '30 days')::date, 0
       FROM (SELECT ps.id AS partnership_id, g.m, row_number() OVER (ORDER BY g.m, ps.id) AS seq
             FROM partnerships ps CROSS JOIN generate_series(0, ?::int - 1) g(m) WHERE ps.code LIKE 'NRF-BENCH%') s
       JOIN partnerships ps ON ps.id = s.partnership_id
       CROSS JOIN LATERAL (SELECT date '2009-01-01' + make_interval(months => s.m) AS start) m
       WHERE s.seq <= ?`,
      [perPartnership, n],
    );
    // Usages of three products over the three accounts, a few with commas and quotes in their text.
    await tx.raw(
      `INSERT INTO product_usages (partner_id, partnership_id, external_id, product_id, user_ref, account_id, quantity, started_at, period, description, source_file_id, source_record)
       SELECT i.customer_partner_id, i.partnership_id, 'B' || i.id || '-' || k, p.id, (ARRAY['a.patel', 'm.chen', 'r.okafor'])[1 + k % 3],
              a.id, q.quantity, (i.period || '-01')::date + make_interval(days => k, hours => 9), i.period,
              CASE WHEN k % 5 = 0 THEN 'Batch job ' || k || ', array "alpha"' WHEN k % 2 = 0 THEN 'Run ' || k ELSE NULL END,
              f.id, k
       FROM invoices i
       CROSS JOIN generate_series(1, ?::int) k
       JOIN products p ON p.code = (ARRAY['CONFOCAL_HOUR', 'CPU_HOUR', 'STORAGE_TB_DAY'])[1 + k % 3]
       JOIN accounts a ON a.partnership_id = i.partnership_id AND a.code = (ARRAY['OPS', 'GRANT-4471', 'PO-2026-118'])[1 + (k / 3) % 3]
       JOIN usage_files f ON f.partner_id = i.customer_partner_id
       CROSS JOIN LATERAL (SELECT CASE p.code WHEN 'CONFOCAL_HOUR' THEN (1 + (i.id * 7 + k) % 8) * 0.25
                                              WHEN 'CPU_HOUR' THEN 100 + (i.id * 13 + k * 17) % 900 + 0.123456
                                              ELSE (1 + (i.id + k) % 20) * 0.5 END AS quantity) q
       WHERE i.number LIKE 'INV-2026-%'`,
      [USAGES_PER_INVOICE],
    );
    await tx.raw(
      `INSERT INTO billing_records (usage_id, partnership_id, account_id, product_id, period, quantity)
       SELECT u.id, u.partnership_id, u.account_id, u.product_id, u.period, u.quantity FROM product_usages u`,
    );
    await tx.raw(
      `INSERT INTO transactions (billing_record_id, kind, amount_pennies, description, unit_price, invoice_id)
       SELECT r.id, 'charge', round(r.quantity * pr.price * 100), p.name || ': ' || r.quantity || ' ' || p.unit || ' at ' || pr.price, pr.price, i.id
       FROM billing_records r
       JOIN products p ON p.id = r.product_id
       JOIN invoices i ON i.partnership_id = r.partnership_id AND i.period = r.period AND i.kind = 'invoice'
       JOIN (VALUES ('CONFOCAL_HOUR', 42.50), ('CPU_HOUR', 0.045), ('STORAGE_TB_DAY', 1.3333)) pr(code, price) ON pr.code = p.code`,
    );
    // Lines as the billing run groups them: per account, product, usage period, kind and unit price.
    await tx.raw(
      `INSERT INTO invoice_lines (invoice_id, position, account_id, product_id, usage_period, kind, description, quantity, unit_price, amount_pennies)
       SELECT t.invoice_id, row_number() OVER (PARTITION BY t.invoice_id ORDER BY a.code, r.period, p.code, t.unit_price),
              r.account_id, r.product_id, r.period, t.kind, p.name, sum(r.quantity), t.unit_price, sum(t.amount_pennies)
       FROM transactions t JOIN billing_records r ON r.id = t.billing_record_id JOIN accounts a ON a.id = r.account_id JOIN products p ON p.id = r.product_id
       GROUP BY t.invoice_id, r.account_id, a.code, r.product_id, p.code, p.name, r.period, t.kind, t.unit_price`,
    );
    await tx.raw(
      `UPDATE invoices i SET total_pennies = l.total FROM (SELECT invoice_id, sum(amount_pennies) AS total FROM invoice_lines GROUP BY invoice_id) l
       WHERE l.invoice_id = i.id`,
    );
    const deliveries = await tx.raw<{ rows: { id: string }[] }>(
      `INSERT INTO email_deliveries (invoice_id, recipients, subject, message_id, status)
       SELECT i.id, ps.invoice_recipients, 'Invoice ' || i.number || ' from Northbridge Research Facility for ' || i.period,
              '<' || lower(i.number) || '.nrf@northbridge.example>', 'pending'
       FROM invoices i JOIN partnerships ps ON ps.id = i.partnership_id
       ORDER BY i.id
       RETURNING id`,
    );
    const count = async (table: string) => Number((await tx(table).count<{ count: string }[]>('* as count'))[0]?.count);
    return {
      invoices: await count('invoices'),
      lines: await count('invoice_lines'),
      transactions: await count('transactions'),
      deliveryIds: deliveries.rows.map((r) => Number(r.id)),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// The baseline: the same messages, pre-built, over the same pool
// ---------------------------------------------------------------------------------------------

/** Renders a sample of the invoices exactly as deliverInvoice does, to be sent as they are. */
async function prebuiltMessages(deps: Deps, count: number): Promise<{ ids: number[]; messages: Omit<OutgoingMail, 'messageId'>[]; averageBytes: number }> {
  const ids = await deps.db('invoices').orderByRaw('random()').limit(count).pluck<string[]>('id');
  const messages: Omit<OutgoingMail, 'messageId'>[] = [];
  for (const id of ids.map(Number)) messages.push(await renderMessage(deps, id));
  const bytes = messages.map((m) => m.text.length + m.html.length + m.attachments.reduce((s, a) => s + a.content.length, 0));
  return { ids: ids.map(Number), messages, averageBytes: bytes.reduce((a, b) => a + b, 0) / bytes.length };
}

async function renderMessage(deps: Deps, invoiceId: number): Promise<Omit<OutgoingMail, 'messageId'>> {
  const doc = await loadInvoiceDocument(deps.db, invoiceId);
  const records = await loadInvoiceRecords(deps.db, invoiceId);
  const email = renderInvoiceEmail(doc);
  return {
    to: doc.recipients,
    subject: email.subject,
    text: email.text,
    html: email.html,
    attachments: [
      { filename: email.pdfFileName, content: await renderInvoicePdf(doc), contentType: 'application/pdf' },
      { filename: email.csvFileName, content: Buffer.from(renderInvoiceCsv(doc, records), 'utf8'), contentType: 'text/csv; charset=utf-8' },
    ],
  };
}

/** What one invoice costs to read and render in this process, without sending it. */
async function timeRendering(deps: Deps, ids: number[]): Promise<{ msPerInvoice: number }> {
  for (const id of ids.slice(0, 8)) await renderMessage(deps, id);
  const started = performance.now();
  for (const id of ids) await renderMessage(deps, id);
  return { msPerInvoice: (performance.now() - started) / ids.length };
}

/** `count` messages cycled from `messages`, each with its own Message-ID, `concurrency` at a time like the workers. */
async function sendPrebuilt(deps: Deps, messages: Omit<OutgoingMail, 'messageId'>[], count: number, tag: string): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const message = messages[i % messages.length]!;
      await deps.mailer.send({ ...message, messageId: `<baseline-${tag}-${i}@northbridge.example>` });
    }
  };
  await Promise.all(Array.from({ length: deps.config.concurrency.deliver }, lane));
}

async function measureBaseline(deps: Deps, sink: SinkProcess, messages: Omit<OutgoingMail, 'messageId'>[], n: number, tag: string): Promise<SendPhase> {
  const before = await sink.stats();
  const cpu = process.cpuUsage();
  const started = performance.now();
  await sendPrebuilt(deps, messages, n, tag);
  const ms = performance.now() - started;
  const cpuMs = cpuMsSince(cpu);
  const after = await sink.stats();
  if (after.count - before.count !== n) throw new Error(`baseline ${tag}: the sink received ${after.count - before.count} messages, expected ${n}`);
  return { label: `baseline (${tag})`, messages: n, ms, cpuMs, sinkBytes: after.bytes - before.bytes };
}

// ---------------------------------------------------------------------------------------------
// The invoices: deliver-email jobs through the real workers
// ---------------------------------------------------------------------------------------------

/**
 * Queues one deliver-email job per delivery (as the billing run does, in bulk), then starts the
 * deliver-email workers in this process, so they share the baseline's pooled transport, and times
 * them from start to the last job completed.
 */
async function measureInvoices(
  ctx: BenchContext,
  deps: Deps,
  sink: SinkProcess,
  deliveryIds: number[],
  signal: AbortSignal,
  started: (w: RunningWorkers) => void,
): Promise<SendPhase> {
  const queue = deps.queues.get('deliver-email');
  for (let i = 0; i < deliveryIds.length; i += 1000) {
    await queue.addBulk(
      deliveryIds.slice(i, i + 1000).map((deliveryId) => ({ name: 'deliver-email', data: { deliveryId }, opts: { jobId: jobIdFor('deliver-email', { deliveryId })! } })),
    );
  }
  const before = await sink.stats();
  const cpu = process.cpuUsage();
  let completed = 0;
  let failure: Error | undefined;
  const done = new Promise<number>((resolve, reject) => {
    const onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error('stopped'));
    signal.addEventListener('abort', onAbort, { once: true });
    const t0 = performance.now();
    const workers = startWorkers(deps, ['deliver-email']);
    started(workers);
    let lastLog = Date.now();
    for (const w of workers.workers) {
      w.on('completed', () => {
        completed += 1;
        if (Date.now() - lastLog > 10_000) {
          lastLog = Date.now();
          ctx.log(`  ${completed} of ${deliveryIds.length} invoices delivered`);
        }
        if (completed === deliveryIds.length) {
          signal.removeEventListener('abort', onAbort);
          resolve(performance.now() - t0);
        }
      });
      w.on('failed', (job, err) => {
        failure ??= new Error(`deliver-email job ${job?.id ?? '?'} failed: ${err.message}`);
        reject(failure);
      });
    }
  });
  const ms = await done;
  const cpuMs = cpuMsSince(cpu);
  const after = await sink.stats();
  return { label: 'invoices', messages: deliveryIds.length, ms, cpuMs, sinkBytes: after.bytes - before.bytes };
}

interface Check {
  sent: number;
  attemptsSent: number;
  otherStatuses: Record<string, number>;
}

async function verify(deps: Deps, n: number): Promise<Check> {
  const statuses = await deps.db('email_deliveries').groupBy('status').select<{ status: string; count: string }[]>('status', deps.db.raw('count(*) AS count'));
  const byStatus = Object.fromEntries(statuses.map((s) => [s.status, Number(s.count)]));
  const attempts = await deps.db('email_attempts').where('outcome', 'sent').count<{ count: string }[]>('* as count');
  const check = { sent: byStatus.sent ?? 0, attemptsSent: Number(attempts[0]?.count ?? 0), otherStatuses: Object.fromEntries(Object.entries(byStatus).filter(([s]) => s !== 'sent')) };
  if (check.sent !== n || check.attemptsSent !== n) throw new Error(`expected ${n} deliveries sent with one logged attempt each, found ${JSON.stringify(check)}`);
  return check;
}

// ---------------------------------------------------------------------------------------------
// The SMTP sink, in a process of its own like a real mail server
// ---------------------------------------------------------------------------------------------

interface SinkProcess {
  pid: number;
  url: string;
  stats(): Promise<{ count: number; bytes: number }>;
  stop(): Promise<void>;
}

// Accepts everything and counts messages and bytes; no parsing, so the sink costs little CPU.
const SINK_SCRIPT = `
const { SMTPServer } = require('smtp-server');
let count = 0, bytes = 0;
const server = new SMTPServer({
  secure: false, disabledCommands: ['STARTTLS'], authOptional: true, disableReverseLookup: true, logger: false, maxClients: 100,
  onData(stream, session, callback) {
    let size = 0;
    stream.on('data', (chunk) => { size += chunk.length; });
    stream.on('end', () => { count += 1; bytes += size; callback(null); });
  },
});
server.on('error', () => {});
server.listen(0, '127.0.0.1', () => process.send({ port: server.server.address().port }));
process.on('message', (m) => {
  if (m === 'stats') process.send({ count, bytes });
  if (m === 'stop') { for (const c of server.connections) c.close(); server.close(() => process.exit(0)); }
});
process.on('disconnect', () => process.exit(0));
`;

async function startSinkProcess(): Promise<SinkProcess> {
  const child: ChildProcess = spawn(process.execPath, ['-e', SINK_SCRIPT], { cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const [ready] = (await withTimeout(15_000, 'starting the SMTP sink', once(child, 'message'))) as [{ port: number }];
  const ask = () =>
    withTimeout(10_000, 'the SMTP sink answering', once(child, 'message')).then(([m]) => m as { count: number; bytes: number });
  return {
    pid: child.pid ?? 0,
    url: `smtp://127.0.0.1:${ready.port}`,
    stats() {
      const answer = ask();
      child.send('stats');
      return answer;
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.send('stop');
      await withTimeout(10_000, 'stopping the SMTP sink', exited).catch(() => child.kill('SIGKILL'));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

function buildReport(
  ctx: BenchContext,
  services: Services,
  r: {
    startedAt: Date;
    n: number;
    generationMs: number;
    generated: Generated;
    render: { msPerInvoice: number };
    samples: { averageBytes: number };
    before: SendPhase;
    invoicePhase: SendPhase;
    after: SendPhase;
    check: Check;
    concurrency: number;
    sink: string;
  },
): BenchReport {
  const perSecond = (p: SendPhase) => (p.messages * 1000) / p.ms;
  const baselineRate = (perSecond(r.before) + perSecond(r.after)) / 2;
  const invoiceRate = perSecond(r.invoicePhase);
  const ratio = invoiceRate / baselineRate;
  const size = (p: SendPhase) => formatBytes(p.sinkBytes / p.messages);
  const cpu = (p: SendPhase) => `${(p.cpuMs / p.messages).toFixed(2)} ms CPU/message`;
  const rows: ReportRow[] = [
    { figure: 'baseline: pre-built messages, before', measured: `${formatSeconds(r.before.ms)}, ${rate(r.n, r.before.ms)} (${size(r.before)} each, ${cpu(r.before)})` },
    { figure: 'baseline: pre-built messages, after', measured: `${formatSeconds(r.after.ms)}, ${rate(r.n, r.after.ms)} (${size(r.after)} each, ${cpu(r.after)})` },
    {
      figure: 'invoices rendered and delivered',
      measured: `${formatSeconds(r.invoicePhase.ms)}, ${rate(r.n, r.invoicePhase.ms)} (${size(r.invoicePhase)} each, ${cpu(r.invoicePhase)})`,
      baseline: `${Math.trunc(baselineRate).toLocaleString('en-GB')} msg/s (mean of both)`,
      ratio: formatRatio(ratio),
      target: { text: `>= ${RATIO_TARGET}x baseline`, met: ratio >= RATIO_TARGET },
    },
    { figure: 'render one invoice (read, email, CSV, PDF)', measured: `${r.render.msPerInvoice.toFixed(2)} ms in the bench process` },
  ];
  return {
    title: `bench invoices: ${r.n.toLocaleString('en-GB')} invoices rendered and emailed, beside pre-built messages over the same pool`,
    command: commandLine(),
    startedAt: r.startedAt,
    finishedAt: new Date(),
    environment: [
      `node ${process.version}, PostgreSQL ${services.postgres}, Redis ${services.redis} (maxmemory-policy ${services.redisPolicy})`,
      `${os.cpus()[0]?.model ?? 'cpu'} x ${os.cpus().length}, ${formatMb(os.totalmem() / 1024)} RAM, ${os.type()} ${os.release()}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
      `database ${redactUrl(ctx.databaseUrl)}, redis ${redactUrl(ctx.redisUrl)}, SMTP sink ${r.sink} (smtp-server in its own process, counting bytes)`,
    ],
    rows,
    notes: [
      `Invoices: generated with SQL in ${formatSeconds(r.generationMs)} (not by the billing run): ${r.generated.invoices} invoices of ${PARTNERSHIPS} partnerships ` +
        `(one per partnership and month), ${r.generated.lines} lines, ${r.generated.transactions} claimed transactions (${USAGES_PER_INVOICE} usages per invoice over 3 accounts and 3 products), one pending delivery each.`,
      `Invoice path: one deliver-email job per delivery on BullMQ, run by startWorkers(deps, ['deliver-email']) in the bench process (concurrency ${r.concurrency}); ` +
        'each job reads the invoice and its transactions, renders text, HTML, CSV and PDF, claims the delivery and logs the attempt, sends it over the pooled ' +
        'nodemailer transport (5 connections) and records the outcome. Timed from starting the workers to the last job completed.',
      `Baseline: the same transport and pool, ${r.concurrency} sends at a time, cycling through ${BASELINE_SAMPLES} invoice emails rendered beforehand ` +
        `(average ${formatBytes(r.samples.averageBytes)} of bodies and attachments) with fresh Message-IDs; run before and after the invoices, the mean is the baseline.`,
      `Checked afterwards: ${r.check.sent} deliveries sent, ${r.check.attemptsSent} attempts logged as sent${Object.keys(r.check.otherStatuses).length ? `, others ${JSON.stringify(r.check.otherStatuses)}` : ''}.`,
      'The machine is shared: figures move with whatever else runs; the two baselines show how much.',
    ],
  };
}
