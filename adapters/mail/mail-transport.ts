import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import nodemailer, { type SendMailOptions, type SMTPSentMessageInfo, type Transporter } from 'nodemailer';

export interface OutgoingMail {
  /** The Message-ID header, angle brackets included, e.g. "<invoice-42.1@billing.example>". */
  messageId: string;
  to: string[];
  subject: string;
  text: string;
  html: string;
  attachments: { filename: string; content: Buffer; contentType: string }[];
}

export interface SendResult {
  messageId: string;
  response: string;
  accepted: string[];
  rejected: string[];
  /** Why each rejected recipient was refused, when some were refused and the rest accepted the message. */
  rejectedReasons?: { recipient: string; code?: number; message: string }[];
  /**
   * The id the server says it stored the message under, when its reply names one. Microsoft 365 and
   * Amazon SES replace the Message-ID header, so the delivered copy carries this id, not ours.
   */
  serverMessageId?: string;
}

export interface MailTransport {
  send(message: OutgoingMail): Promise<SendResult>;
  verify(): Promise<void>;
  close(): void;
  mode: 'smtp' | 'outbox';
}

export interface MailTransportOptions {
  /** smtp:// or smtps:// URL, credentials included; without it messages are written to outboxDir. */
  smtpUrl?: string;
  outboxDir: string;
  from: string;
  /** Reuse connections across messages (default true). */
  pool?: boolean;
  maxAttachmentBytes: number;
  logger?: { info(obj: object, msg?: string): void };
}

/** A message this side refuses to send as it stands; sending it again would be refused again. */
export class MailRefusedError extends Error {
  readonly permanent = true;
  constructor(message: string) {
    super(message);
    this.name = 'MailRefusedError';
  }
}

export interface SendErrorClass {
  kind: 'transient' | 'permanent';
  /** The SMTP reply code, when the failure came from a server reply. */
  code?: number;
  message: string;
}

// Failures of the path to the server, not of the message: the same message can succeed later.
// Nodemailer rewrites socket errors to its own codes (ECONNREFUSED arrives as ESOCKET with
// originalCode ECONNREFUSED), so both fields are checked against this list.
const TRANSIENT_CODES = new Set([
  'ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EDNS', 'ETLS', 'EPROXY', 'EPROTOCOL', 'EMAXLIMIT',
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
]);

// Failures without a server reply that no retry can fix: the message, its envelope or the
// configuration is wrong (no recipients, a recipient nodemailer cannot parse, a file or URL as
// content, missing credentials).
const PERMANENT_CODES = new Set([
  'EENVELOPE', 'EMESSAGE', 'EMAXRECIPIENTS', 'ECONFIG', 'EFILEACCESS', 'EURLACCESS', 'EAUTH', 'ENOAUTH', 'EREQUIRETLS',
]);

/**
 * Decides whether a failed send may be retried. A failure to set up the session is transient.
 * Otherwise the server's reply code wins when there is one (RFC 5321: 4yz transient, 5yz
 * permanent), and without a reply the nodemailer error code decides. Anything unrecognised is
 * transient, so an infrastructure fault is retried with backoff (bounded by the job's attempts)
 * rather than given up on at once.
 */
export function classifySendError(err: unknown): SendErrorClass {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof MailRefusedError) return { kind: 'permanent', message };
  if (typeof err !== 'object' || err === null) return { kind: 'transient', message };

  const fields = err as { responseCode?: unknown; code?: unknown; originalCode?: unknown; command?: unknown };
  const reply = typeof fields.responseCode === 'number' ? fields.responseCode : undefined;
  const result = (kind: SendErrorClass['kind']): SendErrorClass => (reply === undefined ? { kind, message } : { kind, code: reply, message });

  // A 5xx in place of the greeting (command CONN) refuses the session, not this message: the relay
  // is in maintenance or dislikes our address. Nodemailer marks it permanent, but the same message
  // goes through once that is fixed, so it is retried like any other connection failure.
  if (fields.command === 'CONN') return result('transient');
  if (reply !== undefined && reply >= 400 && reply < 600) {
    // 503 "bad sequence of commands" says the session was out of step, not that the message was
    // refused: it goes through on a fresh connection (nodemailer's isPermanentResponseCode agrees).
    return result(reply >= 500 && reply !== 503 ? 'permanent' : 'transient');
  }
  const codes = [fields.code, fields.originalCode].filter((c): c is string => typeof c === 'string');
  if (codes.some((c) => TRANSIENT_CODES.has(c))) return result('transient');
  if (codes.some((c) => PERMANENT_CODES.has(c))) return result('permanent');
  return result('transient');
}

/** The outbox file name for a Message-ID: only [A-Za-z0-9._-], so an id can never name a path. */
export function outboxFileName(messageId: string): string {
  const stem = messageId
    .replace(/^<|>$/g, '')
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[._-]+/, '')
    .slice(0, 200);
  return `${stem === '' ? 'message' : stem}.eml`;
}

