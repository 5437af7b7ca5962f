import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { Temporal } from 'temporal-polyfill';
import { type Decimal, compare, decimal, mul, negate, normalize, shift, sum, toDecimalString } from '../decimal';
import { type Pennies, toPennies } from '../money';
import type { RoundingMode } from '../rounding';
import type { RatingContext, UsageToRate } from './calculator';
import {
  type AccountShare,
  type RatedRecord,
  type RuleVersion,
  type SplitRule,
  rateUsage,
  resolveAccounts,
  ruleVersionFor,
} from './rate-usage';
import { type RuleSet, pricingRuleFor, ruleSetSchema } from './registry';
import { unitPriceCalculator } from './unit-price';

const at = (iso: string): Temporal.Instant => Temporal.Instant.from(iso);
const rules = (value: unknown): RuleSet => ruleSetSchema.parse(value);
const version = (id: number, effectiveFrom: string, ruleSet: RuleSet = []): RuleVersion => ({ id, effectiveFrom, rules: ruleSet });
const usageOf = (quantity: string | Decimal, productCode = 'MICRO'): UsageToRate => ({
  productCode,
  productName: 'Microscope hours',
  unit: 'h',
  quantity: typeof quantity === 'string' ? decimal(quantity) : quantity,
});
const gbp = (roundingMode: RoundingMode): RatingContext => ({ currency: 'GBP', roundingMode });
const whole = (accountId: number): AccountShare[] => [{ accountId, percent: decimal('100') }];

function ratedOk(result: ReturnType<typeof rateUsage>): RatedRecord[] {
  if (!result.ok) throw new Error(`expected a rating, got: ${result.reason}`);
  return result.records;
}
const amountsOf = (records: RatedRecord[]): bigint[] => records.flatMap((r) => r.transactions.map((t) => t.amount));

describe('ruleVersionFor', () => {
  const BERLIN = 'Europe/Berlin';
  const versions = [version(2, '2026-07-01'), version(1, '2026-01-01'), version(3, '2027-01-01')];
  const midnightJuly = at('2026-06-30T22:00:00Z'); // 2026-07-01 00:00 in Berlin (CEST)

  it.each<[string, number | undefined, Temporal.Instant]>([
    ['at local midnight of 2026-07-01 in Berlin (22:00Z the day before)', 2, midnightJuly],
    ['1 ns before that midnight', 1, midnightJuly.subtract({ nanoseconds: 1 })],
    ['at 2026-07-01T00:00:00Z, two hours into the version', 2, at('2026-07-01T00:00:00Z')],
    ['at local midnight of 2026-01-01 (23:00Z the day before)', 1, at('2025-12-31T23:00:00Z')],
    ['1 ns before the first version', undefined, at('2025-12-31T23:00:00Z').subtract({ nanoseconds: 1 })],
    ['long after every version: the latest wins', 3, at('2030-01-01T00:00:00Z')],
    ['at local midnight of 2027-01-01', 3, at('2026-12-31T23:00:00Z')],
  ])('%s -> version %s', (_label, expected, startedAt) => {
    expect(ruleVersionFor(versions, startedAt, BERLIN)?.id).toBe(expected);
  });

  it('reads effective dates in the partnership zone: the same instant is in different versions in London and Berlin', () => {
    // 22:30Z on 30 June is 00:30 on 1 July in Berlin but 23:30 on 30 June in London.
    expect(ruleVersionFor(versions, at('2026-06-30T22:30:00Z'), BERLIN)?.id).toBe(2);
    expect(ruleVersionFor(versions, at('2026-06-30T22:30:00Z'), 'Europe/London')?.id).toBe(1);
  });

  it('no versions, or none started yet -> undefined', () => {
    expect(ruleVersionFor([], at('2026-07-01T00:00:00Z'), BERLIN)).toBeUndefined();
    expect(ruleVersionFor([version(9, '2027-01-01')], at('2026-07-01T00:00:00Z'), BERLIN)).toBeUndefined();
  });

  it('does not depend on the order versions are listed in (property)', () => {
    fc.assert(
      fc.property(fc.shuffledSubarray(versions, { minLength: 1 }), fc.bigInt({ min: 1_750_000_000n, max: 1_830_000_000n }), (vs, seconds) => {
        const startedAt = Temporal.Instant.fromEpochNanoseconds(seconds * 1_000_000_000n);
        const applicable = vs.filter((v) => Temporal.Instant.compare(Temporal.PlainDate.from(v.effectiveFrom).toZonedDateTime(BERLIN).toInstant(), startedAt) <= 0);
        const expected = applicable.sort((a, b) => (a.effectiveFrom < b.effectiveFrom ? 1 : -1))[0];
        expect(ruleVersionFor(vs, startedAt, BERLIN)?.id).toBe(expected?.id);
      }),
      { numRuns: 200 },
    );
  });
});

