import PDFDocument from 'pdfkit';

/**
 * pdfkit parses a standard font's metrics file (Helvetica.afm, 2,600 lines of widths and kerning
 * pairs) again for every document that uses it: about a third of the time it takes to render a
 * one-page invoice. The parsed metrics never change, so they are parsed once per font and shared.
 *
 * pdfkit does not expose its metrics class, so it is reached through a throwaway document and its
 * `parse` method is memoised by the file's contents. If a pdfkit release changes that shape, the
 * check below finds no such method and rendering simply goes on uncached: slower, never wrong.
 */

interface ParsedMetrics {
  attributes: unknown;
  glyphWidths: unknown;
  boundingBoxes: unknown;
  kernPairs: unknown;
}

interface MetricsPrototype {
  parse(this: ParsedMetrics, contents: string): void;
}

let installed = false;

/** Installs the cache once per process; returns whether pdfkit had the expected shape. */
export function cacheStandardFontMetrics(): boolean {
  if (installed) return true;
  const probe = new PDFDocument({ autoFirstPage: false });
  // The default font (Helvetica) is a StandardFont whose `font` is the parsed metrics object.
  const metrics = (probe as unknown as { _font?: { font?: object } })._font?.font;
  const proto = metrics ? (Object.getPrototypeOf(metrics) as Partial<MetricsPrototype> | null) : null;
  probe.end();
  const parse = proto?.parse;
  if (!proto || typeof parse !== 'function' || !hasMetricFields(metrics)) return false;

  const cache = new Map<string, ParsedMetrics>();
  proto.parse = function parseOnce(this: ParsedMetrics, contents: string): void {
    const known = cache.get(contents);
    if (known) {
      // Shared, read-only after parsing: pdfkit only looks widths and pairs up.
      this.attributes = known.attributes;
      this.glyphWidths = known.glyphWidths;
      this.boundingBoxes = known.boundingBoxes;
      this.kernPairs = known.kernPairs;
      return;
    }
    parse.call(this, contents);
    cache.set(contents, { attributes: this.attributes, glyphWidths: this.glyphWidths, boundingBoxes: this.boundingBoxes, kernPairs: this.kernPairs });
  };
  installed = true;
  return true;
}

function hasMetricFields(value: unknown): value is ParsedMetrics {
  if (typeof value !== 'object' || value === null) return false;
  return ['attributes', 'glyphWidths', 'boundingBoxes', 'kernPairs'].every((k) => typeof (value as Record<string, unknown>)[k] === 'object');
}
