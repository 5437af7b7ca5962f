import { once } from 'node:events';
import { type Socket, connect as connectTcp } from 'node:net';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PgliteServer, servePglite } from './pglite-server';
import { backendMessages, message } from './wire';

/** A bare protocol client, to send an extended-protocol request in two halves as a slow client would. */
async function rawClient(port: number): Promise<{ send(data: Buffer): void; untilReady(): Promise<{ type: string; body: Buffer }[]>; end(): void }> {
  const socket: Socket = connectTcp(port, '127.0.0.1');
  await once(socket, 'connect');
  let buffered = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => (buffered = Buffer.concat([buffered, d])));
  const untilReady = async () => {
    for (;;) {
      const messages = backendMessages(buffered);
      const ready = messages.findIndex((m) => m.type === 'Z');
      if (ready >= 0) {
        const taken = messages.slice(0, ready + 1).map((m) => ({ type: m.type, body: buffered.subarray(m.start + 5, m.end) }));
        buffered = buffered.subarray(messages[ready]!.end);
        return taken;
      }
      await once(socket, 'data');
    }
  };
  const params = Buffer.from('user\0postgres\0database\0postgres\0\0');
  const startup = Buffer.alloc(8);
  startup.writeInt32BE(8 + params.length, 0);
  startup.writeInt32BE(196608, 4);
  socket.write(Buffer.concat([startup, params]));
  await untilReady();
  return { send: (data) => socket.write(data), untilReady, end: () => socket.end() };
}

const cstr = (s: string) => Buffer.from(`${s}\0`);
const parse = (sql: string) => message('P', Buffer.concat([cstr(''), cstr(sql), Buffer.from([0, 0])]));
const bindText = (values: string[]) =>
  message('B', Buffer.concat([cstr(''), cstr(''), Buffer.from([0, 0]), Buffer.from([0, values.length]), ...values.map((v) => {
    const len = Buffer.alloc(4);
    len.writeInt32BE(Buffer.byteLength(v));
    return Buffer.concat([len, Buffer.from(v)]);
  }), Buffer.from([0, 0])]));
const execute = () => message('E', Buffer.concat([cstr(''), Buffer.alloc(4)]));
const sync = () => message('S');
/** The first column of each DataRow, or the error text. */
const outcome = (messages: { type: string; body: Buffer }[]) =>
  messages.flatMap((m) => (m.type === 'D' ? [m.body.subarray(6, 6 + m.body.readInt32BE(2)).toString()] : m.type === 'E' ? [`error: ${m.body.toString('latin1')}`] : []));

/**
 * The embedded server against the real pg driver: many connections share PGlite's one session, yet
 * each sees whole requests, its own transaction, its own COPY and its own notifications.
 */
