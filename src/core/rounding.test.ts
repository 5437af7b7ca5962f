import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { type Decimal, ZERO, compare, decimal, negate, normalize, toDecimalString } from './decimal';
import { ROUNDING_MODES, type RoundingMode, roundDecimal, roundToUnits } from './rounding';

const rawDecimal: fc.Arbitrary<Decimal> = fc.record({
  coefficient: fc.bigInt({ min: -(10n ** 24n), max: 10n ** 24n }),
  scale: fc.integer({ min: 0, max: 12 }),
});
const mode = fc.constantFrom<RoundingMode>(...ROUNDING_MODES);
const places = fc.integer({ min: 0, max: 8 });

/** The coefficient of `d` at `scale`, multiplying up; test helper for exact comparisons. */
function at(d: Decimal, scale: number): bigint {
  return d.coefficient * 10n ** BigInt(scale - d.scale);
}

/**
 * Reference rounding written differently from the implementation: pick whichever of the two
 * neighbouring multiples of 10^-places is nearer, settling a tie by the mode.
 */
function referenceUnits(x: Decimal, p: number, m: RoundingMode): bigint {
  if (x.scale <= p) return at(x, p);
  const unit = 10n ** BigInt(x.scale - p);
  const c = x.coefficient;
  // Floor division on bigints (which truncate towards zero).
  const lower = c >= 0n || c % unit === 0n ? c / unit : c / unit - 1n;
  const upper = lower + 1n;
  const below = c - lower * unit;
  const above = upper * unit - c;
  if (below < above) return lower;
  if (above < below) return upper;
  if (m === 'half_even') return lower % 2n === 0n ? lower : upper;
  return c < 0n ? lower : upper; // half_up: away from zero
}

describe('roundDecimal: the table (reliability 17)', () => {
  it.each<[string, number, RoundingMode, string]>([
    ['0.5', 0, 'half_up', '1'],
    ['1.5', 0, 'half_up', '2'],
    ['2.5', 0, 'half_up', '3'],
    ['-0.5', 0, 'half_up', '-1'],
    ['-1.5', 0, 'half_up', '-2'],
    ['-2.5', 0, 'half_up', '-3'],
    ['0.49999', 0, 'half_up', '0'],
    ['-0.49999', 0, 'half_up', '0'],
    ['0.50001', 0, 'half_up', '1'],
    ['2.345', 2, 'half_up', '2.35'],
    ['-2.345', 2, 'half_up', '-2.35'],
    ['2.3449999', 2, 'half_up', '2.34'],
    ['0.005', 2, 'half_up', '0.01'],
    ['-0.005', 2, 'half_up', '-0.01'],
    ['0.5', 0, 'half_even', '0'],
    ['1.5', 0, 'half_even', '2'],
    ['2.5', 0, 'half_even', '2'],
    ['3.5', 0, 'half_even', '4'],
    ['-2.5', 0, 'half_even', '-2'],
    ['-3.5', 0, 'half_even', '-4'],
    ['-0.5', 0, 'half_even', '0'],
    ['0.50001', 0, 'half_even', '1'],
    ['2.345', 2, 'half_even', '2.34'],
    ['2.355', 2, 'half_even', '2.36'],
    ['-2.345', 2, 'half_even', '-2.34'],
    ['-2.355', 2, 'half_even', '-2.36'],
    ['2.3450001', 2, 'half_even', '2.35'],
    ['55.555555095', 2, 'half_up', '55.56'],
    ['55.555555095', 2, 'half_even', '55.56'],
    ['99.995', 2, 'half_up', '100'],
    ['99.995', 2, 'half_even', '100'],
    ['34100000000000000000.5', 0, 'half_up', '34100000000000000001'],
    ['34100000000000000000.5', 0, 'half_even', '34100000000000000000'],
  ])('%s to %i places, %s -> %s', (value, p, m, expected) => {
    expect(toDecimalString(roundDecimal(decimal(value), p, m))).toBe(expected);
  });

  it.each<[string, number, RoundingMode]>([
    ['-0.5', 0, 'half_even'],
    ['-0.4', 0, 'half_up'],
    ['-0.49999', 0, 'half_up'],
    ['-0.004', 2, 'half_even'],
    ['-0.005', 2, 'half_even'],
  ])('%s to %i places rounds to a plain zero under %s, never -0', (value, p, m) => {
    const r = roundDecimal(decimal(value), p, m);
    expect(r).toEqual(ZERO);
    expect(toDecimalString(r)).toBe('0');
    expect(roundToUnits(decimal(value), p, m)).toBe(0n);
  });

  it('a value already at fewer places keeps its value', () => {
    expect(roundDecimal(decimal('1.5'), 2, 'half_up')).toEqual(decimal('1.5'));
    expect(roundDecimal(decimal('-7'), 0, 'half_even')).toEqual(decimal('-7'));
    // Normalised like every other result: 1.50 written with two places comes back as 1.5.
    expect(roundDecimal({ coefficient: 150n, scale: 2 }, 2, 'half_up')).toEqual({ coefficient: 15n, scale: 1 });
    expect(roundDecimal({ coefficient: 0n, scale: 1 }, 3, 'half_even')).toEqual(ZERO);
  });
});

