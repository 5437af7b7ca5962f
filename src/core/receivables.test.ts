import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Pennies, SUPPORTED_CURRENCIES, formatAmount, minorUnits, pennies } from './money';
import {
  type CreditableLine,
  type OpenInvoice,
  creditNoteTotal,
  formatCreditNoteNumber,
  openAmount,
  parseAmount,
  paymentStatus,
  planCreditNote,
  splitAgainstOpen,
  summarizeOpenAmounts,
} from './receivables';

const p = (v: bigint | number): Pennies => pennies(v);

describe('formatCreditNoteNumber', () => {
  it('pads the sequence like invoice numbers, under its own prefix', () => {
    expect(formatCreditNoteNumber(2026, 1)).toBe('CN-2026-000001');
    expect(formatCreditNoteNumber(2027, 123456)).toBe('CN-2027-123456');
  });
});

describe('parseAmount', () => {
  it.each<[string, string, bigint]>([
    ['12.34', 'GBP', 1234n],
    ['12.3', 'GBP', 1230n],
    ['12', 'GBP', 1200n],
    ['0.01', 'GBP', 1n],
    ['007.50', 'EUR', 750n],
    ['1250', 'JPY', 1250n],
    ['1.234', 'BHD', 1234n],
    ['92233720368547758.07', 'GBP', 2n ** 63n - 1n],
  ])('reads %s %s as %s minor units exactly', (text, currency, want) => {
    expect(parseAmount(text, currency)).toEqual({ ok: true, value: want });
  });

  it.each<[string, string, string]>([
    ['12.345', 'GBP', 'amount "12.345" has 3 decimal places; GBP has 2'],
    ['1.5', 'JPY', 'amount "1.5" has 1 decimal places; JPY has none'],
    ['0', 'GBP', 'amount "0" must be more than zero'],
    ['0.00', 'GBP', 'amount "0.00" must be more than zero'],
    ['-5.00', 'GBP', 'amount "-5.00" must be more than zero'],
    ['1e3', 'GBP', 'amount "1e3" uses an exponent; write the plain decimal'],
    ['1,000.00', 'GBP', 'amount "1,000.00" has thousands or decimal separators other than a single "."'],
    ['12,34', 'EUR', 'amount "12,34" has thousands or decimal separators other than a single "."'],
    ['', 'GBP', 'amount "" is empty'],
    ['NaN', 'GBP', 'amount "NaN" is not a finite number'],
    ['.5', 'GBP', 'amount ".5" needs digits on both sides of the "."'],
    ['92233720368547758.08', 'GBP', 'amount "92233720368547758.08" is too large'],
  ])('refuses %j in %s: %s', (text, currency, reason) => {
    expect(parseAmount(text, currency)).toEqual({ ok: false, reason });
  });

  it('keeps "12.340" (a trailing zero is not an extra decimal)', () => {
    expect(parseAmount('12.340', 'GBP')).toEqual({ ok: true, value: 1234n });
  });

  it('reads back every amount it prints, in every supported currency', () => {
    fc.assert(
      fc.property(fc.constantFrom(...SUPPORTED_CURRENCIES), fc.bigInt({ min: 1n, max: 2n ** 62n }), (currency, value) => {
        expect(parseAmount(formatAmount(p(value), currency), currency)).toEqual({ ok: true, value });
      }),
    );
  });

  it('refuses any amount with one decimal more than the currency has', () => {
    fc.assert(
      fc.property(fc.constantFrom(...SUPPORTED_CURRENCIES), fc.bigInt({ min: 1n, max: 10n ** 12n }), fc.integer({ min: 1, max: 9 }), (currency, value, digit) => {
        const text = `${formatAmount(p(value), currency)}${minorUnits(currency) === 0 ? '.' : ''}${digit}`;
        const result = parseAmount(text, currency);
        expect(result.ok).toBe(false);
      }),
    );
  });
});

describe('paymentStatus', () => {
  it.each<[number, number, string]>([
    [10000, 10000, 'issued'],
    [10000, 9999, 'partially_paid'],
    [10000, 1, 'partially_paid'],
    [10000, 0, 'paid'],
    [0, 0, 'issued'],
    [-500, -500, 'issued'],
  ])('total %i with %i open is %s', (total, open, status) => {
    expect(paymentStatus(p(total), p(open))).toBe(status);
  });
});

