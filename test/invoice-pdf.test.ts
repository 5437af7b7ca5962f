import { describe, expect, it } from 'vitest';
import { renderInvoicePdf } from '../adapters/render/invoice-pdf';
import { pdfText } from '../adapters/render/pdf-text';
import { toWinAnsi } from '../adapters/render/win-ansi';
import type { InvoiceDocument, InvoiceDocumentLine } from '../src/core/invoice-document';
import { pennies } from '../src/core/money';

/**
 * The invoice PDF, read back with poppler's pdftotext (a reader that is not the writer), the way a
 * customer's viewer or an accounting import would read it.
 */

function line(overrides: Partial<InvoiceDocumentLine>): InvoiceDocumentLine {
  return {
    position: 1,
    accountCode: 'GRANT-4471',
    accountName: 'Wellcome grant 4471',
    accountKind: 'expense_code',
    productCode: 'CPU_HOUR',
    productName: 'HPC CPU core-hours',
    unit: 'core-hour',
    usagePeriod: '2026-10',
    kind: 'charge',
    description: 'HPC CPU core-hours',
    quantity: '1040.7407346',
    unitPrice: '0.045',
    amount: pennies(4684),
    ...overrides,
  };
}

function invoice(overrides: Partial<InvoiceDocument> = {}): InvoiceDocument {
  const lines = overrides.lines ?? [
    line({ position: 1 }),
    line({ position: 2, productCode: 'CONFOCAL_HOUR', productName: 'Confocal microscope time', unit: 'hour', description: 'Confocal microscope time (usage in 2026-09, late)', usagePeriod: '2026-09', quantity: '1.05', unitPrice: '42.50', amount: pennies(4463) }),
    line({ position: 3, accountCode: 'PO-9912', accountName: 'Imaging purchase order', accountKind: 'purchase_order', productCode: '', productName: '', unit: '', kind: 'fee', description: 'Platform fee', quantity: '1', unitPrice: '25.00', amount: pennies(2500) }),
    line({ position: 4, accountCode: 'PO-9912', accountName: 'Imaging purchase order', accountKind: 'purchase_order', productCode: '', productName: '', unit: '', kind: 'credit', description: 'Welcome voucher', quantity: '1', unitPrice: null, amount: pennies(-1000) }),
  ];
  return {
    id: 41,
    kind: 'invoice',
    status: 'issued',
    number: 'INV-2026-000017',
    period: '2026-10',
    currency: 'GBP',
    issueDate: '2026-11-21',
    dueDate: '2026-12-21',
    paymentTermsDays: 30,
    issuer: { code: 'NRF', name: 'Northbridge Research Facility', email: 'billing@northbridge.example', address: 'Northbridge Science Park, Building 4\nCambridge CB4 0WS\nUnited Kingdom' },
    customer: { code: 'ACME', name: 'Acme Biosciences Ltd', email: 'finance@acme-bio.example', address: '12 Harbour Road\r\nBristol BS1 5TT\nUnited Kingdom' },
    partnershipCode: 'NRF-ACME',
    recipients: ['accounts-payable@acme-bio.example'],
    credits: null,
    reason: null,
    voidedOn: null,
    lines,
    total: pennies(lines.reduce((sum, l) => sum + l.amount, 0n)),
    ...overrides,
  };
}

/** pdftotext -layout output with runs of spaces collapsed, so a test reads it line by line. */
async function textOf(pdf: Buffer): Promise<string[]> {
  return (await pdfText(pdf)).split('\n').map((l) => l.replace(/\s+/g, ' ').trim()).filter((l) => l !== '');
}

