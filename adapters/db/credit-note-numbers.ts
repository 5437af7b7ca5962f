import type { Knex } from 'knex';

/**
 * The next credit-note number for the issuer and year (its own series, CN-YYYY-NNNNNN). Like
 * nextInvoiceNumber, the upsert's row lock is held until the credit note commits, and a rollback
 * returns the number, so the series stays gapless.
 */
export async function nextCreditNoteNumber(tx: Knex.Transaction, issuerId: string, year: number): Promise<number> {
  const { rows } = await tx.raw<{ rows: { last_number: number }[] }>(
    `INSERT INTO credit_note_number_sequences (issuer_partner_id, year, last_number) VALUES (?, ?, 1)
     ON CONFLICT (issuer_partner_id, year) DO UPDATE SET last_number = credit_note_number_sequences.last_number + 1
     RETURNING last_number`,
    [issuerId, year],
  );
  return rows[0]!.last_number;
}
