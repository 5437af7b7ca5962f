import type { Temporal } from 'temporal-polyfill';
import type { RawUsageFields } from './usage-fields';
import { type Decimal, type DecimalParseResult, parseDecimal, sign } from './decimal';
import {
  type UtcTimestamp,
  compareTimestamps,
  formatTimestamp,
  instantOfTimestamp,
  localDateAt,
  parseUtcTimestamp,
  startOfLocalDate,
  timestampOfInstant,
} from './period';
import { type RuleVersion, type SplitRule, resolveAccounts } from './rating/rate-usage';
import { pricingRuleFor } from './rating/registry';

/** What validation needs to know about a partnership; loaded once per file. */
export interface PartnershipForValidation {
  id: number;
  code: string;
  timeZone: string;
  contractStart: string;
  contractEnd: string | null;
  allowCredits: boolean;
  accountsByCode: ReadonlyMap<string, number>;
  defaultAccountId: number | null;
  splits: readonly SplitRule[];
  ruleVersions: readonly RuleVersion[];
}

export interface ProductForValidation {
  id: number;
  code: string;
  quantityScale: number;
}

export interface ValidationContext {
  partnerCode: string;
  /** The customer partner's partnerships; a usage goes to the one whose contract covers its start. */
  partnerships: readonly PartnershipForValidation[];
  productsByCode: ReadonlyMap<string, ProductForValidation>;
  /** Usages may not start after this instant (a clock reading passed in; the core reads no clock). */
  latestStart: Temporal.Instant;
  earliestStart: Temporal.Instant;
}

export interface ValidUsage {
  externalId: string;
  partnershipId: number;
  productId: number;
  userRef: string;
  accountId: number | null;
  quantity: Decimal;
  startedAt: Temporal.Instant;
  endedAt: Temporal.Instant | null;
  period: string;
  description: string | null;
}

export interface FieldError {
  field: string;
  code: string;
  message: string;
  raw: string | undefined;
}

export type UsageValidation = { ok: true; usage: ValidUsage } | { ok: false; errors: FieldError[] };

/** A valid usage with its instants as plain numbers: what ingestion stores, without Temporal objects. */
export interface CheckedUsage extends Omit<ValidUsage, 'startedAt' | 'endedAt'> {
  startedAt: UtcTimestamp;
  endedAt: UtcTimestamp | null;
}

export type UsageCheck = { ok: true; usage: CheckedUsage } | { ok: false; errors: FieldError[] };

const MAX_ID = 128;
const MAX_TEXT = 1000;
// Control characters other than tab in an identifier are almost always a broken export.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;

/**
 * Checks one raw row and turns it into a usage ready to store, or lists every problem with it.
 * Pure: all lookups come in `ctx`. `original` is the row as the feed spelled it, before a profile
 * normalised it, so errors quote what the partner actually sent.
 */
export function validateUsage(raw: RawUsageFields, ctx: ValidationContext, original: RawUsageFields = raw): UsageValidation {
  const checked = checkUsage(raw, ctx, original);
  if (!checked.ok) return checked;
  const { startedAt, endedAt, ...rest } = checked.usage;
  return { ok: true, usage: { ...rest, startedAt: instantOfTimestamp(startedAt), endedAt: endedAt === null ? null : instantOfTimestamp(endedAt) } };
}

/** What a context implies, worked out once per context rather than once per row. */
interface DerivedContext {
  latestStart: UtcTimestamp;
  earliestStart: UtcTimestamp;
  earliestText: string;
}
const derivedContexts = new WeakMap<ValidationContext, DerivedContext>();

function derived(ctx: ValidationContext): DerivedContext {
  let d = derivedContexts.get(ctx);
  if (d === undefined) {
    d = { latestStart: timestampOfInstant(ctx.latestStart), earliestStart: timestampOfInstant(ctx.earliestStart), earliestText: ctx.earliestStart.toString() };
    derivedContexts.set(ctx, d);
  }
  return d;
}

/**
 * validateUsage with the instants as plain numbers: the same rules, the same messages, for the
 * ingestion hot path. `quantity` may pass in the row's quantity already parsed (the caller sums it).
 */
