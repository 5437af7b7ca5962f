import { describe, it, expect } from 'vitest';
import { Temporal } from 'temporal-polyfill';
import { type Decimal, decimal } from './decimal';
import type { RawUsageFields } from './usage-fields';
import { type FieldError, type PartnershipForValidation, type ProductForValidation, type ValidUsage, type ValidationContext, validateUsage } from './validate-usage';
import { ruleSetSchema } from './rating/registry';

const LONDON = 'Europe/London';

const products: ProductForValidation[] = [
  { id: 1, code: 'MICRO', quantityScale: 2 },
  { id: 2, code: 'CPU', quantityScale: 6 },
  { id: 3, code: 'SEQ', quantityScale: 0 }, // known product, priced by neither partnership
];

/** 2026 contract: no credits, no default account, alice splits 60/40; prices from 2026-01-01 (the contract starts a month earlier). */
const p2026: PartnershipForValidation = {
  id: 10,
  code: 'P1-2026',
  timeZone: LONDON,
  contractStart: '2025-12-01',
  contractEnd: '2026-12-31',
  allowCredits: false,
  accountsByCode: new Map([['EXP-1', 101], ['EXP-2', 102]]),
  defaultAccountId: null,
  splits: [
    { userRef: 'alice', productId: null, accountId: 101, percent: decimal('60'), position: 1 },
    { userRef: 'alice', productId: null, accountId: 102, percent: decimal('40'), position: 2 },
  ],
  ruleVersions: [
    {
      id: 1,
      effectiveFrom: '2026-01-01',
      rules: ruleSetSchema.parse([
        { kind: 'unit_price', product: 'MICRO', price: '42.50' },
        { kind: 'unit_price', product: 'CPU', price: '0.045' },
      ]),
    },
  ],
};

/** 2027 contract, open-ended: credits allowed, a default account, no splits. */
const p2027: PartnershipForValidation = {
  id: 20,
  code: 'P2-2027',
  timeZone: LONDON,
  contractStart: '2027-01-01',
  contractEnd: null,
  allowCredits: true,
  accountsByCode: new Map([['PO-9', 201]]),
  defaultAccountId: 201,
  splits: [],
  ruleVersions: [
    {
      id: 2,
      effectiveFrom: '2027-01-01',
      rules: ruleSetSchema.parse([
        { kind: 'unit_price', product: 'MICRO', price: '45' },
        { kind: 'unit_price', product: 'CPU', price: '0.05' },
      ]),
    },
  ],
};

const ctx: ValidationContext = {
  partnerCode: 'UNI',
  partnerships: [p2026, p2027],
  productsByCode: new Map(products.map((p) => [p.code, p])),
  latestStart: Temporal.Instant.from('2027-06-30T00:00:00Z'),
  earliestStart: Temporal.Instant.from('2025-01-01T00:00:00Z'),
};

/** A valid row in the 2027 partnership (credits allowed, default account). */
const base: RawUsageFields = { usage_id: 'U1', product: 'CPU', user: 'bob', quantity: '12', start_time: '2027-02-01T10:00:00Z' };
/** A valid row in the 2026 partnership (alice has a split). */
const base2026: RawUsageFields = { usage_id: 'U2', product: 'MICRO', user: 'alice', quantity: '1.5', start_time: '2026-06-01T09:00:00+01:00' };

function valid(raw: RawUsageFields, context: ValidationContext = ctx): ValidUsage {
  const r = validateUsage(raw, context);
  if (!r.ok) throw new Error(`expected a valid usage, got ${JSON.stringify(r.errors)}`);
  return r.usage;
}
function errorsOf(raw: RawUsageFields, context: ValidationContext = ctx): FieldError[] {
  const r = validateUsage(raw, context);
  if (r.ok) throw new Error('expected the row to be refused');
  return r.errors;
}
const err = (field: string, code: string, message: string, raw: string | undefined): FieldError => ({ field, code, message, raw });