describe('resolveAccounts', () => {
  const MICRO = 1;
  const CPU = 2;
  const split = (userRef: string, productId: number | null, accountId: number, percent: string, position: number): SplitRule => ({
    userRef,
    productId,
    accountId,
    percent: decimal(percent),
    position,
  });
  // Listed out of position order on purpose: shares must come back ordered by position.
  const splits: SplitRule[] = [
    split('alice', MICRO, 12, '40', 2),
    split('alice', MICRO, 11, '60', 1),
    split('alice', null, 23, '25', 3),
    split('alice', null, 21, '50', 1),
    split('alice', null, 22, '25', 2),
    split('bob', null, 31, '100', 1),
  ];
  const shares = (...pairs: Array<[number, string]>): AccountShare[] => pairs.map(([accountId, percent]) => ({ accountId, percent: decimal(percent) }));

  it.each<[string, { accountId: number | null; userRef: string; productId: number }, number | null, AccountShare[]]>([
    ['the feed account wins over everything', { accountId: 99, userRef: 'alice', productId: MICRO }, 7, shares([99, '100'])],
    ['then the user split for this product, ordered by position', { accountId: null, userRef: 'alice', productId: MICRO }, 7, shares([11, '60'], [12, '40'])],
    ['then the user split for all products, ordered by position', { accountId: null, userRef: 'alice', productId: CPU }, 7, shares([21, '50'], [22, '25'], [23, '25'])],
    ['a split for all products applies to any product', { accountId: null, userRef: 'bob', productId: MICRO }, 7, shares([31, '100'])],
    ['then the default account', { accountId: null, userRef: 'carol', productId: MICRO }, 7, shares([7, '100'])],
    ['the feed account also wins when there is no split and no default', { accountId: 5, userRef: 'carol', productId: MICRO }, null, shares([5, '100'])],
  ])('%s', (_label, usage, defaultAccountId, expected) => {
    expect(resolveAccounts(usage, splits, defaultAccountId)).toEqual({ ok: true, shares: expected });
  });

  it('user references match exactly (no case folding, no trimming)', () => {
    expect(resolveAccounts({ accountId: null, userRef: 'Alice', productId: MICRO }, splits, 7)).toEqual({ ok: true, shares: shares([7, '100']) });
  });

  it('nothing resolvable -> an error naming the user', () => {
    expect(resolveAccounts({ accountId: null, userRef: 'carol', productId: MICRO }, splits, null)).toEqual({
      ok: false,
      reason: 'no account given, no split for user carol and no default account',
    });
  });
});

