import type { Db } from '../../adapters/db/database';
import { findInvariantViolations } from '../support/invariants';
import type { ReceivedInvoiceMail } from './mailbox';

/**
 * What a run leaves behind, keyed by what a person would recognise across two databases (partner
 * and usage id, file name, invoice number), never by generated row ids, so a run can be compared
 * with another run of the same data. Each value is the row's content as one string.
 */
export interface Snapshot {
  files: Map<string, string>;
  fileErrors: Map<string, string>;
  usages: Map<string, string>;
  records: Map<string, string>;
  accountTotals: Map<string, string>;
  invoices: Map<string, string>;
  invoiceLines: Map<string, string>;
  deliveries: Map<string, { status: string; content: string; lastError: string }>;
  mail: ReceivedInvoiceMail[];
  invariants: Record<string, unknown[]>;
  billingRuns: Array<{ status: string; count: number }>;
  counts: Record<string, number>;
}

// File ids differ between runs; messages that name one ("already received in file 12 (x.csv)") are
// compared with the id masked.
const MASK_FILE_IDS = (column: string) => `regexp_replace(${column}, 'file [0-9]+ \\(', 'file # (', 'g')`;

async function keyed(db: Db, sql: string): Promise<Map<string, string>> {
  const { rows } = await db.raw<{ rows: Array<{ key: string; value: string }> }>(sql);
  const map = new Map<string, string>();
  for (const r of rows) {
    if (map.has(r.key)) throw new Error(`snapshot: key ${r.key} appears twice in: ${sql.slice(0, 80)}...`);
    map.set(r.key, r.value);
  }
  return map;
}

