import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrationCount } from '../adapters/db/migrations';
import { DEMO_DIR, DEMO_MODE_NAMES, type DemoResult, chooseDemoMode, performDemo } from '../src/cli/demo';
import { loadConfig, loadDemoConfig } from '../src/config';
import { type Expected, readExpected } from './support/golden';
import { type TestContext, createTestContext } from './support/test-context';
import { testDatabaseUrl, testRedisUrl } from './support/test-env';

/** Addresses where nothing listens: a demo pointed at them cannot reach the shared servers. */
const NO_POSTGRES = 'postgres://postgres@127.0.0.1:1/billing';
const NO_REDIS = 'redis://127.0.0.1:1';

/** The invoices as an accountant would compare them: number, partnership, currency, total, per account. */
function invoicesOf(result: DemoResult) {
  return result.summary.invoices.map((i) => ({
    number: i.number,
    partnership: i.partnership,
    currency: i.currency,
    total: Number(i.total),
    accounts: Object.fromEntries(Object.entries(i.accounts).map(([code, amount]) => [code, Number(amount)])),
  }));
}

function expectedInvoices(expected: Expected) {
  return Object.entries(expected.invoices).map(([partnership, i]) => ({ number: i.number, partnership, currency: i.currency, total: i.total, accounts: i.accounts }));
}

describe('which services the demo runs on', () => {
  const config = (env: Record<string, string>) => loadConfig({ DATABASE_URL: testDatabaseUrl('billing_demo_probe'), REDIS_URL: testRedisUrl, ...env });

  it('uses the servers when both answer (a database the demo would create counts as answering)', async () => {
    expect(await chooseDemoMode(config({}), loadDemoConfig({}))).toEqual({ mode: 'server', reason: 'both servers answer; DEMO_MODE=embedded runs without them' });
  });

  it('runs embedded when either server does not answer, saying which and why', async () => {
    const noRedis = await chooseDemoMode(config({ REDIS_URL: NO_REDIS }), loadDemoConfig({}));
    expect(noRedis.mode).toBe('embedded');
    expect(noRedis.reason).toMatch(/^Redis at redis:\/\/127\.0\.0\.1:1 unusable \(.*ECONNREFUSED.*\); DEMO_MODE=server insists on the servers$/);
    const noPostgres = await chooseDemoMode(config({ DATABASE_URL: NO_POSTGRES }), loadDemoConfig({}));
    expect(noPostgres.mode).toBe('embedded');
    expect(noPostgres.reason).toMatch(/^PostgreSQL at postgres:\/\/postgres@127\.0\.0\.1:1\/billing unusable \(.*ECONNREFUSED.*\);/);
  });

  it('DEMO_MODE=embedded needs no server; DEMO_MODE=server refuses to run without them', async () => {
    expect(await chooseDemoMode(config({}), loadDemoConfig({ DEMO_MODE: 'embedded' }))).toEqual({ mode: 'embedded', reason: 'DEMO_MODE=embedded' });
    await expect(chooseDemoMode(config({ REDIS_URL: NO_REDIS }), loadDemoConfig({ DEMO_MODE: 'server' }))).rejects.toThrow(
      /^DEMO_MODE=server, but Redis at redis:\/\/127\.0\.0\.1:1 unusable \(.*\)\. Start them \(docker compose up -d\) or check DATABASE_URL and REDIS_URL\.$/,
    );
    expect(() => loadDemoConfig({ DEMO_MODE: 'cloud' })).toThrow(/DEMO_MODE/);
  });
});

/**
 * The demo end to end, once on the servers (a test database and queue prefix of its own) and once
 * embedded (pointed at addresses where nothing listens, so it cannot touch the shared servers): the
 * same invoices come out, the ones worked by hand in fixtures/demo/expected.yaml.
 */
