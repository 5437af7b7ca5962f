import fc from 'fast-check';
import { Temporal } from 'temporal-polyfill';
import { describe, expect, it } from 'vitest';
import { AGING_BUCKETS, agingBucket, buildAgingReport, daysPastDue } from './aging';
import { type Pennies, pennies } from './money';
import type { OpenInvoice } from './receivables';

const p = (v: bigint | number): Pennies => pennies(v);

describe('daysPastDue', () => {
  it.each<[string, string, number]>([
    ['2026-12-31', '2026-12-31', 0],
    ['2026-12-31', '2027-01-01', 1],
    ['2026-12-31', '2026-12-01', -30],
    ['2028-02-28', '2028-03-01', 2], // leap year
    ['2027-02-28', '2027-03-01', 1],
    ['2026-03-28', '2026-03-30', 2], // a DST change is still two calendar days
    ['2025-12-31', '2026-12-31', 365],
  ])('due %s, as of %s: %i', (due, asOf, days) => {
    expect(daysPastDue(due, asOf)).toBe(days);
  });
});

describe('agingBucket', () => {
  it.each<[number, string]>([
    [-10, 'current'],
    [0, 'current'],
    [1, '1-30'],
    [30, '1-30'],
    [31, '31-60'],
    [60, '31-60'],
    [61, '61-90'],
    [90, '61-90'],
    [91, 'over_90'],
    [4000, 'over_90'],
  ])('%i days past due is %s', (days, bucket) => {
    expect(agingBucket(days)).toBe(bucket);
  });
});

const inv = (over: Partial<OpenInvoice>): OpenInvoice => ({
  invoiceId: 1,
  number: 'INV-2026-000001',
  customerCode: 'ACME',
  customerName: 'Acme',
  currency: 'GBP',
  issueDate: '2026-09-01',
  dueDate: '2026-10-01',
  total: p(1000),
  paid: p(0),
  credited: p(0),
  ledger: p(0),
  ...over,
});

describe('buildAgingReport', () => {
  it('puts each open amount in its bucket per customer and currency, with credit and totals per currency', () => {
    const report = buildAgingReport(
      '2026-12-31',
      [
        inv({ invoiceId: 1, dueDate: '2026-12-31', total: p(100) }), // 0 days: current
        inv({ invoiceId: 2, dueDate: '2026-12-30', total: p(200), paid: p(50) }), // 1: 1-30, 150 open
        inv({ invoiceId: 3, dueDate: '2026-12-01', total: p(400) }), // 30
        inv({ invoiceId: 4, dueDate: '2026-11-30', total: p(800) }), // 31
        inv({ invoiceId: 5, dueDate: '2026-11-01', total: p(1600) }), // 60
        inv({ invoiceId: 6, dueDate: '2026-10-31', total: p(3200), credited: p(200) }), // 61
        inv({ invoiceId: 7, dueDate: '2026-10-02', total: p(6400) }), // 90
        inv({ invoiceId: 8, dueDate: '2026-10-01', total: p(12800) }), // 91
        inv({ invoiceId: 9, dueDate: '2026-10-01', total: p(5), paid: p(5) }), // settled: left out
        inv({ invoiceId: 10, dueDate: '2026-12-15', currency: 'EUR', total: p(999) }),
        inv({ invoiceId: 11, customerCode: 'BETA', customerName: 'Beta', dueDate: '2027-01-30', total: p(70) }),
      ],
      [{ customerCode: 'ACME', customerName: 'Acme', currency: 'GBP', balance: p(25) }],
    );
    expect(report.asOf).toBe('2026-12-31');
    expect(report.rows).toEqual([
      { customerCode: 'ACME', customerName: 'Acme', currency: 'EUR', buckets: { current: 0n, '1-30': 999n, '31-60': 0n, '61-90': 0n, over_90: 0n }, total: 999n, credit: 0n, net: 999n },
      {
        customerCode: 'ACME', customerName: 'Acme', currency: 'GBP',
        buckets: { current: 100n, '1-30': 550n, '31-60': 2400n, '61-90': 9400n, over_90: 12800n },
        total: 25250n, credit: 25n, net: 25225n,
      },
      { customerCode: 'BETA', customerName: 'Beta', currency: 'GBP', buckets: { current: 70n, '1-30': 0n, '31-60': 0n, '61-90': 0n, over_90: 0n }, total: 70n, credit: 0n, net: 70n },
    ]);
    expect(report.totals).toEqual([
      { currency: 'EUR', buckets: { current: 0n, '1-30': 999n, '31-60': 0n, '61-90': 0n, over_90: 0n }, total: 999n, credit: 0n, net: 999n },
      { currency: 'GBP', buckets: { current: 170n, '1-30': 550n, '31-60': 2400n, '61-90': 9400n, over_90: 12800n }, total: 25320n, credit: 25n, net: 25295n },
    ]);
  });

  it('lists a customer who has only credit', () => {
    const report = buildAgingReport('2026-12-31', [], [{ customerCode: 'ZED', customerName: 'Zed', currency: 'USD', balance: p(300) }]);
    expect(report.rows).toEqual([{ customerCode: 'ZED', customerName: 'Zed', currency: 'USD', buckets: { current: 0n, '1-30': 0n, '31-60': 0n, '61-90': 0n, over_90: 0n }, total: 0n, credit: 300n, net: -300n }]);
  });

  it('loses no penny: buckets add up to each row, rows add up to the totals, per currency', () => {
    const date = fc.integer({ min: 0, max: 800 }).map((d) => Temporal.PlainDate.from('2025-06-01').add({ days: d }).toString());
    const arbInvoice = fc.record({
      customerCode: fc.constantFrom('A', 'B', 'C'),
      currency: fc.constantFrom('GBP', 'EUR', 'JPY'),
      dueDate: date,
      total: fc.bigInt({ min: -1000n, max: 10n ** 9n }),
      paidPct: fc.integer({ min: 0, max: 100 }),
    });
    fc.assert(
      fc.property(date, fc.array(arbInvoice, { maxLength: 40 }), (asOf, raw) => {
        const invoices = raw.map((r, i) => inv({ invoiceId: i, customerCode: r.customerCode, customerName: r.customerCode, currency: r.currency, dueDate: r.dueDate, total: p(r.total), paid: p((r.total * BigInt(r.paidPct)) / 100n) }));
        const report = buildAgingReport(asOf, invoices, []);
        for (const row of report.rows) {
          const bucketSum = AGING_BUCKETS.reduce((a, b) => a + row.buckets[b], 0n);
          expect(bucketSum).toBe(row.total);
          const mine = invoices.filter((i) => i.customerCode === row.customerCode && i.currency === row.currency);
          expect(row.total).toBe(mine.reduce((a, i) => a + (i.total - i.paid), 0n));
        }
        for (const t of report.totals) {
          const rows = report.rows.filter((r) => r.currency === t.currency);
          expect(t.total).toBe(rows.reduce((a, r) => a + r.total, 0n));
          for (const b of AGING_BUCKETS) expect(t.buckets[b]).toBe(rows.reduce((a, r) => a + r.buckets[b], 0n));
        }
        expect(new Set(report.totals.map((t) => t.currency)).size).toBe(report.totals.length);
      }),
    );
  });
});
