import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { type Decimal, ZERO, decimal, normalize, shift } from './decimal';
import { type Pennies, pennies } from './money';
import { allocate } from './allocation';

const ws = (...texts: string[]): Decimal[] => texts.map((t) => decimal(t));
const run = (total: bigint, weights: readonly Decimal[]): bigint[] => allocate(pennies(total), weights);

/** A split percentage 0..100 with up to four decimal places. */
const percentage: fc.Arbitrary<Decimal> = fc
  .integer({ min: 0, max: 4 })
  .chain((scale) => fc.bigInt({ min: 0n, max: 100n * 10n ** BigInt(scale) }).map((coefficient) => normalize({ coefficient, scale })));
const weight = fc.oneof({ weight: 1, arbitrary: fc.constant(ZERO) }, { weight: 4, arbitrary: percentage });
const weights = fc.array(weight, { minLength: 1, maxLength: 8 }).filter((w) => w.some((x) => x.coefficient !== 0n));
const total: fc.Arbitrary<Pennies> = fc
  .oneof(
    fc.bigInt({ min: -(10n ** 15n), max: 10n ** 15n }),
    fc.bigInt({ min: -300n, max: 300n }),
    fc.constantFrom(0n, 1n, -1n, 10n ** 15n, -(10n ** 15n)),
  )
  .map((t) => pennies(t));

/** Weights as integers at one common scale, computed independently of the implementation. */
function integerWeights(weights: readonly Decimal[]): bigint[] {
  const scale = weights.reduce((s, w) => Math.max(s, w.scale), 0);
  return weights.map((w) => w.coefficient * 10n ** BigInt(scale - w.scale));
}

const absolute = (x: bigint): bigint => (x < 0n ? -x : x);

describe('allocate: table', () => {
  it.each<[string, bigint, string[], bigint[]]>([
    ['one penny over an even split goes to the first part', 1n, ['50', '50'], [1n, 0n]],
    ['thirds that do not quite add up', 10n, ['33.3333', '33.3333', '33.3334'], [3n, 3n, 4n]],
    ['a one-penny credit goes to the first part too', -1n, ['50', '50'], [-1n, 0n]],
    ['an exact split stays exact', 100n, ['60', '40'], [60n, 40n]],
    ['two leftover pennies go to the first two of three equal parts', 101n, ['1', '1', '1'], [34n, 34n, 33n]],
    ['a credit splits into credits', -101n, ['1', '1', '1'], [-34n, -34n, -33n]],
    ['the largest remainder wins, not the largest weight', 100n, ['33.3333', '33.3333', '33.3334'], [33n, 33n, 34n]],
    ['leftovers go by remainder size', 7n, ['10', '20', '30', '40'], [1n, 1n, 2n, 3n]],
    ['fewer pennies than parts', 2n, ['1', '1', '1'], [1n, 1n, 0n]],
    ['zero total', 0n, ['50', '50'], [0n, 0n]],
    ['a zero weight gets nothing, even when listed first', 1n, ['0', '50', '50'], [0n, 1n, 0n]],
    ['a zero weight gets nothing', 100n, ['0', '100'], [0n, 100n]],
    ['a single part takes everything', -12345n, ['0.0001'], [-12345n]],
    ['weights need not add up to 100', 10n, ['1', '3'], [3n, 7n]],
    ['mixed scales', 1000n, ['12.5', '0.5', '87'], [125n, 5n, 870n]],
    ['large totals stay exact', 10n ** 15n + 1n, ['50', '50'], [500000000000001n, 500000000000000n]],
    ['above 2^53', 2n ** 60n + 1n, ['1', '1'], [2n ** 59n + 1n, 2n ** 59n]],
  ])('%s: %s over %j', (_name, amount, weightTexts, expected) => {
    const parts = run(amount, ws(...weightTexts));
    expect(parts).toEqual(expected);
    expect(parts.reduce((a, b) => a + b, 0n)).toBe(amount);
  });

  it('gives the same answer for the same split written as percentages, fractions or ratios', () => {
    const expected = [34n, 33n, 33n];
    expect(run(100n, ws('33.3334', '33.3333', '33.3333'))).toEqual(expected);
    expect(run(100n, ws('0.333334', '0.333333', '0.333333'))).toEqual(expected);
    expect(run(100n, ws('333334', '333333', '333333'))).toEqual(expected);
  });
});

