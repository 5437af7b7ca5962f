import type { Db } from '../../adapters/db/database';

/**
 * The bookkeeping invariants every run must leave true, checked with SQL against the database.
 * Each query returns the rows that break the invariant, so a failure shows exactly what is wrong.
 */
export async function findInvariantViolations(db: Db): Promise<Record<string, unknown[]>> {
  const q = async (sql: string) => (await db.raw<{ rows: unknown[] }>(sql)).rows;
  return {
    // A record's charge is the sum of its transactions: every record has at least one.
    recordsWithoutTransactions: await q(`
      SELECT r.id FROM billing_records r WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.billing_record_id = r.id)`),
    // The view and a direct sum agree (the charge is never stored anywhere else).
    recordChargeMismatch: await q(`
      SELECT c.billing_record_id FROM billing_record_charges c
      WHERE c.charge_pennies <> (SELECT coalesce(sum(amount_pennies), 0) FROM transactions t WHERE t.billing_record_id = c.billing_record_id)`),
    // Every stored usage is rated exactly once per account it charges, with split percentages adding to 100.
    usagesNotRatedOrOverSplit: await q(`
      SELECT u.id, u.external_id, coalesce(sum(r.split_percent), 0) AS percent
      FROM product_usages u
      JOIN usage_files f ON f.id = u.source_file_id AND f.status = 'rated'
      LEFT JOIN billing_records r ON r.usage_id = u.id
      GROUP BY u.id HAVING coalesce(sum(r.split_percent), 0) <> 100`),
    // Split quantities add back up to the usage's quantity.
    splitQuantityMismatch: await q(`
      SELECT u.id FROM product_usages u JOIN billing_records r ON r.usage_id = u.id
      GROUP BY u.id, u.quantity HAVING sum(r.quantity) <> u.quantity`),
    // Invoice total = sum of its lines = sum of the transactions it claimed.
    invoiceTotalVsLines: await q(`
      SELECT i.id, i.total_pennies, (SELECT coalesce(sum(amount_pennies), 0) FROM invoice_lines l WHERE l.invoice_id = i.id) AS lines
      FROM invoices i WHERE i.total_pennies <> (SELECT coalesce(sum(amount_pennies), 0) FROM invoice_lines l WHERE l.invoice_id = i.id)`),
    invoiceTotalVsTransactions: await q(`
      SELECT i.id FROM invoices i
      WHERE i.kind = 'invoice' AND i.total_pennies <> (SELECT coalesce(sum(amount_pennies), 0) FROM transactions t WHERE t.invoice_id = i.id)`),
    // A credit note claims no transactions: it mirrors lines of the invoice it credits.
    creditNotesWithTransactions: await q(`SELECT t.id FROM transactions t JOIN invoices i ON i.id = t.invoice_id WHERE i.kind = 'credit_note'`),
    // Transactions on an invoice belong to its partnership and to its period or an earlier one.
    transactionsOnWrongInvoice: await q(`
      SELECT t.id FROM transactions t JOIN billing_records r ON r.id = t.billing_record_id JOIN invoices i ON i.id = t.invoice_id
      WHERE r.partnership_id <> i.partnership_id OR r.period > i.period`),
    // No usage is billed twice: one external id per partner, one record per usage and account.
    duplicateUsages: await q(`SELECT partner_id, external_id FROM product_usages WHERE superseded_at IS NULL GROUP BY 1, 2 HAVING count(*) > 1`),
    // A superseded usage is fully reversed: its records net to zero.
    supersededNotReversed: await q(`
      SELECT u.id, sum(t.amount_pennies) AS net FROM product_usages u
      JOIN billing_records r ON r.usage_id = u.id JOIN transactions t ON t.billing_record_id = r.id
      WHERE u.superseded_at IS NOT NULL GROUP BY u.id HAVING sum(t.amount_pennies) <> 0`),
    duplicateRecords: await q(`SELECT usage_id, account_id FROM billing_records WHERE usage_id IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1`),
    // Numbers are gapless per issuer, series (invoices, credit notes) and year.
    invoiceNumberGaps: await q(`
      SELECT issuer_partner_id, kind, number_year FROM invoices GROUP BY 1, 2, 3 HAVING max(number_seq) <> count(*)`),
    // One email per invoice.
    duplicateDeliveries: await q(`SELECT invoice_id FROM email_deliveries WHERE purpose = 'invoice' GROUP BY 1 HAVING count(*) > 1`),
  };
}
