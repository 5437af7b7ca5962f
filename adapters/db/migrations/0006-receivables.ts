import type { Knex } from 'knex';

/**
 * Accounts receivable: credit-note numbering, customer credit balances, and the constraints that
 * keep payments and credit notes honest.
 *
 * - Credit notes have their own gapless series per issuer and year (CN-2026-000001), so the INV
 *   series stays contiguous for the invoices themselves and a document's prefix says what it is.
 *   The series gets its own sequence table because invoice_number_sequences is keyed (and upserted
 *   ON CONFLICT) by (issuer, year) alone; the uniqueness of a document's sequence number becomes
 *   per kind.
 * - A credit note is negative and never changes status (it is not paid; it settles the invoice it
 *   credits).
 * - customer_credit_entries is a ledger of a customer's credit balance per currency: an overpayment
 *   or the part of a credit note beyond what was still open adds to it (positive); applying credit
 *   to an open invoice draws from it (negative). The balance is the sum; nothing is updated in
 *   place. Each entry names the invoice it came from or went to, so an invoice's open amount is
 *   total - payments - credit notes + its ledger entries, always between 0 and its total.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE credit_note_number_sequences (
      issuer_partner_id  bigint NOT NULL REFERENCES partners(id),
      year               integer NOT NULL,
      last_number        integer NOT NULL CHECK (last_number >= 0),
      PRIMARY KEY (issuer_partner_id, year)
    );

    ALTER TABLE invoices
      DROP CONSTRAINT invoices_issuer_partner_id_number_year_number_seq_key,
      ADD CONSTRAINT invoices_number_seq_per_kind UNIQUE (issuer_partner_id, kind, number_year, number_seq),
      ADD CONSTRAINT invoices_credit_note_negative CHECK (kind <> 'credit_note' OR total_pennies < 0),
      ADD CONSTRAINT invoices_credit_note_issued CHECK (kind <> 'credit_note' OR status = 'issued'),
      ADD CONSTRAINT invoices_credit_note_has_reason CHECK (kind <> 'credit_note' OR coalesce(length(btrim(reason)), 0) > 0),
      ADD CONSTRAINT invoices_void_has_reason CHECK (status <> 'void' OR coalesce(length(btrim(reason)), 0) > 0);

    ALTER TABLE payments
      ADD COLUMN recorded_by text,
      ADD CONSTRAINT payments_reference_present CHECK (length(btrim(reference)) BETWEEN 1 AND 200);

    CREATE TABLE customer_credit_entries (
      id                   bigserial PRIMARY KEY,
      customer_partner_id  bigint NOT NULL REFERENCES partners(id),
      currency             char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
      kind                 text NOT NULL CHECK (kind IN ('overpayment', 'credit_note_excess', 'applied')),
      amount_pennies       bigint NOT NULL CHECK (amount_pennies <> 0),
      -- the day the credit arose or was used, for balances and aging as of a date
      effective_on         date NOT NULL,
      -- the invoice that was overpaid or over-credited, or the one the credit was applied to
      invoice_id           bigint NOT NULL REFERENCES invoices(id),
      payment_id           bigint REFERENCES payments(id),
      credit_note_id       bigint REFERENCES invoices(id),
      created_by           text NOT NULL,
      created_at           timestamptz NOT NULL DEFAULT now(),
      CHECK ((kind = 'applied') = (amount_pennies < 0)),
      CHECK ((kind = 'overpayment') = (payment_id IS NOT NULL)),
      CHECK ((kind = 'credit_note_excess') = (credit_note_id IS NOT NULL))
    );
    CREATE INDEX customer_credit_entries_customer_idx ON customer_credit_entries (customer_partner_id, currency);
    CREATE INDEX customer_credit_entries_invoice_idx ON customer_credit_entries (invoice_id);
    -- A payment's excess and a credit note's excess are each credited once.
    CREATE UNIQUE INDEX customer_credit_entries_one_per_payment ON customer_credit_entries (payment_id) WHERE payment_id IS NOT NULL;
    CREATE UNIQUE INDEX customer_credit_entries_one_per_credit_note ON customer_credit_entries (credit_note_id) WHERE credit_note_id IS NOT NULL;

    CREATE INDEX billing_runs_queued_idx ON billing_runs (queued_at DESC, id DESC);
    CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP INDEX IF EXISTS audit_log_at_idx;
    DROP INDEX IF EXISTS billing_runs_queued_idx;
    DROP TABLE IF EXISTS customer_credit_entries;
    ALTER TABLE payments DROP CONSTRAINT payments_reference_present, DROP COLUMN recorded_by;
    ALTER TABLE invoices
      DROP CONSTRAINT invoices_void_has_reason,
      DROP CONSTRAINT invoices_credit_note_has_reason,
      DROP CONSTRAINT invoices_credit_note_issued,
      DROP CONSTRAINT invoices_credit_note_negative,
      DROP CONSTRAINT invoices_number_seq_per_kind,
      ADD CONSTRAINT invoices_issuer_partner_id_number_year_number_seq_key UNIQUE (issuer_partner_id, number_year, number_seq);
    DROP TABLE IF EXISTS credit_note_number_sequences;
  `);
}
