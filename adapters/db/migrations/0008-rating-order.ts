import type { Knex } from 'knex';

/**
 * Rating by position in bulk. The period order of a group (partnership, product, month; start time,
 * then usage id byte by byte) gets an index that also carries the quantity, so "how much came
 * before this page" is one index range sum and the page's own positions one window over its range.
 * rating_groups keeps, per group, the latest usage rated so far: a page that starts after it cannot
 * move any rated usage along the tiers, which is the common case (files arrive in time order), and
 * only a page that starts earlier looks for rated usages to re-rate.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE INDEX product_usages_group_order ON product_usages (partnership_id, product_id, period, started_at, external_id COLLATE "C")
      INCLUDE (quantity) WHERE superseded_at IS NULL;
    DROP INDEX product_usages_partnership_period_idx;

    CREATE TABLE rating_groups (
      partnership_id     bigint NOT NULL REFERENCES partnerships(id),
      product_id         bigint NOT NULL REFERENCES products(id),
      period             char(7) NOT NULL,
      last_started_at    timestamptz NOT NULL,
      last_external_id   text COLLATE "C" NOT NULL,
      PRIMARY KEY (partnership_id, product_id, period)
    );
    -- Every index on transactions is paid on each of millions of inserts. Uninvoiced transactions
    -- are found through their records (transactions_record_idx), and the invoice index only needs
    -- the invoiced ones, so new transactions (not yet invoiced) skip both.
    DROP INDEX transactions_uninvoiced_idx;
    DROP INDEX transactions_invoice_idx;
    CREATE INDEX transactions_invoice_idx ON transactions (invoice_id) WHERE invoice_id IS NOT NULL;

    -- Groups rated before this migration: their latest rated usage.
    INSERT INTO rating_groups (partnership_id, product_id, period, last_started_at, last_external_id)
    SELECT DISTINCT ON (u.partnership_id, u.product_id, u.period) u.partnership_id, u.product_id, u.period, u.started_at, u.external_id COLLATE "C"
    FROM product_usages u
    WHERE u.superseded_at IS NULL AND EXISTS (SELECT 1 FROM billing_records r WHERE r.usage_id = u.id)
    ORDER BY u.partnership_id, u.product_id, u.period, u.started_at DESC, u.external_id COLLATE "C" DESC;
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP TABLE rating_groups;
    DROP INDEX transactions_invoice_idx;
    CREATE INDEX transactions_invoice_idx ON transactions (invoice_id);
    CREATE INDEX transactions_uninvoiced_idx ON transactions (billing_record_id) WHERE invoice_id IS NULL;
    CREATE INDEX product_usages_partnership_period_idx ON product_usages (partnership_id, period);
    DROP INDEX product_usages_group_order;
  `);
}
