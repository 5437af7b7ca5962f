import type { Knex } from 'knex';

/**
 * Big files in chunks that several workers share.
 *
 * - ingest_chunks: a file's plan, made once by a streaming pre-pass: byte ranges of whole records.
 *   A chunk is claimed for a while (a lease, renewed as it is worked on, so the chunk of a worker
 *   that died is taken over once the lease runs out) and committed exactly once: its status changes
 *   to committed in the transaction that writes its usages, with the file row locked, and chunks
 *   commit in order, so the file reads exactly as if one worker had read it from start to end.
 * - usage_files.records_total / chunks_total / chunks_committed: progress, rows done of total.
 * - held_duplicate_rows: a row reported as a duplicate of a usage from a file that was still being
 *   ingested, kept whole. If that file is then rejected (its usages removed), the held row becomes
 *   the usage instead, so a usage id is never left billed nowhere.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE usage_files
      ADD COLUMN records_total integer CHECK (records_total >= 0),
      ADD COLUMN chunks_total integer CHECK (chunks_total >= 1),
      ADD COLUMN chunks_committed integer NOT NULL DEFAULT 0 CHECK (chunks_committed >= 0);

    CREATE TABLE ingest_chunks (
      file_id        bigint NOT NULL REFERENCES usage_files(id),
      chunk          integer NOT NULL CHECK (chunk >= 1),
      start_byte     bigint NOT NULL CHECK (start_byte >= 0),
      end_byte       bigint NOT NULL,
      first_record   integer NOT NULL CHECK (first_record >= 1),
      records        integer NOT NULL CHECK (records >= 0),
      start_line     integer NOT NULL CHECK (start_line >= 1),
      -- what later chunks read in front of their own bytes (the CSV header, the XML root start tag)
      prefix_start   bigint,
      prefix_end     bigint,
      status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'committed')),
      claimed_by     text,
      claimed_until  timestamptz,
      attempts       integer NOT NULL DEFAULT 0,
      -- control totals the file declared, found in this chunk (a CSV trailer, XML root attributes)
      control        jsonb,
      committed_at   timestamptz,
      PRIMARY KEY (file_id, chunk),
      CHECK (end_byte >= start_byte),
      CHECK ((status = 'committed') = (committed_at IS NOT NULL))
    );

    CREATE TABLE held_duplicate_rows (
      file_id           bigint NOT NULL REFERENCES usage_files(id),
      record            integer NOT NULL,
      line              integer,
      -- the file, still being ingested when this row arrived, whose usage the row repeated
      original_file_id  bigint NOT NULL REFERENCES usage_files(id),
      partner_id        bigint NOT NULL,
      external_id       text NOT NULL,
      partnership_id    bigint NOT NULL,
      product_id        bigint NOT NULL,
      user_ref          text NOT NULL,
      account_id        bigint,
      quantity          numeric NOT NULL,
      started_at        timestamptz NOT NULL,
      ended_at          timestamptz,
      period            char(7) NOT NULL,
      description       text,
      PRIMARY KEY (file_id, record)
    );
    CREATE INDEX held_duplicate_rows_original_idx ON held_duplicate_rows (original_file_id);
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP TABLE held_duplicate_rows;
    DROP TABLE ingest_chunks;
    ALTER TABLE usage_files DROP COLUMN chunks_committed, DROP COLUMN chunks_total, DROP COLUMN records_total;
  `);
}
