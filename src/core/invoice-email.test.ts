import { describe, expect, it } from 'vitest';
import type { InvoiceDocument, InvoiceDocumentLine, InvoiceRecordRow } from './invoice-document';
import { INVOICE_CSV_HEADER, escapeHtml, invoiceSubject, oneLine, renderInvoiceCsv, renderInvoiceEmail, safeFileStem } from './invoice-email';
import { pennies } from './money';

function line(overrides: Partial<InvoiceDocumentLine>): InvoiceDocumentLine {
  return {
    position: 1,
    accountCode: 'ACC-1',
    accountName: 'Main account',
    accountKind: 'expense_code',
    productCode: 'SMS',
    productName: 'Text messages',
    unit: 'msg',
    usagePeriod: '2026-10',
    kind: 'charge',
    description: 'October messages',
    quantity: '1250',
    unitPrice: '0.01',
    amount: pennies(1250),
    ...overrides,
  };
}

function invoice(overrides: Partial<InvoiceDocument> = {}): InvoiceDocument {
  const lines = overrides.lines ?? [
    line({ position: 1 }),
    line({
      position: 2,
      accountCode: 'ACC-2',
      accountName: 'Second account',
      productCode: 'DATA',
      productName: 'Mobile data',
      unit: 'GB',
      usagePeriod: '2026-09',
      description: 'Late September usage',
      quantity: '12.5',
      unitPrice: null,
      amount: pennies(123456),
    }),
    line({ position: 3, kind: 'credit', description: '-goodwill, "sorry"', quantity: '-3', amount: pennies(-3) }),
  ];
  return {
    id: 7,
    kind: 'invoice',
    status: 'issued',
    number: 'INV-2026-000001',
    period: '2026-10',
    currency: 'GBP',
    issueDate: '2026-11-01',
    dueDate: '2026-12-01',
    paymentTermsDays: 30,
    issuer: { code: 'ACME', name: 'Acme Telecom Ltd', email: 'billing@acme.example', address: '1 High Street\nLondon' },
    customer: { code: 'PART', name: 'Partner Co', email: null, address: null },
    partnershipCode: 'ACME-PART',
    recipients: ['ap@partner.example'],
    credits: null,
    reason: null,
    voidedOn: null,
    lines,
    total: pennies(lines.reduce((sum, l) => sum + l.amount, 0n)),
    ...overrides,
  };
}

