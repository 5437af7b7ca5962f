import { describe, it, expect } from 'vitest';
import path from 'node:path';
import { type Config, ConfigError, loadConfig, redactUrl } from './config';

const CWD = path.resolve('/srv/billing');
const TOKEN = '0123456789abcdef'; // exactly 16 characters

function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env, CWD);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig: defaults', () => {
  const defaults: Config = {
    databaseUrl: 'postgres://postgres@127.0.0.1:5432/billing',
    redisUrl: 'redis://127.0.0.1:6379',
    smtpUrl: undefined,
    mailFrom: 'Billing <billing@localhost>',
    inboxDir: path.join(CWD, 'var/inbox'),
    outboxDir: path.join(CWD, 'var/outbox'),
    adminTokens: [],
    queuePrefix: 'billing',
    api: { host: '127.0.0.1', port: 3000 },
    logLevel: 'info',
    inbox: { scanEveryMs: 5000, settleMs: 1000 },
    limits: { maxFileBytes: 2 * 1024 ** 3, maxRecordChars: 1024 ** 2, maxAttachmentBytes: 10 * 1024 ** 2 },
    ingestChunkRows: 5000,
    ingestChunkLeaseMs: 60_000,
    concurrency: { ingest: 1, rate: 2, deliver: 5 },
    shutdownGraceMs: 30_000,
    apiMaxBodyBytes: 1024 ** 2,
    workerMetricsPort: undefined,
    workerLocks: { lockDurationMs: 60_000, stalledIntervalMs: 30_000 },
    scheduleCheckEveryMs: 60_000,
  };

  it('an empty environment gives the documented defaults', () => {
    expect(loadConfig({}, CWD)).toEqual(defaults);
  });

  it('empty strings are treated as unset, so the defaults apply', () => {
    const env = Object.fromEntries(
      ['DATABASE_URL', 'REDIS_URL', 'SMTP_URL', 'MAIL_FROM', 'INBOX_DIR', 'OUTBOX_DIR', 'ADMIN_TOKENS', 'QUEUE_PREFIX', 'API_HOST', 'API_PORT', 'LOG_LEVEL', 'INBOX_SCAN_EVERY_MS', 'INBOX_SETTLE_MS', 'MAX_FILE_BYTES', 'MAX_RECORD_CHARS', 'INGEST_CHUNK_ROWS', 'MAX_ATTACHMENT_BYTES', 'WORKER_CONCURRENCY_INGEST', 'WORKER_CONCURRENCY_RATE', 'WORKER_CONCURRENCY_DELIVER'].map((k) => [k, '']),
    );
    expect(loadConfig(env, CWD)).toEqual(defaults);
  });

  it('undefined values and unrelated variables are ignored', () => {
    expect(loadConfig({ DATABASE_URL: undefined, PATH: '/usr/bin', HOME: '/root' }, CWD)).toEqual(defaults);
  });
});

describe('loadConfig: values', () => {
  it('reads every setting', () => {
    const c = loadConfig(
      {
        DATABASE_URL: 'postgresql://billing:secret@db:5432/billing',
        REDIS_URL: 'rediss://cache:6380',
        SMTP_URL: 'smtps://mail.example:465',
        MAIL_FROM: 'Lab <lab@example.org>',
        ADMIN_TOKENS: ` ${TOKEN} ,,${TOKEN}xyz, `,
        QUEUE_PREFIX: '{billing}:test',
        API_HOST: '0.0.0.0',
        API_PORT: '0',
        LOG_LEVEL: 'silent',
        INBOX_SCAN_EVERY_MS: '250',
        INBOX_SETTLE_MS: '0',
        MAX_FILE_BYTES: '1048576',
        MAX_RECORD_CHARS: '4096',
        INGEST_CHUNK_ROWS: '100',
        MAX_ATTACHMENT_BYTES: '2048',
        WORKER_CONCURRENCY_INGEST: '3',
        WORKER_CONCURRENCY_RATE: '4',
        WORKER_CONCURRENCY_DELIVER: '6',
      },
      CWD,
    );
    expect(c).toMatchObject({
      databaseUrl: 'postgresql://billing:secret@db:5432/billing',
      redisUrl: 'rediss://cache:6380',
      smtpUrl: 'smtps://mail.example:465',
      mailFrom: 'Lab <lab@example.org>',
      adminTokens: [TOKEN, `${TOKEN}xyz`],
      queuePrefix: '{billing}:test',
      api: { host: '0.0.0.0', port: 0 },
      logLevel: 'silent',
      inbox: { scanEveryMs: 250, settleMs: 0 },
      limits: { maxFileBytes: 1048576, maxRecordChars: 4096, maxAttachmentBytes: 2048 },
      ingestChunkRows: 100,
      concurrency: { ingest: 3, rate: 4, deliver: 6 },
    });
  });

  it.each<[string, string, string]>([
    ['relative folders resolve against cwd', 'data/inbox', path.join(CWD, 'data/inbox')],
    ['"./" is the same', './in', path.join(CWD, 'in')],
    ['".." climbs out of cwd, as a shell would', '../shared/inbox', path.resolve(CWD, '../shared/inbox')],
    ['absolute folders are kept', '/var/spool/billing', path.resolve('/var/spool/billing')],
  ])('%s: %s -> %s', (_label, dir, expected) => {
    const c = loadConfig({ INBOX_DIR: dir, OUTBOX_DIR: dir }, CWD);
    expect(c.inboxDir).toBe(expected);
    expect(c.outboxDir).toBe(expected);
  });
});

