import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { QueueEvents } from 'bullmq';
import { parseString } from 'fast-csv';
import { type ParsedMail, simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pdfText } from '../adapters/render/pdf-text';
import { INVOICE_CSV_HEADER } from '../src/core/invoice-email';
import { formatMoney, pennies } from '../src/core/money';
import { deliverInvoice } from '../src/use-cases/deliver-invoice';
import { PermanentError, RetryableError } from '../src/use-cases/errors';
import { ResendRefused, resendDelivery } from '../src/use-cases/resend-delivery';
import { resendCommand } from '../src/cli/commands/resend';
import { type IssuedInvoice, importDemoPartnerships, ingestDemoFeeds, issueDemoInvoices } from './support/inbox-drops';
import { type SmtpSink, startSmtpSink } from './support/smtp-sink';
import { type TestContext, createTestContext } from './support/test-context';

const MAIL_FROM = 'Northbridge Billing <billing@northbridge.example>';

interface DeliveryRow {
  id: string;
  invoice_id: string;
  recipients: string[];
  subject: string;
  message_id: string;
  status: string;
  attempts: number;
  last_error: string | null;
  last_response: string | null;
  transport: string | null;
  sent_at: Date | null;
}

function deliveryRow(ctx: TestContext, deliveryId: number): Promise<DeliveryRow> {
  return ctx.deps.db('email_deliveries').where('id', deliveryId).first<DeliveryRow>('*');
}

async function invoiceTotal(ctx: TestContext, invoiceId: number): Promise<number> {
  const row = await ctx.deps.db('invoices').where('id', invoiceId).first<{ total_pennies: string }>('total_pennies');
  return Number(row.total_pennies);
}

interface AttemptRow {
  attempt: number;
  trigger: string;
  requested_by: string | null;
  transport: string;
  sender: string;
  recipients: string[];
  subject: string;
  message_id: string;
  attempted_at: Date;
  finished_at: Date | null;
  outcome: string | null;
  reply_code: number | null;
  reply: string | null;
  rejected: string[];
}

/** The communication log of one delivery, oldest attempt first. */
function attemptsOf(ctx: TestContext, deliveryId: number): Promise<AttemptRow[]> {
  return ctx.deps.db('email_attempts').where('delivery_id', deliveryId).orderBy('attempt').select<AttemptRow[]>('*');
}

function csvRows(csv: string): Promise<Record<string, string>[]> {
  return new Promise((resolve, reject) => {
    const rows: Record<string, string>[] = [];
    parseString<Record<string, string>, Record<string, string>>(csv, { headers: true, strictColumnHandling: true })
      .on('error', reject)
      .on('data', (row: Record<string, string>) => rows.push(row))
      .on('end', () => resolve(rows));
  });
}

/** A world with the demo partnerships, every demo feed ingested and rated, and the October invoices issued. */
async function demoWorld(env: Record<string, string>, beforeIssue?: (ctx: TestContext) => Promise<void>) {
  const ctx = await createTestContext({ env: { MAIL_FROM, ...env } });
  await importDemoPartnerships(ctx.deps);
  await ingestDemoFeeds(ctx.deps);
  await beforeIssue?.(ctx);
  const invoices = await issueDemoInvoices(ctx.deps);
  return { ctx, invoices };
}

function queueEvents(ctx: TestContext, name: string): QueueEvents {
  return new QueueEvents(name, { connection: { url: ctx.deps.config.redisUrl }, prefix: ctx.deps.config.queuePrefix });
}

/**
 * The CSV attachment lists the invoice's transactions: its header is the documented one, there is
 * one row per transaction the invoice claimed, and the amounts add up to the total.
 */
async function expectInvoiceCsv(ctx: TestContext, mail: ParsedMail, invoice: IssuedInvoice): Promise<void> {
  const csv = mail.attachments.find((a) => a.contentType.startsWith('text/csv'));
  expect(csv?.filename).toBe(`${invoice.number}.csv`);
  const text = csv!.content.toString('utf8');
  expect(text.slice(0, text.indexOf('\r\n'))).toBe(INVOICE_CSV_HEADER.join(','));
  const rows = await csvRows(text);
  const claimed = await ctx.deps.db('transactions').where('invoice_id', invoice.invoiceId).select<{ id: string }[]>('id');
  expect(rows.map((r) => r.transaction_id).sort()).toEqual(claimed.map((t) => t.id).sort());
  let sum = 0;
  for (const row of rows) {
    expect(row.invoice_number).toBe(invoice.number);
    expect(row.amount).toMatch(/^-?\d+\.\d{2}$/);
    sum += Number(row.amount!.replace('.', ''));
  }
  expect(sum).toBe(await invoiceTotal(ctx, invoice.invoiceId));
}