describe('PGlite served to many pg connections', () => {
  let db: PGlite;
  let server: PgliteServer;
  let pool: pg.Pool;
  const warnings: string[] = [];

  beforeAll(async () => {
    db = await PGlite.create();
    server = await servePglite(db, { onWarning: (m) => warnings.push(m) });
    pool = new pg.Pool({ connectionString: server.url, max: 8 });
    await pool.query('CREATE TABLE items (id int PRIMARY KEY, label text)');
  });

  afterAll(async () => {
    await pool?.end();
    await server?.close();
    await db?.close();
  });

  const connect = async () => {
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    return client;
  };

  it('runs concurrent parameterised queries of different shapes without mixing their requests', async () => {
    const results = await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        if (i % 3 === 0) return (await pool.query<{ v: number }>('SELECT $1::int + 1 AS v', [i])).rows[0]!.v === i + 1;
        if (i % 3 === 1) return (await pool.query<{ v: string }>('SELECT $1::text || $2::text AS v', [`a${i}`, 'b'])).rows[0]!.v === `a${i}b`;
        // A large bind (arrays of 20,000 values) arrives in several TCP reads: it must still run whole.
        const ids = Array.from({ length: 20_000 }, (_, k) => k);
        return (await pool.query<{ n: number }>('SELECT count(*)::int + $2::int AS n FROM unnest($1::int[])', [ids, i])).rows[0]!.n === 20_000 + i;
      }),
    );
    expect(results.filter((ok) => !ok)).toEqual([]);
  });

  it("runs a request whole even when its messages arrive apart, with another client's request in between", async () => {
    const slow = await rawClient(server.port);
    const quick = await rawClient(server.port);
    slow.send(parse('SELECT 1 AS first_half'));
    // Until the Sync, nothing of the slow client's request has run: the quick client's request (which
    // has its own unnamed statement) cannot replace its Parse.
    quick.send(Buffer.concat([parse('SELECT $1::text AS other'), bindText(['from the quick client']), execute(), sync()]));
    expect(outcome(await quick.untilReady())).toEqual(['from the quick client']);
    slow.send(Buffer.concat([bindText([]), execute(), sync()]));
    expect(outcome(await slow.untilReady())).toEqual(['1']);
    slow.end();
    quick.end();
  });

  it('keeps a transaction private until it commits, and rolls back what a client leaves open', async () => {
    const a = await connect();
    const b = await connect();
    await a.query('BEGIN');
    await a.query("INSERT INTO items VALUES (1, 'uncommitted')");
    // b's read waits for a's transaction rather than running inside it.
    const read = b.query<{ n: number }>('SELECT count(*)::int AS n FROM items WHERE id = 1');
    let readDone = false;
    void read.then(() => (readDone = true));
    await a.query("UPDATE items SET label = 'committed' WHERE id = 1");
    expect(readDone).toBe(false);
    await a.query('COMMIT');
    expect((await read).rows[0]!.n).toBe(1);

    await a.query('BEGIN');
    await a.query("INSERT INTO items VALUES (2, 'left open')");
    await a.end();
    expect((await b.query<{ id: number }>('SELECT id FROM items ORDER BY id')).rows.map((r) => r.id)).toEqual([1]);
    expect((await b.query<{ s: string }>("SELECT now()::text AS s")).rows).toHaveLength(1);
    await b.end();
  });

  it('takes COPY FROM STDIN, in a transaction too, and fails it when the client aborts', async () => {
    const c = await connect();
    await c.query('CREATE TABLE copied (id int, label text, note text)');
    const copy = (sql: string, text: string) => {
      const stream = c.query(copyFrom(sql));
      stream.end(text);
      return once(stream, 'finish');
    };
    await copy('COPY copied (id, label, note) FROM STDIN', '1\tone\t\\N\n2\ttab\\there\tx\n');
    await c.query('BEGIN');
    await copy('COPY copied (id, label) FROM STDIN', '3\tthree\n');
    await c.query('ROLLBACK');
    await c.query('BEGIN');
    await copy('COPY copied (id, label) FROM STDIN', '4\tfour\n');
    await c.query('COMMIT');
    expect((await c.query('SELECT id, label, note FROM copied ORDER BY id')).rows).toEqual([
      { id: 1, label: 'one', note: null },
      { id: 2, label: 'tab\there', note: 'x' },
      { id: 4, label: 'four', note: null },
    ]);

    await expect(copy('COPY copied (id, label) FROM STDIN', 'not a number\tx\n')).rejects.toThrow(/invalid input syntax for type integer/);
    const aborted = c.query(copyFrom('COPY copied (id, label) FROM STDIN'));
    aborted.write('5\tfive\n');
    aborted.destroy(new Error('upstream feed broke'));
    // As PostgreSQL words it, and the rows sent before the abort are not kept.
    await expect(once(aborted, 'close')).rejects.toThrow('COPY from stdin failed: upstream feed broke');
    expect((await c.query('SELECT count(*)::int AS n FROM copied')).rows).toEqual([{ n: 3 }]);
    await c.end();
  });

  it('delivers a notification to the connection that listens, not to the one that sent it', async () => {
    const listener = await connect();
    const other = await connect();
    const sender = await connect();
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(`listener:${n.channel}:${n.payload}`));
    other.on('notification', (n) => heard.push(`other:${n.channel}:${n.payload}`));
    sender.on('notification', (n) => heard.push(`sender:${n.channel}:${n.payload}`));
    await listener.query('-- as BullMQ writes it\nLISTEN jobs_ready;');
    const arrived = once(listener, 'notification');
    await sender.query("SELECT pg_notify('jobs_ready', 'ingest-file')");
    await arrived;
    await other.query('LISTEN jobs_ready');
    await other.query('UNLISTEN jobs_ready');
    const again = once(listener, 'notification');
    await sender.query("NOTIFY jobs_ready, 'rate-file'");
    await again;
    expect(heard).toEqual(['listener:jobs_ready:ingest-file', 'listener:jobs_ready:rate-file']);
    await Promise.all([listener.end(), other.end(), sender.end()]);
  });

  it('has nothing to warn about after all that', () => {
    expect(warnings).toEqual([]);
  });
});