describe('npm run demo in both modes', () => {
  let expected: Expected;
  let ctx: TestContext;
  let embeddedDir: string;
  let onServers: DemoResult;
  const serverLines: string[] = [];

  beforeAll(async () => {
    expected = await readExpected(DEMO_DIR);
    ctx = await createTestContext();
    embeddedDir = await mkdtemp(path.join(os.tmpdir(), 'billing-demo-embedded-'));
    onServers = await performDemo({
      env: {
        DATABASE_URL: ctx.databaseUrl,
        REDIS_URL: testRedisUrl,
        QUEUE_PREFIX: ctx.deps.config.queuePrefix,
        INBOX_DIR: ctx.inboxDir,
        OUTBOX_DIR: ctx.outboxDir,
        LOG_LEVEL: 'silent',
      },
      print: (line) => serverLines.push(line),
    });
  });

  afterAll(async () => {
    await ctx?.close();
    if (embeddedDir) await rm(embeddedDir, { recursive: true, force: true });
  });

  const embeddedEnv = () => ({
    DATABASE_URL: NO_POSTGRES,
    REDIS_URL: NO_REDIS,
    DEMO_PGLITE_DIR: path.join(embeddedDir, 'pglite'),
    INBOX_DIR: path.join(embeddedDir, 'inbox'),
    OUTBOX_DIR: path.join(embeddedDir, 'outbox'),
    LOG_LEVEL: 'silent',
  });

  it('on the servers: says so, and issues and emails the hand-worked invoices', async () => {
    expect(serverLines[0]).toBe(`billing demo, mode: ${DEMO_MODE_NAMES.server}`);
    expect(onServers.mode).toBe('server');
    expect(invoicesOf(onServers)).toEqual(expectedInvoices(expected));
    expect(onServers.summary.invoices.flatMap((i) => i.emails.map((e) => e.status))).toEqual(['sent', 'sent']);
    expect((await readdir(ctx.outboxDir)).sort()).toEqual(['inv-2026-000001.nrf_localhost.eml', 'inv-2026-000002.nrf_localhost.eml']);
  });

  it('embedded, with no server reachable: says so, and the same invoices come out', async () => {
    const lines: string[] = [];
    const embedded = await performDemo({ env: embeddedEnv(), print: (line) => lines.push(line) });
    expect(lines[0]).toBe(`billing demo, mode: ${DEMO_MODE_NAMES.embedded}`);
    expect(lines[1]).toMatch(/PostgreSQL at postgres:\/\/postgres@127\.0\.0\.1:1\/billing unusable .*; Redis at redis:\/\/127\.0\.0\.1:1 unusable/);
    expect(lines[2]).toMatch(new RegExp(String.raw`^database: embedded, kept in .*pglite \(created\), served at postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres, ${migrationCount} migration\(s\) applied$`));
    expect(embedded.mode).toBe('embedded');

    expect(invoicesOf(embedded)).toEqual(invoicesOf(onServers));
    expect(embedded.summary.files.map((f) => [f.name, f.status, f.counts])).toEqual(onServers.summary.files.map((f) => [f.name, f.status, f.counts]));
    expect(embedded.summary.rowErrors).toEqual(onServers.summary.rowErrors);
    expect([embedded.summary.usages, embedded.summary.records, embedded.summary.transactions]).toEqual([
      onServers.summary.usages,
      onServers.summary.records,
      onServers.summary.transactions,
    ]);
    const outbox = path.join(embeddedDir, 'outbox');
    expect((await readdir(outbox)).sort()).toEqual(['inv-2026-000001.nrf_localhost.eml', 'inv-2026-000002.nrf_localhost.eml']);
    expect(await readFile(path.join(outbox, 'inv-2026-000002.nrf_localhost.eml'), 'utf8')).toContain('INV-2026-000002');
  });

  it('embedded, run again on the same folder: the data was kept, so nothing is billed or sent twice', async () => {
    const outbox = path.join(embeddedDir, 'outbox');
    const before = await readFile(path.join(outbox, 'inv-2026-000001.nrf_localhost.eml'), 'utf8');
    const again = await performDemo({ env: embeddedEnv(), print: () => undefined });
    expect(again.summary.files.map((f) => f.status)).toEqual(['duplicate', 'duplicate', 'duplicate', 'duplicate']);
    expect(again.summary.run.invoicesCreated).toBe(0);
    expect(again.summary.invoices.map((i) => [i.number, i.isNew])).toEqual([['INV-2026-000001', false], ['INV-2026-000002', false]]);
    expect(invoicesOf(again)).toEqual(expectedInvoices(expected));
    expect((await readdir(outbox)).sort()).toEqual(['inv-2026-000001.nrf_localhost.eml', 'inv-2026-000002.nrf_localhost.eml']);
    expect(await readFile(path.join(outbox, 'inv-2026-000001.nrf_localhost.eml'), 'utf8')).toBe(before);
  });
});