describe('renderInvoiceEmail', () => {
  it('builds the subject from the number, issuer and period', () => {
    expect(renderInvoiceEmail(invoice()).subject).toBe('Invoice INV-2026-000001 from Acme Telecom Ltd for 2026-10');
  });

  it.each([
    ['CRLF', 'Acme\r\nBcc: victim@example.com', 'Invoice INV-2026-000001 from Acme Bcc: victim@example.com for 2026-10'],
    ['bare LF and CR', 'Acme\nTele\rcom', 'Invoice INV-2026-000001 from Acme Tele com for 2026-10'],
    ['tab, NUL and DEL', 'Acme\t\u0000Tel\u007fecom', 'Invoice INV-2026-000001 from Acme Tel ecom for 2026-10'],
    ['Unicode line separators', 'Acme\u2028Tele\u2029com\u0085', 'Invoice INV-2026-000001 from Acme Tele com for 2026-10'],
    ['a bidi override', 'Acme\u202Emoc.exe', 'Invoice INV-2026-000001 from Acme moc.exe for 2026-10'],
  ])('keeps the subject on one line when the issuer name has %s', (_name, issuerName, expected) => {
    const doc = invoice({ issuer: { code: 'ACME', name: issuerName, email: null, address: null } });
    const { subject, text } = renderInvoiceEmail(doc);
    expect(subject).toBe(expected);
    expect(subject).not.toMatch(/[\p{Cc}\u2028\u2029]/u);
    expect(text).toContain(`From: ${expected.slice('Invoice INV-2026-000001 from '.length, -' for 2026-10'.length)} (ACME)`);
  });

  it('names the PDF and the CSV after the invoice number, using only safe characters', () => {
    expect(renderInvoiceEmail(invoice())).toMatchObject({ pdfFileName: 'INV-2026-000001.pdf', csvFileName: 'INV-2026-000001.csv' });
    expect(renderInvoiceEmail(invoice({ number: '../INV 2026/1\r\nX:"y"' }))).toMatchObject({
      pdfFileName: 'INV_2026_1_X_y_.pdf',
      csvFileName: 'INV_2026_1_X_y_.csv',
    });
  });

  it('writes a readable plain-text invoice', () => {
    const text = renderInvoiceEmail(invoice()).text;
    const lines = text.split('\n');
    expect(lines.slice(0, 13)).toEqual([
      'Invoice INV-2026-000001',
      '=======================',
      '',
      'From: Acme Telecom Ltd (ACME)',
      '      1 High Street',
      '      London',
      '      billing@acme.example',
      '',
      'To:   Partner Co (PART)',
      '',
      'Invoice number: INV-2026-000001',
      'Billing period: 2026-10',
      'Issue date:     2026-11-01',
    ]);
    expect(lines).toContain('Due date:       2026-12-01');
    expect(lines).toContain('Payment terms:  30 days');
    expect(text).toContain(
      [
        'Account               Product            Period   Description           Quantity  Unit  Unit price     Amount',
        '-------------------------------------------------------------------------------------------------------------',
        'ACC-1 Main account    SMS Text messages  2026-10  October messages          1250  msg         0.01     £12.50',
        'ACC-1 Main account    SMS Text messages  2026-10  -goodwill, "sorry"          -3  msg         0.01     -£0.03',
        'Subtotal ACC-1 Main account                                                                            £12.47',
        'ACC-2 Second account  DATA Mobile data   2026-09  Late September usage      12.5  GB         mixed  £1,234.56',
        'Subtotal ACC-2 Second account                                                                       £1,234.56',
        '-------------------------------------------------------------------------------------------------------------',
        'Total                                                                                               £1,247.03',
      ].join('\n'),
    );
    expect(lines).toContain('Total due: £1,247.03 by 2026-12-01');
    expect(lines).toContain(
      'Attached: INV-2026-000001.pdf (the invoice) and INV-2026-000001.csv (one row per invoiced transaction, with its billing record and usage).',
    );
    expect(text.endsWith('\n')).toBe(true);
  });

  it('HTML-escapes every piece of partner text', () => {
    const doc = invoice({
      issuer: { code: 'A&B', name: '<script>&"\'', email: null, address: '<b>1 High St</b>' },
      lines: [line({ description: '<img src=x onerror=alert(1)>', productName: 'Data & "more"' })],
      total: pennies(1250),
    });
    const { html } = renderInvoiceEmail(doc);
    expect(html).toContain('&lt;script&gt;&amp;&quot;&#39; (A&amp;B)');
    expect(html).toContain('&lt;b&gt;1 High St&lt;/b&gt;');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('SMS Data &amp; &quot;more&quot;');
    expect(html).not.toContain('<script');
    expect(html).not.toContain('<img');
    expect(html).not.toContain('<b>');
  });

  it('writes a self-contained HTML email with the same figures', () => {
    const { html } = renderInvoiceEmail(invoice());
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).toContain('<meta charset="utf-8">');
    expect(html).not.toMatch(/<(link|img|script|style)\b|src=|url\(|https?:/i);
    for (const figure of ['£12.50', '-£0.03', '£12.47', '£1,234.56', '£1,247.03', 'mixed', '2026-12-01', '30 days']) {
      expect(html).toContain(figure);
    }
    expect(html).toContain('>Subtotal ACC-1 Main account</td>');
    expect(html).toContain('>Total</td>');
  });

  it('uses the currency minor units for amounts', () => {
    const doc = invoice({ currency: 'JPY', lines: [line({ amount: pennies(-1500) })], total: pennies(-1500) });
    expect(renderInvoiceEmail(doc).text).toContain('Total due: -¥1,500 by 2026-12-01');
  });

  it('refuses to render an invoice whose lines do not add up to its total', () => {
    expect(() => renderInvoiceEmail(invoice({ total: pennies(1) }))).toThrow(
      'invoice INV-2026-000001: lines add up to 1247.03 but the total is 0.01',
    );
  });

  it('shows a settlement line (no product) by its own description', () => {
    const fee = line({ position: 4, productCode: '', productName: '', unit: '', kind: 'fee', description: 'Platform fee', quantity: '1', unitPrice: '25.00', amount: pennies(2500) });
    const doc = invoice({ lines: [line({}), fee], total: pennies(3750) });
    const { text, html } = renderInvoiceEmail(doc);
    const feeRow = text.split('\n').find((l) => l.includes('Platform fee'));
    expect(feeRow).toMatch(/^ACC-1 Main account {2,}2026-10 {2}Platform fee +1 +25\.00 +£25\.00$/);
    expect(html).toContain('>Platform fee</td>');
  });

  it('quotes a purchase order as such in its subtotal', () => {
    const doc = invoice({ lines: [line({ accountCode: 'PO-4711', accountName: 'Imaging', accountKind: 'purchase_order' })], total: pennies(1250) });
    expect(renderInvoiceEmail(doc).text).toContain('Subtotal Purchase order PO-4711 Imaging');
  });
});