describe('splitAgainstOpen', () => {
  it.each<[number, number, number, number]>([
    [10000, 2500, 2500, 0],
    [10000, 10000, 10000, 0],
    [10000, 13000, 10000, 3000],
    [0, 700, 0, 700],
    [-200, 700, 0, 700],
  ])('open %i, amount %i: %i settles it, %i is excess', (open, amount, applied, excess) => {
    expect(splitAgainstOpen(p(open), p(amount))).toEqual({ applied: BigInt(applied), excess: BigInt(excess) });
  });

  it('conserves every penny and never settles more than is open', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 12n), max: 10n ** 12n }), fc.bigInt({ min: 0n, max: 10n ** 12n }), (open, amount) => {
        const { applied, excess } = splitAgainstOpen(p(open), p(amount));
        expect(applied + excess).toBe(amount);
        expect(applied >= 0n && excess >= 0n).toBe(true);
        expect(applied <= (open > 0n ? open : 0n)).toBe(true);
      }),
    );
  });
});

/**
 * The use cases' bookkeeping, replayed over random payments, credit notes and credit applications:
 * an invoice's open amount stays between 0 and its total, the customer's credit never goes below
 * zero, and every penny received or credited is on the invoice or in the credit balance.
 */
describe('settling an invoice over time', () => {
  type Event = { kind: 'pay'; amount: bigint } | { kind: 'credit_note'; fraction: number } | { kind: 'apply'; fraction: number };
  const event: fc.Arbitrary<Event> = fc.oneof(
    fc.record({ kind: fc.constant('pay' as const), amount: fc.bigInt({ min: 1n, max: 200_000n }) }),
    fc.record({ kind: fc.constant('credit_note' as const), fraction: fc.integer({ min: 1, max: 100 }) }),
    fc.record({ kind: fc.constant('apply' as const), fraction: fc.integer({ min: 1, max: 100 }) }),
  );

  it('keeps open within [0, total] and conserves money', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: 100_000n }), fc.bigInt({ min: 0n, max: 50_000n }), fc.array(event, { maxLength: 30 }), (total, startingCredit, events) => {
        const s = { total: p(total), paid: p(0), credited: p(0), ledger: p(0) };
        let balance = startingCredit; // credit the customer already had from elsewhere
        let received = 0n; // paid + credited, all of it
        let applied = 0n;
        for (const e of events) {
          const open = openAmount(s);
          if (e.kind === 'pay') {
            const split = splitAgainstOpen(open, p(e.amount));
            s.paid = p(s.paid + e.amount);
            s.ledger = p(s.ledger + split.excess);
            balance += split.excess;
            received += e.amount;
          } else if (e.kind === 'credit_note') {
            const creditable = s.total - s.credited;
            if (creditable <= 0n) continue;
            const amount = (creditable * BigInt(e.fraction) + 99n) / 100n;
            const split = splitAgainstOpen(open, p(amount));
            s.credited = p(s.credited + amount);
            s.ledger = p(s.ledger + split.excess);
            balance += split.excess;
            received += amount;
          } else {
            const most = open < balance ? open : balance;
            if (most <= 0n) continue;
            const amount = (most * BigInt(e.fraction) + 99n) / 100n;
            s.ledger = p(s.ledger - amount);
            balance -= amount;
            applied += amount;
          }
          const now = openAmount(s);
          expect(now >= 0n && now <= total).toBe(true);
          expect(balance >= 0n).toBe(true);
          expect(s.credited <= s.total).toBe(true);
          // What settled the invoice is everything that arrived at it less what overflowed into credit
          // (the balance's growth, which credit applied to the invoice has already drawn down).
          expect(total - now).toBe(received - (balance - startingCredit));
          expect(balance).toBe(startingCredit + s.ledger);
          expect(applied <= received + startingCredit).toBe(true);
          expect(paymentStatus(s.total, now)).toBe(now === 0n ? 'paid' : now === total ? 'issued' : 'partially_paid');
        }
      }),
    );
  });
});

