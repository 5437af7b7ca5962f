import { describe, expect, it } from 'vitest';
import type { InvoiceDocument, InvoiceDocumentLine } from './invoice-document';
import { escapeHtml, oneLine, renderInvoiceCsv, renderInvoiceEmail, safeFileStem } from './invoice-email';
import { pennies } from './money';

function line(overrides: Partial<InvoiceDocumentLine>): InvoiceDocumentLine {
  return {
    position: 1,
    accountCode: 'ACC-1',
    accountName: 'Main account',
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

  it('names the CSV after the invoice number, using only safe characters', () => {
    expect(renderInvoiceEmail(invoice()).csvFileName).toBe('INV-2026-000001.csv');
    expect(renderInvoiceEmail(invoice({ number: '../INV 2026/1\r\nX:"y"' })).csvFileName).toBe('INV_2026_1_X_y_.csv');
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

  it('attaches one CSV row per line, in position order, amounts in major units and numeric', () => {
    const doc = invoice();
    const reversed = { ...doc, lines: [...doc.lines].reverse() };
    const expected =
      'invoice_number,account_code,account_name,product_code,product_name,usage_period,kind,description,quantity,unit,unit_price,amount,currency\r\n' +
      'INV-2026-000001,ACC-1,Main account,SMS,Text messages,2026-10,charge,October messages,1250,msg,0.01,12.50,GBP\r\n' +
      'INV-2026-000001,ACC-2,Second account,DATA,Mobile data,2026-09,charge,Late September usage,12.5,GB,,1234.56,GBP\r\n' +
      `INV-2026-000001,ACC-1,Main account,SMS,Text messages,2026-10,credit,"'-goodwill, ""sorry""",-3,msg,0.01,-0.03,GBP\r\n`;
    expect(renderInvoiceEmail(reversed).csv).toBe(expected);
    expect(renderInvoiceCsv(doc)).toBe(expected);
  });

  it('escapes formulas in CSV text columns', () => {
    const doc = invoice({
      lines: [line({ accountName: '=HYPERLINK("http://evil")', productName: '@SUM(A1)', description: '+1' })],
      total: pennies(1250),
    });
    expect(renderInvoiceCsv(doc).split('\r\n')[1]).toBe(
      `INV-2026-000001,ACC-1,"'=HYPERLINK(""http://evil"")",SMS,'@SUM(A1),2026-10,charge,'+1,1250,msg,0.01,12.50,GBP`,
    );
  });

  it('uses the currency minor units for amounts', () => {
    const doc = invoice({ currency: 'JPY', lines: [line({ amount: pennies(-1500) })], total: pennies(-1500) });
    const { csv, text } = renderInvoiceEmail(doc);
    expect(csv.split('\r\n')[1]).toBe('INV-2026-000001,ACC-1,Main account,SMS,Text messages,2026-10,charge,October messages,1250,msg,0.01,-1500,JPY');
    expect(text).toContain('Total due: -¥1,500 by 2026-12-01');
  });

  it('refuses to render an invoice whose lines do not add up to its total', () => {
    expect(() => renderInvoiceEmail(invoice({ total: pennies(1) }))).toThrow(
      'invoice INV-2026-000001: lines add up to 1247.03 but the total is 0.01',
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