describe('validateUsage: a good row becomes a usage', () => {
  it('fills every field, resolving the partnership by date and the period in its zone', () => {
    expect(valid({ ...base, end_time: '2027-02-01T11:00:00Z', description: '  run 7  ' })).toEqual({
      externalId: 'U1',
      partnershipId: 20,
      productId: 2,
      userRef: 'bob',
      accountId: null,
      quantity: decimal('12'),
      startedAt: Temporal.Instant.from('2027-02-01T10:00:00Z'),
      endedAt: Temporal.Instant.from('2027-02-01T11:00:00Z'),
      period: '2027-02',
      description: 'run 7',
    });
  });

  it('trims identifiers, keeps a known feed account, and treats a blank description as none', () => {
    const u = valid({ ...base2026, usage_id: '  U2  ', account: 'EXP-2', description: '   ' });
    expect(u).toMatchObject({ externalId: 'U2', partnershipId: 10, productId: 1, accountId: 102, description: null, endedAt: null, period: '2026-06' });
  });

  it.each<[string, number, string, RawUsageFields]>([
    ['the last instant of the 2026 contract (London)', 10, '2026-12', { ...base2026, start_time: '2026-12-31T23:59:59Z' }],
    ['23:30 at -01:00 on 31 December is already 2027 in London', 20, '2027-01', { ...base, start_time: '2026-12-31T23:30:00-01:00' }],
    ['the first instant of the 2027 contract', 20, '2027-01', { ...base, start_time: '2027-01-01T00:00:00Z' }],
    ['31 October 23:30Z is October in London', 10, '2026-10', { ...base2026, start_time: '2026-10-31T23:30:00Z' }],
    ['31 October 23:30 at -01:00 is November', 10, '2026-11', { ...base2026, start_time: '2026-10-31T23:30:00-01:00' }],
    ['the London overlap, first 01:30', 10, '2026-10', { ...base2026, start_time: '2026-10-25T01:30:00+01:00' }],
    ['the London overlap, second 01:30', 10, '2026-10', { ...base2026, start_time: '2026-10-25T01:30:00+00:00' }],
    ['29 February 2028', 20, '2028-02', { ...base, start_time: '2028-02-29T12:00:00Z' }],
    ['rules in force from local midnight of 2026-01-01', 10, '2026-01', { ...base2026, start_time: '2026-01-01T00:00:00Z' }],
    ['exactly at latestStart', 20, '2027-06', { ...base, start_time: '2027-06-30T00:00:00Z' }],
  ])('%s -> partnership %i, period %s', (_label, partnershipId, period, row) => {
    const later = { ...ctx, latestStart: Temporal.Instant.from('2030-01-01T00:00:00Z') };
    expect(valid(row, row.start_time?.startsWith('2027-06-30') === true ? ctx : later)).toMatchObject({ partnershipId, period });
  });

  it('an end equal to the start is fine', () => {
    expect(valid({ ...base, end_time: base.start_time }).endedAt).toEqual(Temporal.Instant.from('2027-02-01T10:00:00Z'));
  });
});

