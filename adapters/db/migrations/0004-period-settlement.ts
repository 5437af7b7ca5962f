import type { Knex } from 'knex';

/**
 * Period-close settlement, immutable rule versions, credit notes and queued billing runs.
 *
 * - A billing record either charges an account for one usage, or holds one period-close settlement
 *   of a partnership (minimum commitment, cap, fixed fee, voucher): then it has no usage and is
 *   keyed by (partnership, period, settlement, account), so settling a period twice finds the record
 *   and only ever adds the difference as a transaction.
 * - A rule version is never edited: importing different rules for the same effective date retires
 *   the old version (superseded_at) and adds a new one, so every transaction's rule_version_id keeps
 *   naming the rules that produced it.
 * - A credit note is an invoice of kind credit_note that references the invoice it corrects; a
 *   voided invoice keeps its number and says when and why it was voided.
 * - A billing run is recorded as soon as it is requested (queued), so its status can be read
 *   before a worker picks it up and a lost job can be found and re-enqueued.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE billing_records
      ALTER COLUMN usage_id DROP NOT NULL,
      ALTER COLUMN product_id DROP NOT NULL,
      ADD COLUMN settlement text CHECK (settlement ~ '^[a-z_]+(:[A-Za-z0-9_.-]+){0,1}$'),
      ADD CONSTRAINT billing_records_usage_or_settlement CHECK ((usage_id IS NULL) = (settlement IS NOT NULL)),
      ADD CONSTRAINT billing_records_usage_has_product CHECK (usage_id IS NULL OR product_id IS NOT NULL);
    CREATE UNIQUE INDEX billing_records_one_settlement ON billing_records (partnership_id, period, settlement, account_id) WHERE settlement IS NOT NULL;

    ALTER TABLE rule_versions
      ADD COLUMN superseded_at timestamptz,
      DROP CONSTRAINT rule_versions_partnership_id_effective_from_key;
    CREATE UNIQUE INDEX rule_versions_live ON rule_versions (partnership_id, effective_from) WHERE superseded_at IS NULL;

    ALTER TABLE invoices
      ADD COLUMN credits_invoice_id bigint REFERENCES invoices(id),
      ADD COLUMN reason text,
      ADD COLUMN voided_at timestamptz,
      ADD CONSTRAINT invoices_credit_note_references CHECK ((kind = 'credit_note') = (credits_invoice_id IS NOT NULL)),
      ADD CONSTRAINT invoices_void_has_time CHECK ((status = 'void') = (voided_at IS NOT NULL));
    CREATE INDEX invoices_credits_idx ON invoices (credits_invoice_id) WHERE credits_invoice_id IS NOT NULL;

    ALTER TABLE billing_runs
      DROP CONSTRAINT billing_runs_status_check,
      ADD CONSTRAINT billing_runs_status_check CHECK (status IN ('queued', 'running', 'completed', 'failed')),
      ADD COLUMN queued_at timestamptz NOT NULL DEFAULT now(),
      ALTER COLUMN started_at DROP NOT NULL,
      ALTER COLUMN started_at DROP DEFAULT;
    CREATE INDEX billing_runs_unfinished_idx ON billing_runs (status) WHERE status IN ('queued', 'running');
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP INDEX billing_runs_unfinished_idx;
    UPDATE billing_runs SET started_at = queued_at WHERE started_at IS NULL;
    ALTER TABLE billing_runs ALTER COLUMN started_at SET DEFAULT now(), ALTER COLUMN started_at SET NOT NULL, DROP COLUMN queued_at,
      DROP CONSTRAINT billing_runs_status_check,
      ADD CONSTRAINT billing_runs_status_check CHECK (status IN ('running', 'completed', 'failed'));
    DROP INDEX invoices_credits_idx;
    ALTER TABLE invoices DROP CONSTRAINT invoices_void_has_time, DROP CONSTRAINT invoices_credit_note_references,
      DROP COLUMN voided_at, DROP COLUMN reason, DROP COLUMN credits_invoice_id;
    DROP INDEX rule_versions_live;
    DELETE FROM rule_versions v WHERE superseded_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.rule_version_id = v.id);
    ALTER TABLE rule_versions ADD CONSTRAINT rule_versions_partnership_id_effective_from_key UNIQUE (partnership_id, effective_from),
      DROP COLUMN superseded_at;
    DROP INDEX billing_records_one_settlement;
    ALTER TABLE billing_records DROP CONSTRAINT billing_records_usage_has_product, DROP CONSTRAINT billing_records_usage_or_settlement,
      DROP COLUMN settlement;
  `);
}