const line = (over: Partial<CreditableLine> & { amount: Pennies }): CreditableLine => ({
  accountId: '1',
  productId: '7',
  usagePeriod: '2026-10',
  kind: 'charge',
  description: 'Confocal microscope time',
  quantity: '2.5',
  unitPrice: '42.5',
  ...over,
});

describe('planCreditNote', () => {
  const lines = [
    line({ accountId: '1', amount: p(10625), quantity: '2.5', unitPrice: '42.5' }),
    line({ accountId: '2', amount: p(4463), quantity: '1.05', unitPrice: '42.5' }),
    line({ accountId: '2', kind: 'discount', description: 'Confocal microscope time discount', amount: p(-446), quantity: '1.05', unitPrice: null }),
    line({ accountId: '3', productId: null, kind: 'fee', description: 'Platform fee', amount: p(2500), quantity: '1', unitPrice: '25' }),
  ];
  const total = p(10625 + 4463 - 446 + 2500);
  const base = { invoiceNumber: 'INV-2026-000001', currency: 'GBP', total, alreadyCredited: p(0), lines };

  it('mirrors every line, negated, when the whole invoice is credited at once', () => {
    const plan = planCreditNote(base);
    expect(plan).toEqual({
      ok: true,
      amount: total,
      mirrored: true,
      lines: [
        { ...lines[0], quantity: '-2.5', amount: -10625n },
        { ...lines[1], quantity: '-1.05', amount: -4463n },
        { ...lines[2], quantity: '-1.05', amount: 446n },
        { ...lines[3], quantity: '-1', amount: -2500n },
      ],
    });
    expect(plan.ok && creditNoteTotal(plan.lines)).toBe(0n - total);
  });

  it('spreads a partial amount over the charged lines by largest remainder, with no quantity', () => {
    const plan = planCreditNote({ ...base, requested: p(1000) });
    // 1000 over 10625 / 4463 / 2500 (weight 17588): 604.1..., 253.7..., 142.1... -> 604, 254, 142
    expect(plan).toEqual({
      ok: true,
      amount: 1000n,
      mirrored: false,
      lines: [
        { ...lines[0], description: 'Confocal microscope time (partial credit)', quantity: '0', unitPrice: null, amount: -604n },
        { ...lines[1], description: 'Confocal microscope time (partial credit)', quantity: '0', unitPrice: null, amount: -254n },
        { ...lines[3], description: 'Platform fee (partial credit)', quantity: '0', unitPrice: null, amount: -142n },
      ],
    });
  });

  it('credits what is left, proportionally, when earlier credit notes exist', () => {
    const plan = planCreditNote({ ...base, alreadyCredited: p(1000) });
    expect(plan.ok && plan.amount).toBe(total - 1000n);
    expect(plan.ok && plan.mirrored).toBe(false);
    expect(plan.ok && creditNoteTotal(plan.lines)).toBe(-(total - 1000n));
  });

  it.each<[string, Partial<Parameters<typeof planCreditNote>[0]>, string]>([
    ['more than the total', { requested: p(17143) }, 'a credit note of £171.43 would take the credit notes of INV-2026-000001 beyond its total of £171.42'],
    ['more than is left', { alreadyCredited: p(17000), requested: p(143) }, 'a credit note of £1.43 would take the credit notes of INV-2026-000001 beyond its total of £171.42 (£170.00 already credited; at most £1.42 can still be credited)'],
    ['an invoice already credited in full', { alreadyCredited: total }, 'INV-2026-000001 is already credited in full (£171.42 of £171.42); nothing is left to credit'],
    ['an invoice with a zero total', { total: p(0), lines: [] }, 'INV-2026-000001 has a total of £0.00; there is nothing to credit'],
    ['a zero amount', { requested: p(0) }, 'a credit note must be for more than £0.00'],
  ])('refuses %s', (_label, over, reason) => {
    expect(planCreditNote({ ...base, ...over })).toEqual({ ok: false, reason });
  });

  it('always adds up to the amount, never credits a line beyond its own amount, never exceeds the total', () => {
    const arbLine = fc.record({ amount: fc.bigInt({ min: -5000n, max: 1_000_000n }), account: fc.integer({ min: 1, max: 4 }) });
    fc.assert(
      fc.property(fc.array(arbLine, { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 100 }), fc.integer({ min: 1, max: 100 }), (raw, creditedPct, askPct) => {
        const ls = raw.map((r) => line({ accountId: String(r.account), amount: p(r.amount) }));
        const t = ls.reduce((a, l) => a + l.amount, 0n);
        fc.pre(t > 0n);
        const alreadyCredited = (t * BigInt(creditedPct)) / 100n;
        const creditable = t - alreadyCredited;
        fc.pre(creditable > 0n);
        const requested = (creditable * BigInt(askPct) + 99n) / 100n;
        const plan = planCreditNote({ ...base, total: p(t), alreadyCredited: p(alreadyCredited), lines: ls, requested: p(requested) });
        expect(plan.ok).toBe(true);
        if (!plan.ok) return;
        expect(creditNoteTotal(plan.lines)).toBe(-requested);
        if (!plan.mirrored) {
          for (const l of plan.lines) {
            expect(l.amount < 0n).toBe(true);
            const original = ls.find((o) => o.accountId === l.accountId && o.amount >= 0n - l.amount);
            expect(original, 'a line credited no more than a line it mirrors').toBeDefined();
          }
        }
        const tooMuch = planCreditNote({ ...base, total: p(t), alreadyCredited: p(alreadyCredited), lines: ls, requested: p(creditable + 1n) });
        expect(tooMuch.ok).toBe(false);
      }),
    );
  });
});

