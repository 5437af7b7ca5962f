import type { Knex } from 'knex';

/**
 * A corrected file can supersede an earlier one. Nothing is deleted: a usage that changed or was
 * withdrawn keeps its row and records, is marked superseded, and gets compensating transactions;
 * its replacement is a new usage row. So (partner, usage id) is unique among live usages only.
 * Rows of a superseding file that collide with the earlier file's usages wait in
 * superseding_rows until the whole file has been read and checked, then apply in one transaction.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE product_usages
      ADD COLUMN superseded_at timestamptz,
      ADD COLUMN superseded_by_file_id bigint REFERENCES usage_files(id),
      DROP CONSTRAINT product_usages_partner_id_external_id_key;
    CREATE UNIQUE INDEX product_usages_live_key ON product_usages (partner_id, external_id) WHERE superseded_at IS NULL;

    ALTER TABLE usage_files
      ADD COLUMN supersedes_file_id bigint REFERENCES usage_files(id),
      ADD COLUMN rows_unchanged integer NOT NULL DEFAULT 0,
      ADD COLUMN rows_replaced integer NOT NULL DEFAULT 0,
      ADD COLUMN rows_withdrawn integer NOT NULL DEFAULT 0,
      DROP CONSTRAINT usage_files_status_check,
      ADD CONSTRAINT usage_files_status_check
        CHECK (status IN ('received', 'parsing', 'parsed', 'rated', 'failed', 'duplicate', 'superseded')),
      ADD CONSTRAINT usage_files_not_self_superseding CHECK (supersedes_file_id IS NULL OR supersedes_file_id <> id);
    -- A file is superseded at most once.
    CREATE UNIQUE INDEX usage_files_superseded_once ON usage_files (supersedes_file_id) WHERE supersedes_file_id IS NOT NULL AND status NOT IN ('failed', 'duplicate');

    CREATE TABLE superseding_rows (
      file_id         bigint NOT NULL REFERENCES usage_files(id),
      external_id     text NOT NULL,
      record          integer NOT NULL,
      line            integer,
      partnership_id  bigint NOT NULL,
      product_id      bigint NOT NULL,
      user_ref        text NOT NULL,
      account_id      bigint,
      quantity        numeric NOT NULL,
      started_at      timestamptz NOT NULL,
      ended_at        timestamptz,
      period          char(7) NOT NULL,
      description     text,
      PRIMARY KEY (file_id, external_id)
    );
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP TABLE superseding_rows;
    DROP INDEX usage_files_superseded_once;
    ALTER TABLE usage_files DROP CONSTRAINT usage_files_not_self_superseding, DROP CONSTRAINT usage_files_status_check,
      ADD CONSTRAINT usage_files_status_check CHECK (status IN ('received', 'parsing', 'parsed', 'rated', 'failed', 'duplicate')),
      DROP COLUMN rows_withdrawn, DROP COLUMN rows_replaced, DROP COLUMN rows_unchanged, DROP COLUMN supersedes_file_id;
    DROP INDEX product_usages_live_key;
    ALTER TABLE product_usages ADD CONSTRAINT product_usages_partner_id_external_id_key UNIQUE (partner_id, external_id),
      DROP COLUMN superseded_by_file_id, DROP COLUMN superseded_at;
  `);
}
