import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { QueueEvents } from 'bullmq';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAMES } from '../jobs/catalog';
import { buildCli } from '../src/cli/main';
import { scanInbox } from '../src/use-cases/scan-inbox';
import { freePort } from './faults/services';
import { dropSettled, importDemoPartnerships, ingestDemoFeeds, issueDemoInvoices } from './support/inbox-drops';
import { type TestContext, TEST_TOKEN, createTestContext } from './support/test-context';

const BIN = path.resolve(import.meta.dirname, '../bin/billing.js');

/** The environment a child `billing` process needs to work in the test's own database and prefix. */
function childEnv(ctx: TestContext, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: ctx.databaseUrl,
    REDIS_URL: ctx.deps.config.redisUrl,
    QUEUE_PREFIX: ctx.deps.config.queuePrefix,
    INBOX_DIR: ctx.inboxDir,
    OUTBOX_DIR: ctx.outboxDir,
    INBOX_SETTLE_MS: '0',
    // The test enqueues the work itself; a scan every few seconds would only add noise.
    INBOX_SCAN_EVERY_MS: '600000',
    LOG_LEVEL: 'info',
    INGEST_CHUNK_ROWS: ctx.deps.config.ingestChunkRows.toString(),
    INGEST_CHUNK_LEASE_MS: '3000',
    ...extra,
  };
}

