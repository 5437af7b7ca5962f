import type { CsvProfile, FeedProfile } from '../../src/core/feed-profile';
import { CANONICAL_FIELDS, FeedFileError, REQUIRED_FIELDS, type CanonicalField } from './types';

export type CsvDelimiter = CsvProfile['delimiter'];
const DELIMITERS: readonly CsvDelimiter[] = [',', ';', '\t', '|'];

/** What a header name stands for: a canonical field, or `null` for a column the profile ignores. */
type Claim = CanonicalField | null;

/** How one partner spells its CSV feeds, worked out once per file from its feed profile. */
export interface CsvLayout {
  readonly delimiter: CsvDelimiter;
  /** Header name (trimmed, lower case) -> what the column carries. */
  readonly claims: ReadonlyMap<string, Claim>;
  readonly required: readonly CanonicalField[];
  /** The expected header in words, for error messages. */
  readonly expected: string;
  /** How each canonical field is spelled, in words. */
  readonly describe: (field: CanonicalField) => string;
  readonly trailer: CsvProfile['trailer'];
}

/** The columns of one file, from its header row. */
export interface CsvColumns {
  /** Per column: the field it carries; undefined for an ignored column. */
  readonly fields: readonly (CanonicalField | undefined)[];
  /** Per column: may an empty value be left out of the row's fields? */
  readonly optional: readonly boolean[];
  /** Columns of the trailer's control totals, when the profile declares a trailer. */
  readonly recordCountIndex: number | undefined;
  readonly quantitySumIndex: number | undefined;
}

function headerKey(name: string): string {
  return name.trim().toLowerCase();
}

/**
 * The layout a profile describes; without one, the canonical format (comma, canonical names).
 * A field is read from `columns[field]` when given, else from its canonical name or an alias. A name
 * the profile spells out (a column, an alias, an ignored column) beats another field's canonical
 * name, so `columns.user: "account"` makes the "account" header the user; two spelled-out claims on
 * one header cannot both hold, and the profile is refused rather than one picked by accident.
 */
export function csvLayoutOf(profile: FeedProfile | undefined, fileName: string): CsvLayout {
  const csv = profile?.csv;
  const explicit = new Map<string, Set<Claim>>();
  const implicit = new Map<string, Claim>();
  const claim = (name: string, what: Claim) => {
    const key = headerKey(name);
    const claimants = explicit.get(key) ?? new Set<Claim>();
    claimants.add(what);
    explicit.set(key, claimants);
  };
  for (const field of CANONICAL_FIELDS) {
    const column = csv?.columns[field];
    if (column !== undefined) {
      claim(column, field);
      continue;
    }
    implicit.set(field, field);
    for (const alias of csv?.header_aliases[field] ?? []) claim(alias, field);
  }
  for (const name of csv?.ignore_columns ?? []) claim(name, null);

  const claims = new Map<string, Claim>(implicit);
  const conflicts: string[] = [];
  for (const [key, claimants] of explicit) {
    const [first, ...others] = [...claimants];
    if (others.length > 0) {
      const who = [first, ...others].map((c) => (c === null ? 'ignore_columns' : c));
      conflicts.push(`the header ${JSON.stringify(key)} is given for ${who.join(' and ')}`);
    } else if (first !== undefined) {
      claims.set(key, first);
    }
  }
  if (conflicts.length > 0) {
    throw new FeedFileError(fileName, `the partner's feed profile is ambiguous: ${conflicts.join('; ')}`);
  }

  const defaults = profile?.defaults;
  // A field the profile supplies a default for need not be in the file; account is optional anyway.
  const required = REQUIRED_FIELDS.filter((f) => !(f === 'product' && defaults?.product !== undefined));
  const optional = CANONICAL_FIELDS.filter((f) => !required.includes(f));
  const describe = (field: CanonicalField): string => {
    const column = csv?.columns[field];
    if (column !== undefined) return `${JSON.stringify(column)} (${field})`;
    const aliases = csv?.header_aliases[field] ?? [];
    return aliases.length === 0 ? field : `${field} (or ${aliases.map((a) => JSON.stringify(a)).join(', ')})`;
  };
  const ignored = csv?.ignore_columns ?? [];
  const expected =
    `${required.map(describe).join(', ')} (required) and ${optional.map(describe).join(', ')} (optional)` +
    (ignored.length > 0 ? `; ignored: ${ignored.map((c) => JSON.stringify(c)).join(', ')}` : '');

  return { delimiter: csv?.delimiter ?? ',', claims, required, expected, describe, trailer: csv?.trailer };
}