export async function takeSnapshot(db: Db, mail: ReceivedInvoiceMail[]): Promise<Snapshot> {
  const files = await keyed(db, `
    SELECT f.name AS key, concat_ws('|', f.status, f.format, f.rows_read, f.rows_accepted, f.rows_rejected, f.rows_duplicate,
             coalesce(${MASK_FILE_IDS('f.error')}, '')) AS value
    FROM usage_files f WHERE f.status <> 'duplicate'`);
  const fileErrors = await keyed(db, `
    SELECT f.name || '#' || coalesce(e.record::text, '-') AS key,
           string_agg(concat_ws('|', coalesce(e.line::text, '-'), coalesce(e.field, '-'), e.code, ${MASK_FILE_IDS('e.message')}, coalesce(e.raw_value, '-')), ' ; '
                      ORDER BY e.code, e.field, e.message) AS value
    FROM usage_file_errors e JOIN usage_files f ON f.id = e.file_id
    GROUP BY f.name, e.record`);
  const usages = await keyed(db, `
    SELECT p.code || '/' || u.external_id || CASE WHEN u.superseded_at IS NULL THEN '' ELSE '/superseded/' || u.id END AS key,
           concat_ws('|', ps.code, pr.code, u.user_ref, coalesce(a.code, '-'), u.quantity::text,
             to_char(u.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS'),
             coalesce(to_char(u.ended_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS'), '-'),
             u.period, coalesce(u.description, '-'), f.name, u.source_record, coalesce(u.source_line::text, '-')) AS value
    FROM product_usages u
    JOIN partners p ON p.id = u.partner_id
    JOIN partnerships ps ON ps.id = u.partnership_id
    JOIN products pr ON pr.id = u.product_id
    LEFT JOIN accounts a ON a.id = u.account_id
    JOIN usage_files f ON f.id = u.source_file_id`);
  const records = await keyed(db, `
    WITH tx AS (
      SELECT t.billing_record_id, sum(t.amount_pennies) AS total,
             string_agg(concat_ws(':', t.kind, t.amount_pennies, coalesce(t.unit_price::text, '-'), coalesce(i.number, 'uninvoiced'), t.description), ' ; '
                        ORDER BY t.kind, t.amount_pennies, t.description) AS detail
      FROM transactions t LEFT JOIN invoices i ON i.id = t.invoice_id
      GROUP BY t.billing_record_id)
    SELECT coalesce(p.code || '/' || u.external_id, ps.code || '/' || r.period || '/' || r.settlement) || '/' || a.code AS key,
           concat_ws('|', coalesce(pr.code, '-'), r.period, r.quantity::text, r.split_percent::text, coalesce(tx.total, 0), coalesce(tx.detail, 'no transactions')) AS value
    FROM billing_records r
    JOIN accounts a ON a.id = r.account_id
    JOIN partnerships ps ON ps.id = r.partnership_id
    LEFT JOIN product_usages u ON u.id = r.usage_id
    LEFT JOIN partners p ON p.id = u.partner_id
    LEFT JOIN products pr ON pr.id = r.product_id
    LEFT JOIN tx ON tx.billing_record_id = r.id`);
  const accountTotals = await keyed(db, `
    SELECT ps.code || '/' || a.code || '/' || t.kind AS key, concat_ws('|', sum(t.amount_pennies), count(*)) AS value
    FROM transactions t
    JOIN billing_records r ON r.id = t.billing_record_id
    JOIN accounts a ON a.id = r.account_id
    JOIN partnerships ps ON ps.id = r.partnership_id
    GROUP BY ps.code, a.code, t.kind`);
  const invoices = await keyed(db, `
    SELECT ps.code || '/' || i.period || '/' || i.kind AS key,
           concat_ws('|', iss.code, i.number, i.status, i.currency, i.total_pennies, (SELECT count(*) FROM invoice_lines l WHERE l.invoice_id = i.id)) AS value
    FROM invoices i JOIN partnerships ps ON ps.id = i.partnership_id JOIN partners iss ON iss.id = i.issuer_partner_id`);
  const invoiceLines = await keyed(db, `
    SELECT iss.code || '/' || i.number || '#' || l.position AS key,
           concat_ws('|', a.code, coalesce(pr.code, '-'), l.usage_period, l.kind, l.description, l.quantity::text, coalesce(l.unit_price::text, '-'), l.amount_pennies) AS value
    FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id JOIN partners iss ON iss.id = i.issuer_partner_id JOIN accounts a ON a.id = l.account_id LEFT JOIN products pr ON pr.id = l.product_id`);
  const { rows: deliveryRows } = await db.raw<{ rows: Array<{ number: string; status: string; content: string; last_error: string | null }> }>(`
    SELECT iss.code || '/' || i.number || '/' || d.purpose AS number, d.status,
           concat_ws('|', array_to_string(d.recipients, ','), d.subject, d.message_id) AS content, d.last_error
    FROM email_deliveries d JOIN invoices i ON i.id = d.invoice_id JOIN partners iss ON iss.id = i.issuer_partner_id`);
  if (new Set(deliveryRows.map((d) => d.number)).size !== deliveryRows.length) throw new Error('snapshot: an invoice has two deliveries of one purpose');
  const deliveries = new Map(deliveryRows.map((d) => [d.number, { status: d.status, content: d.content, lastError: d.last_error ?? '' }]));
  const { rows: billingRuns } = await db.raw<{ rows: Array<{ status: string; count: number }> }>(
    `SELECT status, count(*)::int AS count FROM billing_runs GROUP BY status ORDER BY status`);
  const { rows: countRows } = await db.raw<{ rows: Array<Record<string, number>> }>(`
    SELECT (SELECT count(*)::int FROM usage_files) AS files, (SELECT count(*)::int FROM product_usages) AS usages,
           (SELECT count(*)::int FROM billing_records) AS records, (SELECT count(*)::int FROM transactions) AS transactions,
           (SELECT count(*)::int FROM invoices) AS invoices, (SELECT count(*)::int FROM invoice_lines) AS lines,
           (SELECT count(*)::int FROM email_deliveries) AS deliveries`);
  return {
    files,
    fileErrors,
    usages,
    records,
    accountTotals,
    invoices,
    invoiceLines,
    deliveries,
    mail,
    invariants: await findInvariantViolations(db),
    billingRuns,
    counts: { ...countRows[0], mails: mail.length },
  };
}