describe('renderInvoiceEmail for credit notes and void invoices', () => {
  const credited = { id: 3, number: 'INV-2026-000001', issueDate: '2026-11-01' };
  const creditNote = (): InvoiceDocument =>
    invoice({
      kind: 'credit_note',
      number: 'INV-2026-000009',
      credits: credited,
      reason: 'Storage counted twice',
      lines: [line({ kind: 'credit', description: 'Storage counted twice', quantity: '-10', amount: pennies(-1250) })],
      total: pennies(-1250),
    });

  it('titles a credit note as such and names the invoice it corrects', () => {
    const { subject, text, html } = renderInvoiceEmail(creditNote());
    expect(subject).toBe('Credit note INV-2026-000009 from Acme Telecom Ltd for 2026-10 (credits INV-2026-000001)');
    expect(invoiceSubject(creditNote())).toBe(subject);
    const lines = text.split('\n');
    expect(lines.slice(0, 2)).toEqual(['Credit note INV-2026-000009', '===========================']);
    expect(lines).toContain('Credit note number: INV-2026-000009');
    expect(lines).toContain('Credits invoice:    INV-2026-000001 of 2026-11-01');
    expect(lines).toContain('Reason:             Storage counted twice');
    expect(lines).toContain('Credited: £12.50 against invoice INV-2026-000001.');
    expect(text).not.toContain('Total due');
    expect(text).not.toContain('Due date');
    expect(html).toContain('<h1 style="font-size:20px;margin:0 0 16px">Credit note INV-2026-000009</h1>');
    expect(html).toContain('Credited: £12.50 against invoice INV-2026-000001.');
  });

  it('marks a void invoice VOID and says nothing is due', () => {
    const { text, html } = renderInvoiceEmail(invoice({ status: 'void', voidedOn: '2026-11-25', reason: 'Wrong customer' }));
    const lines = text.split('\n');
    expect(lines[0]).toBe('Invoice INV-2026-000001 (VOID)');
    expect(lines).toContain('Status:         VOID since 2026-11-25');
    expect(lines).toContain('Reason:         Wrong customer');
    expect(lines).toContain('This invoice is VOID since 2026-11-25: nothing is due on it.');
    expect(text).not.toContain('Total due');
    expect(html).toContain('Invoice INV-2026-000001 (VOID)');
  });
});

function record(overrides: Partial<InvoiceRecordRow>): InvoiceRecordRow {
  return {
    transactionId: 101,
    billingRecordId: 11,
    accountCode: 'ACC-1',
    accountName: 'Main account',
    productCode: 'SMS',
    productName: 'Text messages',
    unit: 'msg',
    usagePeriod: '2026-10',
    usageId: 'U-1',
    user: 'm.chen',
    startedAt: '2026-10-03T12:15:00.000Z',
    endedAt: '',
    quantity: '1250',
    splitPercent: '100',
    kind: 'charge',
    unitPrice: '0.01',
    amount: pennies(1250),
    description: 'Text messages: 1250 msg at 0.01',
    usageDescription: '',
    ...overrides,
  };
}

