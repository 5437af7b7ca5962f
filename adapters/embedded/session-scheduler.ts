import type { PGlite } from '@electric-sql/pglite';
import {
  type BackendMessage,
  type TransactionStatus,
  backendMessages,
  commandComplete,
  copyFailReason,
  copyFailStatement,
  copyFromFile,
  copyInResponse,
  isCopyFromStdin,
  lastStatus,
  listenChannel,
  notificationChannel,
  queryMessage,
  queryText,
  readyForQuery,
  syncMessage,
  unlistenChannel,
} from './wire';

/** The part of Emscripten's file system (PGlite's `Module.FS`) that COPY FROM STDIN goes through. */
interface WasmFs {
  mkdirTree(path: string): void;
  open(path: string, flags: string): object;
  write(file: object, data: Uint8Array, offset: number, length: number): number;
  close(file: object): void;
  unlink(path: string): void;
}

/** Where a COPY's rows wait, inside PGlite's in-memory file system, until the client's CopyDone. */
const COPY_DIR = '/billing-copy-in';

/** After this long with the session held while others wait, say why the embedded database looks stuck. */
const STALL_WARNING_MS = 30_000;

/** One client connection (a pglite-socket handler). */
interface Connection {
  readonly id: number;
  /** Writes to the client's socket; pglite-socket hands one over with every message. */
  write: (data: Uint8Array) => void;
  started: boolean;
  /** Extended-protocol messages (Parse, Bind, Describe, Execute, Close) waiting for their Sync. */
  pending: Uint8Array[];
  /** Part of an extended-protocol request ran (up to a Flush) and its Sync has not come yet. */
  midRequest: boolean;
  /** A COPY ... FROM STDIN whose rows are arriving. */
  copy: { sql: string; path: string; file: object } | undefined;
  /** Channels this client LISTENs on. */
  listens: Set<string>;
  closed: boolean;
}

interface Step {
  connection: Connection;
  run(): Promise<number>;
  /** Cleans up when the step is dropped unrun (its client went away). */
  discard?(): void;
  resolve(bytes: number): void;
  reject(err: Error): void;
}

/**
 * Shares PGlite's single PostgreSQL session among many client connections so that each behaves as
 * if it had a session of its own, as far as the engine and BullMQ need:
 *
 * - A request runs whole: a simple Query, or every extended-protocol message up to its Sync. A
 *   client's Parse is never followed by another client's Bind.
 * - A transaction is private: once a client's request leaves the session in a transaction, only that
 *   client's requests run until it commits or rolls back; the others queue. This is the isolation of
 *   SERIALIZABLE by construction, and it also makes row and advisory locks exclusive (they would
 *   otherwise be shared, all connections being one backend). A client that disconnects mid-
 *   transaction has it rolled back.
 * - COPY ... FROM STDIN works: PGlite cannot take CopyData messages one call at a time, so the rows
 *   are gathered into a file in PGlite's memory file system and loaded with COPY ... FROM '<file>'
 *   when the client sends CopyDone (CopyFail fails the statement the way PostgreSQL does).
 * - LISTEN/NOTIFY reaches the listener: PGlite emits a notification in the output of whichever
 *   request committed it; it is taken out of that output and written to every client that LISTENs on
 *   the channel. UNLISTEN only stops delivery to that client.
 *
 * What is still shared: session settings (SET), named prepared statements and temporary tables that
 * outlive a transaction. knex and BullMQ use none of them across requests.
 *
 * It plugs into pglite-socket as its `queryQueue`: pglite-socket frames the messages of each
 * socket; this decides which request runs next on the session.
 */
