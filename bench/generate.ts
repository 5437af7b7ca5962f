import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Synthetic feeds for the partnership NRF-ACME of bench/fixtures/ingest-partnerships.yaml (the demo's
 * ACME with graduated tiers and a 10 % discount on CPU hours, and m.chen split three ways): the
 * canonical CSV and XML layouts, every row valid, so the benchmark measures the pipeline and not
 * error reporting. Rows come from a seeded generator, so the CSV and the XML of one size hold the
 * same usages and every run writes the same bytes. Files are written chunk by chunk through a
 * stream pipeline (which waits on `drain`), never assembled in memory.
 */

export const BENCH_PARTNER = 'ACME';

export interface BenchUsage {
  id: string;
  product: string;
  user: string;
  /** '' when the row names no account (the user's split or the default account applies). */
  account: string;
  quantity: string;
  start: string;
  /** '' when the row has no end time. */
  end: string;
  /** '' when the row has no description. */
  description: string;
}

export interface FeedStats {
  rows: number;
  bytes: number;
  /** Rows of the split user (m.chen) without an account of their own: each becomes SPLIT_WAYS billing records. */
  splitRows: number;
}

/** How many accounts the split user's usages are shared over (bench/fixtures/ingest-partnerships.yaml). */
export const SPLIT_WAYS = 3;

/** Billing records a feed should end with once rated. */
export function expectedRecords(stats: FeedStats): number {
  return stats.rows + (SPLIT_WAYS - 1) * stats.splitRows;
}

/** Which usages a feed holds: `count` of them, ids from `firstId`, drawn from `seed`. */
export interface FeedSpec {
  count: number;
  firstId?: number;
  seed?: number;
}

interface ProductShape {
  code: string;
  /** The product's quantity_scale in the fixture: a quantity never has more decimal places. */
  scale: number;
  /** Largest quantity, in units of 10^-scale. */
  maxUnits: number;
  descriptions: readonly string[];
}

const PRODUCTS: readonly ProductShape[] = [
  {
    code: 'CONFOCAL_HOUR',
    scale: 2,
    maxUnits: 8_00,
    descriptions: ['Live cell imaging, 63x oil', 'Fixed tissue z-stack', 'Calcium imaging session', 'Training (supervised)'],
  },
  {
    code: 'CPU_HOUR',
    scale: 6,
    maxUnits: 5_000_000_000,
    descriptions: ['Batch job, array "alpha"', 'Genome assembly <run 7>', 'MD simulation replica', 'R&D parameter sweep'],
  },
  {
    code: 'STORAGE_TB_DAY',
    scale: 6,
    maxUnits: 50_000_000,
    descriptions: ['Project share /acme/imaging', 'Cold archive tier', 'Scratch overflow'],
  },
];

// m.chen has the three-way split in the fixture, and appears twice as often as anyone else.
const USERS = ['m.chen', 'm.chen', 'a.patel', 'r.okafor', 'j.lee', 'k.nakamura', 's.novak', 'l.garcia', 't.olsen'] as const;
const ACCOUNTS = ['ACME-OPS', 'GRANT-4471', 'GRANT-5120'] as const;
const SPLIT_USER = 'm.chen';

// Starts fall in October 2026 in Europe/London (the partnership's zone): from 01:00 BST on the 1st to
// 22:00 GMT on the 31st, so every usage belongs to period 2026-10 whatever its end.
const FIRST_START_MS = Date.UTC(2026, 9, 1, 0, 0);
const START_SPAN_MINUTES = (30 * 24 + 22) * 60;
const CSV_HEADER = 'usage_id,product,user,account,quantity,start_time,end_time,description\n';
const ROWS_PER_CHUNK = 1000;

/** mulberry32: small, fast and good enough to spread synthetic rows; the seed makes files reproducible. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(items: readonly T[], random: () => number): T {
  return items[Math.floor(random() * items.length)]!;
}

/** An integer count of 10^-scale units as a plain decimal ("1234.5", "12"), never an exponent. */
function fixedPoint(units: number, scale: number): string {
  if (scale === 0) return String(units);
  const digits = String(units).padStart(scale + 1, '0');
  const fraction = digits.slice(-scale).replace(/0+$/, '');
  const whole = digits.slice(0, -scale);
  return fraction ? `${whole}.${fraction}` : whole;
}

