import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Decimal, add, decimal, toDecimalString } from '../decimal';
import type { Pennies } from '../money';
import type { RatingContext, UsageToRate } from './calculator';
import { graduatedTiersCalculator } from './graduated-tiers';
import { includedAllowanceCalculator } from './included-allowance';
import { packagePriceCalculator } from './package-price';
import { discountCalculator, surchargeCalculator } from './percentage-adjustment';
import { fixedFeeCalculator, minimumCommitmentCalculator, oneOffCreditCalculator, periodCapCalculator } from './period-rules';
import { ruleSetSchema } from './registry';
import { graduatedAmount, volumePrice } from './tiers';
import { volumeTiersCalculator } from './volume-tiers';

const gbp: RatingContext = { currency: 'GBP', roundingMode: 'half_up' };
const cpu = (q: string): UsageToRate => ({ productCode: 'CPU', productName: 'CPU hours', unit: 'h', quantity: decimal(q) });
const w = (before: string, quantity: string) => ({ before: decimal(before), quantity: decimal(quantity) });
// The issue's example: first 100 at 2.35, the next 400 at 2.00, above 500 at 1.65.
const tiers = [{ up_to: '100', price: '2.35' }, { up_to: '500', price: '2.00' }, { price: '1.65' }];
const graduated = { kind: 'graduated_tiers' as const, product: 'CPU', tiers };
const volume = { kind: 'volume_tiers' as const, product: 'CPU', tiers };

describe('graduated tiers', () => {
  it.each([
    // [before, quantity, pennies]: at, one below and one above each boundary
    ['0', '100', 23500n],
    ['0', '99', 23265n],
    ['0', '101', 23700n],
    ['99', '2', 435n], // 1 x 2.35 + 1 x 2.00
    ['499', '2', 365n], // 1 x 2.00 + 1 x 1.65
    ['500', '1', 165n],
    ['0', '590', 118350n],
    ['50', '80', 17750n],
    ['0', '0.5', 118n], // 1.175 -> 1.18 half-up
  ])('before %s, %s units -> %s pennies', (before, quantity, pennies) => {
    expect(graduatedTiersCalculator.price(graduated, w(before, quantity), cpu(quantity), gbp).amount).toBe(pennies);
  });

  it('shows the parts and keeps a unit price only when one tier applies', () => {
    const crossing = graduatedTiersCalculator.price(graduated, w('90', '20'), cpu('20'), gbp);
    expect(crossing).toEqual({ kind: 'charge', amount: 4350n, unitPrice: null, description: 'CPU hours: 20 h (10 at 2.35 + 10 at 2)' });
    expect(graduatedTiersCalculator.price(graduated, w('0', '5'), cpu('5'), gbp).unitPrice).toEqual(decimal('2.35'));
  });

  it('gives a credit back at the prices of the units just below', () => {
    expect(graduatedTiersCalculator.price(graduated, w('101', '-2'), cpu('-2'), gbp).amount).toBe(-435n);
  });

  it('is additive: splitting a window in two gives the same exact amount (property)', () => {
    const units = fc.bigInt({ min: 0n, max: 10_000_000n }).map((n) => decimal(`${n / 1000n}.${String(n % 1000n).padStart(3, '0')}`));
    fc.assert(
      fc.property(units, units, units, (before: Decimal, a: Decimal, b: Decimal) => {
        const whole = graduatedAmount(tiers, before, add(a, b)).amount;
        const parts = add(graduatedAmount(tiers, before, a).amount, graduatedAmount(tiers, add(before, a), b).amount);
        expect(toDecimalString(parts)).toBe(toDecimalString(whole));
      }),
      { numRuns: 300 },
    );
  });
});

describe('volume tiers', () => {
  it.each([
    ['100', '2.35'],
    ['100.000001', '2'],
    ['500', '2'],
    ['501', '1.65'],
  ])('a period total of %s is priced at %s', (total, price) => {
    expect(toDecimalString(volumePrice(tiers, decimal(total)))).toBe(price);
  });

  it('charges provisionally at the tier reached so far and settles at the final tier', () => {
    expect(volumeTiersCalculator.price(volume, w('90', '20'), cpu('20'), gbp).amount).toBe(4000n); // 110 reached: 20 x 2.00
    expect(volumeTiersCalculator.settle!(volume, w('90', '20'), decimal('600'), cpu('20'), gbp).amount).toBe(3300n); // 20 x 1.65
  });
});

describe('package pricing', () => {
  const rule = { kind: 'package' as const, product: 'CPU', block: '4', price: '300.00' };
  it.each([
    ['1', 30000n],
    ['4', 30000n],
    ['4.000001', 60000n],
    ['5', 60000n],
    ['-5', -60000n],
  ])('%s units -> %s pennies (per started block of 4)', (q, pennies) => {
    expect(packagePriceCalculator.price(rule, w('0', q), cpu(q), gbp).amount).toBe(pennies);
  });
});

