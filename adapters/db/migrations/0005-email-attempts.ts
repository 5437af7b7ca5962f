import type { Knex } from 'knex';

/**
 * The communication log: one row per attempt to deliver an email, kept forever beside the delivery
 * (which only holds the latest state). Accounting asks "what did we send, to whom, when, and what
 * did their server say?"; this table answers it for every attempt, resends included.
 *
 * An attempt row is written when the attempt starts (in the transaction that moves the delivery to
 * `sending`) with no outcome yet, and finished with the outcome and the server's reply. A worker
 * that dies in between leaves an unfinished row; the next look at the delivery finishes it as
 * `unknown`, so the log shows the interrupted attempt rather than hiding it.
 *
 * Operators resend on purpose: the request is kept on the delivery (who, when) until the attempt
 * that carries it starts, and that attempt is logged with trigger `resend` and the requester.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE email_attempts (
      id            bigserial PRIMARY KEY,
      delivery_id   bigint NOT NULL REFERENCES email_deliveries(id),
      -- the delivery's attempt counter for this attempt: 1, 2, ...
      attempt       integer NOT NULL CHECK (attempt > 0),
      trigger       text NOT NULL CHECK (trigger IN ('automatic', 'resend')),
      requested_by  text,
      transport     text NOT NULL,
      sender        text NOT NULL,
      recipients    text[] NOT NULL,
      subject       text NOT NULL,
      message_id    text NOT NULL,
      attempted_at  timestamptz NOT NULL DEFAULT now(),
      finished_at   timestamptz,
      -- NULL while the attempt is in progress
      outcome       text CHECK (outcome IN ('sent', 'transient_failure', 'permanent_failure', 'unknown')),
      -- the SMTP reply code, when the outcome came from a server reply
      reply_code    integer,
      -- the server's reply to the message, or the error text
      reply         text,
      rejected      text[] NOT NULL DEFAULT '{}',
      UNIQUE (delivery_id, attempt),
      CHECK ((outcome IS NULL) = (finished_at IS NULL)),
      CHECK ((trigger = 'resend') = (requested_by IS NOT NULL))
    );
    CREATE INDEX email_attempts_unfinished_idx ON email_attempts (delivery_id) WHERE outcome IS NULL;

    ALTER TABLE email_deliveries
      ADD COLUMN resend_requested_by text,
      ADD COLUMN resend_requested_at timestamptz,
      ADD CONSTRAINT email_deliveries_resend_request CHECK ((resend_requested_by IS NULL) = (resend_requested_at IS NULL));
    CREATE INDEX email_deliveries_invoice_idx ON email_deliveries (invoice_id);
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    DROP INDEX email_deliveries_invoice_idx;
    ALTER TABLE email_deliveries DROP CONSTRAINT email_deliveries_resend_request,
      DROP COLUMN resend_requested_at, DROP COLUMN resend_requested_by;
    DROP TABLE email_attempts;
  `);
}
