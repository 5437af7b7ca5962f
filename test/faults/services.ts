import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { access, chmod, chown, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';

/**
 * The fault suite's own PostgreSQL and Redis, on free ports in its temp directory, so it can stop,
 * crash and flush them without touching the shared servers on 5432 and 6379 that other people's
 * tests use. Every start registers its stop with the cleanup list.
 */

const run = promisify(execFile);

/** Where initdb and pg_ctl are: FAULTS_PG_BIN, else the newest /usr/lib/postgresql/<version>/bin (Debian), else PATH. */
async function postgresBin(): Promise<string> {
  if (process.env.FAULTS_PG_BIN) return process.env.FAULTS_PG_BIN;
  const versions = await readdir('/usr/lib/postgresql').catch(() => [] as string[]);
  for (const v of versions.filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a))) {
    const bin = path.join('/usr/lib/postgresql', v, 'bin');
    if (await access(path.join(bin, 'initdb')).then(() => true, () => false)) return bin;
  }
  return '';
}

/** Things to undo, last first; run once on success, failure, Ctrl-C or an uncaught error. */
export class Cleanup {
  private readonly steps: Array<{ what: string; undo: () => Promise<unknown> }> = [];
  private done: Promise<void> | undefined;

  add(what: string, undo: () => Promise<unknown>): void {
    this.steps.push({ what, undo });
  }

  run(log: (message: string) => void = () => undefined): Promise<void> {
    this.done ??= (async () => {
      for (const step of this.steps.reverse()) {
        try {
          await step.undo();
        } catch (err) {
          log(`cleanup: ${step.what} failed: ${(err as Error).message}`);
        }
      }
    })();
    return this.done;
  }
}

/** A TCP port nobody listens on right now (the kernel's choice), on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** initdb refuses to run as root, so as root the server runs as the postgres OS user. */
function asPostgres(command: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
}

async function postgresIds(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const [{ stdout: uid }, { stdout: gid }] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
  return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
}

export class OwnPostgres {
  private running = false;

  private constructor(readonly dataDir: string, readonly port: number, private readonly logFile: string, private readonly bin: string) {}