export function checkUsage(raw: RawUsageFields, ctx: ValidationContext, original: RawUsageFields = raw, quantityParsed?: DecimalParseResult): UsageCheck {
  const errors: FieldError[] = [];
  const limits = derived(ctx);
  // Messages quote values as the partner wrote them too: "1,234" in a decimal-comma feed, not the
  // "1.234" it was normalised to; a local time, not the UTC instant it was converted to.
  const said = (field: 'quantity' | 'start_time' | 'end_time'): string => original[field] ?? raw[field] ?? '';
  const fail = (field: string, code: string, message: string): undefined => {
    errors.push({ field, code, message, raw: original[field as keyof RawUsageFields] });
    return undefined;
  };
  const text = (field: keyof RawUsageFields, required: boolean, max: number): string | null | undefined => {
    const v = raw[field];
    if (v === undefined || v.trim() === '') return required ? fail(field, 'required', `${field} is required`) : null;
    if (v.length > max) return fail(field, 'too_long', `${field} is longer than ${max} characters`);
    if (CONTROL.test(v) && field !== 'description') return fail(field, 'control_character', `${field} contains a control character`);
    return v.trim();
  };

  const externalId = text('usage_id', true, MAX_ID);
  const productCode = text('product', true, 64);
  const userRef = text('user', true, MAX_ID);
  const accountCode = text('account', false, 64);
  const description = text('description', false, MAX_TEXT);

  const product = productCode ? ctx.productsByCode.get(productCode) : undefined;
  if (productCode && !product) fail('product', 'unknown_product', `unknown product "${productCode}"`);

  let quantity: Decimal | undefined;
  const rawQuantity = raw.quantity;
  if (rawQuantity === undefined || rawQuantity.trim() === '') fail('quantity', 'required', 'quantity is required');
  else {
    const parsed = quantityParsed ?? parseDecimal(rawQuantity);
    if (!parsed.ok) fail('quantity', 'invalid_quantity', `quantity "${said('quantity')}" ${parsed.reason}`);
    else if (product && parsed.value.scale > product.quantityScale) {
      fail('quantity', 'too_precise', `quantity "${said('quantity')}" has more than ${product.quantityScale} decimal places for ${product.code}`);
    } else quantity = parsed.value;
  }

  let startedAt: UtcTimestamp | undefined;
  const rawStart = raw.start_time;
  if (rawStart === undefined || rawStart.trim() === '') fail('start_time', 'required', 'start_time is required');
  else {
    const parsed = parseUtcTimestamp(rawStart);
    if (!parsed.ok) fail('start_time', 'invalid_timestamp', `start_time "${said('start_time')}" ${parsed.reason}`);
    else if (compareTimestamps(parsed.value, limits.latestStart) > 0) {
      fail('start_time', 'out_of_range', `start_time "${said('start_time')}" is in the future`);
    } else if (compareTimestamps(parsed.value, limits.earliestStart) < 0) {
      fail('start_time', 'out_of_range', `start_time "${said('start_time')}" is before ${limits.earliestText}`);
    } else startedAt = parsed.value;
  }

  let endedAt: UtcTimestamp | null = null;
  const rawEnd = raw.end_time;
  if (rawEnd !== undefined && rawEnd.trim() !== '') {
    const parsed = parseUtcTimestamp(rawEnd);
    if (!parsed.ok) fail('end_time', 'invalid_timestamp', `end_time "${said('end_time')}" ${parsed.reason}`);
    else if (startedAt && compareTimestamps(parsed.value, startedAt) < 0) {
      fail('end_time', 'end_before_start', `end_time "${said('end_time')}" is before start_time "${said('start_time')}"`);
    } else endedAt = parsed.value;
  }

  // Which partnership: the one whose contract covers the usage's local start date.
  let partnership: PartnershipForValidation | undefined;
  let localStart: string | undefined;
  if (startedAt) {
    const at = startedAt;
    let covering: PartnershipForValidation[] | undefined;
    let only: PartnershipForValidation | undefined;
    for (const p of ctx.partnerships) {
      const day = localDateAt(at.epochMs, p.timeZone);
      if (day < p.contractStart || (p.contractEnd !== null && day > p.contractEnd)) continue;
      if (only === undefined) {
        only = p;
        localStart = day;
      } else (covering ??= [only]).push(p);
    }
    if (only === undefined) {
      fail('start_time', 'no_partnership', `no partnership of partner ${ctx.partnerCode} covers ${formatTimestamp(at)}`);
    } else if (covering !== undefined) {
      fail('start_time', 'ambiguous_partnership', `partnerships ${covering.map((p) => p.code).join(', ')} of partner ${ctx.partnerCode} all cover ${formatTimestamp(at)}`);
    } else partnership = only;
  }

  if (partnership && quantity && sign(quantity) < 0 && !partnership.allowCredits) {
    fail('quantity', 'negative_not_allowed', `quantity "${said('quantity')}" is negative and partnership ${partnership.code} does not allow credits`);
  }

  let accountId: number | null = null;
  if (partnership && accountCode) {
    const found = partnership.accountsByCode.get(accountCode);
    if (found === undefined) fail('account', 'unknown_account', `unknown account "${accountCode}" for partnership ${partnership.code}`);
    else accountId = found;
  }

  if (partnership && product && userRef && startedAt) {
    // Most users have no split and fall to the default account: only the others need resolving.
    if (!accountCode && (partnership.defaultAccountId === null || usersWithSplits(partnership).has(userRef))) {
      const resolved = resolveAccounts({ accountId: null, userRef, productId: product.id }, partnership.splits, partnership.defaultAccountId);
      if (!resolved.ok) fail('account', 'no_account', resolved.reason);
    }
    const version = versionInForce(partnership.ruleVersions, startedAt, partnership.timeZone);
    if (!version) fail('start_time', 'no_rules', `partnership ${partnership.code} has no rules in force at ${formatTimestamp(startedAt)}`);
    else if (!pricingRuleFor(version.rules, product.code)) {
      fail('product', 'no_price', `partnership ${partnership.code} has no price for ${product.code} in rules effective ${version.effectiveFrom}`);
    }
  }

  if (errors.length > 0 || !externalId || !product || !userRef || !quantity || !startedAt || !partnership || localStart === undefined) {
    return { ok: false, errors };
  }
  return {
    ok: true,
    usage: {
      externalId,
      partnershipId: partnership.id,
      productId: product.id,
      userRef,
      accountId,
      quantity,
      startedAt,
      endedAt,
      // The month of the local start date found above (the period is the start's month in the partnership's zone).
      period: localStart.slice(0, 7),
      description: description ?? null,
    },
  };
}

