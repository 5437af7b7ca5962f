import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { decimal, mul, parseDecimal, toDecimalString } from './decimal';
import type { RoundingMode } from './rounding';
import {
  type Pennies,
  SUPPORTED_CURRENCIES,
  ZERO_PENNIES,
  addPennies,
  formatAmount,
  formatMoney,
  minorUnits,
  negatePennies,
  pennies,
  penniesToDecimal,
  sumPennies,
  toPennies,
} from './money';

const p = (value: bigint): Pennies => pennies(value);

describe('minorUnits', () => {
  it.each<[string, number]>([
    ['GBP', 2],
    ['EUR', 2],
    ['USD', 2],
    ['JPY', 0],
    ['KRW', 0],
    ['ISK', 0],
    ['BHD', 3],
    ['KWD', 3],
  ])('%s has %i minor digits', (currency, units) => {
    expect(minorUnits(currency)).toBe(units);
  });

  it.each(['XXX', 'gbp', 'GBP ', '', 'constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf'])(
    'refuses %j with a RangeError rather than guessing',
    (currency) => {
      expect(() => minorUnits(currency)).toThrow(RangeError);
      expect(() => minorUnits(currency)).toThrow(`unsupported currency "${currency}"`);
    },
  );

  it('lists every supported currency, each with 0, 2 or 3 minor digits', () => {
    expect(SUPPORTED_CURRENCIES).toContain('GBP');
    expect(SUPPORTED_CURRENCIES).not.toContain('constructor');
    for (const c of SUPPORTED_CURRENCIES) expect([0, 2, 3]).toContain(minorUnits(c));
  });
});

describe('pennies', () => {
  it.each<[bigint | number | string, bigint]>([
    [0n, 0n],
    [5, 5n],
    [-5, -5n],
    ['123456789', 123456789n],
    ['-42', -42n],
    ['36893488147419103232', 2n ** 65n],
    [2n ** 60n, 2n ** 60n],
    [Number.MAX_SAFE_INTEGER, 9007199254740991n],
  ])('%s -> %s', (input, expected) => {
    expect(pennies(input)).toBe(expected);
  });

  it.each<[number | string, string]>([
    [1.5, '1.5 is not a whole number of pennies'],
    [2 ** 53, '9007199254740992 is not a whole number of pennies'],
    [Number.NaN, 'NaN is not a whole number of pennies'],
    [Number.POSITIVE_INFINITY, 'Infinity is not a whole number of pennies'],
    ['1.50', '"1.50" is not a whole number of pennies'],
    ['', '"" is not a whole number of pennies'],
    [' 1', '" 1" is not a whole number of pennies'],
    ['1e3', '"1e3" is not a whole number of pennies'],
    ['0x10', '"0x10" is not a whole number of pennies'],
    ['+1', '"+1" is not a whole number of pennies'],
  ])('refuses %j', (input, message) => {
    expect(() => pennies(input)).toThrow(RangeError);
    expect(() => pennies(input)).toThrow(message);
  });
});

describe('adding pennies (pg returns bigint columns as strings: sums must never concatenate)', () => {
  it('adds values that arrive as strings numerically, above 2^53 too', () => {
    const fromPg = ['9007199254740993', '1', '-2'].map((s) => pennies(s));
    expect(sumPennies(fromPg)).toBe(9007199254740992n);
    expect(addPennies(...fromPg)).toBe(9007199254740992n);
    expect(addPennies()).toBe(0n);
    expect(sumPennies([])).toBe(ZERO_PENNIES);
    expect(negatePennies(p(5n))).toBe(-5n);
    expect(negatePennies(ZERO_PENNIES)).toBe(0n);
  });

  it('sumPennies equals the bigint sum', () => {
    fc.assert(
      fc.property(fc.array(fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }), { maxLength: 20 }), (values) => {
        const expected = values.reduce((a, b) => a + b, 0n);
        expect(sumPennies(values.map(p))).toBe(expected);
        expect(addPennies(...values.map(p))).toBe(expected);
      }),
    );
  });
});

