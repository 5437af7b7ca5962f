import type { Knex } from 'knex';

/**
 * The whole foundation schema. Invariants that protect money live here as constraints, so that
 * "exactly once" never depends on a queue: unique (partner, sha256) for live files, unique
 * (partner, external id) for usages, one live billing record per usage and account, one invoice per
 * partnership and period, gapless invoice numbers per issuer and year, one delivery per invoice.
 * Money is bigint pennies; quantities and prices are numeric (exact).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE partners (
      id          bigserial PRIMARY KEY,
      code        text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9_-]{1,64}$'),
      kind        text NOT NULL CHECK (kind IN ('company', 'individual')),
      name        text NOT NULL CHECK (length(name) > 0),
      email       text,
      address     text,
      created_at  timestamptz NOT NULL DEFAULT now(),
      updated_at  timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE products (
      id              bigserial PRIMARY KEY,
      code            text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9_.-]{1,64}$'),
      name            text NOT NULL,
      unit            text NOT NULL,
      -- digits allowed after the point in a quantity of this product
      quantity_scale  integer NOT NULL DEFAULT 6 CHECK (quantity_scale BETWEEN 0 AND 12),
      created_at      timestamptz NOT NULL DEFAULT now(),
      updated_at      timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE partnerships (
      id                   bigserial PRIMARY KEY,
      code                 text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9_-]{1,64}$'),
      provider_partner_id  bigint NOT NULL REFERENCES partners(id),
      customer_partner_id  bigint NOT NULL REFERENCES partners(id),
      currency             char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
      time_zone            text NOT NULL,
      contract_start       date NOT NULL,
      contract_end         date,
      invoice_recipients   text[] NOT NULL DEFAULT '{}',
      payment_terms_days   integer NOT NULL DEFAULT 30 CHECK (payment_terms_days BETWEEN 0 AND 365),
      rounding_mode        text NOT NULL DEFAULT 'half_up' CHECK (rounding_mode IN ('half_up', 'half_even')),
      allow_credits        boolean NOT NULL DEFAULT false,
      default_account_id   bigint,
      created_at           timestamptz NOT NULL DEFAULT now(),
      updated_at           timestamptz NOT NULL DEFAULT now(),
      CHECK (provider_partner_id <> customer_partner_id),
      CHECK (contract_end IS NULL OR contract_end >= contract_start)
    );
    CREATE INDEX partnerships_customer_idx ON partnerships (customer_partner_id);

    CREATE TABLE accounts (
      id              bigserial PRIMARY KEY,
      partnership_id  bigint NOT NULL REFERENCES partnerships(id),
      code            text NOT NULL CHECK (length(code) BETWEEN 1 AND 64),
      name            text NOT NULL,
      kind            text NOT NULL DEFAULT 'expense_code' CHECK (kind IN ('expense_code', 'purchase_order', 'cost_centre')),
      created_at      timestamptz NOT NULL DEFAULT now(),
      updated_at      timestamptz NOT NULL DEFAULT now(),
      UNIQUE (partnership_id, code),
      UNIQUE (partnership_id, id)
    );
    -- The default account must belong to the same partnership.
    ALTER TABLE partnerships ADD CONSTRAINT partnerships_default_account_fk
      FOREIGN KEY (id, default_account_id) REFERENCES accounts (partnership_id, id) DEFERRABLE INITIALLY DEFERRED;

    -- A split divides a user's usage (optionally of one product) over accounts by percentage.
    CREATE TABLE account_splits (
      id              bigserial PRIMARY KEY,
      partnership_id  bigint NOT NULL REFERENCES partnerships(id),
      user_ref        text NOT NULL,
      product_id      bigint REFERENCES products(id),
      account_id      bigint NOT NULL,
      percent         numeric(9, 6) NOT NULL CHECK (percent > 0 AND percent <= 100),
      position        integer NOT NULL,
      created_at      timestamptz NOT NULL DEFAULT now(),
      FOREIGN KEY (partnership_id, account_id) REFERENCES accounts (partnership_id, id)
    );
    CREATE UNIQUE INDEX account_splits_key ON account_splits (partnership_id, user_ref, coalesce(product_id, 0), account_id);

    CREATE TABLE rule_versions (
      id              bigserial PRIMARY KEY,
      partnership_id  bigint NOT NULL REFERENCES partnerships(id),
      effective_from  date NOT NULL,
      rules           jsonb NOT NULL,
      created_at      timestamptz NOT NULL DEFAULT now(),
      UNIQUE (partnership_id, effective_from)
    );

    CREATE TABLE usage_files (
      id                    bigserial PRIMARY KEY,
      partner_id            bigint REFERENCES partners(id),
      -- the partner code as the file declared it, kept even when no such partner exists
      partner_code          text NOT NULL,
      name                  text NOT NULL,
      sha256                char(64) NOT NULL,
      size_bytes            bigint NOT NULL CHECK (size_bytes >= 0),
      format                text NOT NULL,
      source                text NOT NULL CHECK (source IN ('inbox', 'api', 'cli')),
      stored_path           text NOT NULL,
      status                text NOT NULL CHECK (status IN ('received', 'parsing', 'parsed', 'rated', 'failed', 'duplicate')),
      duplicate_of_file_id  bigint REFERENCES usage_files(id),
      records_committed     integer NOT NULL DEFAULT 0,
      rows_read             integer NOT NULL DEFAULT 0,
      rows_accepted         integer NOT NULL DEFAULT 0,
      rows_rejected         integer NOT NULL DEFAULT 0,
      rows_duplicate        integer NOT NULL DEFAULT 0,
      error                 text,
      received_at           timestamptz NOT NULL DEFAULT now(),
      parse_started_at      timestamptz,
      parsed_at             timestamptz,
      rated_at              timestamptz,
      failed_at             timestamptz,
      updated_at            timestamptz NOT NULL DEFAULT now(),
      CHECK ((status = 'duplicate') = (duplicate_of_file_id IS NOT NULL)),
      CHECK (status NOT IN ('received', 'parsing', 'parsed', 'rated') OR partner_id IS NOT NULL)
    );
    -- The same bytes from the same partner are ingested once. Duplicates and failed files are kept
    -- as records but leave the index, so a failed file can be dropped again after a fix.
    CREATE UNIQUE INDEX usage_files_live_sha ON usage_files (partner_id, sha256) WHERE status NOT IN ('duplicate', 'failed');
    CREATE INDEX usage_files_status_idx ON usage_files (status);

    CREATE TABLE usage_file_errors (
      id          bigserial PRIMARY KEY,
      file_id     bigint NOT NULL REFERENCES usage_files(id),
      record      integer,
      line        integer,
      field       text,
      code        text NOT NULL,
      message     text NOT NULL,
      raw_value   text,
      created_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX usage_file_errors_file_idx ON usage_file_errors (file_id, record);

    CREATE TABLE product_usages (
      id              bigserial PRIMARY KEY,
      partner_id      bigint NOT NULL REFERENCES partners(id),
      partnership_id  bigint NOT NULL REFERENCES partnerships(id),
      external_id     text NOT NULL,
      product_id      bigint NOT NULL REFERENCES products(id),
      user_ref        text NOT NULL,
      account_id      bigint,
      quantity        numeric NOT NULL,
      started_at      timestamptz NOT NULL,
      ended_at        timestamptz,
      -- calendar month of started_at in the partnership's time zone
      period          char(7) NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
      description     text,
      source_file_id  bigint NOT NULL REFERENCES usage_files(id),
      source_record   integer NOT NULL,
      source_line     integer,
      created_at      timestamptz NOT NULL DEFAULT now(),
      UNIQUE (partner_id, external_id),
      FOREIGN KEY (partnership_id, account_id) REFERENCES accounts (partnership_id, id),
      CHECK (ended_at IS NULL OR ended_at >= started_at)
    );
    CREATE INDEX product_usages_file_idx ON product_usages (source_file_id, id);
    CREATE INDEX product_usages_partnership_period_idx ON product_usages (partnership_id, period);

    CREATE TABLE billing_runs (
      id           bigserial PRIMARY KEY,
      period       char(7) NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
      status       text NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
      requested_by text NOT NULL,
      invoices_created integer NOT NULL DEFAULT 0,
      summary      jsonb,
      error        text,
      started_at   timestamptz NOT NULL DEFAULT now(),
      finished_at  timestamptz
    );

    CREATE TABLE invoice_number_sequences (
      issuer_partner_id  bigint NOT NULL REFERENCES partners(id),
      year               integer NOT NULL,
      last_number        integer NOT NULL CHECK (last_number >= 0),
      PRIMARY KEY (issuer_partner_id, year)
    );

    CREATE TABLE invoices (
      id                   bigserial PRIMARY KEY,
      partnership_id       bigint NOT NULL REFERENCES partnerships(id),
      issuer_partner_id    bigint NOT NULL REFERENCES partners(id),
      customer_partner_id  bigint NOT NULL REFERENCES partners(id),
      period               char(7) NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
      kind                 text NOT NULL DEFAULT 'invoice' CHECK (kind IN ('invoice', 'credit_note')),
      status               text NOT NULL CHECK (status IN ('issued', 'partially_paid', 'paid', 'void')),
      number               text NOT NULL,
      number_year          integer NOT NULL,
      number_seq           integer NOT NULL,
      currency             char(3) NOT NULL,
      issue_date           date NOT NULL,
      due_date             date NOT NULL,
      total_pennies        bigint NOT NULL,
      billing_run_id       bigint REFERENCES billing_runs(id),
      created_at           timestamptz NOT NULL DEFAULT now(),
      UNIQUE (issuer_partner_id, number),
      UNIQUE (issuer_partner_id, number_year, number_seq),
      CHECK (due_date >= issue_date)
    );
    -- Billing a period twice finds the invoice already there: the second run creates nothing.
    CREATE UNIQUE INDEX invoices_one_per_period ON invoices (partnership_id, period) WHERE kind = 'invoice';

    CREATE TABLE invoice_lines (
      id              bigserial PRIMARY KEY,
      invoice_id      bigint NOT NULL REFERENCES invoices(id),
      position        integer NOT NULL,
      account_id      bigint NOT NULL REFERENCES accounts(id),
      product_id      bigint REFERENCES products(id),
      usage_period    char(7) NOT NULL,
      kind            text NOT NULL,
      description     text NOT NULL,
      quantity        numeric NOT NULL,
      unit_price      numeric,
      amount_pennies  bigint NOT NULL,
      UNIQUE (invoice_id, position)
    );

    -- A billing record charges one account for one usage. Its charge is the sum of its
    -- transactions and is deliberately not stored: it cannot drift from them.
    CREATE TABLE billing_records (
      id              bigserial PRIMARY KEY,
      usage_id        bigint NOT NULL REFERENCES product_usages(id),
      partnership_id  bigint NOT NULL REFERENCES partnerships(id),
      account_id      bigint NOT NULL,
      product_id      bigint NOT NULL REFERENCES products(id),
      period          char(7) NOT NULL,
      -- this account's share of the usage's quantity (exact)
      quantity        numeric NOT NULL,
      split_percent   numeric(9, 6) NOT NULL DEFAULT 100 CHECK (split_percent > 0 AND split_percent <= 100),
      created_at      timestamptz NOT NULL DEFAULT now(),
      FOREIGN KEY (partnership_id, account_id) REFERENCES accounts (partnership_id, id),
      UNIQUE (usage_id, account_id)
    );
    CREATE INDEX billing_records_partnership_period_idx ON billing_records (partnership_id, period);

    CREATE TABLE transactions (
      id                 bigserial PRIMARY KEY,
      billing_record_id  bigint NOT NULL REFERENCES billing_records(id),
      kind               text NOT NULL CHECK (kind IN ('charge', 'discount', 'surcharge', 'adjustment', 'credit', 'fee')),
      amount_pennies     bigint NOT NULL,
      description        text NOT NULL,
      unit_price         numeric,
      rule_version_id    bigint REFERENCES rule_versions(id),
      invoice_id         bigint REFERENCES invoices(id),
      created_at         timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX transactions_record_idx ON transactions (billing_record_id);
    CREATE INDEX transactions_uninvoiced_idx ON transactions (billing_record_id) WHERE invoice_id IS NULL;
    CREATE INDEX transactions_invoice_idx ON transactions (invoice_id);

    CREATE VIEW billing_record_charges AS
      SELECT r.id AS billing_record_id, coalesce(sum(t.amount_pennies), 0)::bigint AS charge_pennies
      FROM billing_records r LEFT JOIN transactions t ON t.billing_record_id = r.id
      GROUP BY r.id;

    CREATE TABLE payments (
      id              bigserial PRIMARY KEY,
      invoice_id      bigint NOT NULL REFERENCES invoices(id),
      amount_pennies  bigint NOT NULL CHECK (amount_pennies > 0),
      received_on     date NOT NULL,
      reference       text NOT NULL,
      created_at      timestamptz NOT NULL DEFAULT now(),
      UNIQUE (invoice_id, reference)
    );

    CREATE TABLE email_deliveries (
      id            bigserial PRIMARY KEY,
      invoice_id    bigint NOT NULL REFERENCES invoices(id),
      purpose       text NOT NULL DEFAULT 'invoice' CHECK (purpose IN ('invoice', 'resend')),
      recipients    text[] NOT NULL CHECK (cardinality(recipients) > 0),
      subject       text NOT NULL,
      -- fixed before the first attempt, so a resend after a crash is recognisably the same message
      message_id    text NOT NULL UNIQUE,
      status        text NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'unknown')),
      attempts      integer NOT NULL DEFAULT 0,
      last_error    text,
      last_response text,
      transport     text,
      created_at    timestamptz NOT NULL DEFAULT now(),
      updated_at    timestamptz NOT NULL DEFAULT now(),
      sent_at       timestamptz
    );
    CREATE UNIQUE INDEX email_deliveries_one_per_invoice ON email_deliveries (invoice_id) WHERE purpose = 'invoice';
    CREATE INDEX email_deliveries_status_idx ON email_deliveries (status);

    CREATE TABLE audit_log (
      id         bigserial PRIMARY KEY,
      at         timestamptz NOT NULL DEFAULT now(),
      actor      text NOT NULL,
      action     text NOT NULL,
      entity     text NOT NULL,
      entity_id  text NOT NULL,
      before     jsonb,
      after      jsonb
    );
    CREATE INDEX audit_log_entity_idx ON audit_log (entity, entity_id);
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP TABLE IF EXISTS audit_log, email_deliveries, payments, transactions, billing_records,
      invoice_lines, invoices, invoice_number_sequences, billing_runs, product_usages,
      usage_file_errors, usage_files, rule_versions, account_splits, accounts, partnerships,
      products, partners CASCADE;
    DROP VIEW IF EXISTS billing_record_charges;
  `);
}