function isoMinute(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 16)}:00Z`;
}

export function usageId(n: number): string {
  return `ACME-U${String(n).padStart(8, '0')}`;
}

/** The usages of a feed, ids firstId..firstId+count-1, the same for the same seed. */
export function* benchUsages(count: number, seed = 20261001, firstId = 1): Generator<BenchUsage> {
  const random = seededRandom(seed);
  for (let n = firstId; n < firstId + count; n += 1) {
    const product = pick(PRODUCTS, random);
    const user = pick(USERS, random);
    const account = random() < 0.15 ? pick(ACCOUNTS, random) : '';
    // A third of the compute rows are whole hours; the rest use the product's full precision.
    const wholeOnly = product.code === 'CPU_HOUR' && random() < 0.3;
    const units = 1 + Math.floor(random() * (product.maxUnits - 1));
    const quantity = wholeOnly ? String(Math.max(1, Math.floor(units / 10 ** product.scale))) : fixedPoint(units, product.scale);
    const startMs = FIRST_START_MS + Math.floor(random() * START_SPAN_MINUTES) * 60_000;
    const end = product.code === 'STORAGE_TB_DAY' || random() < 0.25 ? '' : isoMinute(startMs + (1 + Math.floor(random() * 48)) * 15 * 60_000);
    const description = random() < 0.1 ? '' : `${pick(product.descriptions, random)} (booking NRF-2026-${10_000 + (n % 90_000)})`;
    yield { id: usageId(n), product: product.code, user, account, quantity, start: isoMinute(startMs), end, description };
  }
}

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

export function csvRow(u: BenchUsage): string {
  return `${u.id},${u.product},${u.user},${u.account},${u.quantity},${u.start},${u.end},${csvField(u.description)}\n`;
}

function xmlText(value: string): string {
  return value.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

export function xmlRecord(u: BenchUsage): string {
  // Descriptions with markup go in CDATA, as upstream exporters tend to do; the rest are escaped.
  const description = !u.description ? '' : u.description.includes('<')
    ? `\n    <description><![CDATA[${u.description}]]></description>`
    : `\n    <description>${xmlText(u.description)}</description>`;
  return `  <usage id="${u.id}">
    <product>${u.product}</product>
    <user>${xmlText(u.user)}</user>${u.account ? `\n    <account>${u.account}</account>` : ''}
    <quantity>${u.quantity}</quantity>
    <start>${u.start}</start>${u.end ? `\n    <end>${u.end}</end>` : ''}${description}
  </usage>
`;
}

/** Header, rows in chunks of ROWS_PER_CHUNK, footer; counts what it hands out. */
function* feedChunks(
  spec: FeedSpec,
  header: string,
  footer: string,
  render: (u: BenchUsage) => string,
  stats: FeedStats,
): Generator<string> {
  const emit = (text: string) => {
    stats.bytes += Buffer.byteLength(text);
    return text;
  };
  yield emit(header);
  let chunk = '';
  let inChunk = 0;
  for (const usage of benchUsages(spec.count, spec.seed, spec.firstId)) {
    chunk += render(usage);
    stats.rows += 1;
    if (usage.user === SPLIT_USER && usage.account === '') stats.splitRows += 1;
    if ((inChunk += 1) === ROWS_PER_CHUNK) {
      yield emit(chunk);
      chunk = '';
      inChunk = 0;
    }
  }
  if (chunk) yield emit(chunk);
  if (footer) yield emit(footer);
}

async function writeFeed(file: string, chunks: (stats: FeedStats) => Generator<string>): Promise<FeedStats> {
  const stats: FeedStats = { rows: 0, bytes: 0, splitRows: 0 };
  // objectMode: false, so the stream counts bytes and its highWaterMark bounds what is buffered.
  await pipeline(Readable.from(chunks(stats), { objectMode: false }), createWriteStream(file));
  return stats;
}

export function writeCsvFeed(file: string, spec: FeedSpec | number): Promise<FeedStats> {
  const s = typeof spec === 'number' ? { count: spec } : spec;
  return writeFeed(file, (stats) => feedChunks(s, CSV_HEADER, '', csvRow, stats));
}

export function writeXmlFeed(file: string, spec: FeedSpec | number): Promise<FeedStats> {
  const s = typeof spec === 'number' ? { count: spec } : spec;
  const header = `<?xml version="1.0" encoding="UTF-8"?>\n<usageFeed partner="${BENCH_PARTNER}">\n`;
  return writeFeed(file, (stats) => feedChunks(s, header, '</usageFeed>\n', xmlRecord, stats));
}
