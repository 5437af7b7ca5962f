import { EventEmitter, once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { type ParsedMail, simpleParser } from 'mailparser';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';

/** What the sink knows when it decides how to answer. */
export interface SinkEnvelope {
  /** 'connect': the greeting; 'rcpt': answering RCPT TO for `recipient`; 'data': answering the end of DATA. */
  stage: 'connect' | 'rcpt' | 'data';
  mailFrom: string;
  /** Recipients accepted so far in this transaction. */
  rcptTo: string[];
  /** The recipient being decided, at the 'rcpt' stage only. */
  recipient?: string;
}

/** An SMTP failure reply; `code` must be 4xx or 5xx. */
export interface SinkReply {
  code: number;
  message: string;
}

/** Returns a failure reply, or null to accept. */
export type SinkResponder = (envelope: SinkEnvelope) => SinkReply | null;

export interface ReceivedMail {
  envelope: { mailFrom: string; rcptTo: string[] };
  raw: Buffer;
  parsed: ParsedMail;
}

/**
 * An in-process SMTP server for tests: plain SMTP on 127.0.0.1, no TLS, no auth required.
 * Accepted messages are parsed with mailparser and kept in `messages`; replies can be scripted
 * with respondWith() to exercise the client's handling of 4xx and 5xx answers.
 */
export class SmtpSink {
  readonly messages: ReceivedMail[] = [];
  /** Errors the server reported (client resets and the like), for tests that want to look. */
  readonly serverErrors: Error[] = [];
  private responder: SinkResponder | null = null;
  private connections = 0;
  private listeningPort = 0;
  private readonly events = new EventEmitter();
  private readonly server: SMTPServer;

  private constructor() {
    this.server = new SMTPServer({
      secure: false,
      disabledCommands: ['STARTTLS'],
      authOptional: true,
      disableReverseLookup: true,
      logger: false,
      onConnect: (_session, callback) => {
        this.connections += 1;
        // A failure here is sent instead of the 220 greeting, and the server hangs up.
        const reply = this.ask({ stage: 'connect', mailFrom: '', rcptTo: [] });
        callback(reply === null ? null : smtpError(reply));
      },
      onRcptTo: (address, session, callback) => callback(this.decideRcpt(address, session)),
      onData: (stream, session, callback) => {
        this.receive(stream, session).then(
          (reply) => callback(reply === null ? null : smtpError(reply)),
          (err: unknown) => callback(smtpError({ code: 554, message: `sink could not read the message: ${String(err)}` })),
        );
      },
    });
    this.server.on('error', (err: Error) => this.serverErrors.push(err));
  }

  static async start(): Promise<SmtpSink> {
    const sink = new SmtpSink();
    sink.server.listen(0, '127.0.0.1');
    await once(sink.server.server, 'listening');
    sink.listeningPort = (sink.server.server.address() as AddressInfo).port;
    return sink;
  }

  get port(): number {
    return this.listeningPort;
  }

  get url(): string {
    return `smtp://127.0.0.1:${this.port}`;
  }

  /** How many SMTP connections were opened, to prove that a refused message never reached the network. */
  get connectionCount(): number {
    return this.connections;
  }

  respondWith(responder: SinkResponder | null): void {
    this.responder = responder;
  }

  /** Forgets received messages, counters and the scripted responder, for reuse across tests. */
  reset(): void {
    this.messages.length = 0;
    this.serverErrors.length = 0;
    this.connections = 0;
    this.responder = null;
  }

  /** Resolves with the messages once at least `count` have been accepted; rejects after `timeoutMs`. */
  waitForMessages(count: number, timeoutMs = 5000): Promise<ReceivedMail[]> {
    if (this.messages.length >= count) return Promise.resolve([...this.messages]);
    return new Promise((resolve, reject) => {
      const onMessage = (): void => {
        if (this.messages.length < count) return;
        cleanup();
        resolve([...this.messages]);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`expected ${count} message(s) within ${timeoutMs} ms, received ${this.messages.length}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.events.off('message', onMessage);
      };
      this.events.on('message', onMessage);
    });
  }

  /** Stops listening and drops open client connections (a pooled client would otherwise hold close() for 30 s). */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const connection of this.server.connections) connection.close();
    await closed;
  }

  private decideRcpt(address: SMTPServerAddress, session: SMTPServerSession): Error | null {
    const reply = this.ask({
      stage: 'rcpt',
      mailFrom: mailFrom(session),
      rcptTo: session.envelope.rcptTo.map((r) => r.address),
      recipient: address.address,
    });
    return reply === null ? null : smtpError(reply);
  }

  private async receive(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<SinkReply | null> {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    const envelope = { mailFrom: mailFrom(session), rcptTo: session.envelope.rcptTo.map((r) => r.address) };
    const reply = this.ask({ stage: 'data', ...envelope });
    if (reply !== null) return reply;
    const raw = Buffer.concat(chunks);
    // Stored before the 250 goes out, so a client whose send() resolved always finds its message here.
    this.messages.push({ envelope, raw, parsed: await simpleParser(raw) });
    this.events.emit('message');
    return null;
  }

  private ask(envelope: SinkEnvelope): SinkReply | null {
    const reply = this.responder?.(envelope) ?? null;
    // A bad script is a bug in the test: fail the send loudly rather than crash the server.
    if (reply !== null && (reply.code < 400 || reply.code > 599)) {
      return { code: 554, message: `sink: a scripted reply must be 4xx or 5xx, got ${reply.code}` };
    }
    return reply;
  }
}

export function startSmtpSink(): Promise<SmtpSink> {
  return SmtpSink.start();
}

function mailFrom(session: SMTPServerSession): string {
  return session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address;
}

function smtpError(reply: SinkReply): Error {
  return Object.assign(new Error(reply.message), { responseCode: reply.code });
}
