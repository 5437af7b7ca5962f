import { z } from 'zod';

/**
 * Partnerships files are YAML read with the failsafe schema (every scalar a string, so no price
 * ever passes through a float). These accept the string spellings alongside JSON's native types.
 */
export const flexibleBoolean = z.union([z.boolean(), z.enum(['true', 'false']).transform((s) => s === 'true')]);

export function flexibleInt(min: number, max: number) {
  return z
    .union([z.number().int(), z.string().regex(/^\d+$/, 'must be a whole number').transform(Number)])
    .pipe(z.number().int().min(min).max(max));
}
