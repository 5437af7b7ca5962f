import { z } from 'zod';
import { CANONICAL_FIELDS, type CanonicalField } from './usage-fields';
import { isValidTimeZone } from './period';
import { decimalStringSchema, productCodeSchema } from './rating/rule-schema';
import { flexibleBoolean } from './schema-helpers';

/**
 * How one partner's feeds are spelled: column and element names, separators, timestamp format and
 * zone, defaults, and how strict to be. Kept with the partnership data (imported with partners) and
 * applied in two places: the format adapter maps the file's own names to canonical fields, and
 * `normalizeRow` (pure) turns the partner's spelling of values into the canonical one.
 */
const canonicalField = z.enum(CANONICAL_FIELDS);
const fieldMap = z.partialRecord(canonicalField, z.string().min(1));

export const csvProfileSchema = z
  .object({
    delimiter: z.enum([',', ';', '\t', '|']).default(','),
    /** The header a canonical field is read from, when it differs from the canonical name. */
    columns: fieldMap.default({}),
    /** Other headers accepted for a field (matched case-insensitively, like the canonical name). */
    header_aliases: z.partialRecord(canonicalField, z.array(z.string().min(1))).default({}),
    /** Columns the partner sends that we ignore, instead of refusing the file for an unknown header. */
    ignore_columns: z.array(z.string().min(1)).default([]),
    /**
     * A trailer row carrying control totals: a final row whose first cell is `marker`, with the
     * record count and/or the quantity sum in the named columns (by header name).
     */
    trailer: z
      .object({
        marker: z.string().min(1),
        record_count_column: z.string().min(1).optional(),
        quantity_sum_column: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export const xmlProfileSchema = z
  .object({
    root_element: z.string().min(1).default('usageFeed'),
    record_element: z.string().min(1).default('usage'),
    /**
     * Where each canonical field lives in a record: an attribute of the record element ("@id") or a
     * child element ("quantity"). Names are matched without their namespace prefix.
     */
    fields: fieldMap.default({}),
    /** Root attributes that carry control totals. */
    record_count_attribute: z.string().min(1).optional(),
    quantity_sum_attribute: z.string().min(1).optional(),
  })
  .strict();

export const TIMESTAMP_FORMATS = ['iso8601', 'yyyy-MM-dd HH:mm:ss', 'dd.MM.yyyy HH:mm', 'dd.MM.yyyy HH:mm:ss', 'dd/MM/yyyy HH:mm', 'MM/dd/yyyy HH:mm'] as const;

export const feedProfileSchema = z
  .object({
    csv: csvProfileSchema.default(csvProfileSchema.parse({})),
    xml: xmlProfileSchema.default(xmlProfileSchema.parse({})),
    decimal_separator: z.enum(['.', ',']).default('.'),
    /** Grouping separator allowed in quantities; none by default (1,000 is refused, never guessed). */
    thousands_separator: z.enum([',', '.', ' ', "'"]).optional(),
    timestamp_format: z.enum(TIMESTAMP_FORMATS).default('iso8601'),
    /** The zone of timestamps written without an offset; without it such timestamps are refused. */
    time_zone: z.string().refine(isValidTimeZone, { error: (iss) => `unknown time zone "${String(iss.input)}"` }).optional(),
    defaults: z.object({ product: productCodeSchema.optional(), account: z.string().min(1).optional() }).strict().default({}),
    /** Reject the whole file on any row error, or when rejected rows exceed this fraction of rows read. */
    reject_file_on_any_error: flexibleBoolean.default(false),
    max_error_rate: decimalStringSchema(4).optional(),
    /** A later file with the same name replaces the earlier one's usages (compensated, never deleted). */
    supersede_same_name: flexibleBoolean.default(false),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.thousands_separator !== undefined && p.thousands_separator === p.decimal_separator) {
      ctx.addIssue({ code: 'custom', path: ['thousands_separator'], message: 'must differ from the decimal separator' });
    }
    if (p.csv.delimiter === p.decimal_separator || (p.thousands_separator !== undefined && p.csv.delimiter === p.thousands_separator)) {
      // Legal when quoted, but a feed that relies on quoting every quantity breaks the day it doesn't.
      ctx.addIssue({ code: 'custom', path: ['csv', 'delimiter'], message: 'must differ from the decimal and thousands separators' });
    }
  });

export type FeedProfile = z.infer<typeof feedProfileSchema>;
export type CsvProfile = z.infer<typeof csvProfileSchema>;
export type XmlProfile = z.infer<typeof xmlProfileSchema>;
export const DEFAULT_FEED_PROFILE: FeedProfile = feedProfileSchema.parse({});

export type { CanonicalField };
