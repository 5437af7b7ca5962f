import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type SmtpSink, startSmtpSink } from '../../test/support/smtp-sink';
import {
  MailRefusedError,
  type MailTransport,
  type MailTransportOptions,
  type OutgoingMail,
  classifySendError,
  createMailTransport,
  outboxFileName,
} from './mail-transport';

const FROM = 'Billing <billing@acme.example>';
const CSV = 'invoice_number,amount\r\nINV-2026-000001,-12.50\r\n';

function mail(overrides: Partial<OutgoingMail> = {}): OutgoingMail {
  return {
    messageId: '<invoice-7.1@billing.acme.example>',
    to: ['ap@partner.example'],
    subject: 'Invoice INV-2026-000001 from Acme Télécom for 2026-10',
    text: 'Total due: £12.50\n',
    html: '<p>Total due: <strong>£12.50</strong></p>',
    attachments: [{ filename: 'INV-2026-000001.csv', content: Buffer.from(CSV), contentType: 'text/csv; charset=utf-8' }],
    ...overrides,
  };
}

/** The rejection of a promise, for asserting on error objects and their classification. */
async function failureOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject');
}

let sink: SmtpSink;
const transports: MailTransport[] = [];

function transport(overrides: Partial<MailTransportOptions> = {}): MailTransport {
  const t = createMailTransport({ smtpUrl: sink.url, outboxDir: '/nonexistent', from: FROM, maxAttachmentBytes: 1_000_000, ...overrides });
  transports.push(t);
  return t;
}

beforeAll(async () => {
  sink = await startSmtpSink();
});
afterAll(async () => {
  await sink.close();
});
beforeEach(() => sink.reset());
afterEach(() => {
  for (const t of transports.splice(0)) t.close();
});