describe('ruleSetSchema and pricingRuleFor', () => {
  const valid = [
    { kind: 'unit_price', product: 'MICRO', price: '42.50' },
    { kind: 'unit_price', product: 'CPU', price: '0.045', description: 'CPU hours' },
  ];

  it('accepts unit prices with up to 6 places and finds the rule that prices a product', () => {
    const set = rules(valid);
    expect(pricingRuleFor(set, 'CPU')).toEqual({ kind: 'unit_price', product: 'CPU', price: '0.045', description: 'CPU hours' });
    expect(pricingRuleFor(set, 'MICRO')?.product).toBe('MICRO');
    expect(pricingRuleFor(set, 'SEQ')).toBeUndefined();
    expect(pricingRuleFor(set, 'micro')).toBeUndefined();
    expect(rules([{ kind: 'unit_price', product: 'X', price: '0.000001' }])).toHaveLength(1);
  });

  it.each<[string, unknown, Array<{ path: PropertyKey[]; message: string }>]>([
    ['a product priced twice', [...valid, { kind: 'unit_price', product: 'MICRO', price: '40' }], [{ path: [2, 'product'], message: 'product MICRO is already priced by rule 1' }]],
    ['a price as a JS number (a float would already have lost digits)', [{ kind: 'unit_price', product: 'X', price: 0.045 }], [{ path: [0, 'price'], message: 'Invalid input: expected string, received number' }]],
    ['a price with 7 places', [{ kind: 'unit_price', product: 'X', price: '0.0000001' }], [{ path: [0, 'price'], message: '"0.0000001" has more than 6 decimal places' }]],
    ['a price with an exponent', [{ kind: 'unit_price', product: 'X', price: '1e3' }], [{ path: [0, 'price'], message: '"1e3" uses an exponent; write the plain decimal' }]],
    ['a price with a comma', [{ kind: 'unit_price', product: 'X', price: '0,045' }], [{ path: [0, 'price'], message: '"0,045" has thousands or decimal separators other than a single "."' }]],
    ['a product code with a space', [{ kind: 'unit_price', product: 'A B', price: '1' }], [{ path: [0, 'product'], message: 'product codes are 1-64 letters, digits, _ . -' }]],
  ])('refuses %s', (_label, input, issues) => {
    const r = ruleSetSchema.safeParse(input);
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => ({ path: i.path, message: i.message }))).toEqual(issues);
  });

  it('refuses an unknown rule kind and unknown keys', () => {
    const unknownKind = ruleSetSchema.safeParse([{ kind: 'tiered', product: 'X', price: '1' }]);
    expect(unknownKind.success).toBe(false);
    expect(unknownKind.error?.issues[0]?.path).toEqual([0, 'kind']);
    const extraKey = ruleSetSchema.safeParse([{ kind: 'unit_price', product: 'X', price: '1', currency: 'GBP' }]);
    expect(extraKey.success).toBe(false);
    expect(extraKey.error?.issues[0]?.code).toBe('unrecognized_keys');
  });
});

describe('unit price calculator', () => {
  it('describes the charge with the exact quantity and the price as written, using the rule description when given', () => {
    const plain = unitPriceCalculator.price({ kind: 'unit_price', product: 'MICRO', price: '42.50' }, { before: decimal('0'), quantity: decimal('0.250') }, usageOf('0.250'), gbp('half_up'));
    expect(plain).toEqual({ kind: 'charge', amount: 1063n, unitPrice: decimal('42.5'), description: 'Microscope hours: 0.25 h at 42.50' });
    const named = unitPriceCalculator.price({ kind: 'unit_price', product: 'MICRO', price: '1', description: 'Confocal' }, { before: decimal('0'), quantity: decimal('2') }, usageOf('2'), gbp('half_up'));
    expect(named.description).toBe('Confocal: 2 h at 1');
  });
});

