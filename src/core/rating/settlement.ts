import type { Pennies } from '../money';
import type { PeriodFacts, RatingContext, TransactionKind } from './calculator';
import { settlementKey } from './period-rules';
import { type RuleSet, periodCalculatorFor, periodRules } from './registry';

export { settlementKey };

/**
 * Period-close settlement of a partnership's period: what each period rule says the period owes,
 * and the transactions that bring what is booked to that. Settling is a difference against what is
 * already booked, never an absolute write, so settling twice adds nothing, and a period settled,
 * invoiced and then changed by late usage is settled again by its difference alone (on the next
 * invoice).
 */

/** What one period rule wants booked for the period, under a stable key. */
export interface SettlementTarget {
  /** Names the settlement record: the same rule settles into the same record every time. */
  key: string;
  kind: TransactionKind;
  amount: Pennies;
  description: string;
}

/** A settlement already booked for the period: the sum of its record's transactions. */
export interface BookedSettlement {
  key: string;
  kind: TransactionKind;
  total: Pennies;
}

export interface SettlementDelta {
  key: string;
  kind: TransactionKind;
  amount: Pennies;
  description: string;
}

/**
 * The targets of a rule set for a period, in settlement order (commitments and caps, then fees,
 * then vouchers). A rule with nothing to book (usage above the minimum) still has a target of
 * zero, so that an amount booked earlier for it is reversed.
 */
export function settlementTargets(rules: RuleSet, facts: PeriodFacts, ctx: RatingContext): SettlementTarget[] {
  return periodRules(rules).map((rule) => {
    const settled = periodCalculatorFor(rule).settle(rule, facts, ctx);
    const kind: TransactionKind = settled?.kind ?? (rule.kind === 'fixed_fee' ? 'fee' : rule.kind === 'credit' ? 'credit' : 'adjustment');
    return { key: settlementKey(rule), kind, amount: settled?.amount ?? (0n as Pennies), description: settled?.description ?? '' };
  });
}

/**
 * The transactions that take the booked settlements to the targets. A booked settlement whose rule
 * is gone (a new rule version dropped it) is reversed in full.
 */
export function settlementDeltas(targets: readonly SettlementTarget[], booked: readonly BookedSettlement[], period: string): SettlementDelta[] {
  const bookedByKey = new Map(booked.map((b) => [b.key, b]));
  const out: SettlementDelta[] = [];
  for (const t of targets) {
    const was = bookedByKey.get(t.key)?.total ?? (0n as Pennies);
    bookedByKey.delete(t.key);
    const amount = (t.amount - was) as Pennies;
    if (amount === 0n) continue;
    const description = was === 0n ? t.description : t.amount === 0n ? `${describeKey(t.key)} for ${period} no longer applies` : `Revised: ${t.description}`;
    out.push({ key: t.key, kind: t.kind, amount, description });
  }
  for (const b of bookedByKey.values()) {
    if (b.total === 0n) continue;
    out.push({ key: b.key, kind: b.kind, amount: (0n - b.total) as Pennies, description: `${describeKey(b.key)} for ${period} withdrawn: the rules in force no longer have it` });
  }
  return out;
}

function describeKey(key: string): string {
  const [kind, name] = key.split(':');
  const label = kind === 'minimum_commitment' ? 'Minimum commitment' : kind === 'cap' ? 'Cap' : kind === 'fixed_fee' ? 'Fee' : 'Credit';
  return name ? `${label} ${name}` : label;
}