describe('createMailTransport over SMTP', () => {
  it.each([
    ['pooled', undefined],
    ['unpooled', false],
  ])('delivers text, HTML and the CSV attachment under the given Message-ID (%s)', async (_name, pool) => {
    const t = transport(pool === undefined ? {} : { pool });
    expect(t.mode).toBe('smtp');

    const result = await t.send(mail());

    expect(result).toMatchObject({
      messageId: '<invoice-7.1@billing.acme.example>',
      accepted: ['ap@partner.example'],
      rejected: [],
    });
    expect(result.response).toMatch(/^250 /);
    const [received] = await sink.waitForMessages(1, 2000);
    expect(received?.envelope).toEqual({ mailFrom: 'billing@acme.example', rcptTo: ['ap@partner.example'] });
    const parsed = received!.parsed;
    expect(parsed.messageId).toBe('<invoice-7.1@billing.acme.example>');
    expect(parsed.subject).toBe('Invoice INV-2026-000001 from Acme Télécom for 2026-10');
    expect(parsed.text).toBe('Total due: £12.50\n');
    expect(parsed.html).toBe('<p>Total due: <strong>£12.50</strong></p>');
    expect(parsed.attachments).toHaveLength(1);
    const [attachment] = parsed.attachments;
    expect(attachment?.filename).toBe('INV-2026-000001.csv');
    expect(attachment?.contentType).toBe('text/csv');
    expect(attachment?.content.toString('utf8')).toBe(CSV);
  });

  it('keeps a CR/LF in the subject or file name inside its own header', async () => {
    await transport().send(
      mail({
        subject: 'Invoice from Evil\r\nBcc: victim@example.com',
        attachments: [{ filename: 'a\r\nContent-Type: text/html.csv', content: Buffer.from(CSV), contentType: 'text/csv' }],
      }),
    );
    const [received] = await sink.waitForMessages(1, 2000);
    expect(received?.envelope.rcptTo).toEqual(['ap@partner.example']);
    expect(received?.parsed.headers.has('bcc')).toBe(false);
    expect(received?.parsed.subject).not.toMatch(/[\r\n]/);
    expect(received?.parsed.attachments[0]?.contentType).toBe('text/csv');
  });

  it('lets a test wait for messages that have not arrived yet', async () => {
    const arrived = sink.waitForMessages(2, 5000);
    const t = transport();
    await Promise.all([t.send(mail()), t.send(mail({ messageId: '<invoice-8.1@billing.acme.example>' }))]);

    const messages = await arrived;
    expect(messages.map((m) => m.parsed.messageId).sort()).toEqual([
      '<invoice-7.1@billing.acme.example>',
      '<invoice-8.1@billing.acme.example>',
    ]);
    await expect(sink.waitForMessages(3, 50)).rejects.toThrow('expected 3 message(s) within 50 ms, received 2');
  });

  it('reuses pooled connections: twenty messages over at most five connections', async () => {
    const t = transport();
    await Promise.all(Array.from({ length: 20 }, (_, i) => t.send(mail({ messageId: `<invoice-${i}.1@billing.acme.example>` }))));
    expect(sink.messages).toHaveLength(20);
    expect(sink.connectionCount).toBeGreaterThan(0);
    expect(sink.connectionCount).toBeLessThanOrEqual(5);
  });

  it('opens a connection per message without the pool', async () => {
    const t = transport({ pool: false });
    for (let i = 0; i < 3; i++) await t.send(mail({ messageId: `<invoice-${i}.1@billing.acme.example>` }));
    expect(sink.connectionCount).toBe(3);
  });

  it('never reads a file or fetches a URL named by an attachment, even one smuggled past the types', async () => {
    const smuggled = [
      { filename: 'passwd.txt', content: Buffer.from('ours'), contentType: 'text/plain', path: '/etc/passwd' },
      { filename: 'remote.txt', content: Buffer.from('ours too'), contentType: 'text/plain', href: 'http://127.0.0.1:1/secret' },
    ] as unknown as OutgoingMail['attachments'];
    await transport().send(mail({ attachments: smuggled }));
    const [received] = await sink.waitForMessages(1, 2000);
    expect(received!.parsed.attachments.map((a) => [a.filename, a.content.toString('utf8')])).toEqual([
      ['passwd.txt', 'ours'],
      ['remote.txt', 'ours too'],
    ]);
  });

  it('checks the connection with verify()', async () => {
    await expect(transport().verify()).resolves.toBeUndefined();
  });

  it.each([
    [421, 'transient'],
    [450, 'transient'],
    [451, 'transient'],
    [452, 'transient'],
    [550, 'permanent'],
    [552, 'permanent'],
    [554, 'permanent'],
  ] as const)('classifies a %i reply to the message as %s', async (code, kind) => {
    sink.respondWith((envelope) => (envelope.stage === 'data' ? { code, message: `scripted ${code}` } : null));

    const err = await failureOf(transport().send(mail()));

    expect(classifySendError(err)).toEqual({ kind, code, message: `Message failed: ${code} scripted ${code}` });
    expect(sink.messages).toHaveLength(0);
  });

  it('fails permanently when the only recipient is rejected with 550', async () => {
    sink.respondWith((envelope) => (envelope.stage === 'rcpt' ? { code: 550, message: 'no such user' } : null));

    const err = await failureOf(transport().send(mail()));

    expect(classifySendError(err)).toEqual({
      kind: 'permanent',
      code: 550,
      message: "Can't send mail - all recipients were rejected: 550 no such user",
    });
    expect(err).toMatchObject({ code: 'EENVELOPE', rejected: ['ap@partner.example'] });
    expect(sink.messages).toHaveLength(0);
  });

  it('retries later when the only recipient is deferred with 450', async () => {
    sink.respondWith((envelope) => (envelope.stage === 'rcpt' ? { code: 450, message: 'mailbox busy' } : null));

    const err = await failureOf(transport().send(mail()));

    expect(classifySendError(err)).toMatchObject({ kind: 'transient', code: 450 });
  });

  it('delivers to the accepted recipients and reports the one rejected with 550', async () => {
    sink.respondWith((envelope) =>
      envelope.stage === 'rcpt' && envelope.recipient === 'gone@partner.example' ? { code: 550, message: 'no such user' } : null,
    );

    const result = await transport().send(mail({ to: ['ap@partner.example', 'gone@partner.example'] }));

    expect(result.accepted).toEqual(['ap@partner.example']);
    expect(result.rejected).toEqual(['gone@partner.example']);
    expect(result.rejectedReasons).toEqual([
      { recipient: 'gone@partner.example', code: 550, message: 'Recipient command failed: 550 no such user' },
    ]);
    const [received] = await sink.waitForMessages(1, 2000);
    expect(received?.envelope.rcptTo).toEqual(['ap@partner.example']);
  });

  it('refuses oversized attachments before connecting', async () => {
    const t = transport({ maxAttachmentBytes: 100 });
    const attachments = [
      { filename: 'a.csv', content: Buffer.alloc(60, 'a'), contentType: 'text/csv' },
      { filename: 'b.csv', content: Buffer.alloc(41, 'b'), contentType: 'text/csv' },
    ];

    const err = await failureOf(t.send(mail({ attachments })));

    expect(err).toBeInstanceOf(MailRefusedError);
    expect(classifySendError(err)).toEqual({
      kind: 'permanent',
      message: 'message <invoice-7.1@billing.acme.example>: attachments total 101 bytes, more than the 100 allowed',
    });
    expect(sink.connectionCount).toBe(0);
    expect(sink.messages).toHaveLength(0);
  });

  it('accepts attachments exactly at the limit', async () => {
    const attachments = [{ filename: 'a.csv', content: Buffer.alloc(100, 'a'), contentType: 'text/csv' }];
    await expect(transport({ maxAttachmentBytes: 100 }).send(mail({ attachments }))).resolves.toMatchObject({ rejected: [] });
  });

  it.each(['invoice-7@billing.example', '<no-at-sign>', '<a b@c>', '<a@b>\r\nBcc: x@y', ''])(
    'refuses the Message-ID %j before connecting',
    async (messageId) => {
      const err = await failureOf(transport().send(mail({ messageId })));
      expect(err).toBeInstanceOf(MailRefusedError);
      expect(sink.connectionCount).toBe(0);
    },
  );

  it('refuses a message without recipients', async () => {
    const err = await failureOf(transport().send(mail({ to: [] })));
    expect(classifySendError(err)).toEqual({ kind: 'permanent', message: 'message <invoice-7.1@billing.acme.example> has no recipients' });
  });

  it.each([421, 554])('classifies a %i instead of the greeting as transient', async (code) => {
    sink.respondWith((envelope) => (envelope.stage === 'connect' ? { code, message: 'no service' } : null));

    const err = await failureOf(transport().send(mail()));

    expect(err).toMatchObject({ code: 'EPROTOCOL', command: 'CONN', responseCode: code });
    expect(classifySendError(err)).toEqual({
      kind: 'transient',
      code,
      message: `Invalid greeting. response=${code} no service: ${code} no service`,
    });
  });

  it.each([
    ['pooled', undefined],
    ['unpooled', false],
  ])('classifies a refused connection as transient (%s)', async (_name, pool) => {
    const port = await closedPort();
    const t = transport({ smtpUrl: `smtp://127.0.0.1:${port}`, ...(pool === undefined ? {} : { pool }) });

    const err = await failureOf(t.send(mail()));

    expect(err).toMatchObject({ code: 'ESOCKET', originalCode: 'ECONNREFUSED' });
    expect(classifySendError(err)).toEqual({ kind: 'transient', message: `connect ECONNREFUSED 127.0.0.1:${port}` });
  });
});