/** The PDF attachment, read back with pdftotext: it is this invoice, with its number and total. */
async function expectInvoicePdf(ctx: TestContext, mail: ParsedMail, invoice: IssuedInvoice): Promise<void> {
  const pdf = mail.attachments.find((a) => a.contentType === 'application/pdf');
  expect(pdf?.filename).toBe(`${invoice.number}.pdf`);
  expect(pdf!.content.subarray(0, 5).toString('latin1')).toBe('%PDF-');
  const row = await ctx.deps.db('invoices').where('id', invoice.invoiceId).first<{ total_pennies: string; currency: string }>('total_pennies', 'currency');
  const total = formatMoney(pennies(row.total_pennies), row.currency);
  const text = (await pdfText(pdf!.content)).replace(/[ \t]+/g, ' ');
  expect(text).toContain(`Invoice number ${invoice.number}`);
  expect(text).toContain(`Total (${row.currency}) ${total}`);
  expect(text).toContain('Northbridge Research Facility');
}

describe('invoice emails the SMTP server accepts (250)', () => {
  let sink: SmtpSink;
  let ctx: TestContext;
  let invoices: { acme: IssuedInvoice; jsmith: IssuedInvoice };

  beforeAll(async () => {
    sink = await startSmtpSink();
    ({ ctx, invoices } = await demoWorld({ SMTP_URL: sink.url }));
  });

  afterAll(async () => {
    await ctx?.close();
    await sink?.close();
  });

  it('sends each issued invoice once through the deliver-email queue, under the Message-ID fixed at issue, with its CSV', async () => {
    expect((await deliveryRow(ctx, invoices.acme.deliveryId)).status).toBe('pending');
    expect(sink.messages).toHaveLength(0);

    const queue = ctx.deps.queues.get('deliver-email');
    const events = queueEvents(ctx, 'deliver-email');
    try {
      await events.waitUntilReady();
      // The jobs the billing run enqueued, waiting for a worker.
      const jobs = await Promise.all([invoices.acme, invoices.jsmith].map((i) => queue.getJob(`deliver-email-${i.deliveryId}`)));
      expect(jobs.map((j) => j?.data as unknown)).toEqual([{ deliveryId: invoices.acme.deliveryId }, { deliveryId: invoices.jsmith.deliveryId }]);
      ctx.workers();
      const outcomes = (await Promise.all(jobs.map((j) => j!.waitUntilFinished(events, 30_000)))) as Array<{ kind: string }>;
      expect(outcomes.map((o) => o.kind)).toEqual(['sent', 'sent']);
    } finally {
      await events.close();
    }

    expect(sink.messages).toHaveLength(2);
    for (const invoice of [invoices.acme, invoices.jsmith]) {
      const row = await deliveryRow(ctx, invoice.deliveryId);
      expect(row).toMatchObject({ status: 'sent', attempts: 1, transport: 'smtp', last_error: null });
      expect(row.sent_at).not.toBeNull();
      const mails = sink.messages.filter((m) => m.parsed.subject?.includes(invoice.number));
      expect(mails, `one email for ${invoice.number}`).toHaveLength(1);
      const mail = mails[0]!;
      expect(mail.parsed.messageId).toBe(row.message_id);
      expect(mail.parsed.subject).toBe(row.subject);
      expect(mail.envelope.rcptTo).toEqual(row.recipients);
      await expectInvoiceCsv(ctx, mail.parsed, invoice);
      await expectInvoicePdf(ctx, mail.parsed, invoice);
      expect(mail.parsed.attachments.map((a) => a.filename)).toEqual([`${invoice.number}.pdf`, `${invoice.number}.csv`]);

      // The communication log: one attempt, with who sent what to whom and the server's reply.
      const attempts = await attemptsOf(ctx, invoice.deliveryId);
      expect(attempts).toHaveLength(1);
      expect(attempts[0]).toMatchObject({
        attempt: 1,
        trigger: 'automatic',
        requested_by: null,
        transport: 'smtp',
        sender: MAIL_FROM,
        recipients: row.recipients,
        subject: row.subject,
        message_id: row.message_id,
        outcome: 'sent',
        reply_code: 250,
        reply: row.last_response,
        rejected: [],
      });
      expect(attempts[0]!.reply).toMatch(/^250 /);
      expect(attempts[0]!.finished_at!.getTime()).toBeGreaterThanOrEqual(attempts[0]!.attempted_at.getTime());
    }
  });

  it('does not send an invoice again once it has been sent', async () => {
    const again = await deliverInvoice(ctx.deps, invoices.acme.deliveryId, { finalAttempt: false });
    expect(again).toEqual({ kind: 'unchanged', deliveryId: invoices.acme.deliveryId, status: 'sent' });
    expect(sink.messages).toHaveLength(2);
    expect((await deliveryRow(ctx, invoices.acme.deliveryId)).attempts).toBe(1);
  });

  it('attaches the invoice as a PDF whose text has its number and total', async () => {
    const mail = sink.messages.find((m) => m.parsed.subject?.includes(invoices.acme.number));
    const pdf = mail?.parsed.attachments.find((a) => a.contentType === 'application/pdf');
    expect(pdf?.filename).toBe(`${invoices.acme.number}.pdf`);
    expect(pdf?.content.subarray(0, 5).toString('latin1')).toBe('%PDF-');
    // The demo's hand-worked total for NRF-ACME (fixtures/demo/expected.yaml).
    expect(await invoiceTotal(ctx, invoices.acme.invoiceId)).toBe(29164);
    const text = (await pdfText(pdf!.content)).replace(/[ \t]+/g, ' ');
    expect(text).toContain(`Invoice number ${invoices.acme.number}`);
    expect(text).toContain('Total (GBP) £291.64');
    expect(text).toContain('Amount due');
    expect(text).toContain('Acme Biosciences Ltd');
  });

  it('resends a sent invoice on purpose under the same Message-ID, through the queue, and logs it as a resend', async () => {
    const id = invoices.jsmith.deliveryId;
    const before = await deliveryRow(ctx, id);
    const copies = () => sink.messages.filter((m) => m.parsed.subject?.includes(invoices.jsmith.number));
    expect(copies()).toHaveLength(1);

    const events = queueEvents(ctx, 'deliver-email');
    try {
      await events.waitUntilReady();
      const requested = await resendDelivery(ctx.deps, id, { requestedBy: 'ops@northbridge.example' });
      expect(requested).toMatchObject({ deliveryId: id, invoiceNumber: invoices.jsmith.number, previousStatus: 'sent', messageId: before.message_id });
      // The earlier attempt's finished job made way: the resend runs under the delivery's stable job id.
      expect(requested.jobId).toBe(`deliver-email-${id}`);
      const job = await ctx.deps.queues.get('deliver-email').getJob(requested.jobId!);
      expect(await job!.waitUntilFinished(events, 30_000)).toMatchObject({ kind: 'sent', messageId: before.message_id });
    } finally {
      await events.close();
    }

    expect(copies()).toHaveLength(2);
    expect(copies().map((m) => m.parsed.messageId)).toEqual([before.message_id, before.message_id]);
    const after = await deliveryRow(ctx, id);
    expect(after).toMatchObject({ status: 'sent', attempts: 2, message_id: before.message_id });
    const attempts = await attemptsOf(ctx, id);
    expect(attempts.map((a) => [a.attempt, a.trigger, a.requested_by, a.outcome])).toEqual([
      [1, 'automatic', null, 'sent'],
      [2, 'resend', 'ops@northbridge.example', 'sent'],
    ]);
    const audit = await ctx.deps.db('audit_log').where({ entity: 'email_delivery', entity_id: String(id) }).select<{ actor: string; action: string; before: unknown; after: unknown }[]>('actor', 'action', 'before', 'after');
    expect(audit).toEqual([
      { actor: 'ops@northbridge.example', action: 'delivery.resend_requested', before: { status: 'sent', attempts: 1 }, after: { status: 'pending', message_id: before.message_id } },
    ]);
    const request = await ctx.deps.db('email_deliveries').where('id', id).first<{ resend_requested_by: string | null }>('resend_requested_by');
    expect(request.resend_requested_by).toBeNull();
  });

  it('refuses to resend a delivery that does not exist', async () => {
    await expect(resendDelivery(ctx.deps, 999_999, { requestedBy: 'ops' })).rejects.toThrow(new ResendRefused('not_found', 'email delivery 999999 does not exist'));
  });
});