/** Reads the header row against the layout; any mismatch rejects the file, listing expected and found headers. */
export function columnsOfHeader(header: readonly string[], layout: CsvLayout, fileName: string, line: number): CsvColumns {
  const fields: (CanonicalField | undefined)[] = [];
  const seenAt = new Map<CanonicalField, number>();
  const unknown: string[] = [];
  const duplicate: string[] = [];
  const empty: number[] = [];
  // A BOM is normally dropped by the decoder; this covers a stream that was handed over as text.
  const keys = header.map((raw, index) => headerKey(index === 0 && raw.startsWith('\uFEFF') ? raw.slice(1) : raw));
  keys.forEach((key, index) => {
    const position = index + 1;
    const claim = layout.claims.get(key);
    if (key === '') empty.push(position);
    else if (claim === undefined) unknown.push(JSON.stringify(header[index]));
    else if (claim === null) fields.push(undefined);
    else {
      const first = seenAt.get(claim);
      if (first !== undefined) duplicate.push(`${claim} (columns ${first} and ${position})`);
      else seenAt.set(claim, position);
      fields.push(claim);
    }
  });
  const missing = layout.required.filter((f) => !seenAt.has(f));

  const problems: string[] = [];
  if (missing.length > 0) problems.push(`missing required ${plural('column', missing.length)} ${missing.map(layout.describe).join(', ')}`);
  if (unknown.length > 0) problems.push(`unknown ${plural('column', unknown.length)} ${unknown.join(', ')}`);
  if (duplicate.length > 0) problems.push(`duplicate ${plural('column', duplicate.length)} ${duplicate.join(', ')}`);
  if (empty.length > 0) problems.push(`empty column ${plural('name', empty.length)} at ${plural('position', empty.length)} ${empty.join(', ')}`);
  const { trailer } = layout;
  const trailerColumn = (name: string | undefined, what: string): number | undefined => {
    if (name === undefined) return undefined;
    const matches = keys.flatMap((key, index) => (key === headerKey(name) ? [index] : []));
    if (matches.length === 1) return matches[0];
    // Already reported as a missing field: saying it twice adds nothing.
    const claim = layout.claims.get(headerKey(name));
    if (matches.length === 0 && claim !== undefined && claim !== null && missing.includes(claim)) return undefined;
    problems.push(
      matches.length === 0
        ? `no column ${JSON.stringify(name)} for the trailer's ${what}`
        : `the column ${JSON.stringify(name)} for the trailer's ${what} appears ${matches.length} times`,
    );
    return undefined;
  };
  const recordCountIndex = trailerColumn(trailer?.record_count_column, 'record count');
  const quantitySumIndex = trailerColumn(trailer?.quantity_sum_column, 'quantity sum');

  if (problems.length > 0) {
    const hint = header.length === 1 ? delimiterHint(header[0] ?? '', layout.delimiter) : '';
    throw new FeedFileError(
      fileName,
      `line ${line}: the header row does not match the feed format: ${problems.join('; ')}.${hint} ` +
        `Expected columns, in any order: ${layout.expected}. Found: ${header.map((h) => JSON.stringify(h)).join(', ')}.`,
    );
  }
  return {
    fields,
    optional: fields.map((f) => f === undefined || !REQUIRED_FIELDS.includes(f)),
    recordCountIndex,
    quantitySumIndex,
  };
}

function delimiterHint(onlyHeader: string, delimiter: CsvDelimiter): string {
  const used = DELIMITERS.find((d) => d !== delimiter && onlyHeader.includes(d));
  return used === undefined
    ? ''
    : ` The header is one column containing ${JSON.stringify(used)}: columns must be separated by ${JSON.stringify(delimiter)}.`;
}

function plural(word: string, n: number): string {
  return n === 1 ? word : `${word}s`;
}