describe('createMailTransport without an SMTP URL', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'outbox-test-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a parseable .eml into the outbox, creating the folder', async () => {
    const outboxDir = path.join(dir, 'nested', 'outbox');
    const t = createMailTransport({ outboxDir, from: FROM, maxAttachmentBytes: 1_000_000 });
    transports.push(t);
    expect(t.mode).toBe('outbox');

    const result = await t.send(mail());

    const file = path.join(outboxDir, 'invoice-7.1_billing.acme.example.eml');
    expect(result).toEqual({
      messageId: '<invoice-7.1@billing.acme.example>',
      response: `written to ${file}`,
      accepted: ['ap@partner.example'],
      rejected: [],
    });
    expect(await readdir(outboxDir)).toEqual(['invoice-7.1_billing.acme.example.eml']);
    const raw = await readFile(file);
    expect(raw.toString('latin1')).not.toMatch(/[^\r]\n/);
    const parsed = await simpleParser(raw);
    expect(parsed.messageId).toBe('<invoice-7.1@billing.acme.example>');
    expect(parsed.subject).toBe('Invoice INV-2026-000001 from Acme Télécom for 2026-10');
    expect(parsed.text).toBe('Total due: £12.50\n');
    expect(parsed.attachments[0]?.filename).toBe('INV-2026-000001.csv');
    expect(parsed.attachments[0]?.content.toString('utf8')).toBe(CSV);
  });

  it('overwrites the same file when the same message is sent again', async () => {
    const t = createMailTransport({ outboxDir: dir, from: FROM, maxAttachmentBytes: 1_000_000 });
    transports.push(t);
    await t.send(mail({ text: 'first\n' }));
    await t.send(mail({ text: 'second\n' }));

    expect(await readdir(dir)).toEqual(['invoice-7.1_billing.acme.example.eml']);
    const parsed = await simpleParser(await readFile(path.join(dir, 'invoice-7.1_billing.acme.example.eml')));
    expect(parsed.text).toBe('second\n');
  });

  it('refuses oversized attachments before writing anything', async () => {
    const t = createMailTransport({ outboxDir: path.join(dir, 'outbox'), from: FROM, maxAttachmentBytes: 10 });
    transports.push(t);
    await expect(t.send(mail())).rejects.toBeInstanceOf(MailRefusedError);
    expect(await readdir(dir)).toEqual([]);
  });

  it('creates the outbox on verify()', async () => {
    const outboxDir = path.join(dir, 'fresh');
    const t = createMailTransport({ outboxDir, from: FROM, maxAttachmentBytes: 1 });
    transports.push(t);
    await t.verify();
    expect(await readdir(outboxDir)).toEqual([]);
  });
});