export function createMailTransport(opts: MailTransportOptions): MailTransport {
  return opts.smtpUrl ? createSmtpTransport(opts, opts.smtpUrl) : createOutboxTransport(opts);
}

// Attachments are always buffers built by us; refusing file paths and URLs means a value that
// reached a message from a feed can never make nodemailer read a local file or fetch a URL.
const NO_EXTERNAL_CONTENT = { disableFileAccess: true, disableUrlAccess: true } as const;

function createSmtpTransport(opts: MailTransportOptions, url: string): MailTransport {
  const mailer: Transporter<SMTPSentMessageInfo> =
    opts.pool === false
      ? nodemailer.createTransport({ url, ...NO_EXTERNAL_CONTENT })
      : nodemailer.createTransport({ url, pool: true, maxConnections: 5, ...NO_EXTERNAL_CONTENT });
  // Without a listener an 'error' the transport emits would be thrown from the event loop; the
  // failure that matters is the rejected sendMail() promise anyway.
  mailer.on('error', (err: Error) => opts.logger?.info({ err: err.message }, 'mail transport error'));

  return {
    mode: 'smtp',
    async send(message) {
      const options = mailOptions(opts, message);
      const info = await mailer.sendMail(options);
      const result: SendResult = {
        messageId: message.messageId,
        response: info.response,
        accepted: info.accepted,
        rejected: info.rejected,
      };
      if (info.rejectedErrors?.length) {
        result.rejectedReasons = info.rejectedErrors.map((e) => ({
          recipient: e.recipient ?? '',
          ...(e.responseCode === undefined ? {} : { code: e.responseCode }),
          message: e.message,
        }));
      }
      if (info.serverMessageId) result.serverMessageId = info.serverMessageId;
      logSent(opts, result);
      return result;
    },
    async verify() {
      await mailer.verify();
    },
    close() {
      mailer.close();
    },
  };
}

function createOutboxTransport(opts: MailTransportOptions): MailTransport {
  // CRLF: an .eml file is an RFC 5322 message, and mail clients open it as one.
  const mailer = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows', ...NO_EXTERNAL_CONTENT });
  const dir = path.resolve(opts.outboxDir);

  return {
    mode: 'outbox',
    async send(message) {
      const info = await mailer.sendMail(mailOptions(opts, message));
      if (!Buffer.isBuffer(info.message)) throw new Error('stream transport returned a stream although buffer was requested');
      const file = path.join(dir, outboxFileName(message.messageId));
      await writeFileAtomically(file, info.message);
      const result: SendResult = {
        messageId: message.messageId,
        response: `written to ${file}`,
        accepted: info.envelope.to,
        rejected: [],
      };
      logSent(opts, result);
      return result;
    },
    async verify() {
      await mkdir(dir, { recursive: true });
      await access(dir, constants.W_OK);
    },
    close() {
      mailer.close();
    },
  };
}

// msg-id per RFC 5322 in its common form: <left@right>, printable ASCII, no spaces or brackets inside.
const MESSAGE_ID = /^<[!-;=?A-~]+@[!-;=?A-~]+>$/;

/** The checks that must fail before any connection is opened, with a message a person can act on. */
function mailOptions(opts: MailTransportOptions, message: OutgoingMail): SendMailOptions {
  if (!MESSAGE_ID.test(message.messageId)) {
    throw new MailRefusedError(`Message-ID ${JSON.stringify(message.messageId)} is not of the form <id@domain>`);
  }
  if (message.to.length === 0) throw new MailRefusedError(`message ${message.messageId} has no recipients`);
  const attachmentBytes = message.attachments.reduce((sum, a) => sum + a.content.length, 0);
  if (attachmentBytes > opts.maxAttachmentBytes) {
    throw new MailRefusedError(
      `message ${message.messageId}: attachments total ${attachmentBytes} bytes, more than the ${opts.maxAttachmentBytes} allowed`,
    );
  }
  return {
    from: opts.from,
    to: message.to,
    subject: message.subject,
    text: message.text,
    html: message.html,
    // Fixed by the caller per invoice: a resend after a crash carries the same id, so the
    // recipient's mail system and an operator can recognise it as the same message.
    messageId: message.messageId,
    attachments: message.attachments.map((a) => ({ filename: a.filename, content: a.content, contentType: a.contentType })),
    ...NO_EXTERNAL_CONTENT,
  };
}

// Temp file and rename in the same directory: a reader (or a crash) sees either no file or the
// whole message, never half of one.
async function writeFileAtomically(file: string, content: Buffer): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true });
  const temp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

function logSent(opts: MailTransportOptions, result: SendResult): void {
  opts.logger?.info(
    { messageId: result.messageId, accepted: result.accepted.length, rejected: result.rejected.length, response: result.response },
    'mail sent',
  );
}
