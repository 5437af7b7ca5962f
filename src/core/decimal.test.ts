import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  type Decimal,
  MAX_DECIMAL_DIGITS,
  ZERO,
  abs,
  add,
  coefficientAt,
  compare,
  decimal,
  fractionDigits,
  isZero,
  mul,
  negate,
  normalize,
  parseDecimal,
  shift,
  sign,
  sub,
  sum,
  toDecimalString,
  toDecimalStringMinPlaces,
} from './decimal';

/** Any decimal with at most 30 digits and scale 0..12, not necessarily normalised. */
const rawDecimal: fc.Arbitrary<Decimal> = fc.record({
  coefficient: fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }),
  scale: fc.integer({ min: 0, max: 12 }),
});
const anyDecimal = rawDecimal.map(normalize);

const dec = (coefficient: bigint, scale: number): Decimal => ({ coefficient, scale });

describe('parseDecimal accepts plain decimals exactly', () => {
  it.each<[string, bigint, number, string]>([
    ['12', 12n, 0, '12'],
    ['0.000001', 1n, 6, '0.000001'],
    ['-3', -3n, 0, '-3'],
    ['+4.50', 45n, 1, '4.5'],
    ['007', 7n, 0, '7'],
    ['34100000000000000001', 34100000000000000001n, 0, '34100000000000000001'],
    ['0', 0n, 0, '0'],
    ['-0', 0n, 0, '0'],
    ['+0.000', 0n, 0, '0'],
    ['-0.25', -25n, 2, '-0.25'],
    ['100', 100n, 0, '100'],
    ['1.10', 11n, 1, '1.1'],
    ['000.0100', 1n, 2, '0.01'],
    ['1234.567891', 1234567891n, 6, '1234.567891'],
  ])('%j -> %s / 10^%i', (text, coefficient, scale, canonical) => {
    const r = parseDecimal(text);
    expect(r).toEqual({ ok: true, value: { coefficient, scale } });
    if (r.ok) expect(toDecimalString(r.value)).toBe(canonical);
  });

  it('keeps 34100000000000000001 exactly (above 2^53, where Number would give ...000000)', () => {
    const r = parseDecimal('34100000000000000001');
    expect(r.ok && r.value.coefficient).toBe(34100000000000000001n);
    expect(r.ok && r.value.coefficient === 34100000000000000000n).toBe(false);
  });

  it(`accepts ${MAX_DECIMAL_DIGITS} significant digits and refuses one more`, () => {
    const max = '9'.repeat(MAX_DECIMAL_DIGITS);
    expect(parseDecimal(max)).toEqual({ ok: true, value: { coefficient: BigInt(max), scale: 0 } });
    expect(parseDecimal(`0.${max}`)).toEqual({ ok: true, value: { coefficient: BigInt(max), scale: MAX_DECIMAL_DIGITS } });
    // Leading zeros are not significant.
    expect(parseDecimal(`000${max}`).ok).toBe(true);
    expect(parseDecimal(`0.000${max}`).ok).toBe(true);
    expect(parseDecimal(`${max}9`)).toEqual({ ok: false, reason: `has more than ${MAX_DECIMAL_DIGITS} significant digits` });
    expect(parseDecimal(`9.${max}`)).toEqual({ ok: false, reason: `has more than ${MAX_DECIMAL_DIGITS} significant digits` });
  });
});