describe('renderInvoicePdf', () => {
  it('prints an invoice with both parties, its facts, lines per account, subtotals, total and terms', async () => {
    const pdf = await renderInvoicePdf(invoice());
    expect(pdf.subarray(0, 5).toString('latin1')).toBe('%PDF-');
    const text = await textOf(pdf);
    const all = text.join('\n');

    expect(text[0]).toBe('Northbridge Research Facility INVOICE');
    for (const l of ['Northbridge Science Park, Building 4', 'Cambridge CB4 0WS', 'billing@northbridge.example', 'Acme Biosciences Ltd', '12 Harbour Road', 'Bristol BS1 5TT', 'finance@acme-bio.example']) {
      expect(all, l).toContain(l);
    }
    expect(all).toMatch(/Invoice number INV-2026-000017/);
    expect(all).toMatch(/Issue date 21 November 2026/);
    expect(all).toMatch(/Due date 21 December 2026/);
    expect(all).toMatch(/Billing period October 2026/);
    expect(all).toContain('Amount due');
    expect(all).toContain('Due by 21 December 2026');
    expect(text).toContain('Description Period Quantity Unit Unit price Amount');
    expect(text).toContain('Expense code GRANT-4471 · Wellcome grant 4471');
    expect(text).toContain('HPC CPU core-hours 2026-10 1040.7407346 core-hour 0.045 £46.84');
    // A description longer than its column wraps within it; the figures stay on its first line.
    const late = text.indexOf('Confocal microscope time (usage in 2026-09 1.05 hour 42.50 £44.63');
    expect(late).toBeGreaterThan(0);
    expect(text.slice(late + 1, late + 3)).toEqual(['2026-09, late)', 'CONFOCAL_HOUR']);
    expect(text).toContain('Subtotal GRANT-4471 £91.47');
    // Settlement lines have no product: their own description is the whole text.
    expect(text).toContain('Purchase order PO-9912 · Imaging purchase order');
    expect(text).toContain('Platform fee 2026-10 1 25.00 £25.00');
    expect(text).toContain('Welcome voucher 2026-10 1 mixed -£10.00');
    expect(text).toContain('Subtotal PO-9912 £15.00');
    expect(text).toContain('Total (GBP) £106.47');
    expect(all).toContain('Payment is due within 30 days of the invoice date, by 21 December 2026. Please quote INV-2026-000017 with your payment.');
    expect(text[text.length - 1]).toBe('Northbridge Research Facility · Invoice INV-2026-000017 Page 1 of 1');
    expect(all).not.toMatch(/VOID|Credit note/i);
  });

  it('renders the same invoice to the same bytes, dated by its issue date', async () => {
    const [a, b] = await Promise.all([renderInvoicePdf(invoice()), renderInvoicePdf(invoice())]);
    expect(a.equals(b)).toBe(true);
    expect(a.toString('latin1')).toContain('(D:20261121000000Z)');
    const other = await renderInvoicePdf(invoice({ issueDate: '2026-11-22' }));
    expect(other.equals(a)).toBe(false);
  });

  it('titles a credit note as such and names the invoice it corrects and why', async () => {
    const doc = invoice({
      kind: 'credit_note',
      number: 'INV-2026-000018',
      credits: { id: 41, number: 'INV-2026-000017', issueDate: '2026-11-21' },
      reason: 'Storage counted twice',
      lines: [line({ kind: 'credit', description: 'HPC CPU core-hours credit', quantity: '-1040.7407346', amount: pennies(-4684) })],
      total: pennies(-4684),
    });
    const all = (await textOf(await renderInvoicePdf(doc))).join('\n');
    expect(all).toContain('CREDIT NOTE');
    expect(all).toMatch(/Credit note number INV-2026-000018/);
    expect(all).toMatch(/Credits invoice INV-2026-000017/);
    expect(all).toContain('This credit note corrects invoice INV-2026-000017 of 21 November 2026. Reason: Storage counted twice');
    expect(all).toContain('Amount credited');
    expect(all).toContain('£46.84');
    expect(all).toContain('Total (GBP) -£46.84');
    expect(all).not.toMatch(/Amount due|Due date|Payment is due/);
  });

  it('marks a void invoice VOID on every page and says nothing is due', async () => {
    const many = Array.from({ length: 60 }, (_, i) => line({ position: i + 1, accountCode: `GRANT-${1000 + Math.trunc(i / 6)}`, amount: pennies(100) }));
    const doc = invoice({ status: 'void', voidedOn: '2026-11-25', reason: 'Issued to the wrong customer', lines: many, total: pennies(6000) });
    const pdf = await renderInvoicePdf(doc);
    const pages = (await pdfText(pdf)).split('\f').filter((p) => p.trim() !== '');
    // In content order pdftotext also reads the rotated VOID across the page, beside the footer's.
    const rawPages = (await pdfText(pdf, { layout: false })).split('\f').filter((p) => p.trim() !== '');
    expect(pages.length).toBeGreaterThan(1);
    expect(rawPages).toHaveLength(pages.length);
    for (const [i, page] of pages.entries()) {
      expect(page.replace(/\s+/g, ' '), `page ${i + 1}`).toContain(`Invoice INV-2026-000017 · VOID Page ${i + 1} of ${pages.length}`);
      expect(rawPages[i]!.match(/\bVOID\b/g)?.length, `page ${i + 1}`).toBeGreaterThanOrEqual(2);
    }
    const first = pages[0]!.replace(/\s+/g, ' ');
    expect(first).toContain('Nothing due');
    expect(first).toContain('This invoice was voided on 25 November 2026; it keeps its number and nothing is due on it. Reason: Issued to the wrong customer');
  });

  it('continues a long invoice on further pages with the table header repeated and nothing lost', async () => {
    const many = Array.from({ length: 90 }, (_, i) =>
      line({ position: i + 1, accountCode: `GRANT-${1000 + Math.trunc(i / 9)}`, description: `Run ${i + 1}${i % 7 === 0 ? ' with a description long enough to wrap onto a second line of its cell' : ''}`, amount: pennies(100 + i) }),
    );
    const doc = invoice({ lines: many, total: pennies(many.reduce((s, l) => s + l.amount, 0n)) });
    const pages = (await pdfText(await renderInvoicePdf(doc))).split('\f').filter((p) => p.trim() !== '');
    expect(pages.length).toBeGreaterThanOrEqual(3);
    for (const page of pages.slice(1)) {
      expect(page).toContain('INV-2026-000017 (continued)');
      expect(page.replace(/\s+/g, ' ')).toContain('Description Period Quantity Unit Unit price Amount');
    }
    const all = pages.join('\n').replace(/\s+/g, ' ');
    for (let i = 1; i <= 90; i++) expect(all, `Run ${i}`).toMatch(new RegExp(`Run ${i}\\b`));
    for (let g = 0; g < 10; g++) expect(all).toContain(`Subtotal GRANT-${1000 + g}`);
    expect(all).toContain('Total (GBP) £130.05');
  });

  it('prints accented names and replaces characters the standard fonts lack', async () => {
    const doc = invoice({ customer: { code: 'RHEIN', name: 'Rheinland Bio GmbH – Zürich, Łódź 東京', email: null, address: 'Lindenstraße 9\u202E\n69117 Heidelberg' } });
    const all = (await textOf(await renderInvoicePdf(doc))).join('\n');
    expect(all).toContain('Rheinland Bio GmbH – Zürich, ?ódz ??');
    expect(all).toContain('Lindenstraße 9');
  });

  it('refuses a document whose lines do not add up to its total', async () => {
    await expect(renderInvoicePdf(invoice({ total: pennies(1) }))).rejects.toThrow('invoice INV-2026-000017: lines add up to 106.47 but the total is 0.01');
  });
});

describe('toWinAnsi', () => {
  it.each([
    ['plain ASCII', 'Invoice 42', 'Invoice 42'],
    ['Latin-1 and the euro', 'Société £5 €3 ÿ', 'Société £5 €3 ÿ'],
    ['typographic quotes and dashes', '“a” ‘b’ – — …', '“a” ‘b’ – — …'],
    ['accents outside Latin-1', 'Dvořák Łódź', 'Dvorák ?ódz'],
    ['other scripts', '東京 Москва', '?? ??????'],
    ['line breaks and tabs', 'a\r\nb\tc\u2028d', 'a  b c d'],
    ['controls and bidi overrides', 'a\u0000b\u0085c\u202Ed\u200Be', 'ab cde'],
    ['an emoji (two UTF-16 units)', 'ok 👍', 'ok ?'],
  ])('%s', (_name, input, expected) => {
    expect(toWinAnsi(input)).toBe(expected);
  });
});
