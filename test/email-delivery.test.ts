import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { QueueEvents } from 'bullmq';
import { type ParsedMail, simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INVOICE_CSV_HEADER } from '../src/core/invoice-email';
import { deliverInvoice } from '../src/use-cases/deliver-invoice';
import { PermanentError, RetryableError } from '../src/use-cases/errors';
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

/** The CSV attachment is the invoice: its header is the documented one and its amounts add up to the total. */
async function expectInvoiceCsv(ctx: TestContext, mail: ParsedMail, invoice: IssuedInvoice): Promise<void> {
  const csv = mail.attachments.find((a) => a.contentType.startsWith('text/csv'));
  expect(csv?.filename).toBe(`${invoice.number}.csv`);
  const [header, ...rows] = csv!.content.toString('utf8').trim().split('\r\n');
  expect(header).toBe(INVOICE_CSV_HEADER.join(','));
  expect(rows.length).toBeGreaterThan(0);
  const amountAt = INVOICE_CSV_HEADER.indexOf('amount');
  let sum = 0;
  for (const row of rows) {
    // The amount is counted from the end of the row, so a quoted comma in an earlier cell cannot shift it.
    const cells = row.split(',');
    const amount = cells[cells.length - (INVOICE_CSV_HEADER.length - amountAt)]!;
    expect(amount).toMatch(/^-?\d+\.\d{2}$/);
    sum += Number(amount.replace('.', ''));
    expect(cells[0]).toBe(invoice.number);
  }
  expect(sum).toBe(await invoiceTotal(ctx, invoice.invoiceId));
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
    }
  });

  it('does not send an invoice again once it has been sent', async () => {
    const again = await deliverInvoice(ctx.deps, invoices.acme.deliveryId, { finalAttempt: false });
    expect(again).toEqual({ kind: 'unchanged', deliveryId: invoices.acme.deliveryId, status: 'sent' });
    expect(sink.messages).toHaveLength(2);
    expect((await deliveryRow(ctx, invoices.acme.deliveryId)).attempts).toBe(1);
  });

  // The invoice PDF is not built yet; this is what it must satisfy when it is.
  it.skip('attaches the invoice as a PDF', () => {
    const mail = sink.messages.find((m) => m.parsed.subject?.includes(invoices.acme.number));
    const pdf = mail?.parsed.attachments.find((a) => a.contentType === 'application/pdf');
    expect(pdf?.filename).toBe(`${invoices.acme.number}.pdf`);
    expect(pdf?.content.subarray(0, 5).toString('latin1')).toBe('%PDF-');
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
    }
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

    // The database is back and the job is retried, as BullMQ would after any thrown error.
    await deliverInvoice(ctx.deps, id, { finalAttempt: false }).catch(() => undefined);
    expect(sink.messages, 'copies of the invoice the customer received').toHaveLength(1);
    expect(['sent', 'unknown']).toContain((await deliveryRow(ctx, id)).status);
  });
});
