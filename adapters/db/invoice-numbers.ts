import type { Knex } from 'knex';

/** The next number for the issuer and year; the row lock it takes is held until the invoice commits. */
export async function nextInvoiceNumber(tx: Knex.Transaction, issuerId: string, year: number): Promise<number> {
  const { rows } = await tx.raw<{ rows: { last_number: number }[] }>(
    `INSERT INTO invoice_number_sequences (issuer_partner_id, year, last_number) VALUES (?, ?, 1)
     ON CONFLICT (issuer_partner_id, year) DO UPDATE SET last_number = invoice_number_sequences.last_number + 1
     RETURNING last_number`,
    [issuerId, year],
  );
  return rows[0]!.last_number;
}
