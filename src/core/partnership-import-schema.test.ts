import { describe, it, expect } from 'vitest';
import YAML from 'yaml';
import { importDocumentSchema } from './partnership-import-schema';

/** The problems as `billing import` prints them: "path: message". */
function problems(doc: unknown): string[] {
  const r = importDocumentSchema.safeParse(doc);
  if (r.success) return [];
  return r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}
/** Reads YAML the way the import does: failsafe, so every scalar is a string. */
const yaml = (text: string): unknown => YAML.parse(text, { schema: 'failsafe' });

const MINIMAL = `
partnerships:
  - code: UNI-LAB
    provider: LAB
    customer: UNI
    currency: GBP
    time_zone: Europe/London
    contract_start: 2026-01-01
    accounts:
      - code: EXP-1
        name: Expense code 1
    rules:
      - effective_from: 2026-01-01
        rules:
          - kind: unit_price
            product: MICRO
            price: 42.50
`;

/** A valid partnership as plain data (strings, as failsafe YAML gives them), to vary one field at a time. */
function partnership(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    code: 'UNI-LAB',
    provider: 'LAB',
    customer: 'UNI',
    currency: 'GBP',
    time_zone: 'Europe/London',
    contract_start: '2026-01-01',
    accounts: [
      { code: 'EXP-1', name: 'Expense code 1' },
      { code: 'EXP-2', name: 'Expense code 2' },
    ],
    rules: [{ effective_from: '2026-01-01', rules: [{ kind: 'unit_price', product: 'MICRO', price: '42.50' }] }],
    ...overrides,
  };
}
const doc = (overrides: Record<string, unknown> = {}): unknown => ({ partnerships: [partnership(overrides)] });
const shares = (...pairs: Array<[string, unknown]>): Array<{ account: string; percent: unknown }> => pairs.map(([account, percent]) => ({ account, percent }));

describe('importDocumentSchema: valid documents', () => {
  it('a minimal YAML document parses with the defaults filled in and the price kept as written', () => {
    expect(importDocumentSchema.parse(yaml(MINIMAL))).toEqual({
      partners: [],
      products: [],
      partnerships: [
        {
          code: 'UNI-LAB',
          provider: 'LAB',
          customer: 'UNI',
          currency: 'GBP',
          time_zone: 'Europe/London',
          contract_start: '2026-01-01',
          payment_terms_days: 30,
          rounding_mode: 'half_up',
          allow_credits: false,
          invoice_recipients: [],
          accounts: [{ code: 'EXP-1', name: 'Expense code 1', kind: 'expense_code' }],
          splits: [],
          rules: [{ effective_from: '2026-01-01', rules: [{ kind: 'unit_price', product: 'MICRO', price: '42.50' }] }],
        },
      ],
    });
  });

  it('an empty document is three empty lists', () => {
    expect(importDocumentSchema.parse({})).toEqual({ partners: [], products: [], partnerships: [] });
  });

  it('converts the strings failsafe YAML gives for numbers and booleans, explicitly', () => {
    const parsed = importDocumentSchema.parse(yaml(`
partners:
  - code: UNI
    kind: company
    name: University
    email: accounts@uni.example
products:
  - code: MICRO
    name: Microscope hours
    unit: h
    quantity_scale: 2
  - code: CPU
    name: CPU hours
    unit: h
partnerships:
  - code: UNI-LAB
    provider: LAB
    customer: UNI
    currency: EUR
    time_zone: Europe/Berlin
    contract_start: 2026-01-01
    contract_end: 2028-02-29
    payment_terms_days: 14
    rounding_mode: half_even
    allow_credits: true
    invoice_recipients: [ap@uni.example]
    default_account: EXP-2
    accounts:
      - { code: EXP-1, name: One }
      - { code: EXP-2, name: Two, kind: purchase_order }
    splits:
      - user: alice
        product: MICRO
        shares:
          - { account: EXP-1, percent: 33.3333 }
          - { account: EXP-2, percent: 66.6667 }
    rules:
      - effective_from: 2026-01-01
        rules: [{ kind: unit_price, product: MICRO, price: 0.045 }]
      - effective_from: 2026-07-01
        rules: [{ kind: unit_price, product: MICRO, price: 0.050000 }]
`));
    expect(parsed.products.map((p) => p.quantity_scale)).toEqual([2, 6]);
    const p = parsed.partnerships[0]!;
    expect(p).toMatchObject({ payment_terms_days: 14, rounding_mode: 'half_even', allow_credits: true, contract_end: '2028-02-29', default_account: 'EXP-2' });
    expect(p.splits[0]!.shares.map((s) => s.percent)).toEqual(['33.3333', '66.6667']);
    expect(p.rules.map((r) => r.rules[0])).toEqual([
      { kind: 'unit_price', product: 'MICRO', price: '0.045' },
      { kind: 'unit_price', product: 'MICRO', price: '0.050000' },
    ]);
  });

  it('accepts whole numbers given as JS numbers (JSON) for integer fields', () => {
    const r = importDocumentSchema.parse(doc({ payment_terms_days: 0, allow_credits: false }));
    expect(r.partnerships[0]).toMatchObject({ payment_terms_days: 0, allow_credits: false });
  });
});

