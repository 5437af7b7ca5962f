import type { InvoiceDocumentLine } from './invoice-document';
import { type Pennies, sumPennies } from './money';

/** Gapless per issuer and year: INV-2026-000001. The sequence number comes from the database. */
export function formatInvoiceNumber(year: number, seq: number): string {
  return `INV-${year}-${String(seq).padStart(6, '0')}`;
}

const KIND_ORDER = ['charge', 'fee', 'surcharge', 'discount', 'adjustment', 'credit'];

// A fixed collation: a bare localeCompare follows the machine's LANG, and in Danish "AA" sorts after "AZ".
const collate = new Intl.Collator('en').compare;

/** Lines read per account, then period, product and kind (charges before what modifies them). */
export function compareLines(
  a: Pick<InvoiceDocumentLine, 'accountCode' | 'usagePeriod' | 'productCode' | 'kind' | 'unitPrice'>,
  b: Pick<InvoiceDocumentLine, 'accountCode' | 'usagePeriod' | 'productCode' | 'kind' | 'unitPrice'>,
): number {
  return (
    collate(a.accountCode, b.accountCode) ||
    collate(a.usagePeriod, b.usagePeriod) ||
    // Period settlements (fees, true-ups, vouchers) have no product and come after the products.
    Number(a.productCode === '') - Number(b.productCode === '') ||
    collate(a.productCode, b.productCode) ||
    KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) ||
    collate(a.unitPrice ?? '', b.unitPrice ?? '')
  );
}

/** "Confocal microscope hours" or, for a late item, "... (usage in 2026-09, late)". */
export function describeLine(productName: string, kind: string, usagePeriod: string, invoicePeriod: string): string {
  const base = kind === 'charge' ? productName : `${productName} ${kind}`;
  return usagePeriod === invoicePeriod ? base : `${base} (usage in ${usagePeriod}, late)`;
}

export function invoiceTotal(lines: ReadonlyArray<{ amount: Pennies }>): Pennies {
  return sumPennies(lines.map((l) => l.amount));
}

/** Subtotals per account code, in the order accounts first appear. */
export function subtotalsByAccount(lines: ReadonlyArray<Pick<InvoiceDocumentLine, 'accountCode' | 'accountName' | 'amount'>>): Array<{ accountCode: string; accountName: string; amount: Pennies }> {
  const out = new Map<string, { accountCode: string; accountName: string; amount: Pennies }>();
  for (const l of lines) {
    const s = out.get(l.accountCode) ?? { accountCode: l.accountCode, accountName: l.accountName, amount: 0n as Pennies };
    s.amount = (s.amount + l.amount) as Pennies;
    out.set(l.accountCode, s);
  }
  return [...out.values()];
}
