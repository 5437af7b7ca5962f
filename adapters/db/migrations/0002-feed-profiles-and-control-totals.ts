import type { Knex } from 'knex';

/**
 * Per-partner feed profiles, and the running quantity sum a file's chunks add up as they commit, so
 * control totals can be checked even when a file's parse resumed after a crash.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE partners ADD COLUMN feed_profile jsonb;
    ALTER TABLE usage_files ADD COLUMN quantity_read numeric NOT NULL DEFAULT 0;
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE usage_files DROP COLUMN quantity_read;
    ALTER TABLE partners DROP COLUMN feed_profile;
  `);
}