describe('parseDecimal refuses everything else with a reason a person can act on', () => {
  const EMPTY = 'is empty';
  const SPACES = 'has leading or trailing spaces';
  const NOT_FINITE = 'is not a finite number';
  const HEX = 'is hexadecimal, not a decimal';
  const EXPONENT = 'uses an exponent; write the plain decimal';
  const SEPARATORS = 'has thousands or decimal separators other than a single "."';
  const BARE_POINT = 'needs digits on both sides of the "."';
  const NOT_DECIMAL = 'is not a decimal number';

  it.each<[string, string]>([
    ['1e3', EXPONENT],
    ['1E3', EXPONENT],
    ['-1.5e-3', EXPONENT],
    ['1,000', SEPARATORS],
    ['1.000,50', SEPARATORS],
    ['1 000', SEPARATORS],
    ["1'000", SEPARATORS],
    ['1.2.3', SEPARATORS],
    ['', EMPTY],
    [' ', EMPTY],
    ['\t\n', EMPTY],
    ['NaN', NOT_FINITE],
    ['nan', NOT_FINITE],
    ['Infinity', NOT_FINITE],
    ['-Infinity', NOT_FINITE],
    ['inf', NOT_FINITE],
    ['0x10', HEX],
    ['-0X1A', HEX],
    [' 12', SPACES],
    ['12 ', SPACES],
    ['12\n', SPACES],
    ['\u00a012', SPACES],
    ['\ufeff12', SPACES],
    // Pinned: a bare point is refused, not read as 12 or 0.5.
    ['12.', BARE_POINT],
    ['.5', BARE_POINT],
    ['-.5', BARE_POINT],
    ['--1', NOT_DECIMAL],
    ['+-1', NOT_DECIMAL],
    ['-', NOT_DECIMAL],
    ['.', NOT_DECIMAL],
    ['1-', NOT_DECIMAL],
    ['abc', NOT_DECIMAL],
    ['1_000', NOT_DECIMAL],
    ['0b101', NOT_DECIMAL],
    ['\uff11\uff12', NOT_DECIMAL], // full-width digits
    ['\u0661\u0662', NOT_DECIMAL], // Arabic-Indic digits
  ])('%j: %s', (text, reason) => {
    expect(parseDecimal(text)).toEqual({ ok: false, reason });
  });

  it('never accepts a string that is not [+-]digits[.digits]', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: fc.constantFrom(...'0123456789+-.,eEx '), maxLength: 12 })), (text) => {
        const r = parseDecimal(text);
        expect(r.ok).toBe(/^[+-]?\d+(\.\d+)?$/.test(text));
        if (!r.ok) expect(r.reason.length).toBeGreaterThan(0);
      }),
      { numRuns: 500 },
    );
  });
});

describe('decimal()', () => {
  it('parses well-formed text and bigints', () => {
    expect(decimal('2.50')).toEqual(dec(25n, 1));
    expect(decimal(-7n)).toEqual(dec(-7n, 0));
  });

  it.each<[string, string]>([
    ['1e3', '"1e3" uses an exponent; write the plain decimal'],
    ['', '"" is empty'],
    ['1,000', '"1,000" has thousands or decimal separators other than a single "."'],
  ])('throws a RangeError naming %j', (text, message) => {
    expect(() => decimal(text)).toThrow(RangeError);
    expect(() => decimal(text)).toThrow(message);
  });
});

describe('toDecimalString', () => {
  it.each<[Decimal, string]>([
    [dec(0n, 0), '0'],
    [dec(0n, 3), '0'],
    [dec(5n, 0), '5'],
    [dec(-5n, 0), '-5'],
    [dec(5n, 3), '0.005'],
    [dec(-5n, 3), '-0.005'],
    [dec(123456n, 2), '1234.56'],
    [dec(150n, 2), '1.5'],
    [dec(-1000n, 3), '-1'],
    [dec(12n, -2), '1200'],
    [dec(-3n, -1), '-30'],
    [dec(2n ** 130n, 4), '136112946768375385385349842972707284.5824'],
  ])('%o -> %s', (d, text) => {
    expect(toDecimalString(d)).toBe(text);
  });

  it('round-trips through parseDecimal for generated decimals', () => {
    fc.assert(
      fc.property(rawDecimal, (d) => {
        const text = toDecimalString(d);
        expect(text).toMatch(/^-?(0|[1-9]\d*)(\.\d*[1-9])?$/);
        expect(parseDecimal(text)).toEqual({ ok: true, value: normalize(d) });
      }),
      { numRuns: 500 },
    );
  });

  it('parseDecimal then toDecimalString is the identity on canonical text', () => {
    fc.assert(
      fc.property(anyDecimal, (d) => {
        const text = toDecimalString(d);
        const r = parseDecimal(text);
        expect(r.ok && toDecimalString(r.value)).toBe(text);
      }),
      { numRuns: 500 },
    );
  });
});

