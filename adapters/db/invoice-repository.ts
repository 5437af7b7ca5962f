import type { InvoiceDocument, InvoiceParty } from '../../src/core/invoice-document';
import { minorUnits, pennies } from '../../src/core/money';
import { decimal, toDecimalString, toDecimalStringMinPlaces } from '../../src/core/decimal';
import type { Db } from './database';
import type { Knex } from 'knex';

interface PartyRow {
  code: string;
  name: string;
  email: string | null;
  address: string | null;
}

function party(r: PartyRow): InvoiceParty {
  return { code: r.code, name: r.name, email: r.email, address: r.address };
}

/** Reads an invoice with its parties and lines into the plain document that renderers take. */
export async function loadInvoiceDocument(db: Db | Knex.Transaction, invoiceId: number): Promise<InvoiceDocument> {
  const inv = await db('invoices as i')
    .join('partnerships as ps', 'ps.id', 'i.partnership_id')
    .where('i.id', invoiceId)
    .first<{
      id: string; number: string; period: string; currency: string; issue_date: string; due_date: string;
      total_pennies: string; issuer_partner_id: string; customer_partner_id: string; partnership_code: string;
      payment_terms_days: number; invoice_recipients: string[];
    } | undefined>(
      'i.id', 'i.number', 'i.period', 'i.currency', 'i.issue_date', 'i.due_date', 'i.total_pennies',
      'i.issuer_partner_id', 'i.customer_partner_id', 'ps.code as partnership_code', 'ps.payment_terms_days',
      'ps.invoice_recipients',
    );
  if (!inv) throw new Error(`invoice ${invoiceId} does not exist`);
  // Sequential on purpose: inside a transaction all three share one connection.
  const issuer = await db('partners').where('id', inv.issuer_partner_id).first<PartyRow>('code', 'name', 'email', 'address');
  const customer = await db('partners').where('id', inv.customer_partner_id).first<PartyRow>('code', 'name', 'email', 'address');
  const lines = await db('invoice_lines as l')
      .join('accounts as a', 'a.id', 'l.account_id')
      .leftJoin('products as p', 'p.id', 'l.product_id')
      .where('l.invoice_id', invoiceId)
      .orderBy('l.position')
      .select<{
        position: number; account_code: string; account_name: string; product_code: string | null; product_name: string | null;
        unit: string | null; usage_period: string; kind: string; description: string; quantity: string; unit_price: string | null;
        amount_pennies: string;
      }[]>(
        'l.position', 'a.code as account_code', 'a.name as account_name', 'p.code as product_code', 'p.name as product_name',
        'p.unit', 'l.usage_period', 'l.kind', 'l.description', 'l.quantity', 'l.unit_price', 'l.amount_pennies',
      );
  return {
    id: Number(inv.id),
    number: inv.number,
    period: inv.period,
    currency: inv.currency.trim(),
    issueDate: inv.issue_date,
    dueDate: inv.due_date,
    paymentTermsDays: inv.payment_terms_days,
    issuer: party(issuer),
    customer: party(customer),
    partnershipCode: inv.partnership_code,
    recipients: inv.invoice_recipients,
    total: pennies(inv.total_pennies),
    lines: lines.map((l) => ({
      position: l.position,
      accountCode: l.account_code,
      accountName: l.account_name,
      productCode: l.product_code ?? '',
      productName: l.product_name ?? '',
      unit: l.unit ?? '',
      usagePeriod: l.usage_period,
      kind: l.kind,
      description: l.description,
      quantity: toDecimalString(decimal(l.quantity)),
      unitPrice: l.unit_price === null ? null : toDecimalStringMinPlaces(decimal(l.unit_price), minorUnits(inv.currency.trim())),
      amount: pennies(l.amount_pennies),
    })),
  };
}