describe('classifySendError', () => {
  const error = (message: string, fields: Record<string, unknown>): Error => Object.assign(new Error(message), fields);

  it.each([
    ['a refused connection', error('connect ECONNREFUSED', { code: 'ESOCKET', originalCode: 'ECONNREFUSED' }), 'transient', undefined],
    ['a reset connection', error('read ECONNRESET', { code: 'ESOCKET', originalCode: 'ECONNRESET' }), 'transient', undefined],
    ['a raw socket error', error('connect ETIMEDOUT', { code: 'ETIMEDOUT' }), 'transient', undefined],
    ['a greeting timeout', error('Greeting never received', { code: 'ETIMEDOUT', timeoutType: 'GREETING_TIMEOUT' }), 'transient', undefined],
    ['a DNS failure', error('getaddrinfo EAI_AGAIN', { code: 'EDNS', originalCode: 'EAI_AGAIN' }), 'transient', undefined],
    ['a close before the greeting', error('Connection closed unexpectedly', { code: 'ECONNECTION' }), 'transient', undefined],
    ['a 421 at any stage', error('Server closed the connection', { code: 'ECONNECTION', responseCode: 421 }), 'transient', 421],
    ['a 554 greeting', error('Invalid greeting', { code: 'EPROTOCOL', responseCode: 554, command: 'CONN' }), 'transient', 554],
    ['a 554 to DATA', error('Message failed', { code: 'EMESSAGE', responseCode: 554, command: 'DATA' }), 'permanent', 554],
    ['a 454 to AUTH', error('Invalid login', { code: 'EAUTH', responseCode: 454 }), 'transient', 454],
    ['a 503', error('Message failed', { code: 'EMESSAGE', responseCode: 503 }), 'transient', 503],
    ['a 535 to AUTH', error('Invalid login', { code: 'EAUTH', responseCode: 535 }), 'permanent', 535],
    ['missing credentials', error('Missing credentials for "PLAIN"', { code: 'EAUTH' }), 'permanent', undefined],
    ['a recipient nodemailer cannot parse', error('Invalid recipient', { code: 'EENVELOPE' }), 'permanent', undefined],
    ['a message over the server SIZE', error('Message size larger than allowed 10', { code: 'EMESSAGE' }), 'permanent', undefined],
    ['file content', error('File access rejected', { code: 'EFILEACCESS' }), 'permanent', undefined],
    ['every recipient rejected', error('all recipients were rejected', { code: 'EENVELOPE', responseCode: 550, rejected: ['x@y'] }), 'permanent', 550],
    ['an unknown error', new Error('something odd'), 'transient', undefined],
  ])('%s', (_name, err, kind, code) => {
    expect(classifySendError(err)).toEqual({ kind, ...(code === undefined ? {} : { code }), message: err.message });
  });

  it('treats MailRefusedError as permanent', () => {
    expect(classifySendError(new MailRefusedError('too big'))).toEqual({ kind: 'permanent', message: 'too big' });
  });

  it('copes with values that are not errors', () => {
    expect(classifySendError('boom')).toEqual({ kind: 'transient', message: 'boom' });
    expect(classifySendError(null)).toEqual({ kind: 'transient', message: 'null' });
  });
});

describe('outboxFileName', () => {
  it.each([
    ['<invoice-7.1@billing.example>', 'invoice-7.1_billing.example.eml'],
    ['<../../etc/passwd@x>', 'etc_passwd_x.eml'],
    ['<>', 'message.eml'],
  ])('%s -> %s', (id, expected) => {
    expect(outboxFileName(id)).toBe(expected);
  });
});

/** A port nothing listens on: bound once by the OS, then released. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