  /** initdb in `dir` (trust auth, no fsync), then start on `port` or a free one. */
  static async start(dir: string, cleanup: Cleanup, opts: { port?: number } = {}): Promise<OwnPostgres> {
    await mkdir(dir, { recursive: true });
    const ids = await postgresIds();
    if (ids) await chown(dir, ids.uid, ids.gid);
    await chmod(dir, 0o700);
    const dataDir = path.join(dir, 'data');
    const socketDir = path.join(dir, 'socket');
    await mkdir(socketDir, { recursive: true });
    if (ids) await chown(socketDir, ids.uid, ids.gid);
    const bin = await postgresBin();
    const [cmd, args] = asPostgres(path.join(bin, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--locale=C.UTF-8']);
    await run(cmd, args, { timeout: 120_000 }).catch((err: Error & { stderr?: string }) => {
      throw new Error(`initdb failed: ${err.stderr ?? err.message}`);
    });
    const port = opts.port ?? (await freePort());
    const conf = [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${socketDir}'`,
      // Durability is not under test (nobody pulls the machine's plug); crashes of the server are.
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      'max_connections = 200',
      'shared_buffers = 128MB',
    ].join('\n');
    const confPath = path.join(dataDir, 'postgresql.auto.conf');
    await writeFile(confPath, `${conf}\n`);
    if (ids) await chown(confPath, ids.uid, ids.gid);
    const server = new OwnPostgres(dataDir, port, path.join(dir, 'server.log'), bin);
    if (ids) {
      await writeFile(server.logFile, '');
      await chown(server.logFile, ids.uid, ids.gid);
    }
    cleanup.add(`stop PostgreSQL on ${port}`, () => server.stop('immediate'));
    await server.startServer();
    return server;
  }

  url(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  async startServer(): Promise<void> {
    const [cmd, args] = asPostgres(path.join(this.bin, 'pg_ctl'), ['-D', this.dataDir, '-l', this.logFile, '-w', '-t', '60', 'start']);
    await run(cmd, args, { timeout: 90_000 });
    this.running = true;
  }

  /** fast: sessions are ended and the server shuts down cleanly; immediate: it dies as in a crash and recovers at the next start. */
  async stop(mode: 'fast' | 'immediate'): Promise<void> {
    if (!this.running) return;
    const [cmd, args] = asPostgres(path.join(this.bin, 'pg_ctl'), ['-D', this.dataDir, '-m', mode, '-w', '-t', '60', 'stop']);
    await run(cmd, args, { timeout: 90_000 });
    this.running = false;
  }

  /** Stops the server, keeps it down for `downMs`, starts it again. */
  async restart(mode: 'fast' | 'immediate', downMs: number): Promise<void> {
    await this.stop(mode);
    await sleep(downMs);
    await this.startServer();
  }

  async createDatabase(name: string): Promise<void> {
    const client = new pg.Client({ connectionString: this.url('postgres') });
    await client.connect();
    try {
      await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await client.query(`CREATE DATABASE "${name}"`);
    } finally {
      await client.end();
    }
  }
}

export class OwnRedis {
  private child: ChildProcess | undefined;

  private constructor(readonly port: number, private readonly dir: string, private readonly maxmemoryPolicy: string) {}

  /** `maxmemoryPolicy` other than noeviction only to show that the engine warns about it. */
  static async start(dir: string, cleanup: Cleanup, opts: { maxmemoryPolicy?: string; port?: number } = {}): Promise<OwnRedis> {
    await mkdir(dir, { recursive: true });
    const server = new OwnRedis(opts.port ?? (await freePort()), dir, opts.maxmemoryPolicy ?? 'noeviction');
    cleanup.add(`stop Redis on ${server.port}`, () => server.kill());
    await server.startServer();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async startServer(): Promise<void> {
    // No save points and no AOF, as asked; --dir lets a deliberate SHUTDOWN SAVE keep the data over
    // a graceful restart. noeviction, as the engine requires.
    const child = spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no',
      '--dir', this.dir, '--maxmemory-policy', this.maxmemoryPolicy, '--loglevel', 'warning',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-2000)));
    for (let i = 0; i < 100; i += 1) {
      if (child.exitCode !== null) throw new Error(`redis-server exited at start (${child.exitCode}): ${stderr}`);
      if (await this.ping()) return;
      await sleep(100);
    }
    throw new Error(`redis-server did not answer on ${this.port} within 10 s: ${stderr}`);
  }

  private async ping(): Promise<boolean> {
    const client = this.client();
    try {
      await client.connect();
      return (await client.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      client.disconnect();
    }
  }

  /** A short-lived connection that fails fast instead of retrying. */
  client(): Redis {
    const client = new Redis(this.url, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
    client.on('error', () => undefined);
    return client;
  }

  private async waitExit(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => child.once('exit', () => resolve()));
  }

  /** SIGKILL: the data is gone (nothing was saved). */
  async kill(): Promise<void> {
    this.child?.kill('SIGKILL');
    await this.waitExit();
    this.child = undefined;
  }

  /** Restart keeping the data (SHUTDOWN SAVE writes a snapshot the next start loads) or losing it (SIGKILL). */
  async restart(mode: 'keep-data' | 'lose-data', downMs: number): Promise<void> {
    if (mode === 'keep-data') {
      const client = this.client();
      try {
        await client.connect();
        await client.call('SHUTDOWN', 'SAVE').catch(() => undefined); // the connection drops as the server exits
      } finally {
        client.disconnect();
      }
      await this.waitExit();
      this.child = undefined;
    } else {
      await this.kill();
      await rm(path.join(this.dir, 'dump.rdb'), { force: true });
    }
    await sleep(downMs);
    await this.startServer();
  }

  async flushAll(): Promise<void> {
    const client = this.client();
    try {
      await client.connect();
      await client.flushall();
    } finally {
      client.disconnect();
    }
  }

  async dbSize(): Promise<number> {
    const client = this.client();
    try {
      await client.connect();
      return await client.dbsize();
    } finally {
      client.disconnect();
    }
  }
}
