/**
 * CSV for people and spreadsheets: RFC 4180 (CRLF line ends, fields quoted only when they must be).
 *
 * Text and numbers are different cell types on purpose. Spreadsheets run a text cell that starts
 * with = + - @ (or tab / CR, which some of them skip before looking) as a formula, so every text
 * cell that starts that way gets a leading apostrophe (OWASP "CSV injection"). Doing that to a
 * money column would turn -12.50 into the text '-12.50 and break every sum over it, so numbers are
 * a separate cell type that is checked to be a plain decimal and written as is.
 */

/** A numeric cell: a plain decimal such as "12.50", "-3" or "0.000001", written unquoted and unescaped. */
export interface CsvNumber {
  readonly number: string;
}

/**
 * One cell. A string is text (escaped against formulas), a bigint or `{ number }` is a number,
 * null is an empty field.
 */
export type CsvCell = string | bigint | CsvNumber | null;

// Only plain decimals: an exponent, a "+" or grouping would be read differently by each spreadsheet.
const PLAIN_DECIMAL = /^-?\d+(?:\.\d+)?$/;
const FORMULA_START = /^[=+\-@\t\r]/;
const NEEDS_QUOTES = /[",\r\n]/;

export function csvNumber(value: string): CsvNumber {
  if (!PLAIN_DECIMAL.test(value)) throw new RangeError(`"${value}" is not a plain decimal for a CSV number cell`);
  return { number: value };
}

/** Renders rows as RFC 4180 CSV; every row, the last included, ends with CRLF. */
export function toCsv(rows: readonly (readonly CsvCell[])[]): string {
  return rows.map((row) => row.map(formatCell).join(',') + '\r\n').join('');
}

function formatCell(cell: CsvCell): string {
  if (cell === null) return '';
  if (typeof cell === 'bigint') return cell.toString();
  if (typeof cell === 'string') return formatText(cell);
  // Checked here as well as in csvNumber(): a hand-built { number } must not smuggle text past the escaping.
  return csvNumber(cell.number).number;
}

function formatText(text: string): string {
  const safe = FORMULA_START.test(text) ? `'${text}` : text;
  return NEEDS_QUOTES.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}
