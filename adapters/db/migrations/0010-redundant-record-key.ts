import type { Knex } from 'knex';

/**
 * billing_records checked its partnership twice per row: once by its own foreign key to
 * partnerships, once by the (partnership_id, account_id) key to accounts, whose partnership_id
 * references partnerships. The second implies the first (both columns are NOT NULL), so the first
 * is dropped: one lookup and one row lock less for each of the million records a big file writes.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE billing_records DROP CONSTRAINT billing_records_partnership_id_fkey');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE billing_records ADD CONSTRAINT billing_records_partnership_id_fkey FOREIGN KEY (partnership_id) REFERENCES partnerships(id)');
}
