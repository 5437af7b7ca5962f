import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { compareLines, describeLine, formatInvoiceNumber, invoiceTotal, subtotalsByAccount } from './invoice';
import type { InvoiceDocumentLine } from './invoice-document';
import { type Pennies, pennies } from './money';

type SortKey = Pick<InvoiceDocumentLine, 'accountCode' | 'usagePeriod' | 'productCode' | 'kind' | 'unitPrice'>;
const line = (accountCode: string, usagePeriod: string, productCode: string, kind: string, unitPrice: string | null = null): SortKey => ({
  accountCode,
  usagePeriod,
  productCode,
  kind,
  unitPrice,
});
const keyOf = (l: SortKey): string => [l.accountCode, l.usagePeriod, l.productCode, l.kind, l.unitPrice ?? '-'].join(' ');

describe('formatInvoiceNumber', () => {
  it.each<[number, number, string]>([
    [2026, 1, 'INV-2026-000001'],
    [2026, 42, 'INV-2026-000042'],
    [2027, 999999, 'INV-2027-999999'],
    // Past a million the number grows rather than wrapping or truncating.
    [2026, 1000000, 'INV-2026-1000000'],
  ])('%i #%i -> %s', (year, seq, expected) => {
    expect(formatInvoiceNumber(year, seq)).toBe(expected);
  });

  it('sorts in issue order within a year for the first million numbers (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 999_999 }), fc.integer({ min: 1, max: 999_999 }), (a, b) => {
        const [x, y] = [formatInvoiceNumber(2026, a), formatInvoiceNumber(2026, b)];
        expect(x < y).toBe(a < b);
        expect(x).toMatch(/^INV-2026-\d{6}$/);
      }),
    );
  });
});

describe('compareLines', () => {
  const expected: SortKey[] = [
    line('EXP-1', '2026-09', 'MICRO', 'charge', '42.5'),
    line('EXP-1', '2026-10', 'CPU', 'charge', '0.045'),
    line('EXP-1', '2026-10', 'MICRO', 'charge', '40'),
    line('EXP-1', '2026-10', 'MICRO', 'charge', '42.5'),
    line('EXP-1', '2026-10', 'MICRO', 'fee'),
    line('EXP-1', '2026-10', 'MICRO', 'surcharge'),
    line('EXP-1', '2026-10', 'MICRO', 'discount'),
    line('EXP-1', '2026-10', 'MICRO', 'adjustment'),
    line('EXP-1', '2026-10', 'MICRO', 'credit'),
    line('EXP-2', '2026-08', 'SEQ', 'charge', '1'),
    line('PO-9', '2026-10', 'CPU', 'charge', '0.05'),
  ];

  it('orders by account, then usage period, product, kind (charges first) and unit price', () => {
    fc.assert(
      fc.property(fc.shuffledSubarray(expected, { minLength: expected.length, maxLength: expected.length }), (shuffled) => {
        expect([...shuffled].sort(compareLines).map(keyOf)).toEqual(expected.map(keyOf));
      }),
      { numRuns: 50 },
    );
  });

  it.each<[string, SortKey, SortKey]>([
    ['account before period', line('A', '2026-10', 'Z', 'charge'), line('B', '2026-01', 'A', 'charge')],
    ['earlier usage period (a late item) first', line('A', '2026-09', 'Z', 'credit'), line('A', '2026-10', 'A', 'charge')],
    ['product before kind', line('A', '2026-10', 'A', 'credit'), line('A', '2026-10', 'B', 'charge')],
    ['a charge before its discount', line('A', '2026-10', 'A', 'charge'), line('A', '2026-10', 'A', 'discount')],
    ['a line mixing prices (no unit price) before a priced one', line('A', '2026-10', 'A', 'charge', null), line('A', '2026-10', 'A', 'charge', '1')],
  ])('%s', (_label, first, second) => {
    expect(compareLines(first, second)).toBeLessThan(0);
    expect(compareLines(second, first)).toBeGreaterThan(0);
    expect(compareLines(first, first)).toBe(0);
  });

  it('orders codes the same whatever the locale of the machine (Danish collation sorts "AA" after "AZ")', () => {
    const script = `
      const { compareLines } = await import(${JSON.stringify(fileURLToPath(new URL('./invoice.ts', import.meta.url)))});
      const l = (accountCode) => ({ accountCode, usagePeriod: '2026-10', productCode: 'P', kind: 'charge', unitPrice: null });
      console.log(JSON.stringify([l('AZ-1'), l('AA-1'), l('AB-1')].sort(compareLines).map((x) => x.accountCode)));
    `;
    const run = (locale: string): unknown =>
      JSON.parse(
        execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
          cwd: fileURLToPath(new URL('../..', import.meta.url)), // where tsx is installed
          env: { ...process.env, LANG: locale, LC_ALL: locale },
          encoding: 'utf8',
        }),
      );
    expect(run('da_DK.UTF-8')).toEqual(['AA-1', 'AB-1', 'AZ-1']);
    expect(run('en_US.UTF-8')).toEqual(['AA-1', 'AB-1', 'AZ-1']);
  });
});