describe('normalize', () => {
  it.each<[Decimal, Decimal]>([
    [dec(1500n, 3), dec(15n, 1)],
    [dec(1000n, 3), dec(1n, 0)],
    [dec(1000n, 0), dec(1000n, 0)],
    [dec(0n, 7), ZERO],
    [dec(-120n, 1), dec(-12n, 0)],
  ])('%o -> %o', (d, expected) => {
    expect(normalize(d)).toEqual(expected);
  });

  it('keeps the value and leaves no trailing fractional zero', () => {
    fc.assert(
      fc.property(rawDecimal, (d) => {
        const n = normalize(d);
        expect(compare(n, d)).toBe(0);
        expect(n.scale).toBeLessThanOrEqual(d.scale);
        if (n.scale > 0) expect(n.coefficient % 10n).not.toBe(0n);
        expect(fractionDigits(d)).toBe(n.scale);
      }),
      { numRuns: 300 },
    );
  });
});

describe('arithmetic', () => {
  it.each<[string, string, string, string, string]>([
    // a, b, a + b, a - b, a * b
    ['0.1', '0.2', '0.3', '-0.1', '0.02'],
    ['1234.567891', '0.045', '1234.612891', '1234.522891', '55.555555095'],
    ['-3', '2.5', '-0.5', '-5.5', '-7.5'],
    ['34100000000000000001', '1', '34100000000000000002', '34100000000000000000', '34100000000000000001'],
    ['0.000001', '1000000', '1000000.000001', '-999999.999999', '1'],
    ['2.50', '-2.5', '0', '5', '-6.25'],
  ])('%s and %s', (a, b, s, d, p) => {
    const [x, y] = [decimal(a), decimal(b)];
    expect(toDecimalString(add(x, y))).toBe(s);
    expect(toDecimalString(sub(x, y))).toBe(d);
    expect(toDecimalString(mul(x, y))).toBe(p);
  });

  it('add is commutative and associative', () => {
    fc.assert(
      fc.property(anyDecimal, anyDecimal, anyDecimal, (a, b, c) => {
        expect(add(a, b)).toEqual(add(b, a));
        expect(add(add(a, b), c)).toEqual(add(a, add(b, c)));
        expect(add(a, ZERO)).toEqual(a);
      }),
      { numRuns: 500 },
    );
  });

  it('add matches the sum of coefficients at a common scale', () => {
    fc.assert(
      fc.property(rawDecimal, rawDecimal, (a, b) => {
        const s = Math.max(a.scale, b.scale);
        const expected = a.coefficient * 10n ** BigInt(s - a.scale) + b.coefficient * 10n ** BigInt(s - b.scale);
        expect(coefficientAt(add(a, b), s)).toBe(expected);
      }),
      { numRuns: 500 },
    );
  });

  it('a - a = 0 and (a - b) + b = a', () => {
    fc.assert(
      fc.property(rawDecimal, anyDecimal, (a, b) => {
        expect(sub(a, a)).toEqual(ZERO);
        expect(isZero(sub(a, a))).toBe(true);
        expect(compare(add(sub(a, b), b), a)).toBe(0);
      }),
      { numRuns: 500 },
    );
  });

  it('mul matches a reference computed on bigint coefficients', () => {
    fc.assert(
      fc.property(rawDecimal, rawDecimal, (a, b) => {
        const product = mul(a, b);
        // value = (ca * cb) / 10^(sa + sb), exactly.
        expect(coefficientAt(product, a.scale + b.scale)).toBe(a.coefficient * b.coefficient);
        expect(mul(a, b)).toEqual(mul(b, a));
      }),
      { numRuns: 500 },
    );
  });

  it('mul distributes over add', () => {
    fc.assert(
      fc.property(anyDecimal, anyDecimal, anyDecimal, (a, b, c) => {
        expect(mul(a, add(b, c))).toEqual(add(mul(a, b), mul(a, c)));
      }),
      { numRuns: 300 },
    );
  });

  it('compare is consistent with the sign of sub, antisymmetric and ignores representation', () => {
    fc.assert(
      fc.property(rawDecimal, rawDecimal, (a, b) => {
        expect(compare(a, b)).toBe(sign(sub(a, b)));
        expect(compare(b, a)).toBe(-compare(a, b) || 0);
        expect(compare(a, normalize(a))).toBe(0);
      }),
      { numRuns: 500 },
    );
  });

  it('compare orders by value, not by digits or scale', () => {
    expect(compare(decimal('0.1'), decimal('0.09'))).toBe(1);
    expect(compare(decimal('-0.1'), decimal('-0.09'))).toBe(-1);
    expect(compare(dec(100n, 2), dec(1n, 0))).toBe(0);
    expect(compare(decimal('34100000000000000001'), decimal('34100000000000000000'))).toBe(1);
  });

  it('negate, abs, sign and sum', () => {
    expect(negate(decimal('1.5'))).toEqual(dec(-15n, 1));
    expect(negate(ZERO)).toEqual(ZERO);
    expect(abs(decimal('-1.5'))).toEqual(dec(15n, 1));
    expect(abs(decimal('1.5'))).toEqual(dec(15n, 1));
    expect([sign(decimal('-0.001')), sign(ZERO), sign(decimal('0.001'))]).toEqual([-1, 0, 1]);
    expect(sum([])).toEqual(ZERO);
    expect(toDecimalString(sum(['0.1', '0.2', '-0.3', '5.005'].map((t) => decimal(t))))).toBe('5.005');
  });

  it('sum equals folding with add', () => {
    fc.assert(
      fc.property(fc.array(anyDecimal, { maxLength: 10 }), (values) => {
        expect(sum(values)).toEqual(values.reduce((t, v) => add(t, v), ZERO));
      }),
    );
  });
});

