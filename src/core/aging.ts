import { Temporal } from 'temporal-polyfill';
import { type Pennies, ZERO_PENNIES } from './money';
import { type CreditBalance, type OpenInvoice, openAmount } from './receivables';

/**
 * The aging report: what customers owe, by how long it has been due, as of a date.
 *
 * Days past due = as-of date - due date, in calendar days. An invoice due on the as-of date itself
 * (0 days) or later is `current`; 1 to 30 days is `1-30`, and so on; 91 days and more is `over_90`.
 */
export const AGING_BUCKETS = ['current', '1-30', '31-60', '61-90', 'over_90'] as const;
export type AgingBucket = (typeof AGING_BUCKETS)[number];

export type BucketAmounts = Record<AgingBucket, Pennies>;

export function daysPastDue(dueDate: string, asOf: string): number {
  return Temporal.PlainDate.from(dueDate).until(Temporal.PlainDate.from(asOf), { largestUnit: 'days' }).days;
}

export function agingBucket(daysPast: number): AgingBucket {
  if (daysPast <= 0) return 'current';
  if (daysPast <= 30) return '1-30';
  if (daysPast <= 60) return '31-60';
  if (daysPast <= 90) return '61-90';
  return 'over_90';
}

export interface AgingRow {
  customerCode: string;
  customerName: string;
  currency: string;
  buckets: BucketAmounts;
  /** Sum of the buckets: what the customer's invoices still owe. */
  total: Pennies;
  /** Unapplied credit as of the date, shown beside the buckets (it belongs to no invoice, so to no bucket). */
  credit: Pennies;
  /** total - credit. */
  net: Pennies;
}

export interface AgingTotals {
  currency: string;
  buckets: BucketAmounts;
  total: Pennies;
  credit: Pennies;
  net: Pennies;
}

export interface AgingReport {
  asOf: string;
  rows: AgingRow[];
  /** One line per currency: amounts in different currencies are never added together. */
  totals: AgingTotals[];
}

const emptyBuckets = (): BucketAmounts => ({ current: ZERO_PENNIES, '1-30': ZERO_PENNIES, '31-60': ZERO_PENNIES, '61-90': ZERO_PENNIES, over_90: ZERO_PENNIES });

const collate = new Intl.Collator('en').compare;

/**
 * Buckets each invoice's open amount (as of the date: the caller counts only payments, credit notes
 * and credits dated on or before it) by days past due, per customer and currency, with totals per
 * currency.
 */
export function buildAgingReport(asOf: string, invoices: readonly OpenInvoice[], credits: readonly CreditBalance[]): AgingReport {
  const rows = new Map<string, AgingRow>();
  const rowFor = (customerCode: string, customerName: string, currency: string): AgingRow => {
    const key = `${customerCode}\u0000${currency}`;
    let row = rows.get(key);
    if (!row) {
      row = { customerCode, customerName, currency, buckets: emptyBuckets(), total: ZERO_PENNIES, credit: ZERO_PENNIES, net: ZERO_PENNIES };
      rows.set(key, row);
    }
    return row;
  };
  for (const inv of invoices) {
    const open = openAmount(inv);
    if (open === 0n) continue;
    const row = rowFor(inv.customerCode, inv.customerName, inv.currency);
    const bucket = agingBucket(daysPastDue(inv.dueDate, asOf));
    row.buckets[bucket] = (row.buckets[bucket] + open) as Pennies;
    row.total = (row.total + open) as Pennies;
  }
  for (const c of credits) {
    if (c.balance === 0n) continue;
    const row = rowFor(c.customerCode, c.customerName, c.currency);
    row.credit = (row.credit + c.balance) as Pennies;
  }
  const sorted = [...rows.values()].sort((a, b) => collate(a.customerCode, b.customerCode) || collate(a.currency, b.currency));
  const totals = new Map<string, AgingTotals>();
  for (const row of sorted) {
    row.net = (row.total - row.credit) as Pennies;
    const t = totals.get(row.currency) ?? { currency: row.currency, buckets: emptyBuckets(), total: ZERO_PENNIES, credit: ZERO_PENNIES, net: ZERO_PENNIES };
    for (const b of AGING_BUCKETS) t.buckets[b] = (t.buckets[b] + row.buckets[b]) as Pennies;
    t.total = (t.total + row.total) as Pennies;
    t.credit = (t.credit + row.credit) as Pennies;
    t.net = (t.net + row.net) as Pennies;
    totals.set(row.currency, t);
  }
  return { asOf, rows: sorted, totals: [...totals.values()].sort((a, b) => collate(a.currency, b.currency)) };
}