describe('importDocumentSchema: refused, with the path and a message a person can act on', () => {
  it.each<[string, unknown, string[]]>([
    ['splits adding up to 90', doc({ splits: [{ user: 'alice', shares: shares(['EXP-1', '60'], ['EXP-2', '30']) }] }), [
      'partnerships.0.splits.0.shares: split percentages for alice add up to 60 + 30, not 100',
    ]],
    ['splits adding up to 100.0001', doc({ splits: [{ user: 'bob', product: 'MICRO', shares: shares(['EXP-1', '50.0001'], ['EXP-2', '50']) }] }), [
      'partnerships.0.splits.0.shares: split percentages for bob add up to 50.0001 + 50, not 100',
    ]],
    ['a split naming an account twice', doc({ splits: [{ user: 'alice', shares: shares(['EXP-1', '50'], ['EXP-1', '50']) }] }), [
      'partnerships.0.splits.0.shares: split for alice names an account twice',
    ]],
    ['a zero share', doc({ splits: [{ user: 'alice', shares: shares(['EXP-1', '100'], ['EXP-2', '0']) }] }), [
      'partnerships.0.splits.0.shares.1.percent: "0" must be greater than zero',
    ]],
    ['a split to an unknown account', doc({ splits: [{ user: 'alice', shares: shares(['EXP-1', '50'], ['EXP-9', '50']) }] }), [
      'partnerships.0.splits.0.shares.1.account: unknown account EXP-9',
    ]],
    ['a default account that is not one of the accounts', doc({ default_account: 'EXP-9' }), [
      "partnerships.0.default_account: default account EXP-9 is not one of the partnership's accounts",
    ]],
    ['an account listed twice', doc({ accounts: [{ code: 'EXP-1', name: 'a' }, { code: 'EXP-1', name: 'b' }] }), [
      'partnerships.0.accounts: an account code is listed twice',
    ]],
    ['two rule versions with the same effective date', doc({ rules: [
      { effective_from: '2026-01-01', rules: [{ kind: 'unit_price', product: 'MICRO', price: '1' }] },
      { effective_from: '2026-01-01', rules: [{ kind: 'unit_price', product: 'MICRO', price: '2' }] },
    ] }), ['partnerships.0.rules: two rule versions share an effective date']],
    ['an unsupported currency', doc({ currency: 'XXX' }), ['partnerships.0.currency: unsupported currency "XXX"']],
    ['a lower-case currency', doc({ currency: 'gbp' }), ['partnerships.0.currency: unsupported currency "gbp"']],
    ['a currency that is an Object.prototype key', doc({ currency: 'constructor' }), ['partnerships.0.currency: unsupported currency "constructor"']],
    ['an unknown time zone', doc({ time_zone: 'Mars/Olympus_Mons' }), ['partnerships.0.time_zone: unknown time zone "Mars/Olympus_Mons"']],
    ['a price as a JS number (JSON): a float may already have lost digits', doc({ rules: [{ effective_from: '2026-01-01', rules: [{ kind: 'unit_price', product: 'MICRO', price: 0.045 }] }] }), [
      'partnerships.0.rules.0.rules.0.price: Invalid input: expected string, received number',
    ]],
    ['a percentage as a JS number', doc({ splits: [{ user: 'alice', shares: shares(['EXP-1', 100]) }] }), [
      'partnerships.0.splits.0.shares.0.percent: Invalid input: expected string, received number',
    ]],
    ['a price with 7 places', doc({ rules: [{ effective_from: '2026-01-01', rules: [{ kind: 'unit_price', product: 'MICRO', price: '0.0000001' }] }] }), [
      'partnerships.0.rules.0.rules.0.price: "0.0000001" has more than 6 decimal places',
    ]],
    ['a product priced twice in one version', doc({ rules: [{ effective_from: '2026-01-01', rules: [
      { kind: 'unit_price', product: 'MICRO', price: '1' },
      { kind: 'unit_price', product: 'MICRO', price: '2' },
    ] }] }), ['partnerships.0.rules.0.rules.1.product: product MICRO is already priced by rule 1']],
    ['a day that does not exist', doc({ contract_start: '2026-02-30' }), ['partnerships.0.contract_start: 2026-02-30 is not a date in the calendar']],
    ['29 February of a common year', doc({ rules: [{ effective_from: '2027-02-29', rules: [] }] }), ['partnerships.0.rules.0.effective_from: 2027-02-29 is not a date in the calendar']],
    ['a date in another format', doc({ contract_start: '01/01/2026' }), ['partnerships.0.contract_start: dates are YYYY-MM-DD']],
    ['a contract ending before it starts', doc({ contract_end: '2025-12-31' }), ['partnerships.0.contract_end: contract ends before it starts']],
    ['provider and customer the same', doc({ customer: 'LAB' }), ['partnerships.0.customer: provider and customer must differ']],
    // The union of number | digit-string only says "Invalid input"; the path names the field.
    ['payment terms that are not whole', doc({ payment_terms_days: '14.5' }), ['partnerships.0.payment_terms_days: Invalid input']],
    ['payment terms over a year', doc({ payment_terms_days: '366' }), ['partnerships.0.payment_terms_days: Too big: expected number to be <=365']],
    ['a boolean spelt yes', doc({ allow_credits: 'yes' }), ['partnerships.0.allow_credits: Invalid input']],
    ['an unknown key (a typo must not be ignored)', doc({ rounding: 'half_even' }), ['partnerships.0: Unrecognized key: "rounding"']],
    ['no rule versions', doc({ rules: [] }), ['partnerships.0.rules: Too small: expected array to have >=1 items']],
  ])('%s', (_label, input, expected) => {
    expect(problems(input)).toEqual(expected);
  });

  it('a JSON document with a numeric price is refused, the same file with a string price is not', () => {
    const json = (price: string): unknown => JSON.parse(JSON.stringify(doc()).replace('"price":"42.50"', `"price":${price}`));
    expect(problems(json('42.50'))).toEqual(['partnerships.0.rules.0.rules.0.price: Invalid input: expected string, received number']);
    expect(problems(json('"42.50"'))).toEqual([]);
  });

  it('lists problems together; cross-field checks run alongside failed refinements but wait for type errors to be fixed', () => {
    expect(problems(doc({ currency: 'XXX', time_zone: 'Nowhere', default_account: 'EXP-9', contract_start: '2026-02-30' }))).toEqual([
      'partnerships.0.currency: unsupported currency "XXX"',
      'partnerships.0.time_zone: unknown time zone "Nowhere"',
      'partnerships.0.contract_start: 2026-02-30 is not a date in the calendar',
      "partnerships.0.default_account: default account EXP-9 is not one of the partnership's accounts",
    ]);
    // A wrongly typed field (a numeric price) stops the partnership's own cross-field checks for this pass.
    expect(problems(doc({
      default_account: 'EXP-9',
      rules: [{ effective_from: '2026-01-01', rules: [{ kind: 'unit_price', product: 'MICRO', price: 1 }] }],
    }))).toEqual(['partnerships.0.rules.0.rules.0.price: Invalid input: expected string, received number']);
  });
});
