import type { Knex } from 'knex';

/**
 * A billing run may carry a request key that names the request it answers; PostgreSQL holds one
 * run per key. The monthly scheduler's close of a period is keyed `schedule:<period>`, so its job
 * retried, enqueued twice, or fired again on the next of its days records one run for the period,
 * not one per attempt. Runs requested by people (API, CLI) have no key: each request is a run.
 *
 * Runs the scheduler recorded before this migration: the first of each period takes the key, so
 * the next firing carries on with it instead of adding another.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE billing_runs ADD COLUMN request_key text CHECK (request_key <> '');
    CREATE UNIQUE INDEX billing_runs_one_per_request_key ON billing_runs (request_key) WHERE request_key IS NOT NULL;
    UPDATE billing_runs r SET request_key = 'schedule:' || r.period
    WHERE r.id IN (SELECT min(id) FROM billing_runs WHERE requested_by = 'scheduler' GROUP BY period);
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP INDEX billing_runs_one_per_request_key;
    ALTER TABLE billing_runs DROP COLUMN request_key;
  `);
}
