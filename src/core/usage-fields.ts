/** The canonical usage fields every feed maps to, as raw strings exactly as the feed spelled them. */
export const CANONICAL_FIELDS = [
  'usage_id',
  'product',
  'user',
  'account',
  'quantity',
  'start_time',
  'end_time',
  'description',
] as const;
export type CanonicalField = (typeof CANONICAL_FIELDS)[number];
export const REQUIRED_FIELDS: readonly CanonicalField[] = ['usage_id', 'product', 'user', 'quantity', 'start_time'];

export type RawUsageFields = Partial<Record<CanonicalField, string>>;