describe('invoice emails that fail for a while or are interrupted', () => {
  let sink: SmtpSink;
  let ctx: TestContext;
  let invoices: { acme: IssuedInvoice; jsmith: IssuedInvoice };

  beforeAll(async () => {
    sink = await startSmtpSink();
    ({ ctx, invoices } = await demoWorld({ SMTP_URL: sink.url }));
  });

  afterAll(async () => {
    await ctx?.close();
    await sink?.close();
  });

  it('retries after a 451 at DATA and then sends exactly one copy', async () => {
    let dataReplies = 0;
    sink.respondWith((e) => (e.stage === 'data' && ++dataReplies === 1 ? { code: 451, message: '4.3.0 Temporary local problem, try again' } : null));
    const id = invoices.acme.deliveryId;

    const first = deliverInvoice(ctx.deps, id, { finalAttempt: false });
    await expect(first).rejects.toBeInstanceOf(RetryableError);
    await expect(first).rejects.toThrow(/451/);
    const afterFirst = await deliveryRow(ctx, id);
    expect(afterFirst).toMatchObject({ status: 'pending', attempts: 1 });
    expect(afterFirst.last_error).toMatch(/451/);
    expect(sink.messages).toHaveLength(0);

    const second = await deliverInvoice(ctx.deps, id, { finalAttempt: false });
    expect(second.kind).toBe('sent');
    const afterSecond = await deliveryRow(ctx, id);
    expect(afterSecond).toMatchObject({ status: 'sent', attempts: 2, last_error: null });
    expect(dataReplies).toBe(2);
    expect(sink.messages).toHaveLength(1);
    expect(sink.messages[0]!.parsed.messageId).toBe(afterSecond.message_id);
    expect(sink.messages[0]!.parsed.subject).toContain(invoices.acme.number);
    const attempts = await attemptsOf(ctx, id);
    expect(attempts.map((a) => [a.attempt, a.outcome, a.reply_code])).toEqual([
      [1, 'transient_failure', 451],
      [2, 'sent', 250],
    ]);
    expect(attempts[0]!.reply).toBe('Message failed: 451 4.3.0 Temporary local problem, try again');
    sink.respondWith(null);
  });

  it('marks a delivery found mid-send after a crash as unknown and does not send it again', async () => {
    const id = invoices.jsmith.deliveryId;
    // A worker claimed the delivery (pending -> sending, attempt 1) and died before recording the outcome.
    await ctx.deps.db('email_deliveries').where('id', id).update({ status: 'sending', attempts: 1 });
    const messagesBefore = sink.messages.length;
    const connectionsBefore = sink.connectionCount;

    const outcome = await deliverInvoice(ctx.deps, id, { finalAttempt: false });
    expect(outcome).toEqual({ kind: 'unknown', deliveryId: id });
    const row = await deliveryRow(ctx, id);
    expect(row).toMatchObject({ status: 'unknown', attempts: 1 });
    expect(row.last_error).toMatch(/interrupted after it started sending/);

    // A later attempt (a retried job) leaves it for the operator too.
    const again = await deliverInvoice(ctx.deps, id, { finalAttempt: true });
    expect(again).toEqual({ kind: 'unchanged', deliveryId: id, status: 'unknown' });
    expect(sink.messages).toHaveLength(messagesBefore);
    expect(sink.connectionCount).toBe(connectionsBefore);

    // The interrupted attempt is in the log as unknown (set to sending by hand here, so the finding writes its row).
    const attempts = await attemptsOf(ctx, id);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]).toMatchObject({ attempt: 1, outcome: 'unknown', reply_code: null, message_id: row.message_id, recipients: row.recipients });
    expect(attempts[0]!.reply).toMatch(/interrupted after it started sending/);
  });

  it('sends an unknown delivery once an operator resends it, logged after the unknown attempt', async () => {
    const id = invoices.jsmith.deliveryId;
    expect((await deliveryRow(ctx, id)).status).toBe('unknown');
    const requested = await resendDelivery(ctx.deps, id, { requestedBy: 'cli', enqueue: false });
    expect(requested).toEqual({ deliveryId: id, invoiceNumber: invoices.jsmith.number, previousStatus: 'unknown', messageId: (await deliveryRow(ctx, id)).message_id });
    expect((await deliveryRow(ctx, id)).status).toBe('pending');
    // A second request while the first is on its way (a double click) is refused, not sent twice.
    await expect(resendDelivery(ctx.deps, id, { requestedBy: 'cli', enqueue: false })).rejects.toThrow(
      new ResendRefused('in_progress', `email delivery ${id} of ${invoices.jsmith.number} is pending: an attempt is already on its way, so it is not resent`, 'pending'),
    );

    expect((await deliverInvoice(ctx.deps, id, { finalAttempt: false })).kind).toBe('sent');
    const row = await deliveryRow(ctx, id);
    expect(row).toMatchObject({ status: 'sent', attempts: 2 });
    const mails = sink.messages.filter((m) => m.parsed.subject?.includes(invoices.jsmith.number));
    expect(mails).toHaveLength(1);
    expect(mails[0]!.parsed.messageId).toBe(row.message_id);
    const attempts = await attemptsOf(ctx, id);
    expect(attempts.map((a) => [a.attempt, a.trigger, a.requested_by, a.outcome])).toEqual([
      [1, 'automatic', null, 'unknown'],
      [2, 'resend', 'cli', 'sent'],
    ]);
  });
});