describe('renderInvoiceCsv', () => {
  const header = INVOICE_CSV_HEADER.join(',');

  it('has one row per invoiced transaction, amounts in major units and numeric, feed text last', () => {
    const doc = invoice({ lines: [line({ amount: pennies(1247) })], total: pennies(1247) });
    const records = [
      record({}),
      record({ transactionId: 102, kind: 'discount', unitPrice: null, amount: pennies(-3), description: 'Loyalty discount 10%', usageDescription: 'Batch 88121, array "alpha"' }),
    ];
    expect(renderInvoiceCsv(doc, records)).toBe(
      `${header}\r\n` +
        'INV-2026-000001,ACC-1,Main account,2026-10,SMS,Text messages,charge,U-1,m.chen,2026-10-03T12:15:00.000Z,,1250,msg,100,0.01,12.50,GBP,11,101,Text messages: 1250 msg at 0.01,\r\n' +
        'INV-2026-000001,ACC-1,Main account,2026-10,SMS,Text messages,discount,U-1,m.chen,2026-10-03T12:15:00.000Z,,1250,msg,100,,-0.03,GBP,11,102,Loyalty discount 10%,"Batch 88121, array ""alpha"""\r\n',
    );
  });

  it('escapes formulas in every text column and keeps numbers numeric', () => {
    const doc = invoice({ lines: [line({})], total: pennies(1250) });
    const records = [record({ accountName: '=HYPERLINK("http://evil")', user: '@SUM(A1)', usageId: '+1', usageDescription: '-2+3' })];
    expect(renderInvoiceCsv(doc, records).split('\r\n')[1]).toBe(
      `INV-2026-000001,ACC-1,"'=HYPERLINK(""http://evil"")",2026-10,SMS,Text messages,charge,'+1,'@SUM(A1),2026-10-03T12:15:00.000Z,,1250,msg,100,0.01,12.50,GBP,11,101,Text messages: 1250 msg at 0.01,'-2+3`,
    );
  });

  it('lists the lines of a document without transactions of its own (a credit note)', () => {
    const doc = invoice({ lines: [line({ kind: 'credit', quantity: '-3', description: 'Goodwill', amount: pennies(-300) })], total: pennies(-300) });
    expect(renderInvoiceCsv(doc, []).split('\r\n')[1]).toBe(
      'INV-2026-000001,ACC-1,Main account,2026-10,SMS,Text messages,credit,,,,,-3,msg,,0.01,-3.00,GBP,,,Goodwill,',
    );
  });

  it('uses the currency minor units', () => {
    const doc = invoice({ currency: 'JPY', lines: [line({ amount: pennies(-1500) })], total: pennies(-1500) });
    expect(renderInvoiceCsv(doc, [record({ amount: pennies(-1500) })]).split('\r\n')[1]).toContain(',-1500,JPY,');
  });

  it('refuses transactions that do not add up to the total', () => {
    const doc = invoice({ lines: [line({})], total: pennies(1250) });
    expect(() => renderInvoiceCsv(doc, [record({ amount: pennies(1249) })])).toThrow(
      'invoice INV-2026-000001: its transactions add up to 12.49 but the total is 12.50',
    );
  });
});


describe('helpers', () => {
  it.each([
    ['  a \r\n\t b  ', 'a b'],
    ['plain', 'plain'],
    ['\u0000', ''],
  ])('oneLine(%j) is %j', (input, expected) => {
    expect(oneLine(input)).toBe(expected);
  });

  it.each([
    ['INV-1', 'INV-1'],
    ['...', 'invoice'],
    ['-rf', 'rf'],
    ['Ünïcödé 1', 'n_c_d_1'],
    ['a'.repeat(300), 'a'.repeat(100)],
  ])('safeFileStem(%j) is %j', (input, expected) => {
    expect(safeFileStem(input)).toBe(expected);
  });

  it('escapes the five HTML-significant characters', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });
});
