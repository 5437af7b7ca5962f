import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { dropDatabase, migrateLatest } from '../adapters/db/database';
import { redactUrl } from '../src/config';
import { importPartnerships, readImportFile } from '../src/use-cases/import-partnerships';
import { rateFile } from '../src/use-cases/rate-file';
import { type BenchContext, REPO_ROOT, type Services, benchDeps, closeBenchDeps, describeError, freshBenchDatabase, withTimeout } from './harness';
import { type BenchReport, formatMb, formatSeconds } from './report';

const PARTNERSHIPS = path.join(REPO_ROOT, 'bench', 'fixtures', 'rate-partnerships.yaml');

/**
 * `npm run bench -- rate`: N usages (default 1M) of one partnership, put straight into the database
 * as a parsed file (the ingest benchmark measures getting them there), then rated by the same
 * rate-file use case a worker runs, in this process: graduated tiers and a 10 % discount on CPU
 * hours (70 % of usages, one period group, the worst case for positions), a unit price on storage,
 * and a three-way split for one user in five.
 */
export async function runRateBench(ctx: BenchContext, services: Services): Promise<BenchReport> {
  const startedAt = new Date();
  const queuePrefix = `bench-rate-${randomBytes(4).toString('hex')}`;
  await freshBenchDatabase(ctx.databaseUrl);
  const deps = benchDeps({ databaseUrl: ctx.databaseUrl, redisUrl: ctx.redisUrl, queuePrefix, inboxDir: path.join(os.tmpdir(), queuePrefix, 'inbox'), outboxDir: path.join(os.tmpdir(), queuePrefix, 'outbox') });
  try {
    await migrateLatest(deps.db);
    await importPartnerships(deps, await readImportFile(PARTNERSHIPS), 'bench');
    ctx.log(`inserting ${ctx.rows.toLocaleString('en-GB')} usages as one parsed file`);
    const loadStart = performance.now();
    const fileId = await insertUsages(deps.db, ctx.rows);
    const loadMs = performance.now() - loadStart;
    ctx.log(`  in ${formatSeconds(loadMs)}; rating`);

    const rssBefore = process.memoryUsage().rss;
    const t0 = performance.now();
    const outcome = await withTimeout(ctx.phaseTimeoutMs, 'rating', rateFile(deps, fileId));
    const ms = performance.now() - t0;
    if (outcome.kind !== 'rated') throw new Error(`the file was not rated: ${outcome.status}`);
    const counts = await deps.db.raw<{ rows: { records: string; transactions: string; total: string }[] }>(
      `SELECT (SELECT count(*) FROM billing_records)::text AS records, (SELECT count(*) FROM transactions)::text AS transactions,
              (SELECT coalesce(sum(amount_pennies), 0) FROM transactions)::text AS total`,
    );
    const c = counts.rows[0]!;
    const peakKb = process.resourceUsage().maxRSS;
    const perSecond = Math.trunc((outcome.usages * 1000) / ms);
    return {
      title: `Rating ${ctx.rows.toLocaleString('en-GB')} usages (graduated tiers, 10 % discount, three-way split for one user in five)`,
      command: `npm run bench -- rate --rows ${ctx.rows}`,
      startedAt,
      finishedAt: new Date(),
      environment: [`${os.cpus().length} CPUs, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB`, `Node ${process.version}`, `PostgreSQL ${services.postgres}`, `database ${redactUrl(ctx.databaseUrl)}`],
      rows: [
        { figure: 'usages rated per second', measured: `${perSecond.toLocaleString('en-GB')} usages/s (${formatSeconds(ms)})` },
        { figure: 'billing records / transactions written', measured: `${Number(c.records).toLocaleString('en-GB')} / ${Number(c.transactions).toLocaleString('en-GB')}` },
        { figure: 'peak RSS of the rating process', measured: `${formatMb(peakKb)} (${formatMb(rssBefore / 1024)} before rating)` },
      ],
      notes: [
        `usages inserted with one INSERT ... SELECT generate_series in ${formatSeconds(loadMs)} (not part of the figure)`,
        `rated by src/use-cases/rate-file.ts in pages of 5,000, each one transaction; total charged ${c.total} pennies`,
      ],
    };
  } finally {
    await closeBenchDeps(deps);
    if (!ctx.keep) await dropDatabase(ctx.databaseUrl).catch((err: unknown) => ctx.log(`could not drop the bench database: ${describeError(err)}`));
  }
}

/** One parsed file with `rows` usages in time order over October: 70 % CPU hours, 30 % storage, 100 users. */
async function insertUsages(db: ReturnType<typeof benchDeps>['db'], rows: number): Promise<number> {
  const { rows: ids } = await db.raw<{ rows: { partner_id: string; partnership_id: string; cpu: string; storage: string }[] }>(
    `SELECT c.id AS partner_id, ps.id AS partnership_id, (SELECT id FROM products WHERE code = 'BENCH_CPU') AS cpu, (SELECT id FROM products WHERE code = 'BENCH_STORAGE') AS storage
     FROM partners c JOIN partnerships ps ON ps.customer_partner_id = c.id WHERE c.code = 'BENCHCUST'`,
  );
  const p = ids[0]!;
  const [file] = await db('usage_files')
    .insert({
      partner_id: p.partner_id, partner_code: 'BENCHCUST', name: `rate-bench-${rows}.csv`, sha256: randomBytes(32).toString('hex'), size_bytes: 0,
      format: 'csv', source: 'cli', stored_path: 'bench', status: 'parsed', rows_read: rows, rows_accepted: rows, records_committed: rows,
      parsed_at: db.fn.now(),
    })
    .returning<{ id: string }[]>('id');
  const fileId = Number(file!.id);
  // Two seconds apart from 1 October: a million usages fill 23 days, all in one period.
  await db.raw(
    `INSERT INTO product_usages (partner_id, partnership_id, external_id, product_id, user_ref, quantity, started_at, period, source_file_id, source_record, source_line)
     SELECT ?, ?, 'R' || lpad(i::text, 9, '0'), CASE WHEN i % 10 < 7 THEN ?::bigint ELSE ?::bigint END, 'u' || (i % 100),
            ((i % 17) + 1) * 0.25, timestamptz '2026-10-01 00:00:00+01' + i * interval '2 seconds', '2026-10', ?, i, i + 1
     FROM generate_series(1, ?) AS i`,
    [p.partner_id, p.partnership_id, p.cpu, p.storage, fileId, rows],
  );
  await db.raw('ANALYZE product_usages');
  return fileId;
}
