/**
 * The invoice PDF uses the PDF standard fonts (Helvetica), which every viewer has and which keep a
 * one-page invoice at a few kilobytes. They encode text as WinAnsi (Windows-1252): Latin-1 plus a
 * few typographic characters. pdfkit writes any other character as a meaningless code, so text is
 * brought into that set first: accented letters outside it lose their accent (Ł stays unknown,
 * ő becomes o), anything still outside becomes "?", visibly rather than silently wrong.
 */

// The code points above Latin-1 that Windows-1252 places in 0x80-0x9F (pdfkit's WIN_ANSI_MAP).
const WIN_ANSI_EXTRAS = new Set([
  0x152, 0x153, 0x160, 0x161, 0x178, 0x17d, 0x17e, 0x192, 0x2c6, 0x2dc, 0x2013, 0x2014, 0x2018, 0x2019, 0x201a, 0x201c, 0x201d,
  0x201e, 0x2020, 0x2021, 0x2022, 0x2026, 0x2030, 0x2039, 0x203a, 0x20ac, 0x2122,
]);

function encodable(codePoint: number): boolean {
  return (codePoint >= 0x20 && codePoint <= 0x7e) || (codePoint >= 0xa0 && codePoint <= 0xff) || WIN_ANSI_EXTRAS.has(codePoint);
}

// Spaces of other widths and the line/paragraph separators read as a plain space.
const SPACES = /[\t\n\v\f\r\u0085\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/g;
// Bidi controls and zero-width characters print as nothing; their job is done by the text's order.
const INVISIBLE = /[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g;

/** `text` with every character in the standard fonts' WinAnsi set; control characters dropped. */
export function toWinAnsi(text: string): string {
  let out = '';
  for (const char of text.replace(SPACES, ' ').replace(INVISIBLE, '')) {
    const cp = char.codePointAt(0) ?? 0;
    if (encodable(cp)) {
      out += char;
      continue;
    }
    if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) continue; // C0 and C1 controls
    // ő -> o + combining mark -> o. Only if every remaining character is encodable.
    const stripped = char.normalize('NFKD').replace(/\p{M}/gu, '');
    out += stripped !== '' && [...stripped].every((c) => encodable(c.codePointAt(0) ?? 0)) ? stripped : '?';
  }
  return out;
}