describe('allocate: refuses weights it cannot split over', () => {
  it.each<[string, Decimal[], string]>([
    ['no weights', [], 'cannot allocate over no parts'],
    ['a negative weight', ws('60', '-10', '50'), 'allocation weights must not be negative'],
    ['all weights zero', ws('0', '0.00'), 'allocation weights must not all be zero'],
    ['a single zero weight', [ZERO], 'allocation weights must not all be zero'],
  ])('%s', (_name, weightList, message) => {
    expect(() => run(100n, weightList)).toThrow(RangeError);
    expect(() => run(100n, weightList)).toThrow(message);
    expect(() => run(0n, weightList)).toThrow(message);
  });
});

describe('allocate: properties (reliability 16)', () => {
  it('the parts sum exactly to the total, one part per weight', () => {
    fc.assert(
      fc.property(total, weights, (t, w) => {
        const parts = allocate(t, w);
        expect(parts).toHaveLength(w.length);
        expect(parts.reduce((a, b) => a + b, 0n)).toBe(t);
      }),
      { numRuns: 500 },
    );
  });

  it("every part has the total's sign or is zero, and zero weights get zero", () => {
    fc.assert(
      fc.property(total, weights, (t, w) => {
        allocate(t, w).forEach((part, i) => {
          if (t > 0n) expect(part >= 0n).toBe(true);
          if (t < 0n) expect(part <= 0n).toBe(true);
          if (t === 0n || w[i]?.coefficient === 0n) expect(part).toBe(0n);
        });
      }),
      { numRuns: 500 },
    );
  });

  it('each part is within one penny of its exact share (exact rational arithmetic)', () => {
    fc.assert(
      fc.property(total, weights, (t, w) => {
        const ints = integerWeights(w);
        const weightSum = ints.reduce((a, b) => a + b, 0n);
        allocate(t, w).forEach((part, i) => {
          // share = t * w_i / W, so |part - share| < 1  <=>  |part * W - t * w_i| < W.
          const error = absolute(part * weightSum - t * (ints[i] ?? 0n));
          expect(error < weightSum).toBe(true);
        });
      }),
      { numRuns: 500 },
    );
  });

  it('leftover pennies go to the largest remainders, ties to the part listed first', () => {
    fc.assert(
      fc.property(total, weights, (t, w) => {
        const ints = integerWeights(w);
        const weightSum = ints.reduce((a, b) => a + b, 0n);
        const magnitude = absolute(t);
        const parts = allocate(t, w);
        const info = ints.map((wi, i) => ({
          i,
          remainder: (magnitude * wi) % weightSum,
          extra: absolute(parts[i] ?? 0n) - (magnitude * wi) / weightSum,
        }));
        for (const a of info) expect([0n, 1n]).toContain(a.extra);
        for (const got of info.filter((a) => a.extra === 1n)) {
          for (const missed of info.filter((a) => a.extra === 0n)) {
            const preferred = got.remainder > missed.remainder || (got.remainder === missed.remainder && got.i < missed.i);
            expect(preferred).toBe(true);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('a credit splits as the mirror image of the charge', () => {
    fc.assert(
      fc.property(total, weights, (t, w) => {
        const mirrored = allocate(pennies(0n - t), w).map((x) => 0n - x);
        expect(mirrored).toEqual(allocate(t, w));
      }),
      { numRuns: 300 },
    );
  });

  it('depends only on the ratios of the weights', () => {
    fc.assert(
      fc.property(total, weights, fc.integer({ min: -3, max: 6 }), fc.bigInt({ min: 1n, max: 1000n }), (t, w, places, k) => {
        const scaled = w.map((x) => shift(normalize({ coefficient: x.coefficient * k, scale: x.scale }), places));
        expect(allocate(t, scaled)).toEqual(allocate(t, w));
      }),
      { numRuns: 300 },
    );
  });

  it('is deterministic and does not modify its input', () => {
    fc.assert(
      fc.property(total, weights, (t, w) => {
        const before = w.map((x) => ({ ...x }));
        const first = allocate(t, w);
        expect(allocate(t, w)).toEqual(first);
        expect(w).toEqual(before);
      }),
    );
  });
});
