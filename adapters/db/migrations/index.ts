import type { Knex } from 'knex';
import * as initialSchema from './0001-initial-schema';
import * as feedProfiles from './0002-feed-profiles-and-control-totals';
import * as superseding from './0003-superseding-files';
import * as periodSettlement from './0004-period-settlement';
import * as emailAttempts from './0005-email-attempts';
import * as receivables from './0006-receivables';
import * as ingestChunks from './0007-ingest-chunks';
import * as ratingOrder from './0008-rating-order';
import * as billingRunRequestKeys from './0009-billing-run-request-keys';
import * as redundantRecordKey from './0010-redundant-record-key';

interface Migration {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

/**
 * Migrations are listed here rather than discovered on disk, so that they run the same under tsx,
 * vitest and any bundler, and a missing file is a type error rather than a silent skip.
 */
const migrations: ReadonlyArray<readonly [string, Migration]> = [
  ['0001-initial-schema', initialSchema],
  ['0002-feed-profiles-and-control-totals', feedProfiles],
  ['0003-superseding-files', superseding],
  ['0004-period-settlement', periodSettlement],
  ['0005-email-attempts', emailAttempts],
  ['0006-receivables', receivables],
  ['0007-ingest-chunks', ingestChunks],
  ['0008-rating-order', ratingOrder],
  ['0009-billing-run-request-keys', billingRunRequestKeys],
  ['0010-redundant-record-key', redundantRecordKey],
];

/** How many migrations the engine has: a current database has applied every one. */
export const migrationCount = migrations.length;

export const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: () => Promise.resolve(migrations.map(([name]) => name)),
  getMigrationName: (name) => name,
  getMigration: (name) => {
    const found = migrations.find(([n]) => n === name);
    if (!found) throw new Error(`unknown migration ${name}`);
    return Promise.resolve(found[1]);
  },
};
