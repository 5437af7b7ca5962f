import type { Pennies } from './money';

/** A party on an invoice, as printed. */
export interface InvoiceParty {
  code: string;
  name: string;
  email: string | null;
  address: string | null;
}

/** One invoice line: a product charged to an account, for a usage period, of one transaction kind. */
export interface InvoiceDocumentLine {
  position: number;
  accountCode: string;
  accountName: string;
  productCode: string;
  productName: string;
  unit: string;
  /** The calendar month the usage belongs to (YYYY-MM); differs from the invoice's period for late items. */
  usagePeriod: string;
  /** charge, discount, adjustment, credit, fee ... */
  kind: string;
  description: string;
  /** Exact decimal text, e.g. "12.5". */
  quantity: string;
  /** Exact decimal text per unit, or null when the line mixes prices. */
  unitPrice: string | null;
  amount: Pennies;
}

/** Everything needed to render an issued invoice (email, CSV, later PDF). Plain data, no I/O. */
export interface InvoiceDocument {
  id: number;
  number: string;
  period: string;
  currency: string;
  issueDate: string;
  dueDate: string;
  paymentTermsDays: number;
  issuer: InvoiceParty;
  customer: InvoiceParty;
  partnershipCode: string;
  recipients: string[];
  lines: InvoiceDocumentLine[];
  total: Pennies;
}