describe('invoice emails the SMTP server refuses for good (550)', () => {
  let sink: SmtpSink;
  let ctx: TestContext;
  let invoices: { acme: IssuedInvoice; jsmith: IssuedInvoice };

  beforeAll(async () => {
    sink = await startSmtpSink();
    sink.respondWith((e) => (e.stage === 'rcpt' ? { code: 550, message: `5.1.1 <${e.recipient}>: mailbox unavailable` } : null));
    ({ ctx, invoices } = await demoWorld({ SMTP_URL: sink.url }));
  });

  afterAll(async () => {
    await ctx?.close();
    await sink?.close();
  });

  it('fails the delivery with a PermanentError naming the 550', async () => {
    const id = invoices.jsmith.deliveryId;
    const attempt = deliverInvoice(ctx.deps, id, { finalAttempt: false });
    await expect(attempt).rejects.toBeInstanceOf(PermanentError);
    await expect(attempt).rejects.toThrow(/550/);
    const row = await deliveryRow(ctx, id);
    expect(row).toMatchObject({ status: 'failed', attempts: 1 });
    expect(row.last_error).toMatch(/550/);
    expect(sink.messages).toHaveLength(0);
    const attempts = await attemptsOf(ctx, id);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]).toMatchObject({ attempt: 1, outcome: 'permanent_failure', reply_code: 550, rejected: row.recipients, reply: row.last_error });
    expect(attempts[0]!.reply).toContain('5.1.1');
  });

  it('fails the deliver-email job after one attempt, without retrying', async () => {
    const id = invoices.acme.deliveryId;
    const queue = ctx.deps.queues.get('deliver-email');
    const events = queueEvents(ctx, 'deliver-email');
    try {
      await events.waitUntilReady();
      const job = await queue.getJob(`deliver-email-${id}`);
      expect(job?.data as unknown).toEqual({ deliveryId: id });
      ctx.workers();
      await expect(job!.waitUntilFinished(events, 30_000)).rejects.toThrow(/550/);
      const finished = await queue.getJob(job!.id!);
      expect(await finished!.getState()).toBe('failed');
      expect(finished!.attemptsMade).toBe(1);
      expect(finished!.failedReason).toMatch(/550/);
    } finally {
      await events.close();
    }
    const row = await deliveryRow(ctx, id);
    expect(row).toMatchObject({ status: 'failed', attempts: 1 });
    expect(row.last_error).toMatch(/550/);
    expect(sink.messages).toHaveLength(0);
  });

  it('sends a failed delivery once the mailbox is fixed and an operator resends it', async () => {
    sink.respondWith(null);
    const id = invoices.acme.deliveryId;
    const events = queueEvents(ctx, 'deliver-email');
    try {
      await events.waitUntilReady();
      const requested = await resendDelivery(ctx.deps, id, { requestedBy: 'ops@northbridge.example' });
      expect(requested.previousStatus).toBe('failed');
      // The failed job of the first attempt was removed so the resend could take the stable id.
      expect(requested.jobId).toBe(`deliver-email-${id}`);
      const job = await ctx.deps.queues.get('deliver-email').getJob(requested.jobId!);
      expect(await job!.waitUntilFinished(events, 30_000)).toMatchObject({ kind: 'sent' });
    } finally {
      await events.close();
    }
    const row = await deliveryRow(ctx, id);
    expect(row).toMatchObject({ status: 'sent', attempts: 2, last_error: null });
    expect(sink.messages).toHaveLength(1);
    expect(sink.messages[0]!.parsed.messageId).toBe(row.message_id);
    expect((await attemptsOf(ctx, id)).map((a) => [a.trigger, a.outcome])).toEqual([
      ['automatic', 'permanent_failure'],
      ['resend', 'sent'],
    ]);
  });
});

