import path from 'node:path';
import { z } from 'zod';

/**
 * The only place that reads the environment. Everything else receives a typed Config.
 * Invalid configuration stops the process with the whole list of what is wrong, not the first item.
 */
const tokenList = z
  .string()
  .optional()
  .transform((s) => (s ?? '').split(',').map((t) => t.trim()).filter((t) => t.length > 0))
  .pipe(z.array(z.string().min(16, 'each admin token must be at least 16 characters')));

const url = (protocols: string[]) =>
  z.string().refine((s) => {
    try {
      return protocols.includes(new URL(s).protocol);
    } catch {
      return false;
    }
  }, `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`);

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

export const configSchema = z.object({
  DATABASE_URL: url(['postgres:', 'postgresql:']).default('postgres://postgres@127.0.0.1:5432/billing'),
  REDIS_URL: url(['redis:', 'rediss:']).default('redis://127.0.0.1:6379'),
  SMTP_URL: url(['smtp:', 'smtps:']).optional(),
  MAIL_FROM: z.string().min(3).default('Billing <billing@localhost>'),
  INBOX_DIR: z.string().default('var/inbox'),
  OUTBOX_DIR: z.string().default('var/outbox'),
  ADMIN_TOKENS: tokenList,
  QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_{}:-]+$/, 'letters, digits, _ - : { } only').default('billing'),
  API_HOST: z.string().default('127.0.0.1'),
  API_PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  INBOX_SCAN_EVERY_MS: positiveInt(5000),
  /** A file is left alone until it has not changed for this long, so half-written drops are not claimed. */
  INBOX_SETTLE_MS: z.coerce.number().int().min(0).default(1000),
  MAX_FILE_BYTES: positiveInt(2 * 1024 ** 3),
  /** Longest single feed record (a CSV row, an XML record element) in characters; longer rejects the file. */
  MAX_RECORD_CHARS: positiveInt(1024 ** 2),
  INGEST_CHUNK_ROWS: positiveInt(5000),
  /** How long a worker holds a chunk of a file without renewing its claim; a dead worker's chunk is taken over after this. */
  INGEST_CHUNK_LEASE_MS: positiveInt(60_000),
  MAX_ATTACHMENT_BYTES: positiveInt(10 * 1024 ** 2),
  WORKER_CONCURRENCY_INGEST: positiveInt(1),
  WORKER_CONCURRENCY_RATE: positiveInt(2),
  WORKER_CONCURRENCY_DELIVER: positiveInt(5),
  /** On SIGTERM/SIGINT, active jobs get this long to finish before they are released back to waiting. */
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).default(30_000),
  /** Largest JSON or form body the admin API reads (file uploads have their own limit, MAX_FILE_BYTES). */
  API_MAX_BODY_BYTES: positiveInt(1024 ** 2),
  /** `billing worker` serves its own /metrics (job durations, process) on this port when set. */
  WORKER_METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  /**
   * How long a worker's lock on a running job lasts; the worker renews it every half of this. A job
   * whose worker died is taken over by another once the lock has run out (and a stall check sees it).
   */
  WORKER_LOCK_DURATION_MS: z.coerce.number().int().min(1000, 'must be at least 1000 (the lock is renewed every half of it)').max(3_600_000).default(60_000),
  /** How often each worker looks for jobs whose lock ran out (their worker died or froze) and hands them to another. */
  WORKER_STALLED_INTERVAL_MS: z.coerce.number().int().min(1000).max(3_600_000).default(30_000),
  /** How often a worker checks that its repeating jobs (inbox scan, reconciler, monthly close) are still in Redis, and puts them back if not. */
  SCHEDULE_CHECK_EVERY_MS: z.coerce.number().int().min(1000).max(3_600_000).default(60_000),
});

export type ConfigInput = z.input<typeof configSchema>;

