import { csvAdapter } from './csv';
import type { FeedAdapter } from './types';
import { xmlAdapter } from './xml';

/** Every feed format the engine reads. Adding a format: one adapter file and one entry here. */
export const feedAdapters: readonly FeedAdapter[] = [csvAdapter, xmlAdapter];

export function adapterForFormat(format: string): FeedAdapter {
  const adapter = feedAdapters.find((a) => a.format === format);
  if (adapter === undefined) {
    throw new Error(`unknown feed format ${JSON.stringify(format)}; known formats: ${feedAdapters.map((a) => a.format).join(', ')}`);
  }
  return adapter;
}

/** The format a file name's extension claims (case-insensitive), or undefined if no adapter claims it. */
export function formatForFileName(name: string): string | undefined {
  const lower = name.toLowerCase();
  let best: { format: string; length: number } | undefined;
  for (const adapter of feedAdapters) {
    for (const extension of adapter.extensions) {
      // The longest claimed extension wins, so that a later "csv.gz" is not read as plain "gz".
      const suffix = `.${extension}`;
      if (lower.length > suffix.length && lower.endsWith(suffix) && (best === undefined || suffix.length > best.length)) {
        best = { format: adapter.format, length: suffix.length };
      }
    }
  }
  return best?.format;
}