describe('invoice emails written to the outbox folder (no SMTP_URL)', () => {
  let ctx: TestContext;
  let invoices: { acme: IssuedInvoice; jsmith: IssuedInvoice };

  beforeAll(async () => {
    ({ ctx, invoices } = await demoWorld({}));
  });

  afterAll(async () => {
    await ctx?.close();
  });

  it('writes one .eml per invoice that parses as the invoice email', async () => {
    for (const invoice of [invoices.acme, invoices.jsmith]) {
      const outcome = await deliverInvoice(ctx.deps, invoice.deliveryId, { finalAttempt: false });
      expect(outcome.kind).toBe('sent');
    }
    // Only finished messages: no temporary files left behind.
    const files = (await readdir(ctx.outboxDir)).sort();
    expect(files).toHaveLength(2);
    expect(files.every((f) => f.endsWith('.eml'))).toBe(true);

    for (const invoice of [invoices.acme, invoices.jsmith]) {
      const row = await deliveryRow(ctx, invoice.deliveryId);
      expect(row).toMatchObject({ status: 'sent', attempts: 1, transport: 'outbox' });
      const written = /^written to (.+)$/.exec(row.last_response ?? '')?.[1];
      expect(written && path.dirname(written)).toBe(ctx.outboxDir);
      expect(files).toContain(path.basename(written!));

      const mail = await simpleParser(await readFile(written!));
      expect(mail.subject).toBe(`Invoice ${invoice.number} from Northbridge Research Facility for 2026-10`);
      expect(mail.messageId).toBe(row.message_id);
      const to = Array.isArray(mail.to) ? mail.to : mail.to ? [mail.to] : [];
      expect(to.flatMap((a) => a.value.map((v) => v.address))).toEqual(row.recipients);
      expect(mail.from?.value).toEqual([{ name: 'Northbridge Billing', address: 'billing@northbridge.example' }]);
      await expectInvoiceCsv(ctx, mail, invoice);
      await expectInvoicePdf(ctx, mail, invoice);
      expect((await attemptsOf(ctx, invoice.deliveryId)).map((a) => [a.transport, a.outcome, a.reply_code, a.reply])).toEqual([
        ['outbox', 'sent', null, row.last_response],
      ]);
    }
  });

  it('resends from the CLI with --send-now, and refuses a delivery that is not finished', async () => {
    const id = invoices.acme.deliveryId;
    const lines: string[] = [];
    await resendCommand(ctx.deps, { deliveryId: id, sendNow: true, actor: 'cli:tester' }, (l) => lines.push(l));
    const row = await deliveryRow(ctx, id);
    expect(lines).toEqual([
      `delivery ${id} of ${invoices.acme.number} (was sent) is pending again, Message-ID ${row.message_id}`,
      `sent: ${row.last_response}`,
    ]);
    expect(row).toMatchObject({ status: 'sent', attempts: 2 });
    expect((await attemptsOf(ctx, id)).map((a) => [a.trigger, a.requested_by, a.outcome])).toEqual([
      ['automatic', null, 'sent'],
      ['resend', 'cli:tester', 'sent'],
    ]);

    await ctx.deps.db('email_deliveries').where('id', id).update({ status: 'sending' });
    await expect(resendCommand(ctx.deps, { deliveryId: id, sendNow: true, actor: 'cli:tester' }, () => undefined)).rejects.toThrow(
      new PermanentError(`email delivery ${id} of ${invoices.acme.number} is sending: an attempt is already on its way, so it is not resent`),
    );
  });
});

