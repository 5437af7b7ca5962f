import type { FeedProfile } from '../../src/core/feed-profile';
import { CANONICAL_FIELDS, FeedFileError, type CanonicalField } from './types';

/** How one partner spells its XML feeds, worked out once per file from its feed profile. All names are local (no prefix). */
export interface XmlLayout {
  readonly root: string;
  readonly record: string;
  /** Attributes of the record element, and child elements of it, that carry a canonical field. */
  readonly attributes: ReadonlyMap<string, CanonicalField>;
  readonly elements: ReadonlyMap<string, CanonicalField>;
  /** Root attributes carrying the file's control totals. */
  readonly recordCountAttribute: string | undefined;
  readonly quantitySumAttribute: string | undefined;
}

/** The canonical format's name for each field; it may be written as an attribute or as a child element. */
const DEFAULT_NAMES: Readonly<Record<CanonicalField, string>> = {
  usage_id: 'id',
  product: 'product',
  user: 'user',
  account: 'account',
  quantity: 'quantity',
  start_time: 'start',
  end_time: 'end',
  description: 'description',
};

// Anything that cannot be an XML name (or would be a path or a query) can never match, so a profile
// holding one is refused instead of leaving the field silently unread.
const PLAIN_NAME = /^[^\s<>&"'=/@!?[\]()*]+$/u;

/** A name without its namespace prefix: names are matched that way, so a namespaced feed reads the same. */
export function localName(name: string): string {
  const colon = name.indexOf(':');
  return colon === -1 ? name : name.slice(colon + 1);
}

/**
 * The layout a profile describes; without one, the canonical format. A field the profile places
 * ("@ref" for an attribute, "amount" for a child element) is read there only; the others keep their
 * canonical name, as either. A place the profile names beats another field's canonical name; two
 * fields placed at the same spot cannot both hold, and the profile is refused.
 */
export function xmlLayoutOf(profile: FeedProfile | undefined, fileName: string): XmlLayout {
  const xml = profile?.xml;
  const attributes = new Map<string, CanonicalField>();
  const elements = new Map<string, CanonicalField>();
  const problems: string[] = [];
  const checked = (name: string, what: string): string => {
    const local = localName(name);
    if (!PLAIN_NAME.test(local)) problems.push(`${what} ${JSON.stringify(name)} is not an element or attribute name`);
    return local;
  };
  for (const field of CANONICAL_FIELDS) {
    if (xml?.fields[field] !== undefined) continue;
    attributes.set(DEFAULT_NAMES[field], field);
    elements.set(DEFAULT_NAMES[field], field);
  }
  const placed = new Map<string, CanonicalField>();
  for (const field of CANONICAL_FIELDS) {
    const where = xml?.fields[field];
    if (where === undefined) continue;
    const isAttribute = where.startsWith('@');
    const name = checked(isAttribute ? where.slice(1) : where, `fields.${field}`);
    const spot = `${isAttribute ? '@' : ''}${name}`;
    const other = placed.get(spot);
    if (other !== undefined) problems.push(`fields.${other} and fields.${field} both read ${JSON.stringify(spot)}`);
    placed.set(spot, field);
    (isAttribute ? attributes : elements).set(name, field);
  }
  const root = checked(xml?.root_element ?? 'usageFeed', 'root_element');
  const record = checked(xml?.record_element ?? 'usage', 'record_element');
  const recordCount = xml?.record_count_attribute;
  const quantitySum = xml?.quantity_sum_attribute;
  const recordCountAttribute = recordCount === undefined ? undefined : checked(recordCount, 'record_count_attribute');
  const quantitySumAttribute = quantitySum === undefined ? undefined : checked(quantitySum, 'quantity_sum_attribute');
  if (problems.length > 0) {
    throw new FeedFileError(fileName, `the partner's feed profile cannot be applied: ${problems.join('; ')}`);
  }
  return { root, record, attributes, elements, recordCountAttribute, quantitySumAttribute };
}
