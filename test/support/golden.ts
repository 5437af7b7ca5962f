import { readFile } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import type { Db } from '../../adapters/db/database';

const counts = z.object({ status: z.string(), read: z.number(), accepted: z.number(), rejected: z.number(), duplicate: z.number() });

/** expected.yaml of a fixture scenario: the figures worked out by hand. */
export const expectedSchema = z.object({
  period: z.string(),
  files: z.record(z.string(), counts),
  usage_charges: z.record(z.string(), z.number()),
  /** After the billing run settled the period (volume tiers at their final price). */
  settled_usage_charges: z.record(z.string(), z.number()).optional(),
  /** Per partnership: each period settlement booked, by key. */
  settlements: z.record(z.string(), z.record(z.string(), z.number())).optional(),
  invoices: z.record(
    z.string(),
    z.object({ number: z.string(), currency: z.string(), total: z.number(), recipients: z.array(z.string()), accounts: z.record(z.string(), z.number()) }),
  ),
});
export type Expected = z.infer<typeof expectedSchema>;

export async function readExpected(scenarioDir: string): Promise<Expected> {
  return expectedSchema.parse(YAML.parse(await readFile(path.join(scenarioDir, 'expected.yaml'), 'utf8')));
}

/** What the database says, in the shape of expected.yaml's file counts. */
export async function actualFiles(db: Db): Promise<Expected['files']> {
  const files = await db('usage_files').whereNot('status', 'duplicate').orderBy('id')
    .select<{ name: string; status: string; rows_read: number; rows_accepted: number; rows_rejected: number; rows_duplicate: number }[]>(
      'name', 'status', 'rows_read', 'rows_accepted', 'rows_rejected', 'rows_duplicate');
  return Object.fromEntries(files.map((f) => [f.name, { status: f.status, read: f.rows_read, accepted: f.rows_accepted, rejected: f.rows_rejected, duplicate: f.rows_duplicate }]));
}

/** Each usage's charge: the sum of the transactions of all its billing records. */
export async function actualUsageCharges(db: Db): Promise<Record<string, number>> {
  const rows = await db('product_usages as u')
    .join('billing_records as r', 'r.usage_id', 'u.id')
    .join('transactions as t', 't.billing_record_id', 'r.id')
    .groupBy('u.external_id')
    .select<{ external_id: string; charge: string }[]>('u.external_id', db.raw('sum(t.amount_pennies)::text AS charge'));
  return Object.fromEntries(rows.map((r) => [r.external_id, Number(r.charge)]));
}

/** Each partnership's invoice for the period, with totals per account from its lines. */
export async function actualInvoices(db: Db, period: string): Promise<Record<string, Omit<Expected['invoices'][string], 'recipients'> & { recipients: string[] }>> {
  const invoices = await db('invoices as i').join('partnerships as p', 'p.id', 'i.partnership_id').where('i.period', period)
    .select<{ id: string; code: string; number: string; currency: string; total_pennies: string; recipients: string[] }[]>(
      'i.id', 'p.code', 'i.number', 'i.currency', 'i.total_pennies', 'p.invoice_recipients as recipients');
  const out: Awaited<ReturnType<typeof actualInvoices>> = {};
  for (const inv of invoices) {
    const perAccount = await db('invoice_lines as l').join('accounts as a', 'a.id', 'l.account_id').where('l.invoice_id', inv.id)
      .groupBy('a.code').select<{ code: string; amount: string }[]>('a.code', db.raw('sum(l.amount_pennies)::text AS amount'));
    out[inv.code] = {
      number: inv.number,
      currency: inv.currency,
      total: Number(inv.total_pennies),
      recipients: inv.recipients,
      accounts: Object.fromEntries(perAccount.map((a) => [a.code, Number(a.amount)])),
    };
  }
  return out;
}

/** Per partnership code: the period's settlement records and what they book. */
export async function actualSettlements(db: Db, period: string): Promise<Record<string, Record<string, number>>> {
  const rows = await db('billing_records as r')
    .join('partnerships as p', 'p.id', 'r.partnership_id')
    .join('transactions as t', 't.billing_record_id', 'r.id')
    .where('r.period', period)
    .whereNotNull('r.settlement')
    .groupBy('p.code', 'r.settlement')
    .select<{ code: string; settlement: string; amount: string }[]>('p.code', 'r.settlement', db.raw('sum(t.amount_pennies)::text AS amount'));
  const out: Record<string, Record<string, number>> = {};
  for (const r of rows) (out[r.code] ??= {})[r.settlement] = Number(r.amount);
  return out;
}