describe('rateUsage: rounding is named and happens once', () => {
  const v = version(5, '2026-01-01', rules([
    { kind: 'unit_price', product: 'MICRO', price: '42.50' },
    { kind: 'unit_price', product: 'CPU', price: '0.045' },
    { kind: 'unit_price', product: 'YEN', price: '0.5' },
  ]));

  it.each<[string, string, RoundingMode, bigint]>([
    ['0.25 h x 42.50 = 10.625', '0.25', 'half_up', 1063n],
    ['0.25 h x 42.50 = 10.625', '0.25', 'half_even', 1062n],
    ['-0.25 h x 42.50 = -10.625', '-0.25', 'half_up', -1063n],
    ['-0.25 h x 42.50 = -10.625', '-0.25', 'half_even', -1062n],
    ['0.75 h x 42.50 = 31.875', '0.75', 'half_up', 3188n],
    ['0.75 h x 42.50 = 31.875 (8 is even)', '0.75', 'half_even', 3188n],
    ['0.01 h x 42.50 = 0.425', '0.01', 'half_up', 43n],
    ['0.01 h x 42.50 = 0.425', '0.01', 'half_even', 42n],
    ['0.0001 h x 42.50 = 0.00425', '0.0001', 'half_up', 0n],
    ['0 h', '0', 'half_up', 0n],
    ['12 h x 42.50 = 510', '12', 'half_even', 51000n],
  ])('%s (quantity %s, %s) -> %s pennies', (_label, quantity, mode, expected) => {
    expect(amountsOf(ratedOk(rateUsage(usageOf(quantity), v, whole(1), gbp(mode))))).toEqual([expected]);
  });

  it.each<[string, RoundingMode, bigint]>([
    ['1234.567891', 'half_up', 5556n], // 55.555555095, rounded once (not 1234.57 x 0.045 = 55.55565)
    ['1234.567891', 'half_even', 5556n],
    ['0.111111', 'half_up', 0n], // 0.004999995: rounding twice (to 0.005, then 0.01) would give 1
    ['-1234.567891', 'half_up', -5556n],
    ['34100000000000000001', 'half_up', 153450000000000000005n], // above 2^53 and exact: x 0.045 = 1534500000000000000.045
  ])('%s h x 0.045 (%s) -> %s pennies', (quantity, mode, expected) => {
    expect(amountsOf(ratedOk(rateUsage(usageOf(quantity, 'CPU'), v, whole(1), gbp(mode))))).toEqual([expected]);
  });

  it('rounds to the currency minor unit: JPY has none', () => {
    const yen = { currency: 'JPY', roundingMode: 'half_up' } as const;
    expect(amountsOf(ratedOk(rateUsage(usageOf('3', 'YEN'), v, whole(1), yen)))).toEqual([2n]); // 1.5 -> 2
    expect(amountsOf(ratedOk(rateUsage(usageOf('5', 'YEN'), v, whole(1), { ...yen, roundingMode: 'half_even' })))).toEqual([2n]);
  });

  it('carries the rule version, kind, description and unit price onto every record', () => {
    const records = ratedOk(rateUsage(usageOf('0.25'), v, [
      { accountId: 11, percent: decimal('60') },
      { accountId: 12, percent: decimal('40') },
    ], gbp('half_up')));
    // 1063 pennies: 637.8 and 425.2 -> 637 + 425 = 1062; the leftover penny goes to the larger remainder.
    expect(records).toEqual([
      {
        accountId: 11,
        splitPercent: decimal('60'),
        quantity: decimal('0.15'),
        transactions: [{ kind: 'charge', amount: 638n, unitPrice: decimal('42.5'), description: 'Microscope hours: 0.25 h at 42.50', ruleVersionId: 5 }],
      },
      {
        accountId: 12,
        splitPercent: decimal('40'),
        quantity: decimal('0.1'),
        transactions: [{ kind: 'charge', amount: 425n, unitPrice: decimal('42.5'), description: 'Microscope hours: 0.25 h at 42.50', ruleVersionId: 5 }],
      },
    ]);
  });

  it('a product with no price -> not rated, with a reason naming the product and the version', () => {
    expect(rateUsage(usageOf('1', 'SEQ'), v, whole(1), gbp('half_up'))).toEqual({
      ok: false,
      reason: 'no price for product SEQ in rules effective 2026-01-01',
    });
  });
});

/** A quantity of up to 24 digits with 0..8 places, negative too. */
const quantity: fc.Arbitrary<Decimal> = fc
  .record({
    coefficient: fc.oneof(fc.bigInt({ min: -(10n ** 24n), max: 10n ** 24n }), fc.bigInt({ min: -2000n, max: 2000n })),
    scale: fc.integer({ min: 0, max: 8 }),
  })
  .map(normalize);
/** A unit price written as a string with up to 6 places, as the rule files hold it. */
const priceText: fc.Arbitrary<string> = fc
  .record({ coefficient: fc.bigInt({ min: 0n, max: 10n ** 12n }), scale: fc.integer({ min: 0, max: 6 }) })
  .map((d) => toDecimalString(d));
/**
 * 1-5 positive percentages with 4 places summing to exactly 100: cut 0..1,000,000 (units of
 * 0.0001 %) at distinct points; the last share is whatever is left, so the sum is exact by construction.
 */
