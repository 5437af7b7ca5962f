import { once } from 'node:events';
import type { Knex } from 'knex';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

/**
 * COPY ... FROM STDIN in PostgreSQL's text format: the fastest way to hand the database many rows,
 * one stream instead of a statement (or bind arrays) per batch. Rows are built as text lines here
 * and written in large pieces, waiting for the socket to drain, so memory stays at a piece.
 */

/** A text value as COPY reads it: backslash, tab and line breaks escaped; null as \N. */
export function copyText(value: string | null | undefined): string {
  if (value === null || value === undefined) return '\\N';
  return NEEDS_ESCAPE.test(value) ? value.replace(ESCAPED, (c) => ESCAPES[c]!) : value;
}

// eslint-disable-next-line no-control-regex
const NEEDS_ESCAPE = /[\\\t\n\r\u0008\u000b\u000c]/;
// eslint-disable-next-line no-control-regex
const ESCAPED = /[\\\t\n\r\u0008\u000b\u000c]/g;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r', '\b': '\\b', '\v': '\\v', '\f': '\\f' };

/** A number or a null, as COPY reads it. */
export function copyNumber(value: number | null | undefined): string {
  return value === null || value === undefined ? '\\N' : String(value);
}

/** Streams lines into one COPY on a transaction's connection. */
export class CopyWriter {
  private pending: string[] = [];
  private size = 0;
  private done: Promise<unknown>;
  private failed: Error | undefined = undefined;

  private constructor(private readonly stream: NodeJS.WritableStream & { destroy(error?: Error): void }) {
    stream.on('error', (error: Error) => (this.failed ??= error));
    this.done = once(stream, 'finish');
    // Observed here so that a COPY that fails before anyone awaits it is not an unhandled rejection.
    this.done.catch(() => undefined);
  }

  /** Starts `sql` (COPY ... FROM STDIN) on the connection of the knex transaction `tx`. */
  static async start(tx: Knex.Transaction, sql: string): Promise<CopyWriter> {
    // Inside a knex transaction, acquireConnection hands back the transaction's own connection.
    const client = tx.client as { acquireConnection(): Promise<pg.PoolClient> };
    const connection = await client.acquireConnection();
    return new CopyWriter(connection.query(copyFrom(sql)));
  }

  /** Adds one line (with its '\n'). Call flush() now and then: this only buffers. */
  add(line: string): void {
    this.pending.push(line);
    this.size += line.length;
  }

  get buffered(): number {
    return this.size;
  }

  /** Writes what is buffered, waiting if the database is behind. */
  async flush(): Promise<void> {
    this.throwIfFailed();
    if (this.size === 0) return;
    const text = this.pending.join('');
    this.pending = [];
    this.size = 0;
    if (!this.stream.write(text)) await Promise.race([once(this.stream, 'drain'), this.done]);
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.failed !== undefined) throw this.failed;
  }

  /** Writes the rest and waits until the database has taken every row. */
  async end(): Promise<void> {
    await this.flush();
    this.stream.end();
    await this.done;
  }

  /** Abandons the COPY (the database rolls it back); the transaction is then unusable. */
  abort(error: Error): void {
    this.stream.destroy(error);
  }
}