describe('a CR/LF in the issuer name used in the subject', () => {
  const injected = 'Northbridge Research\r\nX-Injected: yes\r\nBcc: attacker@evil.example';
  let sink: SmtpSink;
  let ctx: TestContext;
  let invoices: { acme: IssuedInvoice; jsmith: IssuedInvoice };

  beforeAll(async () => {
    sink = await startSmtpSink();
    ({ ctx, invoices } = await demoWorld({ SMTP_URL: sink.url }, async (c) => {
      await c.deps.db('partners').where('code', 'NRF').update({ name: injected });
    }));
  });

  afterAll(async () => {
    await ctx?.close();
    await sink?.close();
  });

  it('keeps the subject on one header line and adds no header', async () => {
    const id = invoices.acme.deliveryId;
    expect((await deliverInvoice(ctx.deps, id, { finalAttempt: false })).kind).toBe('sent');
    const row = await deliveryRow(ctx, id);
    const expected = `Invoice ${invoices.acme.number} from Northbridge Research X-Injected: yes Bcc: attacker@evil.example for 2026-10`;
    expect(row.subject).toBe(expected);

    expect(sink.messages).toHaveLength(1);
    const mail = sink.messages[0]!;
    expect(mail.parsed.subject).toBe(expected);
    expect(mail.parsed.subject).not.toMatch(/[\r\n]/);
    expect(mail.parsed.headers.has('x-injected')).toBe(false);
    expect(mail.parsed.bcc).toBeUndefined();
    expect(mail.envelope.rcptTo).toEqual(row.recipients);
    // In the raw header block, once folded lines are joined, exactly one line is the subject.
    const head = mail.raw.toString('utf8').split('\r\n\r\n')[0]!.replace(/\r\n[ \t]+/g, ' ');
    const headerNames = head.split('\r\n').map((l) => l.slice(0, l.indexOf(':')).toLowerCase());
    expect(headerNames.filter((n) => n === 'subject')).toHaveLength(1);
    expect(headerNames).not.toContain('x-injected');
    expect(headerNames).not.toContain('bcc');
  });
});

