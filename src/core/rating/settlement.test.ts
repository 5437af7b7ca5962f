import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Pennies } from '../money';
import type { RatingContext } from './calculator';
import { ruleSetSchema } from './registry';
import { type BookedSettlement, settlementDeltas, settlementKey, settlementTargets } from './settlement';

const gbp: RatingContext = { currency: 'GBP', roundingMode: 'half_up' };
const p = (n: bigint) => n as Pennies;
const rules = ruleSetSchema.parse([
  { kind: 'minimum_commitment', amount: '500.00' },
  { kind: 'cap', amount: '900.00' },
  { kind: 'fixed_fee', amount: '25.00', description: 'Platform fee' },
  { kind: 'credit', amount: '10.00', period: '2026-10', description: 'Welcome voucher' },
]);

describe('settlement targets', () => {
  it('books a true-up below the minimum, a cut above the cap, the fee, and the voucher in its period', () => {
    expect(settlementTargets(rules, { period: '2026-10', usageTotal: p(42000n) }, gbp).map((t) => [t.key, t.kind, t.amount])).toEqual([
      ['minimum_commitment', 'adjustment', 8000n],
      ['cap', 'adjustment', 0n],
      ['fixed_fee:platform-fee', 'fee', 2500n],
      ['credit:welcome-voucher', 'credit', -1000n],
    ]);
    expect(settlementTargets(rules, { period: '2026-11', usageTotal: p(100000n) }, gbp).map((t) => [t.key, t.amount])).toEqual([
      ['minimum_commitment', 0n],
      ['cap', -10000n],
      ['fixed_fee:platform-fee', 2500n],
      ['credit:welcome-voucher', 0n],
    ]);
  });

  it('keys fees and vouchers by their name, so a renamed fee is another fee', () => {
    expect(settlementKey({ kind: 'fixed_fee', amount: '1.00', description: 'Support & Maintenance (24/7)' })).toBe('fixed_fee:support-maintenance-24-7');
    expect(settlementKey({ kind: 'cap', amount: '1.00' })).toBe('cap');
  });
});

describe('settlement deltas', () => {
  it('books only the difference to what is booked, and nothing when it matches', () => {
    const targets = settlementTargets(rules, { period: '2026-10', usageTotal: p(42000n) }, gbp);
    const first = settlementDeltas(targets, [], '2026-10');
    expect(first.map((d) => [d.key, d.amount])).toEqual([['minimum_commitment', 8000n], ['fixed_fee:platform-fee', 2500n], ['credit:welcome-voucher', -1000n]]);
    const booked: BookedSettlement[] = first.map((d) => ({ key: d.key, kind: d.kind, total: d.amount }));
    expect(settlementDeltas(targets, booked, '2026-10')).toEqual([]);
    // Late usage lifts the period to 45000: the true-up shrinks by 3000.
    const later = settlementTargets(rules, { period: '2026-10', usageTotal: p(45000n) }, gbp);
    expect(settlementDeltas(later, booked, '2026-10')).toEqual([
      { key: 'minimum_commitment', kind: 'adjustment', amount: -3000n, description: 'Revised: Minimum commitment 500.00 for 2026-10: usage came to 450.00' },
    ]);
    // Above the minimum, the true-up is reversed in full.
    const above = settlementTargets(rules, { period: '2026-10', usageTotal: p(60000n) }, gbp);
    expect(settlementDeltas(above, booked, '2026-10')[0]).toEqual({ key: 'minimum_commitment', kind: 'adjustment', amount: -8000n, description: 'Minimum commitment for 2026-10 no longer applies' });
  });

  it('withdraws a booked settlement whose rule is gone', () => {
    expect(settlementDeltas([], [{ key: 'fixed_fee:platform-fee', kind: 'fee', total: p(2500n) }], '2026-10')).toEqual([
      { key: 'fixed_fee:platform-fee', kind: 'fee', amount: -2500n, description: 'Fee platform-fee for 2026-10 withdrawn: the rules in force no longer have it' },
    ]);
  });

  it('always brings the booked total to the target, whatever was booked before (property)', () => {
    const amount = fc.bigInt({ min: -(10n ** 12n), max: 10n ** 12n });
    fc.assert(
      fc.property(amount, amount, fc.bigInt({ min: 0n, max: 10n ** 12n }), (bookedMin, bookedFee, usage) => {
        const booked: BookedSettlement[] = [
          { key: 'minimum_commitment', kind: 'adjustment', total: p(bookedMin) },
          { key: 'fixed_fee:platform-fee', kind: 'fee', total: p(bookedFee) },
          { key: 'fixed_fee:old-fee', kind: 'fee', total: p(bookedFee) },
        ];
        const targets = settlementTargets(rules, { period: '2026-10', usageTotal: p(usage) }, gbp);
        const deltas = settlementDeltas(targets, booked, '2026-10');
        const after = new Map(booked.map((b) => [b.key, b.total as bigint]));
        for (const d of deltas) after.set(d.key, (after.get(d.key) ?? 0n) + d.amount);
        for (const t of targets) expect(after.get(t.key) ?? 0n).toBe(t.amount);
        expect(after.get('fixed_fee:old-fee')).toBe(0n);
        expect(deltas.every((d) => d.amount !== 0n)).toBe(true);
      }),
    );
  });
});