describe('shift', () => {
  it.each<[string, number, string]>([
    ['12.5', -2, '0.125'],
    ['33.3333', -2, '0.333333'],
    ['0.125', 2, '12.5'],
    ['7', 3, '7000'],
    ['-1.5', 0, '-1.5'],
    ['0', -5, '0'],
  ])('shift(%s, %i) = %s', (d, places, expected) => {
    expect(toDecimalString(shift(decimal(d), places))).toBe(expected);
  });

  it('is exact multiplication by 10^places and shifting back is the identity', () => {
    fc.assert(
      fc.property(anyDecimal, fc.integer({ min: -12, max: 12 }), (d, k) => {
        const shifted = shift(d, k);
        expect(shift(shifted, -k)).toEqual(d);
        if (k >= 0) expect(shifted).toEqual(mul(d, dec(10n ** BigInt(k), 0)));
        else expect(shifted).toEqual(mul(d, dec(1n, -k)));
      }),
      { numRuns: 300 },
    );
  });
});

describe('coefficientAt', () => {
  it('rescales upwards exactly and refuses to lose digits', () => {
    expect(coefficientAt(decimal('1.25'), 4)).toBe(12500n);
    expect(coefficientAt(decimal('-3'), 2)).toBe(-300n);
    expect(() => coefficientAt(decimal('1.25'), 1)).toThrow(RangeError);
    expect(() => coefficientAt(decimal('1.25'), 1)).toThrow('cannot express scale 2 at scale 1 without rounding');
  });
});

describe('toDecimalStringMinPlaces', () => {
  it.each([
    ['39.9', 2, '39.90'],
    ['1250', 2, '1250.00'],
    ['0.0525', 2, '0.0525'],
    ['-3', 2, '-3.00'],
    ['0', 0, '0'],
    ['12.500', 1, '12.5'],
  ])('%s with at least %i places is %s', (input, places, expected) => {
    expect(toDecimalStringMinPlaces(decimal(input), places)).toBe(expected);
  });
});
