import { createHash } from 'node:crypto';
import { nextInvoiceNumber } from '../../adapters/db/invoice-numbers';
import { toDecimalString } from '../../src/core/decimal';
import { formatInvoiceNumber } from '../../src/core/invoice';
import { pennies, penniesToDecimal } from '../../src/core/money';
import { importDocumentSchema } from '../../src/core/partnership-import-schema';
import type { Deps } from '../../src/deps';
import { importPartnerships } from '../../src/use-cases/import-partnerships';

/** The customers of the receivables test world: code, currency and time zone. */
export const TEST_CUSTOMERS = [
  { code: 'AGECO', currency: 'GBP', timeZone: 'Europe/London', recipients: ['ap@ageco.example'] },
  { code: 'EUROCO', currency: 'EUR', timeZone: 'Europe/Berlin', recipients: [] },
  { code: 'OLDCO', currency: 'GBP', timeZone: 'Europe/London', recipients: [] },
  { code: 'PAYCO', currency: 'GBP', timeZone: 'Europe/London', recipients: [] },
] as const;

/**
 * A small world for receivables tests, imported through the real import use case: one provider
 * (LAB) billing each of TEST_CUSTOMERS through a partnership LAB-<customer> with two accounts,
 * <customer>-OPS and <customer>-RND. Invoices for them are issued by issueTestInvoice at whatever
 * dates a test needs.
 */
export async function importReceivablesPartnerships(deps: Deps): Promise<void> {
  const doc = importDocumentSchema.parse({
    partners: [
      { code: 'LAB', kind: 'company', name: 'Central Lab Services', email: 'billing@lab.example' },
      ...TEST_CUSTOMERS.map((c) => ({ code: c.code, kind: 'company', name: `${c.code} Ltd` })),
    ],
    products: [{ code: 'LAB_HOUR', name: 'Lab hours', unit: 'hour', quantity_scale: '2' }],
    partnerships: TEST_CUSTOMERS.map((c) => ({
      code: `LAB-${c.code}`, provider: 'LAB', customer: c.code, currency: c.currency, time_zone: c.timeZone, contract_start: '2024-01-01',
      payment_terms_days: '30', invoice_recipients: [...c.recipients], default_account: `${c.code}-OPS`,
      accounts: [{ code: `${c.code}-OPS`, name: 'Operations' }, { code: `${c.code}-RND`, name: 'Research' }],
      rules: [{ effective_from: '2024-01-01', rules: [{ kind: 'unit_price', product: 'LAB_HOUR', price: '50' }] }],
    })),
  });
  await importPartnerships(deps, doc, 'test');
}

export interface TestInvoice {
  id: number;
  number: string;
}

/**
 * Issues an invoice for a partnership and period at the given dates, the way a billing run does
 * (gapless number in the same transaction), with one line per account. Each line is backed by a
 * usage (of one LAB_HOUR, priced at the line's amount) in a rated file, its billing record and its
 * charge transaction claimed by the invoice, so the bookkeeping invariants (total = lines = claimed
 * transactions, one record per usage) hold for these invoices too. No email is queued.
 */
export async function issueTestInvoice(
  deps: Deps,
  input: { partnership: string; period: string; issueDate: string; dueDate: string; lines: Array<{ account: string; amount: bigint }> },
): Promise<TestInvoice> {
  return deps.db.transaction(async (tx) => {
    const ps = await tx('partnerships as ps').join('partners as c', 'c.id', 'ps.customer_partner_id').where('ps.code', input.partnership)
      .first<{ id: string; provider_partner_id: string; customer_partner_id: string; customer_code: string; currency: string }>(
        'ps.id', 'ps.provider_partner_id', 'ps.customer_partner_id', 'c.code as customer_code', 'ps.currency',
      );
    const product = await tx('products').where('code', 'LAB_HOUR').first<{ id: string }>('id');
    const year = Number(input.issueDate.slice(0, 4));
    const seq = await nextInvoiceNumber(tx, ps.provider_partner_id, year);
    const number = formatInvoiceNumber(year, seq);
    const total = input.lines.reduce((a, l) => a + l.amount, 0n);
    const [inv] = await tx('invoices')
      .insert({
        partnership_id: ps.id, issuer_partner_id: ps.provider_partner_id, customer_partner_id: ps.customer_partner_id, period: input.period,
        status: 'issued', number, number_year: year, number_seq: seq, currency: ps.currency, issue_date: input.issueDate, due_date: input.dueDate,
        total_pennies: total.toString(),
      })
      .returning<{ id: string }[]>('id');
    const invoiceId = Number(inv!.id);
    const [file] = await tx('usage_files')
      .insert({
        partner_id: ps.customer_partner_id, partner_code: ps.customer_code, name: `${number}.csv`, sha256: createHash('sha256').update(`${input.partnership} ${number}`).digest('hex'),
        size_bytes: 0, format: 'csv', source: 'cli', stored_path: `archive/${ps.customer_code}/${number}.csv`, status: 'rated', rows_read: input.lines.length, rows_accepted: input.lines.length,
      })
      .returning<{ id: string }[]>('id');
    let position = 0;
    for (const line of input.lines) {
      position += 1;
      const account = await tx('accounts').where({ partnership_id: ps.id, code: line.account }).first<{ id: string }>('id');
      const [usage] = await tx('product_usages')
        .insert({
          partner_id: ps.customer_partner_id, partnership_id: ps.id, external_id: `${number}-${position}`, product_id: product.id, user_ref: 'test', account_id: account.id,
          quantity: 1, started_at: `${input.period}-15T12:00:00Z`, period: input.period, source_file_id: file!.id, source_record: position,
        })
        .returning<{ id: string }[]>('id');
      const [record] = await tx('billing_records')
        .insert({ usage_id: usage!.id, partnership_id: ps.id, account_id: account.id, product_id: product.id, period: input.period, quantity: 1 })
        .returning<{ id: string }[]>('id');
      const price = toDecimalString(penniesToDecimal(pennies(line.amount), ps.currency.trim()));
      await tx('transactions').insert({ billing_record_id: record!.id, kind: 'charge', amount_pennies: line.amount.toString(), description: 'Lab hours', unit_price: price, invoice_id: invoiceId });
      await tx('invoice_lines').insert({
        invoice_id: invoiceId, position, account_id: account.id, product_id: product.id, usage_period: input.period, kind: 'charge',
        description: 'Lab hours', quantity: 1, unit_price: price, amount_pennies: line.amount.toString(),
      });
    }
    return { id: invoiceId, number };
  });
}
