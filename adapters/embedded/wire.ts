/**
 * The few PostgreSQL wire-protocol (version 3.0) messages the embedded server reads or writes
 * itself. Everything else passes between the client and PGlite untouched.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

/** A backend message found in PGlite's output: its type byte and where it lies in the buffer. */
export interface BackendMessage {
  type: string;
  start: number;
  end: number;
}

/** Splits a buffer of whole backend messages (type byte, then an int32 length that counts itself). */
export function backendMessages(data: Uint8Array): BackendMessage[] {
  const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const messages: BackendMessage[] = [];
  for (let at = 0; at + 5 <= view.length; ) {
    const end = at + 1 + view.readInt32BE(at + 1);
    messages.push({ type: String.fromCharCode(view[at]!), start: at, end });
    at = end;
  }
  return messages;
}

/** A message with a type byte and a body. */
export function message(type: string, body: Uint8Array = new Uint8Array(0)): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out.write(type, 0, 'latin1');
  out.writeInt32BE(4 + body.length, 1);
  out.set(body, 5);
  return out;
}

/** Query ('Q'): one or more SQL statements in the simple protocol. */
export function queryMessage(sql: string): Buffer {
  return message('Q', Buffer.from(`${sql}\0`, 'utf8'));
}

/** The SQL text of a Query ('Q') message. */
export function queryText(query: Uint8Array): string {
  return Buffer.from(query.buffer, query.byteOffset + 5, Math.max(0, query.byteLength - 6)).toString('utf8');
}

/** Sync ('S'): ends an extended-protocol request. */
export const syncMessage = (): Buffer => message('S');

/** ReadyForQuery ('Z') with the transaction status: I idle, T in a transaction, E in a failed one. */
export function readyForQuery(status: TransactionStatus): Buffer {
  return message('Z', Buffer.from(status, 'latin1'));
}

export type TransactionStatus = 'I' | 'T' | 'E';

/** CommandComplete ('C') with its tag, e.g. "UNLISTEN". */
export function commandComplete(tag: string): Buffer {
  return message('C', Buffer.from(`${tag}\0`, 'utf8'));
}

/** CopyInResponse ('G'): text format, no per-column formats (clients do not need them for text). */
export function copyInResponse(): Buffer {
  return message('G', Buffer.from([0, 0, 0]));
}

/** The channel of a NotificationResponse ('A'): int32 process id, then channel and payload as C strings. */
export function notificationChannel(data: Uint8Array, at: BackendMessage): string {
  const body = Buffer.from(data.buffer, data.byteOffset + at.start + 9, at.end - at.start - 9);
  return body.subarray(0, body.indexOf(0)).toString('utf8');
}

/** The status byte of the last ReadyForQuery in `data`, if it has one. */
export function lastStatus(data: Uint8Array, messages: readonly BackendMessage[]): TransactionStatus | undefined {
  for (let i = messages.length - 1; i >= 0; i -= 1) {
    const m = messages[i]!;
    if (m.type === 'Z') return String.fromCharCode(data[m.start + 5]!) as TransactionStatus;
  }
  return undefined;
}

/** SQL without its comments and surrounding blanks, for recognising a handful of one-statement commands. */
export function bareSql(sql: string): string {
  return sql.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/--[^\n]*/g, ' ').trim().replace(/;\s*$/, '').trim();
}

/** The channel of `LISTEN channel`, as PostgreSQL names it (unquoted names fold to lower case). */
export function listenChannel(sql: string): string | undefined {
  const m = /^LISTEN\s+("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)$/i.exec(bareSql(sql));
  return m ? identifier(m[1]!) : undefined;
}

/** `UNLISTEN channel` or `UNLISTEN *` ('*' for all channels). */
export function unlistenChannel(sql: string): string | undefined {
  const m = /^UNLISTEN\s+(\*|"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)$/i.exec(bareSql(sql));
  return m ? (m[1] === '*' ? '*' : identifier(m[1]!)) : undefined;
}

function identifier(token: string): string {
  return token.startsWith('"') ? token.slice(1, -1).replace(/""/g, '"') : token.toLowerCase();
}

const COPY_FROM_STDIN = /\bFROM\s+STDIN\b/i;

/** True for `COPY ... FROM STDIN`, the statement that streams rows from the client. */
export function isCopyFromStdin(sql: string): boolean {
  const bare = bareSql(sql);
  return /^COPY\s/i.test(bare) && COPY_FROM_STDIN.test(bare);
}

/** The same COPY reading a server-side file instead of the client's stream. */
export function copyFromFile(sql: string, file: string): string {
  return bareSql(sql).replace(COPY_FROM_STDIN, `FROM '${file.replace(/'/g, "''")}'`);
}

/** A statement that fails the way PostgreSQL fails a COPY the client abandoned with CopyFail. */
export function copyFailStatement(reason: string): string {
  const text = `COPY from stdin failed: ${reason}`.replace(/\$copy_fail\$/g, '');
  const literal = `'${text.replace(/'/g, "''")}'`;
  return `DO $copy_fail$ BEGIN RAISE EXCEPTION USING ERRCODE = 'query_canceled', MESSAGE = ${literal}; END $copy_fail$`;
}

/** The reason in a CopyFail ('f') message. */
export function copyFailReason(msg: Uint8Array): string {
  return Buffer.from(msg.buffer, msg.byteOffset + 5, Math.max(0, msg.byteLength - 6)).toString('utf8');
}