const splitUsers = new WeakMap<PartnershipForValidation, ReadonlySet<string>>();

function usersWithSplits(p: PartnershipForValidation): ReadonlySet<string> {
  let users = splitUsers.get(p);
  if (users === undefined) splitUsers.set(p, (users = new Set(p.splits.map((s) => s.userRef))));
  return users;
}

// Each version's first instant (local midnight of its date) per zone, in epoch milliseconds.
const versionStarts = new WeakMap<RuleVersion, Map<string, number>>();

/**
 * The version in force at `at`: the latest that began at or before it. The same choice as rating's
 * ruleVersionFor, on plain numbers (that one takes a Temporal.Instant).
 */
function versionInForce(versions: readonly RuleVersion[], at: UtcTimestamp, timeZone: string): RuleVersion | undefined {
  let best: RuleVersion | undefined;
  for (const v of versions) {
    let byZone = versionStarts.get(v);
    if (byZone === undefined) versionStarts.set(v, (byZone = new Map<string, number>()));
    let start = byZone.get(timeZone);
    if (start === undefined) byZone.set(timeZone, (start = startOfLocalDate(v.effectiveFrom, timeZone).epochMilliseconds));
    // Version starts are whole seconds, so comparing milliseconds is exact.
    if (start > at.epochMs) continue;
    if (!best || v.effectiveFrom > best.effectiveFrom) best = v;
  }
  return best;
}