describe('roundToUnits', () => {
  it.each<[string, number, RoundingMode, bigint]>([
    ['2.345', 2, 'half_up', 235n],
    ['2.345', 2, 'half_even', 234n],
    ['-2.345', 2, 'half_up', -235n],
    ['12', 2, 'half_up', 1200n],
    ['12', 3, 'half_even', 12000n],
    ['1.5', 2, 'half_up', 150n],
    ['0.5', 0, 'half_even', 0n],
    ['-0.5', 0, 'half_up', -1n],
    ['55.555555095', 2, 'half_up', 5556n],
    ['55.555555095', 0, 'half_up', 56n],
    ['55.555555095', 3, 'half_up', 55556n],
    ['0', 2, 'half_up', 0n],
  ])('%s to %i places, %s -> %s units', (value, p, m, units) => {
    expect(roundToUnits(decimal(value), p, m)).toBe(units);
  });

  it('counts units even when the rounded value has fewer digits than places', () => {
    // 1.995 -> 2.00 normalises to 2, which must still count as 200 pennies.
    expect(roundToUnits(decimal('1.995'), 2, 'half_up')).toBe(200n);
    expect(roundToUnits(decimal('-1.995'), 2, 'half_even')).toBe(-200n);
  });
});

describe('roundDecimal properties', () => {
  it('matches a reference that picks the nearer neighbour', () => {
    fc.assert(
      fc.property(rawDecimal, places, mode, (x, p, m) => {
        expect(roundToUnits(x, p, m)).toBe(referenceUnits(x, p, m));
      }),
      { numRuns: 500 },
    );
  });

  it('|round(x) - x| is at most half a unit, and the result has at most `places` digits', () => {
    fc.assert(
      fc.property(rawDecimal, places, mode, (x, p, m) => {
        const r = roundDecimal(x, p, m);
        const s = Math.max(x.scale, p);
        const diff = at(r, s) - at(x, s);
        const magnitude = diff < 0n ? -diff : diff;
        expect(2n * magnitude <= 10n ** BigInt(s - p)).toBe(true);
        expect(normalize(r).scale).toBeLessThanOrEqual(p);
      }),
      { numRuns: 500 },
    );
  });

  it('rounding an already-representable value is the identity', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 24n), max: 10n ** 24n }), places, fc.integer({ min: 0, max: 4 }), mode, (c, p, extra, m) => {
        // The same value written with `extra` trailing zeros: rounding must not move it.
        const x = normalize({ coefficient: c, scale: p });
        const padded = { coefficient: c * 10n ** BigInt(extra), scale: p + extra };
        expect(compare(roundDecimal(x, p, m), x)).toBe(0);
        expect(roundDecimal(padded, p, m)).toEqual(x);
        expect(roundToUnits(padded, p, m)).toBe(c);
      }),
      { numRuns: 500 },
    );
  });

  it('is idempotent', () => {
    fc.assert(
      fc.property(rawDecimal, places, mode, (x, p, m) => {
        const once = roundDecimal(x, p, m);
        expect(roundDecimal(once, p, m)).toEqual(once);
      }),
      { numRuns: 300 },
    );
  });

  it('half_up(-x) = -half_up(x), and the same for half_even', () => {
    fc.assert(
      fc.property(rawDecimal, places, mode, (x, p, m) => {
        expect(roundDecimal(negate(x), p, m)).toEqual(normalize(negate(roundDecimal(x, p, m))));
      }),
      { numRuns: 500 },
    );
  });

  it('is monotonic: x <= y implies round(x) <= round(y)', () => {
    fc.assert(
      fc.property(rawDecimal, rawDecimal, places, mode, (a, b, p, m) => {
        const [x, y] = compare(a, b) <= 0 ? [a, b] : [b, a];
        expect(compare(roundDecimal(x, p, m), roundDecimal(y, p, m))).toBeLessThanOrEqual(0);
      }),
      { numRuns: 500 },
    );
  });

  it('the two modes differ only on exact halves', () => {
    fc.assert(
      fc.property(rawDecimal, places, (x, p) => {
        const up = roundDecimal(x, p, 'half_up');
        const even = roundDecimal(x, p, 'half_even');
        if (compare(up, even) !== 0) {
          // x is exactly halfway: 2x has at most `p` digits after the point but x does not.
          expect(normalize({ coefficient: 2n * x.coefficient, scale: x.scale }).scale).toBeLessThanOrEqual(p);
          expect(normalize(x).scale).toBe(p + 1);
        }
      }),
      { numRuns: 500 },
    );
  });
});
