import { z } from 'zod';
import { parseDecimal } from '../decimal';

/** A product code as used in rules and feeds. */
export const productCodeSchema = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'product codes are 1-64 letters, digits, _ . -');

/** An exact decimal written as a string ("0.045"), with at most `maxPlaces` digits after the point. */
export function decimalStringSchema(maxPlaces: number, opts: { positive?: boolean } = {}) {
  return z.string().superRefine((s, ctx) => {
    const parsed = parseDecimal(s);
    if (!parsed.ok) {
      ctx.addIssue({ code: 'custom', message: `"${s}" ${parsed.reason}` });
      return;
    }
    if (parsed.value.scale > maxPlaces) {
      ctx.addIssue({ code: 'custom', message: `"${s}" has more than ${maxPlaces} decimal places` });
    }
    if (opts.positive === true && parsed.value.coefficient <= 0n) {
      ctx.addIssue({ code: 'custom', message: `"${s}" must be greater than zero` });
    }
  });
}