describe('describeLine', () => {
  it.each<[string, string, string, string, string]>([
    ['Microscope hours', 'charge', '2026-10', '2026-10', 'Microscope hours'],
    ['Microscope hours', 'discount', '2026-10', '2026-10', 'Microscope hours discount'],
    ['Microscope hours', 'charge', '2026-09', '2026-10', 'Microscope hours (usage in 2026-09, late)'],
    ['Microscope hours', 'credit', '2026-09', '2026-10', 'Microscope hours credit (usage in 2026-09, late)'],
    ['CPU hours', 'charge', '2025-12', '2026-01', 'CPU hours (usage in 2025-12, late)'],
  ])('%s / %s / usage %s on the %s invoice -> %j', (product, kind, usagePeriod, invoicePeriod, expected) => {
    expect(describeLine(product, kind, usagePeriod, invoicePeriod)).toBe(expected);
  });
});

describe('subtotalsByAccount and invoiceTotal', () => {
  type Line = Pick<InvoiceDocumentLine, 'accountCode' | 'accountName' | 'amount'>;
  const l = (accountCode: string, amount: bigint): Line => ({ accountCode, accountName: `Account ${accountCode}`, amount: pennies(amount) });

  it('sums per account in the order accounts first appear, credits included', () => {
    const lines = [l('EXP-2', 1063n), l('EXP-1', 500n), l('EXP-2', -1062n), l('PO-9', 0n), l('EXP-1', 1n)];
    expect(subtotalsByAccount(lines)).toEqual([
      { accountCode: 'EXP-2', accountName: 'Account EXP-2', amount: 1n },
      { accountCode: 'EXP-1', accountName: 'Account EXP-1', amount: 501n },
      { accountCode: 'PO-9', accountName: 'Account PO-9', amount: 0n },
    ]);
    expect(invoiceTotal(lines)).toBe(502n);
  });

  it('keeps the first name seen for an account', () => {
    expect(subtotalsByAccount([{ accountCode: 'A', accountName: 'First', amount: pennies(1n) }, { accountCode: 'A', accountName: 'Second', amount: pennies(2n) }])).toEqual([
      { accountCode: 'A', accountName: 'First', amount: 3n },
    ]);
  });

  it('no lines -> no subtotals and a zero total', () => {
    expect(subtotalsByAccount([])).toEqual([]);
    expect(invoiceTotal([])).toBe(0n);
  });

  it('stays exact above 2^53 (bigint, never number or string concatenation)', () => {
    const big = 2n ** 60n;
    const lines = [l('A', big), l('A', 1n), l('B', -big)];
    expect(subtotalsByAccount(lines).map((s) => s.amount)).toEqual([big + 1n, -big]);
    expect(invoiceTotal(lines)).toBe(1n);
    expect(typeof invoiceTotal(lines)).toBe('bigint');
  });

  it('subtotals always add up to the invoice total (property)', () => {
    const lineArb = fc.record({
      accountCode: fc.constantFrom('A', 'B', 'C', 'D'),
      amount: fc.bigInt({ min: -(10n ** 15n), max: 10n ** 15n }).map((v): Pennies => pennies(v)),
    }).map((x) => ({ ...x, accountName: x.accountCode }));
    fc.assert(
      fc.property(fc.array(lineArb, { maxLength: 30 }), (lines) => {
        const subtotals = subtotalsByAccount(lines);
        expect(subtotals.reduce((a, s) => a + s.amount, 0n)).toBe(invoiceTotal(lines));
        expect(subtotals.map((s) => s.accountCode)).toEqual([...new Set(lines.map((x) => x.accountCode))]);
      }),
      { numRuns: 200 },
    );
  });
});
