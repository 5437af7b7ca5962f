import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type SinkReply, type SmtpSink, startSmtpSink } from '../support/smtp-sink';

/** One message the SMTP server accepted, reduced to what the runs compare. */
export interface ReceivedInvoiceMail {
  messageId: string;
  subject: string;
  recipients: string[];
  /** sha256 of each attachment, by file name. */
  attachments: Record<string, string>;
}

/**
 * The invoice mailbox of one run: the test SMTP sink with the suite's scripted faults. One
 * recipient's mailbox refuses every message (550, in every run: it is part of the data); a window
 * of 451 replies can be opened and closed; and a hook can act at the moment a message has been
 * accepted, before the client hears the 250 (the email unknown window).
 */
export class FaultMailbox {
  private transientFailure = false;
  private onAccept: ((messageNumber: number) => void) | undefined;
  private accepted = 0;
  readonly refusals = { transient: 0, permanent: 0 };

  private constructor(private readonly sink: SmtpSink, private readonly refusingRecipient: string) {
    sink.respondWith((envelope): SinkReply | null => {
      if (envelope.stage === 'rcpt' && envelope.recipient === this.refusingRecipient) {
        this.refusals.permanent += 1;
        return { code: 550, message: `5.1.1 <${this.refusingRecipient}>: mailbox unavailable` };
      }
      if (envelope.stage === 'data' && this.transientFailure) {
        this.refusals.transient += 1;
        return { code: 451, message: '4.3.0 temporary local problem, try again later' };
      }
      if (envelope.stage === 'data') {
        // The sink stores the message after this answer and before its 250 reaches the client.
        this.accepted += 1;
        this.onAccept?.(this.accepted);
      }
      return null;
    });
  }

  static async start(refusingRecipient: string): Promise<FaultMailbox> {
    return new FaultMailbox(await startSmtpSink(), refusingRecipient);
  }

  get url(): string {
    return this.sink.url;
  }

  setTransientFailure(on: boolean): void {
    this.transientFailure = on;
  }

  /** Calls `hook` (synchronously, inside the server) each time a message is accepted. */
  whenAccepted(hook: ((messageNumber: number) => void) | undefined): void {
    this.onAccept = hook;
  }

  messages(): ReceivedInvoiceMail[] {
    return this.sink.messages.map((m) => ({
      messageId: m.parsed.messageId ?? '',
      subject: m.parsed.subject ?? '',
      recipients: [...m.envelope.rcptTo],
      attachments: Object.fromEntries(m.parsed.attachments.map((a) => [a.filename ?? '', attachmentDigest(a.filename ?? '', a.content)])),
    }));
  }

  /** Writes every accepted message as an .eml file, for a look after the run. */
  async saveAll(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    await Promise.all(this.sink.messages.map((m, i) => writeFile(path.join(dir, `${String(i + 1).padStart(3, '0')}.eml`), m.raw)));
  }

  close(): Promise<void> {
    return this.sink.close();
  }
}

// Row ids of the database that made the CSV: two runs of the same data number their rows
// differently (a retried transaction consumes ids), so these columns are left out of the comparison.
const DATABASE_ID_COLUMNS = new Set(['billing_record_id', 'transaction_id', 'record_id', 'invoice_id']);

/**
 * sha256 of an attachment; for a CSV, of its rows without database row ids, sorted, so the digest
 * says "the same lines" and not "the same row ids in the same order".
 */
function attachmentDigest(name: string, content: Buffer): string {
  const hash = createHash('sha256');
  if (!name.toLowerCase().endsWith('.csv')) return hash.update(content).digest('hex');
  const [header = [], ...rows] = parseCsv(content.toString('utf8'));
  const keep = header.map((h, i) => (DATABASE_ID_COLUMNS.has(h) ? -1 : i)).filter((i) => i >= 0);
  const pick = (r: string[]) => JSON.stringify(keep.map((i) => r[i] ?? ''));
  hash.update(pick(header));
  for (const line of rows.map(pick).sort()) hash.update(`\n${line}`);
  return `csv-rows:${hash.digest('hex')}`;
}

/** RFC 4180: quoted fields may hold commas, doubled quotes and line breaks. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 1;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i += 1;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}