export class SessionScheduler {
  private readonly connections = new Map<number, Connection>();
  private readonly steps: Step[] = [];
  /** The connection whose transaction, or unfinished request, holds the session. */
  private owner: Connection | undefined;
  private status: TransactionStatus = 'I';
  private busy = false;
  private copies = 0;
  private copyDirReady = false;
  private stallTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: PGlite,
    private readonly onWarning: (message: string) => void = () => undefined,
  ) {}

  /** pglite-socket: one message from a client, answered (possibly later) through `onData`. */
  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    const c = this.connection(handlerId);
    c.write = onData;
    if (!c.started) {
      // The startup message: PGlite answers it (authentication ok, parameters, ready) without
      // resetting the session.
      c.started = true;
      return this.submit(c, () => this.execute(c, message));
    }
    const type = String.fromCharCode(message[0]!);
    if (c.copy) return this.copyMessage(c, type, message);
    switch (type) {
      case 'Q':
        return this.simpleQuery(c, message);
      case 'S':
      case 'H': {
        const request = Buffer.concat([...c.pending, message]);
        c.pending = [];
        return this.submit(c, () => {
          c.midRequest = type === 'H';
          return this.execute(c, request);
        });
      }
      case 'X':
        // Terminate: the socket closes next, and the connection is released then.
        return Promise.resolve(0);
      default:
        c.pending.push(message);
        return Promise.resolve(0);
    }
  }

  /** pglite-socket: the client went away; drop what it had queued. */
  clearQueueForHandler(handlerId: number): void {
    const c = this.connections.get(handlerId);
    if (!c) return;
    c.closed = true;
    c.pending = [];
    c.listens.clear();
    this.abandonCopy(c);
    for (let i = this.steps.length - 1; i >= 0; i -= 1) {
      if (this.steps[i]!.connection !== c) continue;
      const step = this.steps.splice(i, 1)[0]!;
      step.discard?.();
      step.reject(new Error('client disconnected'));
    }
  }

  /** pglite-socket: the client went away; roll back whatever it left open, ahead of everyone else. */
  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    const c = this.connections.get(handlerId);
    if (!c) return;
    this.connections.delete(handlerId);
    c.closed = true;
    await new Promise<void>((resolve) => {
      this.steps.unshift({ connection: c, run: () => this.release(c), resolve: () => resolve(), reject: () => resolve() });
      this.pump();
    });
  }

  getQueueLength(): number {
    return this.steps.length;
  }

  private connection(id: number): Connection {
    let c = this.connections.get(id);
    if (!c) {
      c = { id, write: () => undefined, started: false, pending: [], midRequest: false, copy: undefined, listens: new Set(), closed: false };
      this.connections.set(id, c);
    }
    return c;
  }

  private simpleQuery(c: Connection, message: Uint8Array): Promise<number> {
    const sql = queryText(message);
    if (isCopyFromStdin(sql)) {
      // Rows may follow at once; they go to the file from now on. The CopyInResponse that asks for
      // them is a step, so it comes after the answers to anything this client sent before.
      this.startCopy(c, sql);
      return this.submit(c, () => Promise.resolve(this.reply(c, copyInResponse())));
    }
    const unlisten = unlistenChannel(sql);
    if (unlisten !== undefined) {
      // Other clients may still listen on the channel, so the session keeps listening; this client
      // just stops receiving it.
      return this.submit(c, () => {
        if (unlisten === '*') c.listens.clear();
        else c.listens.delete(unlisten);
        return Promise.resolve(this.reply(c, Buffer.concat([commandComplete('UNLISTEN'), readyForQuery(this.owner === c ? this.status : 'I')])));
      });
    }
    const listen = listenChannel(sql);
    if (listen !== undefined) c.listens.add(listen);
    return this.submit(c, () => this.execute(c, message));
  }

  private startCopy(c: Connection, sql: string): void {
    const fs = this.fs();
    this.copies += 1;
    const path = `${COPY_DIR}/${c.id}-${this.copies}.copy`;
    c.copy = { sql, path, file: fs.open(path, 'w') };
  }

  private copyMessage(c: Connection, type: string, message: Uint8Array): Promise<number> {
    const copy = c.copy!;
    switch (type) {
      case 'd':
        this.fs().write(copy.file, message, 5, message.length - 5);
        return Promise.resolve(0);
      case 'c':
        c.copy = undefined;
        this.fs().close(copy.file);
        return this.submit(
          c,
          async () => {
            try {
              return await this.execute(c, queryMessage(copyFromFile(copy.sql, copy.path)));
            } finally {
              this.fs().unlink(copy.path);
            }
          },
          () => this.fs().unlink(copy.path),
        );
      case 'H':
      case 'S':
        // PostgreSQL ignores Flush and Sync while a COPY is taking rows.
        return Promise.resolve(0);
      default: {
        const reason = type === 'f' ? copyFailReason(message) : `unexpected message type "${type}" during COPY`;
        this.abandonCopy(c);
        return this.submit(c, () => this.execute(c, queryMessage(copyFailStatement(reason))));
      }
    }
  }

  private abandonCopy(c: Connection): void {
    const copy = c.copy;
    if (!copy) return;
    c.copy = undefined;
    const fs = this.fs();
    fs.close(copy.file);
    fs.unlink(copy.path);
  }

  /** Ends what a gone client left open on the session: its request, then its transaction. */
  private async release(c: Connection): Promise<number> {
    if (this.owner !== c) return 0;
    if (c.midRequest) {
      c.midRequest = false;
      await this.execute(c, syncMessage());
    }
    if (this.status !== 'I') await this.execute(c, queryMessage('ROLLBACK'));
    return 0;
  }

  private submit(connection: Connection, run: () => Promise<number>, discard?: () => void): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.steps.push({ connection, run, discard, resolve, reject });
      this.pump();
    });
  }

  /** Runs the next request that may run: the owner's while the session is held, else the oldest. */
  private pump(): void {
    if (this.busy || this.steps.length === 0) return;
    const at = this.owner ? this.steps.findIndex((s) => s.connection === this.owner) : 0;
    if (at < 0) {
      this.watchForStall();
      return;
    }
    this.clearStallWatch();
    const step = this.steps.splice(at, 1)[0]!;
    this.busy = true;
    void step
      .run()
      .then(
        (bytes) => step.resolve(bytes),
        (err: unknown) => step.reject(err instanceof Error ? err : new Error(String(err))),
      )
      .finally(() => {
        this.busy = false;
        this.pump();
      });
  }

  /** Runs one request on PGlite and hands the answer to its client (and notifications to listeners). */
  private async execute(c: Connection, request: Uint8Array): Promise<number> {
    const out = await this.db.runExclusive(() => this.db.execProtocolRaw(request));
    const messages = backendMessages(out);
    this.status = lastStatus(out, messages) ?? this.status;
    this.owner = this.status !== 'I' || c.midRequest ? c : undefined;
    return this.deliver(c, out, messages);
  }

  private deliver(c: Connection, out: Uint8Array, messages: readonly BackendMessage[]): number {
    const notifications = messages.filter((m) => m.type === 'A');
    if (notifications.length === 0) return this.reply(c, out);
    const written = this.reply(c, Buffer.concat(messages.filter((m) => m.type !== 'A').map((m) => out.subarray(m.start, m.end))));
    for (const n of notifications) {
      const channel = notificationChannel(out, n);
      const bytes = out.slice(n.start, n.end);
      for (const listener of this.connections.values()) {
        if (!listener.closed && listener.listens.has(channel)) listener.write(bytes);
      }
    }
    return written;
  }

  private reply(c: Connection, data: Uint8Array): number {
    if (!c.closed && data.length > 0) c.write(data);
    return data.length;
  }

  private fs(): WasmFs {
    // PGlite's types name Emscripten's FS type without shipping it; only these calls are used.
    const fs = this.db.Module.FS as unknown as WasmFs;
    if (!this.copyDirReady) {
      fs.mkdirTree(COPY_DIR);
      this.copyDirReady = true;
    }
    return fs;
  }

  private watchForStall(): void {
    if (this.stallTimer) return;
    const owner = this.owner;
    this.stallTimer = setTimeout(() => {
      this.stallTimer = undefined;
      if (this.owner !== owner || !owner || this.steps.length === 0) return;
      this.onWarning(
        `embedded PostgreSQL: connection #${owner.id} has held its transaction for ${STALL_WARNING_MS / 1000} s while ${this.steps.length} request(s) ` +
          'from other connections wait. All connections share one session here, so a transaction that waits for another connection never finishes.',
      );
    }, STALL_WARNING_MS);
    this.stallTimer.unref();
  }

  private clearStallWatch(): void {
    if (!this.stallTimer) return;
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
  }
}