describe('validateUsage: quantities are exact decimals or a clear error (reliability 12)', () => {
  // CPU allows 6 places; the 2027 partnership allows credits.
  it.each<[string, Decimal]>([
    ['12', { coefficient: 12n, scale: 0 }],
    ['0.000001', { coefficient: 1n, scale: 6 }],
    ['-3', { coefficient: -3n, scale: 0 }],
    ['007', { coefficient: 7n, scale: 0 }],
    ['34100000000000000001', { coefficient: 34100000000000000001n, scale: 0 }],
    ['+4.50', { coefficient: 45n, scale: 1 }],
    ['1.000000', { coefficient: 1n, scale: 0 }],
    ['-0', { coefficient: 0n, scale: 0 }],
  ])('%j is accepted as exactly %o', (text, expected) => {
    expect(valid({ ...base, quantity: text }).quantity).toEqual(expected);
  });

  it.each<[string, string, string]>([
    ['1e3', 'invalid_quantity', 'quantity "1e3" uses an exponent; write the plain decimal'],
    ['1,000', 'invalid_quantity', 'quantity "1,000" has thousands or decimal separators other than a single "."'],
    ['1.000,50', 'invalid_quantity', 'quantity "1.000,50" has thousands or decimal separators other than a single "."'],
    ['NaN', 'invalid_quantity', 'quantity "NaN" is not a finite number'],
    ['Infinity', 'invalid_quantity', 'quantity "Infinity" is not a finite number'],
    ['-Infinity', 'invalid_quantity', 'quantity "-Infinity" is not a finite number'],
    ['0x10', 'invalid_quantity', 'quantity "0x10" is hexadecimal, not a decimal'],
    [' 12', 'invalid_quantity', 'quantity " 12" has leading or trailing spaces'],
    ['12.', 'invalid_quantity', 'quantity "12." needs digits on both sides of the "."'],
    ['twelve', 'invalid_quantity', 'quantity "twelve" is not a decimal number'],
    ['1.0000001', 'too_precise', 'quantity "1.0000001" has more than 6 decimal places for CPU'],
    ['123456789012345678901234567890123456789', 'invalid_quantity', 'quantity "123456789012345678901234567890123456789" has more than 38 significant digits'],
    // Blank is "required", not zero (Number("") would be 0); the raw value is kept on the error.
    ['', 'required', 'quantity is required'],
    [' ', 'required', 'quantity is required'],
  ])('%j is refused (%s): %s', (text, code, message) => {
    expect(errorsOf({ ...base, quantity: text })).toEqual([err('quantity', code, message, text)]);
  });

  it('a missing quantity is required', () => {
    const { quantity: _q, ...row } = base;
    expect(errorsOf(row)).toEqual([err('quantity', 'required', 'quantity is required', undefined)]);
  });

  it("checks places against the product's own scale; trailing zeros do not count", () => {
    expect(errorsOf({ ...base, product: 'MICRO', quantity: '0.125' })).toEqual([
      err('quantity', 'too_precise', 'quantity "0.125" has more than 2 decimal places for MICRO', '0.125'),
    ]);
    expect(errorsOf({ ...base, product: 'MICRO', quantity: '0.000001' })).toEqual([
      err('quantity', 'too_precise', 'quantity "0.000001" has more than 2 decimal places for MICRO', '0.000001'),
    ]);
    expect(valid({ ...base, product: 'MICRO', quantity: '1.500' }).quantity).toEqual({ coefficient: 15n, scale: 1 });
  });
});

describe('validateUsage: negative quantities only where credits are allowed (reliability 13)', () => {
  it('is refused under a partnership without credits, naming the raw value and the partnership', () => {
    expect(errorsOf({ ...base2026, quantity: '-3' })).toEqual([
      err('quantity', 'negative_not_allowed', 'quantity "-3" is negative and partnership P1-2026 does not allow credits', '-3'),
    ]);
  });

  it('is accepted with its sign under a partnership that allows credits', () => {
    expect(valid({ ...base, quantity: '-0.5' }).quantity).toEqual({ coefficient: -5n, scale: 1 });
  });

  it('zero is not negative', () => {
    expect(valid({ ...base2026, quantity: '-0.00' }).quantity).toEqual({ coefficient: 0n, scale: 0 });
  });
});

describe('validateUsage: every problem of a row is reported together', () => {
  it('lists all missing required fields', () => {
    expect(errorsOf({})).toEqual([
      err('usage_id', 'required', 'usage_id is required', undefined),
      err('product', 'required', 'product is required', undefined),
      err('user', 'required', 'user is required', undefined),
      err('quantity', 'required', 'quantity is required', undefined),
      err('start_time', 'required', 'start_time is required', undefined),
    ]);
  });

  it('treats whitespace-only fields as missing', () => {
    expect(errorsOf({ usage_id: ' ', product: '\t', user: '', quantity: '  ', start_time: ' ' })).toEqual([
      err('usage_id', 'required', 'usage_id is required', ' '),
      err('product', 'required', 'product is required', '\t'),
      err('user', 'required', 'user is required', ''),
      err('quantity', 'required', 'quantity is required', '  '),
      err('start_time', 'required', 'start_time is required', ' '),
    ]);
  });

  it('reports an unknown product, a bad quantity and an end before the start in one go', () => {
    expect(errorsOf({ ...base, usage_id: '', product: 'XYZ', quantity: '1,5', end_time: '2027-01-31T10:00:00Z' })).toEqual([
      err('usage_id', 'required', 'usage_id is required', ''),
      err('product', 'unknown_product', 'unknown product "XYZ"', 'XYZ'),
      err('quantity', 'invalid_quantity', 'quantity "1,5" has thousands or decimal separators other than a single "."', '1,5'),
      err('end_time', 'end_before_start', 'end_time "2027-01-31T10:00:00Z" is before start_time "2027-02-01T10:00:00Z"', '2027-01-31T10:00:00Z'),
    ]);
  });

  it('reports a negative quantity together with an unknown account', () => {
    expect(errorsOf({ ...base2026, quantity: '-1', account: 'EXP-9' })).toEqual([
      err('quantity', 'negative_not_allowed', 'quantity "-1" is negative and partnership P1-2026 does not allow credits', '-1'),
      err('account', 'unknown_account', 'unknown account "EXP-9" for partnership P1-2026', 'EXP-9'),
    ]);
  });
});