describe('summarizeOpenAmounts', () => {
  const inv = (over: Partial<OpenInvoice>): OpenInvoice => ({
    invoiceId: 1,
    number: 'INV-2026-000001',
    customerCode: 'ACME',
    customerName: 'Acme',
    currency: 'GBP',
    issueDate: '2026-11-01',
    dueDate: '2026-12-01',
    total: p(10000),
    paid: p(0),
    credited: p(0),
    ledger: p(0),
    ...over,
  });

  it('sums open invoices per customer and currency, nets credit, never mixes currencies', () => {
    const { rows, totals } = summarizeOpenAmounts(
      [
        inv({ invoiceId: 1, number: 'INV-2026-000001', total: p(10000), paid: p(2500) }),
        inv({ invoiceId: 2, number: 'INV-2026-000002', total: p(5000), credited: p(1000), dueDate: '2026-11-15' }),
        inv({ invoiceId: 3, number: 'INV-2026-000003', total: p(7000), paid: p(9000), ledger: p(2000) }),
        inv({ invoiceId: 4, number: 'INV-2026-000004', currency: 'EUR', total: p(3000) }),
        inv({ invoiceId: 5, number: 'INV-2026-000005', customerCode: 'BETA', customerName: 'Beta', total: p(100) }),
      ],
      [
        { customerCode: 'ACME', customerName: 'Acme', currency: 'GBP', balance: p(2000) },
        { customerCode: 'ZED', customerName: 'Zed', currency: 'USD', balance: p(300) },
      ],
    );
    expect(rows.map((r) => [r.customerCode, r.currency, r.openInvoices, r.open, r.credit, r.net, r.invoices.map((i) => i.number)])).toEqual([
      ['ACME', 'EUR', 1, 3000n, 0n, 3000n, ['INV-2026-000004']],
      ['ACME', 'GBP', 2, 11500n, 2000n, 9500n, ['INV-2026-000002', 'INV-2026-000001']],
      ['BETA', 'GBP', 1, 100n, 0n, 100n, ['INV-2026-000005']],
      ['ZED', 'USD', 0, 0n, 300n, -300n, []],
    ]);
    expect(totals).toEqual([
      { currency: 'EUR', open: 3000n, credit: 0n, net: 3000n },
      { currency: 'GBP', open: 11600n, credit: 2000n, net: 9600n },
      { currency: 'USD', open: 0n, credit: 300n, net: -300n },
    ]);
  });
});