describe('toPennies: exact product, one rounding (reliability 18)', () => {
  it.each<[string, string, string, RoundingMode, bigint]>([
    // quantity, unit price, currency, mode, pennies
    ['1234.567891', '0.045', 'GBP', 'half_up', 5556n], // 55.555555095
    ['1234.567891', '0.045', 'GBP', 'half_even', 5556n],
    ['1234.567891', '0.045', 'JPY', 'half_up', 56n],
    ['1234.567891', '0.045', 'BHD', 'half_up', 55556n],
    ['-1234.567891', '0.045', 'GBP', 'half_up', -5556n],
    ['3', '0.005', 'GBP', 'half_up', 2n], // 0.015
    ['3', '0.005', 'GBP', 'half_even', 2n],
    ['1', '0.005', 'GBP', 'half_up', 1n],
    ['1', '0.005', 'GBP', 'half_even', 0n],
    ['1', '0.015', 'GBP', 'half_even', 2n],
    ['-1', '0.005', 'GBP', 'half_up', -1n],
    ['-1', '0.005', 'GBP', 'half_even', 0n],
    ['0.000001', '0.01', 'GBP', 'half_up', 0n],
    ['34100000000000000001', '0.01', 'GBP', 'half_up', 34100000000000000001n],
    ['34100000000000000001', '1.5', 'JPY', 'half_up', 51150000000000000002n], // 51150000000000000001.5
    ['34100000000000000001', '1.5', 'JPY', 'half_even', 51150000000000000002n],
    ['1000', '2.5', 'JPY', 'half_even', 2500n],
    ['0.1', '0.2', 'GBP', 'half_up', 2n], // 0.02, not 0.020000000000000004
  ])('%s x %s %s (%s) -> %s', (quantity, price, currency, mode, expected) => {
    expect(toPennies(mul(decimal(quantity), decimal(price)), currency, mode)).toBe(expected);
  });

  it('rounds the exact product once, not the price first and not in steps', () => {
    // 0.4449 x 10: rounding the price first would give 0.44 x 10 = 4.40; stepwise 0.4449 -> 0.445 -> 0.45 would give 4.50.
    expect(toPennies(mul(decimal('10'), decimal('0.4449')), 'GBP', 'half_up')).toBe(445n);
    // 2.4449 pounds in one step is 244 pennies; 2.4449 -> 2.445 -> 2.45 would be 245.
    expect(toPennies(decimal('2.4449'), 'GBP', 'half_up')).toBe(244n);
  });

  it('throws a RangeError for an unknown currency', () => {
    expect(() => toPennies(decimal('1'), 'XXX', 'half_up')).toThrow(RangeError);
    expect(() => toPennies(decimal('1'), 'XXX', 'half_up')).toThrow('unsupported currency "XXX"');
    expect(() => toPennies(decimal('1.5'), 'constructor', 'half_up')).toThrow('unsupported currency "constructor"');
  });

  it('is within half a penny of the exact amount (checked on bigints)', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: -(10n ** 18n), max: 10n ** 18n }),
        fc.integer({ min: 0, max: 9 }),
        fc.constantFrom('GBP', 'JPY', 'BHD'),
        fc.constantFrom<RoundingMode>('half_up', 'half_even'),
        (coefficient, scale, currency, mode) => {
          const amount = { coefficient, scale };
          const units = minorUnits(currency);
          const result = toPennies(amount, currency, mode);
          // Compare result / 10^units with coefficient / 10^scale at the common scale.
          const s = Math.max(units, scale);
          const diff = result * 10n ** BigInt(s - units) - coefficient * 10n ** BigInt(s - scale);
          const magnitude = diff < 0n ? -diff : diff;
          expect(2n * magnitude <= 10n ** BigInt(s - units)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('penniesToDecimal', () => {
  it.each<[bigint, string, string]>([
    [123450n, 'GBP', '1234.5'],
    [5n, 'GBP', '0.05'],
    [-5n, 'GBP', '-0.05'],
    [0n, 'GBP', '0'],
    [1234n, 'JPY', '1234'],
    [1234n, 'BHD', '1.234'],
    [2n ** 60n, 'GBP', '11529215046068469.76'],
  ])('%s %s -> %s', (value, currency, expected) => {
    expect(toDecimalString(penniesToDecimal(p(value), currency))).toBe(expected);
  });

  it('toPennies(penniesToDecimal(x)) = x in every supported currency and mode', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }),
        fc.constantFrom(...SUPPORTED_CURRENCIES),
        fc.constantFrom<RoundingMode>('half_up', 'half_even'),
        (value, currency, mode) => {
          expect(toPennies(penniesToDecimal(p(value), currency), currency, mode)).toBe(value);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('formatAmount', () => {
  it.each<[bigint, string, string]>([
    [0n, 'GBP', '0.00'],
    [5n, 'GBP', '0.05'],
    [-5n, 'GBP', '-0.05'],
    [50n, 'GBP', '0.50'],
    [100n, 'GBP', '1.00'],
    [-100n, 'GBP', '-1.00'],
    [123450n, 'GBP', '1234.50'],
    [123456789n, 'GBP', '1234567.89'],
    [-123456789n, 'GBP', '-1234567.89'],
    [0n, 'JPY', '0'],
    [5n, 'JPY', '5'],
    [-5n, 'JPY', '-5'],
    [123456789n, 'JPY', '123456789'],
    [0n, 'BHD', '0.000'],
    [5n, 'BHD', '0.005'],
    [-5n, 'BHD', '-0.005'],
    [123456789n, 'BHD', '123456.789'],
    [2n ** 53n + 1n, 'GBP', '90071992547409.93'],
    [2n ** 60n, 'GBP', '11529215046068469.76'],
    [-(2n ** 60n), 'GBP', '-11529215046068469.76'],
    [2n ** 60n, 'JPY', '1152921504606846976'],
    [2n ** 64n, 'BHD', '18446744073709551.616'],
  ])('%s %s -> %s', (value, currency, expected) => {
    expect(formatAmount(p(value), currency)).toBe(expected);
  });

  it('throws a RangeError for an unknown currency', () => {
    expect(() => formatAmount(p(5n), 'XXX')).toThrow('unsupported currency "XXX"');
    expect(() => formatAmount(p(5n), 'constructor')).toThrow(RangeError);
  });

  it('parses back to exactly the same amount, for any bigint', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: -(2n ** 100n), max: 2n ** 100n }),
        fc.constantFrom(...SUPPORTED_CURRENCIES),
        (value, currency) => {
          const text = formatAmount(p(value), currency);
          const units = minorUnits(currency);
          expect(text).toMatch(units === 0 ? /^-?\d+$/ : new RegExp(`^-?\\d+\\.\\d{${units}}$`));
          expect(text.startsWith('-')).toBe(value < 0n);
          const parsed = parseDecimal(text);
          expect(parsed.ok && toPennies(parsed.value, currency, 'half_up')).toBe(value);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('formatMoney', () => {
  it.each<[bigint, string, string]>([
    [0n, 'GBP', '£0.00'],
    [5n, 'GBP', '£0.05'],
    [-5n, 'GBP', '-£0.05'],
    [123450n, 'GBP', '£1,234.50'],
    [123456789n, 'GBP', '£1,234,567.89'],
    [-123456789n, 'GBP', '-£1,234,567.89'],
    [99999n, 'EUR', '€999.99'],
    [100000n, 'USD', '$1,000.00'],
    [0n, 'JPY', '¥0'],
    [5n, 'JPY', '¥5'],
    [-5n, 'JPY', '-¥5'],
    [123456789n, 'JPY', '¥123,456,789'],
    [123456789n, 'BHD', '123,456.789 BHD'],
    [-5n, 'CHF', '-0.05 CHF'],
    [2n ** 60n, 'GBP', '£11,529,215,046,068,469.76'],
    [-(2n ** 60n), 'GBP', '-£11,529,215,046,068,469.76'],
    [2n ** 60n, 'JPY', '¥1,152,921,504,606,846,976'],
  ])('%s %s -> %s', (value, currency, expected) => {
    expect(formatMoney(p(value), currency)).toBe(expected);
  });

  it('throws a RangeError for an unknown currency', () => {
    expect(() => formatMoney(p(5n), 'XXX')).toThrow('unsupported currency "XXX"');
    expect(() => formatMoney(p(5n), '__proto__')).toThrow(RangeError);
  });

  it('is formatAmount with grouping commas and a symbol or code, for any bigint', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: -(2n ** 100n), max: 2n ** 100n }),
        fc.constantFrom(...SUPPORTED_CURRENCIES),
        (value, currency) => {
          const text = formatMoney(p(value), currency);
          const stripped = text.replace(/[£€$¥,]/g, '').replace(` ${currency}`, '');
          expect(stripped).toBe(formatAmount(p(value), currency));
          const integerPart = text.replace(/^-?\D*/, '').split(/[. ]/)[0] ?? '';
          expect(integerPart).toMatch(/^\d{1,3}(,\d{3})*$/);
        },
      ),
      { numRuns: 300 },
    );
  });
});