describe('a database fault while recording a message the server accepted', () => {
  let sink: SmtpSink;
  let ctx: TestContext;
  let invoices: { acme: IssuedInvoice; jsmith: IssuedInvoice };

  beforeAll(async () => {
    sink = await startSmtpSink();
    ({ ctx, invoices } = await demoWorld({ SMTP_URL: sink.url }));
  });

  afterAll(async () => {
    await ctx?.close();
    await sink?.close();
  });

  // Known bug (reliability 31): deliverInvoice's try block covers both mailer.send() and the update
  // that records 'sent', so a database error after the server accepted the message is classified as a
  // transient send failure: the row goes back to 'pending' and the retry sends the invoice again.
  it('does not send the invoice a second time when the database fails right after the server accepted it', async () => {
    const { db } = ctx.deps;
    const id = invoices.acme.deliveryId;
    // A real database error on exactly the statement that records the send.
    await db.raw(`CREATE FUNCTION test_fail_recording_sent() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'simulated database fault while recording the send'; END $$`);
    await db.raw(`CREATE TRIGGER test_fail_recording_sent BEFORE UPDATE ON email_deliveries
      FOR EACH ROW WHEN (NEW.status = 'sent') EXECUTE FUNCTION test_fail_recording_sent()`);
    try {
      await expect(deliverInvoice(ctx.deps, id, { finalAttempt: false })).rejects.toThrow(/simulated database fault/);
    } finally {
      await db.raw('DROP TRIGGER test_fail_recording_sent ON email_deliveries');
      await db.raw('DROP FUNCTION test_fail_recording_sent()');
    }
    expect(sink.messages).toHaveLength(1);

    // The attempt started (it is in the log) and nobody saw it finish.
    expect((await attemptsOf(ctx, id)).map((a) => [a.attempt, a.outcome])).toEqual([[1, null]]);

    // The database is back and the job is retried, as BullMQ would after any thrown error.
    await deliverInvoice(ctx.deps, id, { finalAttempt: false }).catch(() => undefined);
    expect(sink.messages, 'copies of the invoice the customer received').toHaveLength(1);
    expect(['sent', 'unknown']).toContain((await deliveryRow(ctx, id)).status);
    // The same attempt, finished as unknown: the log shows one attempt, not a second send.
    const attempts = await attemptsOf(ctx, id);
    expect(attempts.map((a) => [a.attempt, a.outcome])).toEqual([[1, 'unknown']]);
    expect(attempts[0]!.finished_at).not.toBeNull();
  });
});