export interface Config {
  databaseUrl: string;
  redisUrl: string;
  smtpUrl: string | undefined;
  mailFrom: string;
  inboxDir: string;
  outboxDir: string;
  adminTokens: string[];
  queuePrefix: string;
  api: { host: string; port: number };
  logLevel: z.infer<typeof configSchema>['LOG_LEVEL'];
  inbox: { scanEveryMs: number; settleMs: number };
  limits: { maxFileBytes: number; maxRecordChars: number; maxAttachmentBytes: number };
  ingestChunkRows: number;
  ingestChunkLeaseMs: number;
  concurrency: { ingest: number; rate: number; deliver: number };
  shutdownGraceMs: number;
  apiMaxBodyBytes: number;
  workerMetricsPort: number | undefined;
  /** BullMQ worker lock and stall check (WORKER_LOCK_DURATION_MS, WORKER_STALLED_INTERVAL_MS). */
  workerLocks: { lockDurationMs: number; stalledIntervalMs: number };
  scheduleCheckEveryMs: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Parses configuration from an environment-like record. Relative folders resolve against `cwd`. */
export function loadConfig(env: Record<string, string | undefined> = process.env, cwd = process.cwd()): Config {
  // Empty strings are how shells unset things; treat them as absent so defaults apply.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = configSchema.safeParse(cleaned);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`));
  }
  const c = parsed.data;
  return {
    databaseUrl: c.DATABASE_URL,
    redisUrl: c.REDIS_URL,
    smtpUrl: c.SMTP_URL,
    mailFrom: c.MAIL_FROM,
    inboxDir: path.resolve(cwd, c.INBOX_DIR),
    outboxDir: path.resolve(cwd, c.OUTBOX_DIR),
    adminTokens: c.ADMIN_TOKENS,
    queuePrefix: c.QUEUE_PREFIX,
    api: { host: c.API_HOST, port: c.API_PORT },
    logLevel: c.LOG_LEVEL,
    inbox: { scanEveryMs: c.INBOX_SCAN_EVERY_MS, settleMs: c.INBOX_SETTLE_MS },
    limits: { maxFileBytes: c.MAX_FILE_BYTES, maxRecordChars: c.MAX_RECORD_CHARS, maxAttachmentBytes: c.MAX_ATTACHMENT_BYTES },
    ingestChunkRows: c.INGEST_CHUNK_ROWS,
    ingestChunkLeaseMs: c.INGEST_CHUNK_LEASE_MS,
    concurrency: {
      ingest: c.WORKER_CONCURRENCY_INGEST,
      rate: c.WORKER_CONCURRENCY_RATE,
      deliver: c.WORKER_CONCURRENCY_DELIVER,
    },
    shutdownGraceMs: c.SHUTDOWN_GRACE_MS,
    apiMaxBodyBytes: c.API_MAX_BODY_BYTES,
    workerMetricsPort: c.WORKER_METRICS_PORT,
    workerLocks: { lockDurationMs: c.WORKER_LOCK_DURATION_MS, stalledIntervalMs: c.WORKER_STALLED_INTERVAL_MS },
    scheduleCheckEveryMs: c.SCHEDULE_CHECK_EVERY_MS,
  };
}

/**
 * The demo's own settings, read only by `billing demo`: which services it runs on and where the
 * embedded database keeps its data. Apart from Config because no other process has a mode.
 */
export const demoConfigSchema = z.object({
  /** auto: the configured servers if both answer, else embedded; embedded: always; server: never embedded. */
  DEMO_MODE: z.enum(['auto', 'embedded', 'server']).default('auto'),
  /** The embedded databases' folder; `memory://` keeps them in memory (nothing survives the run). */
  DEMO_PGLITE_DIR: z.string().default('var/demo-pglite'),
});

export interface DemoConfig {
  mode: z.infer<typeof demoConfigSchema>['DEMO_MODE'];
  /** Absolute folder, or undefined for in memory. */
  pgliteDir: string | undefined;
}

export function loadDemoConfig(env: Record<string, string | undefined> = process.env, cwd = process.cwd()): DemoConfig {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = demoConfigSchema.safeParse(cleaned);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`));
  }
  const dir = parsed.data.DEMO_PGLITE_DIR;
  return { mode: parsed.data.DEMO_MODE, pgliteDir: dir === 'memory://' ? undefined : path.resolve(cwd, dir) };
}

/** Hides the password in a connection URL for logs and summaries. */
export function redactUrl(value: string): string {
  try {
    const u = new URL(value);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(invalid url)';
  }
}
