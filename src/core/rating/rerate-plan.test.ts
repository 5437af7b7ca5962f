import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decimal } from '../decimal';
import type { Pennies } from '../money';
import type { RatedRecord } from './rate-usage';
import { type BookedRecord, planRerating } from './rerate-plan';

const record = (accountId: number, ...amounts: bigint[]): RatedRecord => ({
  accountId,
  splitPercent: decimal('100'),
  quantity: decimal('1'),
  transactions: amounts.map((a) => ({ kind: 'charge' as const, amount: a as Pennies, description: 'x', unitPrice: null, ruleVersionId: 7 })),
});
const booked = (usageId: string, accountId: number, total: bigint, invoiced: boolean): BookedRecord => ({ recordId: `r${usageId}-${accountId}`, usageId, accountId, total, invoiced });
const target = (usageId: string, ...records: RatedRecord[]) => ({ usageId, records, ruleVersionId: 7, reason: `re-rated ${usageId}` });

describe('re-rating plan', () => {
  it('leaves unchanged usages, replaces uninvoiced ones, adjusts invoiced ones per account', () => {
    const plan = planRerating(
      [target('1', record(10, 500n)), target('2', record(10, 450n, -45n)), target('3', record(10, 300n), record(11, 200n))],
      [booked('1', 10, 500n, true), booked('2', 10, 500n, false), booked('3', 10, 250n, true), booked('3', 11, 250n, true)],
    );
    expect(plan.unchanged).toBe(1);
    expect(plan.replace.map((r) => r.usageId)).toEqual(['2']);
    expect(plan.adjustments).toEqual([
      { usageId: '3', recordId: 'r3-10', accountId: 10, amount: 50n, ruleVersionId: 7, description: 're-rated 3' },
      { usageId: '3', recordId: 'r3-11', accountId: 11, amount: -50n, ruleVersionId: 7, description: 're-rated 3' },
    ]);
    expect(plan.conflicts).toEqual([]);
    expect([...plan.totals]).toEqual([[10, { before: 1250n, after: 1205n }], [11, { before: 250n, after: 200n }]]);
  });

  it('refuses to move an invoiced charge to another account, and replaces an uninvoiced one', () => {
    const plan = planRerating(
      [target('1', record(11, 500n)), target('2', record(11, 500n))],
      [booked('1', 10, 500n, true), booked('2', 10, 500n, false)],
    );
    expect(plan.conflicts).toEqual([{ usageId: '1', message: 'usage 1 is invoiced to accounts 10 but the rules now charge 11: correct it with a credit note' }]);
    expect(plan.replace.map((r) => r.usageId)).toEqual(['2']);
  });

  it('books exactly the new totals: booked plus adjustments equals the target (property)', () => {
    const amount = fc.bigInt({ min: -(10n ** 9n), max: 10n ** 9n });
    fc.assert(
      fc.property(fc.array(fc.tuple(amount, amount, amount, amount, fc.boolean()), { minLength: 1, maxLength: 20 }), (usages) => {
        const targets = usages.map(([a, b], i) => target(String(i), record(1, a), record(2, b)));
        const bookedRows = usages.flatMap(([, , c, d, invoiced], i) => [booked(String(i), 1, c, invoiced), booked(String(i), 2, d, invoiced)]);
        const plan = planRerating(targets, bookedRows);
        const replaced = new Set(plan.replace.map((r) => r.usageId));
        usages.forEach(([a, b, c, d, invoiced], i) => {
          const id = String(i);
          if (a === c && b === d) return expect(replaced.has(id) || plan.adjustments.some((x) => x.usageId === id)).toBe(false);
          if (!invoiced) return expect(replaced.has(id)).toBe(true);
          const adj = (acc: number) => plan.adjustments.filter((x) => x.usageId === id && x.accountId === acc).reduce((s, x) => s + x.amount, 0n);
          expect(c + adj(1)).toBe(a);
          expect(d + adj(2)).toBe(b);
        });
      }),
    );
  });
});