/** A running `billing` child process whose JSON log lines are collected as they arrive. */
interface Child {
  proc: ChildProcess;
  logs: Array<Record<string, unknown>>;
  stderr: string[];
  waitForLog(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

function startBilling(args: string[], env: NodeJS.ProcessEnv): Child {
  const proc = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  const waiters: Array<{ match: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  let buffer = '';
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
      const text = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        line = { msg: text };
      }
      logs.push(line);
      for (const w of [...waiters]) {
        if (w.match(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  const exited = once(proc, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null, at: Date.now() }));
  return {
    proc,
    logs,
    stderr,
    exited,
    waitForLog(match, timeoutMs = 60_000) {
      const seen = logs.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs} ms; stderr: ${stderr.join('')}\nlogs: ${logs.map((l) => JSON.stringify(l)).join('\n')}`)), timeoutMs);
        waiters.push({ match, resolve: (l) => (clearTimeout(timer), resolve(l)) });
        void exited.then(() => reject(new Error(`the process exited before the log line; stderr: ${stderr.join('')}`)));
      });
    },
  };
}

/** A valid ACME usage feed of `rows` CPU-hour rows: big enough that ingesting it takes a while. */
function bigFeed(rows: number, tag: string): string {
  const lines = ['usage_id,product,user,quantity,start_time'];
  for (let i = 1; i <= rows; i += 1) lines.push(`${tag}-${i},CPU_HOUR,m.chen,1.5,2026-10-15T08:00:00Z`);
  return `${lines.join('\n')}\n`;
}

describe('graceful shutdown of `billing worker`', () => {
  let ctx: TestContext;
  let events: QueueEvents;

  beforeAll(async () => {
    // A short chunk lease: a chunk claimed by the process that is stopped is free again soon after.
    ctx = await createTestContext({ env: { INGEST_CHUNK_ROWS: '500', INGEST_CHUNK_LEASE_MS: '3000' } });
    await importDemoPartnerships(ctx.deps);
    events = new QueueEvents('ingest-file', { connection: { url: ctx.deps.config.redisUrl }, prefix: ctx.deps.config.queuePrefix });
    await events.waitUntilReady();
  });

  afterAll(async () => {
    await events?.close();
    await ctx?.close();
  });

  /** Drops a feed and registers it, which enqueues its ingest job; returns the file and job ids. */
  async function enqueueFeed(name: string, rows: number): Promise<{ fileId: number; jobId: string }> {
    await dropSettled(ctx.deps, 'ACME', name, bigFeed(rows, name.replace(/\W/g, '')));
    const [registered] = await scanInbox(ctx.deps);
    if (!registered || registered.status !== 'received') throw new Error(`expected ${name} to be received, got ${JSON.stringify(registered)}`);
    return { fileId: registered.fileId, jobId: `ingest-file-${registered.fileId}` };
  }

  async function fileState(fileId: number) {
    const file = await ctx.deps.db('usage_files').where('id', fileId).first<{ status: string; rows_accepted: number }>('status', 'rows_accepted');
    const usages = await ctx.deps.db('product_usages').where('source_file_id', fileId).count<[{ count: string }]>('* as count');
    return { status: file.status, accepted: file.rows_accepted, usages: Number(usages[0]?.count) };
  }

  it('on SIGTERM lets the active job finish, takes no new one, and exits 0 within the grace period', async () => {
    const rows = 30_000;
    const grace = 60_000;
    const { fileId, jobId } = await enqueueFeed('shutdown-a.csv', rows);
    const metricsPort = await freePort();
    const child = startBilling(['worker'], childEnv(ctx, { SHUTDOWN_GRACE_MS: String(grace), WORKER_METRICS_PORT: String(metricsPort), ADMIN_TOKENS: TEST_TOKEN }));
    try {
      await child.waitForLog((l) => l.msg === 'worker metrics listening');
      // The worker process serves its own metrics (job durations, process), behind the token.
      const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
      expect((await fetch(metricsUrl)).status).toBe(401);
      const scraped = await fetch(metricsUrl, { headers: { Authorization: `Bearer ${TEST_TOKEN}` } });
      expect(scraped.status).toBe(200);
      const text = await scraped.text();
      expect(text).toContain('# TYPE billing_job_duration_seconds histogram');
      expect(text).toContain('process_cpu_user_seconds_total');
      expect(text).not.toContain('billing_queue_jobs');

      // Wait until this very job is being worked on, then stop the process.
      await child.waitForLog((l) => l.msg === 'workers started');
      const job = await ctx.deps.queues.get('ingest-file').getJob(jobId);
      await new Promise<void>((resolve) => {
        const onActive = ({ jobId: id }: { jobId: string }) => {
          if (id === jobId) resolve();
        };
        events.on('active', onActive);
        void job?.getState().then((s) => s === 'active' && resolve());
      });
      const signalledAt = Date.now();
      child.proc.kill('SIGTERM');

      // The process said it was waiting for this job: the signal arrived while it ran.
      const waiting = await child.waitForLog((l) => l.msg === 'waiting for active jobs to finish').catch((err: Error) => {
        throw new Error(`${err.message}\n${child.logs.map((l) => JSON.stringify(l)).join('\n')}`);
      });
      expect(waiting.active).toContain(`ingest-file:${jobId}`);
      const exit = await child.exited;
      expect({ code: exit.code, signal: exit.signal }, child.logs.map((l) => JSON.stringify(l)).join('\n')).toEqual({ code: 0, signal: null });
      expect(exit.at - signalledAt).toBeLessThan(grace);
      expect(child.logs.map((l) => l.msg)).toContain('stopped');
      expect(child.logs.some((l) => l.msg === 'job completed' && l.jobId === jobId && l.fileId === fileId)).toBe(true);

      // The job completed once, with every row; the next job (rating) was left for another worker.
      expect(await ctx.deps.queues.get('ingest-file').getJobState(jobId)).toBe('completed');
      expect(await fileState(fileId)).toEqual({ status: 'parsed', accepted: rows, usages: rows });
      expect(await ctx.deps.queues.get('rate-file').getJobState(`rate-file-${fileId}`)).toBe('waiting');
    } finally {
      if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
    }
  });

  it('past the grace period, releases the active job back to waiting, and another worker completes it exactly once', async () => {
    const rows = 40_000;
    const { fileId, jobId } = await enqueueFeed('shutdown-b.csv', rows);
    const child = startBilling(['worker'], childEnv(ctx, { SHUTDOWN_GRACE_MS: '200' }));
    try {
      await child.waitForLog((l) => l.msg === 'workers started');
      // Some rows committed: the job is well under way when the signal comes.
      await waitUntil(async () => (await ctx.deps.db('usage_files').where('id', fileId).first<{ records_committed: number }>('records_committed')).records_committed > 0);
      child.proc.kill('SIGTERM');
      const released = await child.waitForLog((l) => l.msg === 'active jobs did not finish in time; released them back to waiting');
      expect(released.released).toContain(`ingest-file:${jobId}`);
      const exit = await child.exited;
      expect({ code: exit.code, signal: exit.signal }, child.logs.map((l) => JSON.stringify(l)).join('\n')).toEqual({ code: 0, signal: null });
      expect(await ctx.deps.queues.get('ingest-file').getJobState(jobId)).toBe('waiting');
    } finally {
      if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
    }

    // Another worker picks it up and finishes it: every row exactly once.
    ctx.workers();
    const job = await ctx.deps.queues.get('ingest-file').getJob(jobId);
    await job!.waitUntilFinished(events, 150_000);
    const state = await fileState(fileId);
    expect({ accepted: state.accepted, usages: state.usages }).toEqual({ accepted: rows, usages: rows });
    expect(['parsed', 'rated']).toContain(state.status);
  }, 240_000);
});

/** Polls a condition (a database fact the test cannot subscribe to) until it holds. */
async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the CLI', () => {
  it('describes every command, argument and option', () => {
    const missing: string[] = [];
    const walk = (cmd: Command, where: string) => {
      if (!cmd.description()) missing.push(`${where}: command description`);
      for (const arg of cmd.registeredArguments) if (!arg.description) missing.push(`${where} <${arg.name()}>: argument description`);
      for (const opt of cmd.options) if (!opt.description) missing.push(`${where} ${opt.flags}: option description`);
      for (const sub of cmd.commands) walk(sub, `${where} ${sub.name()}`);
    };
    const cli = buildCli();
    walk(cli, 'billing');
    expect(missing).toEqual([]);
    expect(cli.commands.map((c) => c.name())).toEqual(expect.arrayContaining(['migrate', 'import', 'ingest', 'run-period', 'worker', 'api', 'start', 'demo', 'status']));
  });

  it('prints help for `billing --help` and `billing status --help`', async () => {
    const help = await run(['--help'], { PATH: process.env.PATH });
    expect(help.code).toBe(0);
    for (const name of ['migrate', 'worker', 'status']) expect(help.stdout).toMatch(new RegExp(`^  ${name}\\b.*\\S`, 'm'));
    const status = await run(['status', '--help'], { PATH: process.env.PATH });
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('Usage: billing status');
    expect(status.stdout).toContain('"unknown" deliveries');
  });

  describe('billing status', () => {
    let ctx: TestContext;

    beforeAll(async () => {
      ctx = await createTestContext();
      await importDemoPartnerships(ctx.deps);
      // Two files in progress (received, waiting to be ingested), two invoices with deliveries, one
      // of them in the state a crash mid-send leaves behind.
      await ingestDemoFeeds(ctx.deps);
      // The demo feeds were ingested in this process; their queued jobs are of no interest here.
      for (const queue of ctx.deps.queues.all()) await queue.obliterate({ force: true });
      const { acme } = await issueDemoInvoices(ctx.deps);
      await ctx.deps.db('email_deliveries').where('id', acme.deliveryId).update({ status: 'unknown' });
      await dropSettled(ctx.deps, 'ACME', 'status-a.csv', bigFeed(3, 'STA'));
      await dropSettled(ctx.deps, 'ACME', 'status-b.csv', bigFeed(3, 'STB'));
      await scanInbox(ctx.deps);
      await ctx.deps.queues.get('billing-run').pause();
    });

    afterAll(async () => {
      await ctx?.close();
    });

    it('prints the queues as an aligned table, the files in progress and the deliveries to look at', async () => {
      const out = await run(['status'], childEnv(ctx));
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
      const lines = out.stdout.trimEnd().split('\n');
      expect(lines[0]).toBe(`Queues (prefix "${ctx.deps.config.queuePrefix}")`);
      expect(lines[1]).toMatch(/^queue +waiting +active +delayed +failed +completed +prioritized +children +oldest waiting +workers +paused$/);
      const table = lines.slice(1, 2 + QUEUE_NAMES.length);
      // Aligned: every row as long as the header up to the last column.
      const workersEnd = lines[1]!.indexOf('workers') + 'workers'.length;
      for (const row of table.slice(1)) expect(row.slice(workersEnd - 1, workersEnd), row).toMatch(/\d/);
      const row = (name: string) => table.find((l) => l.startsWith(`${name} `))?.split(/ {2,}/);
      expect(row('ingest-file')?.slice(0, 8)).toEqual(['ingest-file', '2', '0', '0', '0', '0', '0', '0']);
      expect(row('ingest-file')?.[8]).toMatch(/^\d+s$/);
      expect(row('deliver-email')?.slice(0, 2)).toEqual(['deliver-email', '2']);
      expect(row('billing-run')?.at(-1)).toBe('yes');
      expect(row('rate-file')?.slice(8)).toEqual(['-', '0', 'no']);
      expect(lines.slice(2 + QUEUE_NAMES.length)).toEqual(['', 'Files in progress: 2 (received 2, parsing 0, parsed 0)', 'Deliveries to look at: unknown 1, failed 0']);
    });
  });
});

/** Runs `billing <args>` to completion. */
async function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const [code] = (await once(proc, 'exit')) as [number | null];
  return { code, stdout, stderr };
}