describe('loadConfig: worker locks and the schedule check', () => {
  it('reads the lock duration, the stall check interval and the schedule check interval', () => {
    const c = loadConfig({ WORKER_LOCK_DURATION_MS: '120000', WORKER_STALLED_INTERVAL_MS: '15000', SCHEDULE_CHECK_EVERY_MS: '5000' }, CWD);
    expect(c.workerLocks).toEqual({ lockDurationMs: 120_000, stalledIntervalMs: 15_000 });
    expect(c.scheduleCheckEveryMs).toBe(5000);
  });

  it('refuses values that are not whole milliseconds, or too short for a lock renewed every half of its duration', () => {
    expect(configError({ WORKER_LOCK_DURATION_MS: '500', WORKER_STALLED_INTERVAL_MS: '2.5', SCHEDULE_CHECK_EVERY_MS: 'often' }).problems).toEqual([
      'WORKER_LOCK_DURATION_MS: must be at least 1000 (the lock is renewed every half of it)',
      'WORKER_STALLED_INTERVAL_MS: Invalid input: expected int, received number',
      'SCHEDULE_CHECK_EVERY_MS: Invalid input: expected number, received NaN',
    ]);
    expect(configError({ WORKER_STALLED_INTERVAL_MS: '0' }).problems).toEqual(['WORKER_STALLED_INTERVAL_MS: Too small: expected number to be >=1000']);
  });
});

describe('loadConfig: every problem is reported at once', () => {
  it('bad URLs, a non-numeric port and short admin tokens all appear in one ConfigError', () => {
    const e = configError({
      DATABASE_URL: 'mysql://db/billing',
      REDIS_URL: 'not a url',
      SMTP_URL: 'http://mail.example',
      API_PORT: 'eighty',
      ADMIN_TOKENS: `short,${TOKEN},also-short`,
      QUEUE_PREFIX: 'bill ing',
      LOG_LEVEL: 'loud',
      INBOX_SCAN_EVERY_MS: '0',
      INGEST_CHUNK_ROWS: '1.5',
      MAIL_FROM: 'x',
    });
    const expected = [
      'DATABASE_URL: must be a URL starting with postgres:// or postgresql://',
      'REDIS_URL: must be a URL starting with redis:// or rediss://',
      'SMTP_URL: must be a URL starting with smtp:// or smtps://',
      'MAIL_FROM: Too small: expected string to have >=3 characters',
      'ADMIN_TOKENS.0: each admin token must be at least 16 characters',
      'ADMIN_TOKENS.2: each admin token must be at least 16 characters',
      'QUEUE_PREFIX: letters, digits, _ - : { } only',
      'API_PORT: Invalid input: expected number, received NaN',
      'LOG_LEVEL: Invalid option: expected one of "fatal"|"error"|"warn"|"info"|"debug"|"trace"|"silent"',
      'INBOX_SCAN_EVERY_MS: Too small: expected number to be >0',
      'INGEST_CHUNK_ROWS: Invalid input: expected int, received number',
    ];
    expect(e.name).toBe('ConfigError');
    expect(e).toBeInstanceOf(Error);
    expect(e.problems).toEqual(expected);
    expect(e.message).toBe(`Invalid configuration:\n${expected.map((p) => `  - ${p}`).join('\n')}`);
  });

  it.each<[string, Record<string, string>, string[]]>([
    ['a port out of range', { API_PORT: '65536' }, ['API_PORT: Too big: expected number to be <=65535']],
    ['a negative port', { API_PORT: '-1' }, ['API_PORT: Too small: expected number to be >=0']],
    ['a 15-character admin token', { ADMIN_TOKENS: TOKEN.slice(1) }, ['ADMIN_TOKENS.0: each admin token must be at least 16 characters']],
    ['a whitespace-only URL (only empty strings count as unset)', { DATABASE_URL: ' ' }, ['DATABASE_URL: must be a URL starting with postgres:// or postgresql://']],
    ['a negative settle time', { INBOX_SETTLE_MS: '-5' }, ['INBOX_SETTLE_MS: Too small: expected number to be >=0']],
    ['zero concurrency', { WORKER_CONCURRENCY_RATE: '0' }, ['WORKER_CONCURRENCY_RATE: Too small: expected number to be >0']],
    ['a zero record length limit', { MAX_RECORD_CHARS: '0' }, ['MAX_RECORD_CHARS: Too small: expected number to be >0']],
  ])('%s', (_label, env, expected) => {
    expect(configError(env).problems).toEqual(expected);
  });

  it('does not echo admin tokens in the error', () => {
    const e = configError({ ADMIN_TOKENS: 'hunter2secret' });
    expect(e.message).not.toContain('hunter2secret');
  });
});

describe('redactUrl', () => {
  it.each<[string, string]>([
    ['postgres://billing:secret@db:5432/billing', 'postgres://billing:***@db:5432/billing'],
    ['redis://cache:6379', 'redis://cache:6379'],
    ['not a url', '(invalid url)'],
  ])('%s -> %s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected);
  });
});