describe('included allowance', () => {
  const rule = { kind: 'included_allowance' as const, product: 'CPU', units: '10' };
  it.each([
    ['0', '6', '0', '0'],
    ['6', '8', '0', '4'],
    ['10', '5', '0', '5'],
    ['20', '5', '10', '5'],
  ])('before %s, %s units -> chargeable from %s, %s units', (before, q, cb, cq) => {
    const c = includedAllowanceCalculator.chargeable(rule, w(before, q));
    expect([toDecimalString(c.before), toDecimalString(c.quantity)]).toEqual([cb, cq]);
  });
});

describe('discount and surcharge', () => {
  it('is a percentage of the rounded base, rounded once, with its own sign', () => {
    const d = discountCalculator.adjust({ kind: 'discount', percent: '10' }, 7438n as Pennies, cpu('1'), gbp);
    expect(d).toEqual({ kind: 'discount', amount: -744n, unitPrice: null, description: '10% discount on CPU hours' });
    expect(surchargeCalculator.adjust({ kind: 'surcharge', percent: '2.5' }, 1000n as Pennies, cpu('1'), gbp)?.amount).toBe(25n);
    expect(discountCalculator.adjust({ kind: 'discount', percent: '10' }, 4n as Pennies, cpu('1'), gbp)).toBeUndefined(); // 0.4 -> 0
  });
  it('applies to the listed products only', () => {
    expect(discountCalculator.appliesTo({ kind: 'discount', percent: '10', products: ['GPU'] }, 'CPU')).toBe(false);
    expect(discountCalculator.appliesTo({ kind: 'discount', percent: '10' }, 'CPU')).toBe(true);
  });
});

describe('period-close rules', () => {
  const facts = (total: bigint) => ({ period: '2026-10', usageTotal: total as Pennies });
  it('tops up to a minimum commitment and caps above a cap', () => {
    expect(minimumCommitmentCalculator.settle({ kind: 'minimum_commitment', amount: '500.00' }, facts(42000n), gbp)?.amount).toBe(8000n);
    expect(minimumCommitmentCalculator.settle({ kind: 'minimum_commitment', amount: '500.00' }, facts(50000n), gbp)).toBeUndefined();
    expect(periodCapCalculator.settle({ kind: 'cap', amount: '100.00' }, facts(12345n), gbp)?.amount).toBe(-2345n);
    expect(periodCapCalculator.settle({ kind: 'cap', amount: '100.00' }, facts(10000n), gbp)).toBeUndefined();
  });
  it('charges a fee every period and a voucher once, in its period', () => {
    expect(fixedFeeCalculator.settle({ kind: 'fixed_fee', amount: '25.00', description: 'Platform fee' }, facts(0n), gbp)).toEqual({ kind: 'fee', amount: 2500n, description: 'Platform fee (2026-10)' });
    const voucher = { kind: 'credit' as const, amount: '100.00', period: '2026-10', description: 'Welcome voucher' };
    expect(oneOffCreditCalculator.settle(voucher, facts(0n), gbp)?.amount).toBe(-10000n);
    expect(oneOffCreditCalculator.settle(voucher, { period: '2026-11', usageTotal: 0n as Pennies }, gbp)).toBeUndefined();
  });
});

describe('rule set validation', () => {
  const issues = (rules: unknown) => {
    const r = ruleSetSchema.safeParse(rules);
    return r.success ? [] : r.error.issues.map((i) => i.message);
  };
  it('refuses tiers that do not rise or do not end open, two prices or allowances for a product, an unpriced allowance, minimum above cap', () => {
    expect(issues([{ kind: 'graduated_tiers', product: 'CPU', tiers: [{ up_to: '100', price: '1' }, { up_to: '50', price: '1' }, { price: '1' }] }])).toEqual(['tiers must rise: 50 is not above 100']);
    expect(issues([{ kind: 'graduated_tiers', product: 'CPU', tiers: [{ up_to: '100', price: '1' }] }])).toEqual(['the last tier must be open (no up_to)']);
    expect(issues([{ kind: 'unit_price', product: 'CPU', price: '1' }, { kind: 'package', product: 'CPU', block: '2', price: '1' }])).toEqual(['product CPU is already priced by rule 1']);
    expect(issues([{ kind: 'included_allowance', product: 'GPU', units: '5' }])).toEqual(['allowance for GPU, which has no price']);
    expect(issues([{ kind: 'minimum_commitment', amount: '500.00' }, { kind: 'cap', amount: '100.00' }])).toEqual(['the minimum commitment 500.00 is above the cap 100.00']);
  });
});