describe('validateUsage: field errors', () => {
  it.each<[string, RawUsageFields, FieldError[]]>([
    ['unknown product', { ...base, product: 'XYZ' }, [err('product', 'unknown_product', 'unknown product "XYZ"', 'XYZ')]],
    ['product codes match exactly', { ...base, product: 'cpu' }, [err('product', 'unknown_product', 'unknown product "cpu"', 'cpu')]],
    ['unknown account', { ...base2026, account: 'EXP-9' }, [err('account', 'unknown_account', 'unknown account "EXP-9" for partnership P1-2026', 'EXP-9')]],
    ["another partnership's account", { ...base, account: 'EXP-1' }, [err('account', 'unknown_account', 'unknown account "EXP-1" for partnership P2-2027', 'EXP-1')]],
    ['usage_id too long', { ...base, usage_id: 'u'.repeat(129) }, [err('usage_id', 'too_long', 'usage_id is longer than 128 characters', 'u'.repeat(129))]],
    ['control character in user', { ...base, user: 'bo\u0000b' }, [err('user', 'control_character', 'user contains a control character', 'bo\u0000b')]],
    ['end before start', { ...base, end_time: '2027-02-01T09:59:59.999999Z' }, [err('end_time', 'end_before_start', 'end_time "2027-02-01T09:59:59.999999Z" is before start_time "2027-02-01T10:00:00Z"', '2027-02-01T09:59:59.999999Z')]],
    ['end without an offset', { ...base, end_time: '2027-02-01T11:00:00' }, [err('end_time', 'invalid_timestamp', 'end_time "2027-02-01T11:00:00" has no UTC offset; expected Z or e.g. +01:00 at the end', '2027-02-01T11:00:00')]],
    ['start as a date only', { ...base, start_time: '2027-02-01' }, [err('start_time', 'invalid_timestamp', 'start_time "2027-02-01" is a date without a time; expected e.g. 2026-10-01T09:00:00Z', '2027-02-01')]],
    ['start without an offset (London 01:30 on 2026-03-29 does not exist)', { ...base2026, start_time: '2026-03-29T01:30:00' }, [err('start_time', 'invalid_timestamp', 'start_time "2026-03-29T01:30:00" has no UTC offset; expected Z or e.g. +01:00 at the end', '2026-03-29T01:30:00')]],
    ['start on 29 February of a common year', { ...base2026, start_time: '2026-02-29T10:00:00Z' }, [err('start_time', 'invalid_timestamp', 'start_time "2026-02-29T10:00:00Z" is not a valid date and time', '2026-02-29T10:00:00Z')]],
    ['start in the future', { ...base, start_time: '2027-06-30T00:00:00.000001Z' }, [err('start_time', 'out_of_range', 'start_time "2027-06-30T00:00:00.000001Z" is in the future', '2027-06-30T00:00:00.000001Z')]],
    ['start before earliestStart', { ...base, start_time: '2024-12-31T23:59:59Z' }, [err('start_time', 'out_of_range', 'start_time "2024-12-31T23:59:59Z" is before 2025-01-01T00:00:00Z', '2024-12-31T23:59:59Z')]],
    ['no partnership covers the date', { ...base, start_time: '2025-06-01T10:00:00Z' }, [err('start_time', 'no_partnership', 'no partnership of partner UNI covers 2025-06-01T10:00:00Z', '2025-06-01T10:00:00Z')]],
    ['no account resolvable', { ...base2026, user: 'carol' }, [err('account', 'no_account', 'no account given, no split for user carol and no default account', undefined)]],
    ['contract started but no rules yet', { ...base2026, start_time: '2025-12-15T10:00:00Z' }, [err('start_time', 'no_rules', 'partnership P1-2026 has no rules in force at 2025-12-15T10:00:00Z', '2025-12-15T10:00:00Z')]],
    ['1 µs before the rules start', { ...base2026, start_time: '2025-12-31T23:59:59.999999Z' }, [err('start_time', 'no_rules', 'partnership P1-2026 has no rules in force at 2025-12-31T23:59:59.999999Z', '2025-12-31T23:59:59.999999Z')]],
    ['no price for the product', { ...base2026, product: 'SEQ', quantity: '2' }, [err('product', 'no_price', 'partnership P1-2026 has no price for SEQ in rules effective 2026-01-01', 'SEQ')]],
  ])('%s', (_label, raw, expected) => {
    expect(errorsOf(raw)).toEqual(expected);
  });

  it('a feed account makes a user without a split or default billable', () => {
    expect(valid({ ...base2026, user: 'carol', account: 'EXP-1' }).accountId).toBe(101);
  });

  it('quotes quantities and timestamps as the feed wrote them, before a profile normalised them', () => {
    // A decimal-comma feed's "1,234" was normalised to "1.234"; London-local times to their UTC instants.
    const normalized = { ...base2026, quantity: '1.234', start_time: '2026-08-01T08:00:00Z', end_time: '2026-08-01T07:00:00Z' };
    const original = { ...base2026, quantity: '1,234', start_time: '2026-08-01T09:00:00', end_time: '2026-08-01T08:00:00' };
    expect(validateUsage(normalized, ctx, original)).toEqual({
      ok: false,
      errors: [
        { field: 'quantity', code: 'too_precise', message: 'quantity "1,234" has more than 2 decimal places for MICRO', raw: '1,234' },
        { field: 'end_time', code: 'end_before_start', message: 'end_time "2026-08-01T08:00:00" is before start_time "2026-08-01T09:00:00"', raw: '2026-08-01T08:00:00' },
      ],
    });
    expect(validateUsage({ ...base, start_time: '2027-08-01T08:00:00Z' }, ctx, { ...base, start_time: '2027-08-01T09:00:00' })).toEqual({
      ok: false,
      errors: [{ field: 'start_time', code: 'out_of_range', message: 'start_time "2027-08-01T09:00:00" is in the future', raw: '2027-08-01T09:00:00' }],
    });
  });

  it('descriptions may contain newlines and tabs', () => {
    expect(valid({ ...base, description: 'line 1\nline 2\tend' }).description).toBe('line 1\nline 2\tend');
  });

  it('two partnerships covering the date -> ambiguous, naming both', () => {
    const overlap: PartnershipForValidation = { ...p2026, id: 30, code: 'P3-OVERLAP', contractStart: '2026-06-01', contractEnd: '2026-06-30' };
    const both = { ...ctx, partnerships: [p2026, p2027, overlap] };
    expect(errorsOf({ ...base2026, start_time: '2026-06-15T10:00:00Z' }, both)).toEqual([
      err('start_time', 'ambiguous_partnership', 'partnerships P1-2026, P3-OVERLAP of partner UNI all cover 2026-06-15T10:00:00Z', '2026-06-15T10:00:00Z'),
    ]);
    // Outside the overlap the row is fine.
    expect(valid({ ...base2026, start_time: '2026-07-01T10:00:00Z' }, both).partnershipId).toBe(10);
  });

  it('contract dates are local dates in the partnership zone', () => {
    // In Berlin, 23:30Z on 31 December 2026 is already 1 January 2027: outside a contract ending 2026-12-31.
    const berlin = { ...ctx, partnerships: [{ ...p2026, timeZone: 'Europe/Berlin' }] };
    expect(errorsOf({ ...base2026, start_time: '2026-12-31T23:30:00Z' }, berlin)).toEqual([
      err('start_time', 'no_partnership', 'no partnership of partner UNI covers 2026-12-31T23:30:00Z', '2026-12-31T23:30:00Z'),
    ]);
    expect(valid({ ...base2026, start_time: '2026-12-31T23:30:00Z' }).partnershipId).toBe(10);
  });
});