const percentages: fc.Arbitrary<Decimal[]> = fc
  .uniqueArray(fc.integer({ min: 1, max: 999_999 }), { maxLength: 4 })
  .map((cuts) => {
    const points = [0, ...[...cuts].sort((a, b) => a - b), 1_000_000];
    return points.slice(1).map((p, i) => normalize({ coefficient: BigInt(p - points[i]!), scale: 4 }));
  });
const mode = fc.constantFrom<RoundingMode>('half_up', 'half_even');

describe('rateUsage: splits conserve pennies and quantity (property)', () => {
  it('records sum to the unsplit charge, share the sign of the total, stay within a penny of their share, and split the quantity exactly', () => {
    fc.assert(
      fc.property(quantity, priceText, percentages, mode, (q, price, pcts, roundingMode) => {
        const v = version(1, '2026-01-01', rules([{ kind: 'unit_price', product: 'MICRO', price }]));
        const shares = pcts.map((percent, i) => ({ accountId: 100 + i, percent }));
        const ctx = gbp(roundingMode);
        const total: Pennies = toPennies(mul(q, decimal(price)), 'GBP', roundingMode);
        const unsplit = amountsOf(ratedOk(rateUsage(usageOf(q), v, whole(1), ctx)));
        expect(unsplit).toEqual([total]);

        const records = ratedOk(rateUsage(usageOf(q), v, shares, ctx));
        expect(records.map((r) => r.accountId)).toEqual(shares.map((s) => s.accountId));
        const parts = amountsOf(records);
        expect(parts).toHaveLength(shares.length);
        expect(parts.reduce((a, b) => a + b, 0n)).toBe(total);

        records.forEach((record, i) => {
          const part = parts[i]!;
          const pct = pcts[i]!;
          // Same sign as the total, or zero.
          if (total > 0n) expect(part >= 0n).toBe(true);
          if (total < 0n) expect(part <= 0n).toBe(true);
          if (total === 0n) expect(part).toBe(0n);
          // Within a penny of the exact share: |part - total x pct / 100| < 1.
          const denominator = 10n ** BigInt(pct.scale + 2);
          const diff = part * denominator - total * pct.coefficient;
          expect(diff < denominator && -diff < denominator).toBe(true);
          // The record's quantity is exactly quantity x percent / 100.
          expect(record.quantity).toEqual(normalize({ coefficient: q.coefficient * pct.coefficient, scale: q.scale + pct.scale + 2 }));
          expect(record.splitPercent).toEqual(pct);
        });
        expect(compare(sum(records.map((r) => r.quantity)), q)).toBe(0);
        expect(compare(sum(pcts), decimal('100'))).toBe(0);
      }),
      { numRuns: 500 },
    );
  });

  it('a credit is the exact negation of the charge, split the same way but with the sign kept', () => {
    fc.assert(
      fc.property(quantity, priceText, percentages, (q, price, pcts) => {
        const v = version(1, '2026-01-01', rules([{ kind: 'unit_price', product: 'MICRO', price }]));
        const shares = pcts.map((percent, i) => ({ accountId: i + 1, percent }));
        const ctx = gbp('half_up');
        const charge = amountsOf(ratedOk(rateUsage(usageOf(q), v, shares, ctx)));
        const credit = amountsOf(ratedOk(rateUsage(usageOf(negate(q)), v, shares, ctx)));
        // half_up is symmetric about zero and allocation works on the magnitude, so credits mirror charges.
        expect(credit).toEqual(charge.map((p) => -p));
      }),
      { numRuns: 200 },
    );
  });

  it('percentages written with 6 places (what the import schema allows) still conserve pennies', () => {
    const thirds = ['33.333333', '33.333333', '33.333334'].map((p) => decimal(p));
    const v = version(1, '2026-01-01', rules([{ kind: 'unit_price', product: 'MICRO', price: '0.01' }]));
    const records = ratedOk(rateUsage(usageOf('100'), v, thirds.map((percent, i) => ({ accountId: i, percent })), gbp('half_up')));
    expect(amountsOf(records)).toEqual([33n, 33n, 34n]);
    expect(records.map((r) => toDecimalString(r.quantity))).toEqual(['33.333333', '33.333333', '33.333334']);
    expect(toDecimalString(shift(sum(thirds), -2))).toBe('1');
  });
});
