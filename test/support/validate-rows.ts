import { pathToFileURL } from 'node:url';
import { Temporal } from 'temporal-polyfill';
import { createDb } from '../../adapters/db/database';
import { loadPartnershipsOfCustomer, loadProducts } from '../../adapters/db/partnership-repository';
import { toDecimalString } from '../../src/core/decimal';
import { DEFAULT_FEED_PROFILE, feedProfileSchema } from '../../src/core/feed-profile';
import { normalizeRow } from '../../src/core/normalize-row';
import type { RawUsageFields } from '../../src/core/usage-fields';
import { validateUsage } from '../../src/core/validate-usage';

/**
 * The pure half of ingestion, normalizeRow then validateUsage, over rows of one partner, with the
 * partner's partnerships and feed profile as the database holds them. A test runs it in child
 * processes under different TZ settings to show that where a usage lands never depends on the
 * process's time zone:
 *
 *   TZ=America/New_York node --import tsx test/support/validate-rows.ts '<request as JSON>'
 */
export interface ValidateRowsRequest {
  databaseUrl: string;
  partnerCode: string;
  /** The clock reading ingest would use (usages may start at most 24 hours after it). */
  now: string;
  rows: RawUsageFields[];
}

export type RowVerdict =
  | { id: string | undefined; ok: true; quantity: string; startedAt: string; endedAt: string | null; period: string }
  | { id: string | undefined; ok: false; errors: Array<[field: string, code: string, message: string, raw: string | undefined]> };

export interface ValidateRowsResult {
  /** The zone the process ran in, and its UTC offset on 2026-10-31 in minutes, to show the TZ took. */
  timeZone: string;
  offsetMinutes: number;
  verdicts: RowVerdict[];
}

export async function validateRows(request: ValidateRowsRequest): Promise<ValidateRowsResult> {
  const db = createDb(request.databaseUrl, { max: 2 });
  try {
    const partner = await db('partners').where('code', request.partnerCode).first<{ id: string; feed_profile: unknown }>('id', 'feed_profile');
    const [partnerships, productsByCode] = await Promise.all([loadPartnershipsOfCustomer(db, Number(partner.id)), loadProducts(db)]);
    const profile = partner.feed_profile ? feedProfileSchema.parse(partner.feed_profile) : DEFAULT_FEED_PROFILE;
    // The same context ingest-file builds.
    const ctx = {
      partnerCode: request.partnerCode,
      partnerships,
      productsByCode,
      latestStart: Temporal.Instant.from(request.now).add({ hours: 24 }),
      earliestStart: Temporal.Instant.from('2000-01-01T00:00:00Z'),
    };
    const verdicts = request.rows.map((row): RowVerdict => {
      const normalized = normalizeRow(row, profile);
      const result = normalized.ok ? validateUsage(normalized.fields, ctx, row) : normalized;
      if (!result.ok) return { id: row.usage_id, ok: false, errors: result.errors.map((e) => [e.field, e.code, e.message, e.raw]) };
      const { usage } = result;
      return {
        id: row.usage_id,
        ok: true,
        quantity: toDecimalString(usage.quantity),
        startedAt: usage.startedAt.toString(),
        endedAt: usage.endedAt?.toString() ?? null,
        period: usage.period,
      };
    });
    return {
      timeZone: Intl.DateTimeFormat().resolvedOptions().timeZone,
      offsetMinutes: new Date('2026-10-31T12:00:00Z').getTimezoneOffset(),
      verdicts,
    };
  } finally {
    await db.destroy();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const request = JSON.parse(process.argv[2] ?? '{}') as ValidateRowsRequest;
  process.stdout.write(JSON.stringify(await validateRows(request)));
}
