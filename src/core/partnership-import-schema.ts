import { z } from 'zod';
import { feedProfileSchema } from './feed-profile';
import { flexibleBoolean, flexibleInt } from './schema-helpers';
import { SUPPORTED_CURRENCIES } from './money';
import { isValidTimeZone } from './period';
import { Temporal } from 'temporal-polyfill';
import { ROUNDING_MODES } from './rounding';
import { decimalStringSchema, productCodeSchema } from './rating/rule-schema';
import { ruleSetSchema } from './rating/registry';
import { parseDecimal, sum, compare, decimal } from './decimal';

/**
 * The partnerships file (YAML or JSON) that `billing import` loads. YAML is read with the failsafe
 * schema, so every scalar arrives as a string and a price like 0.045 can never pass through a
 * JavaScript float; numbers and booleans are converted here, explicitly.
 */
const code = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'codes are 1-64 letters, digits, _ or -');
// The shape alone lets 2026-02-30 through, which PostgreSQL would refuse mid-import with no path in the file.
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const date = z.string().regex(DATE, 'dates are YYYY-MM-DD').refine((s) => !DATE.test(s) || isCalendarDate(s), {
  error: (iss) => `${String(iss.input)} is not a date in the calendar`,
});
const int = flexibleInt;
const bool = flexibleBoolean;
const email = z.string().regex(/^[^\s@<>,;]+@[^\s@<>,;]+\.[^\s@<>,;]+$/, 'must be an email address');
const optionalText = z.string().optional();

function isCalendarDate(s: string): boolean {
  try {
    Temporal.PlainDate.from(s, { overflow: 'reject' });
    return true;
  } catch {
    return false;
  }
}

export const partnerSchema = z.object({
  code,
  kind: z.enum(['company', 'individual']),
  name: z.string().min(1).max(200),
  email: email.optional(),
  address: optionalText,
  /** How this partner's feeds are spelled; absent: the canonical CSV and XML formats. */
  feed_profile: feedProfileSchema.optional(),
}).strict();

export const productSchema = z.object({
  code: productCodeSchema,
  name: z.string().min(1).max(200),
  unit: z.string().min(1).max(40),
  quantity_scale: int(0, 12).default(6),
}).strict();

const percent = decimalStringSchema(6, { positive: true });

export const splitSchema = z.object({
  user: z.string().min(1).max(128),
  product: productCodeSchema.optional(),
  shares: z.array(z.object({ account: code, percent }).strict()).min(1),
}).strict().superRefine((s, ctx) => {
  const total = sum(s.shares.map((x) => {
    const p = parseDecimal(x.percent);
    return p.ok ? p.value : decimal('0');
  }));
  if (compare(total, decimal('100')) !== 0) {
    ctx.addIssue({ code: 'custom', path: ['shares'], message: `split percentages for ${s.user} add up to ${s.shares.map((x) => x.percent).join(' + ')}, not 100` });
  }
  const accounts = s.shares.map((x) => x.account);
  if (new Set(accounts).size !== accounts.length) ctx.addIssue({ code: 'custom', path: ['shares'], message: `split for ${s.user} names an account twice` });
});

export const partnershipSchema = z.object({
  code,
  provider: code,
  customer: code,
  currency: z.string().refine((c) => SUPPORTED_CURRENCIES.includes(c), { error: (iss) => `unsupported currency "${String(iss.input)}"` }),
  time_zone: z.string().refine(isValidTimeZone, { error: (iss) => `unknown time zone "${String(iss.input)}"` }),
  contract_start: date,
  contract_end: date.optional(),
  payment_terms_days: int(0, 365).default(30),
  rounding_mode: z.enum(ROUNDING_MODES).default('half_up'),
  allow_credits: bool.default(false),
  invoice_recipients: z.array(email).default([]),
  default_account: code.optional(),
  accounts: z.array(z.object({
    code,
    name: z.string().min(1).max(200),
    kind: z.enum(['expense_code', 'purchase_order', 'cost_centre']).default('expense_code'),
  }).strict()).min(1),
  splits: z.array(splitSchema).default([]),
  rules: z.array(z.object({ effective_from: date, rules: ruleSetSchema }).strict()).min(1),
}).strict().superRefine((p, ctx) => {
  const accounts = new Set(p.accounts.map((a) => a.code));
  if (accounts.size !== p.accounts.length) ctx.addIssue({ code: 'custom', path: ['accounts'], message: 'an account code is listed twice' });
  if (p.default_account && !accounts.has(p.default_account)) {
    ctx.addIssue({ code: 'custom', path: ['default_account'], message: `default account ${p.default_account} is not one of the partnership's accounts` });
  }
  p.splits.forEach((s, i) => s.shares.forEach((sh, j) => {
    if (!accounts.has(sh.account)) ctx.addIssue({ code: 'custom', path: ['splits', i, 'shares', j, 'account'], message: `unknown account ${sh.account}` });
  }));
  if (p.provider === p.customer) ctx.addIssue({ code: 'custom', path: ['customer'], message: 'provider and customer must differ' });
  if (p.contract_end && p.contract_end < p.contract_start) ctx.addIssue({ code: 'custom', path: ['contract_end'], message: 'contract ends before it starts' });
  const dates = p.rules.map((r) => r.effective_from);
  if (new Set(dates).size !== dates.length) ctx.addIssue({ code: 'custom', path: ['rules'], message: 'two rule versions share an effective date' });
});

export const importDocumentSchema = z.object({
  partners: z.array(partnerSchema).default([]),
  products: z.array(productSchema).default([]),
  partnerships: z.array(partnershipSchema).default([]),
}).strict();

export type ImportDocument = z.infer<typeof importDocumentSchema>;
export type PartnershipImport = z.infer<typeof partnershipSchema>;
