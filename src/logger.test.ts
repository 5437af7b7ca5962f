import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger';

/** A logger writing JSON lines into an array, so tests read exactly what would be printed. */
function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  return { logger: createLogger('info', {}, stream), lines, parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('createLogger: no secrets in log lines', () => {
  it.each([
    ['an admin token', { token: 'tok-0123456789abcdef' }, 'tok-0123456789abcdef'],
    ['the configured tokens', { config: { adminTokens: ['tok-0123456789abcdef'] } }, 'tok-0123456789abcdef'],
    ['an Authorization header', { headers: { authorization: 'Bearer tok-0123456789abcdef' } }, 'tok-0123456789abcdef'],
    ['a request Authorization header', { req: { headers: { authorization: 'Bearer tok-0123456789abcdef' } } }, 'tok-0123456789abcdef'],
    ['a session cookie', { headers: { cookie: 'billing_session=v1.1.abc' } }, 'billing_session'],
    ['a password', { password: 'hunter2-hunter2' }, 'hunter2-hunter2'],
    ['a whole usage row', { fileId: 3, row: { usage_id: 'ACME-1', user: 'm.chen', quantity: '12' } }, 'm.chen'],
    ['rows', { rows: [{ user: 'm.chen' }] }, 'm.chen'],
  ])('redacts %s', (_label, fields, secret) => {
    const { logger, lines } = capture();
    logger.info(fields, 'something happened');
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain(secret);
    expect(lines[0]).toContain('[redacted]');
  });

  it('keeps connection URLs but hides their passwords', () => {
    const { logger, parsed } = capture();
    logger.info(
      {
        config: { databaseUrl: 'postgres://billing:s3cret-pw@db.internal:5432/billing', redisUrl: 'redis://:r3dis-pw@cache:6379', smtpUrl: 'smtp://mailer:m4il-pw@smtp:587' },
        DATABASE_URL: 'postgres://billing:s3cret-pw@db.internal/billing',
      },
      'config',
    );
    const line = parsed()[0]!;
    expect(line.config).toEqual({
      databaseUrl: 'postgres://billing:***@db.internal:5432/billing',
      redisUrl: 'redis://:***@cache:6379',
      smtpUrl: 'smtp://mailer:***@smtp:587',
    });
    expect(line.DATABASE_URL).toBe('postgres://billing:***@db.internal/billing');
  });

  it('keeps the ids operators search by, in child loggers too', () => {
    const { logger, parsed } = capture();
    logger.child({ queue: 'ingest-file', jobId: 'ingest-file-7', fileId: 7 }).info({ invoiceId: 12, record: 4 }, 'done');
    expect(parsed()[0]).toMatchObject({ queue: 'ingest-file', jobId: 'ingest-file-7', fileId: 7, invoiceId: 12, record: 4, msg: 'done' });
  });
});
