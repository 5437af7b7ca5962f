import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { type FeedProfile, feedProfileSchema } from '../../src/core/feed-profile';
import { type Rng, createRng } from '../faults/rng';

/**
 * Seeded mutations of the fixture feeds, for the fuzz tests: byte-level damage (cut, insert,
 * replace, truncate), line-level shuffles, and structure-aware breakage (quotes, delimiters,
 * headers, DOCTYPEs, deep nesting, prototype-polluting names, invalid UTF-8, huge records). Case n
 * of seed s is always the same bytes, so a failure names its seed and case and can be replayed.
 */

export const FIXTURES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures');

export interface FixtureFeed {
  /** Path under fixtures/, for messages. */
  label: string;
  /** Partner folder the feed lives in (its customer). */
  partner: string;
  name: string;
  format: 'csv' | 'xml';
  bytes: Buffer;
  profile: FeedProfile | undefined;
}

/** Every CSV and XML feed under fixtures/, with the feed profile its partner has (if any). */
export async function loadFixtureFeeds(): Promise<FixtureFeed[]> {
  const feeds: FixtureFeed[] = [];
  // Scenario and demo feeds: <dir>/feeds/<PARTNER>/<file>, profiles in <dir>/partnerships.yaml.
  const dirs = [path.join(FIXTURES_DIR, 'demo'), ...(await readdir(path.join(FIXTURES_DIR, 'scenarios'))).map((d) => path.join(FIXTURES_DIR, 'scenarios', d))];
  for (const dir of dirs) {
    const doc = YAML.parse(await readFile(path.join(dir, 'partnerships.yaml'), 'utf8'), { schema: 'failsafe' }) as { partners?: Array<{ code: string; feed_profile?: unknown }> };
    const profiles = new Map((doc.partners ?? []).filter((p) => p.feed_profile).map((p) => [p.code, feedProfileSchema.parse(p.feed_profile)]));
    for (const partner of await readdir(path.join(dir, 'feeds'))) {
      for (const name of await readdir(path.join(dir, 'feeds', partner))) {
        const format = name.endsWith('.xml') ? 'xml' : name.endsWith('.csv') ? 'csv' : undefined;
        if (!format) continue;
        const file = path.join(dir, 'feeds', partner, name);
        feeds.push({ label: path.relative(FIXTURES_DIR, file), partner, name, format, bytes: await readFile(file), profile: profiles.get(partner) });
      }
    }
  }
  // Single feeds with a profile beside them: <name>.profile.yaml.
  const single = path.join(FIXTURES_DIR, 'feeds');
  for (const name of await readdir(single)) {
    const format = name.endsWith('.xml') ? 'xml' : name.endsWith('.csv') ? 'csv' : undefined;
    if (!format) continue;
    const profileFile = path.join(single, `${name.replace(/\.(csv|xml)$/, '')}.profile.yaml`);
    const profile = feedProfileSchema.parse(YAML.parse(await readFile(profileFile, 'utf8')));
    feeds.push({ label: `feeds/${name}`, partner: 'FEEDS', name, format, bytes: await readFile(path.join(single, name)), profile });
  }
  return feeds;
}

export interface Mutation {
  seed: number;
  index: number;
  source: FixtureFeed;
  /** What was done, in order, for the failure message. */
  steps: string[];
  bytes: Buffer;
}

const SPECIALS = ['"', ',', ';', '\t', '|', '\n', '\r\n', '\r', '""', '<', '>', '&', '&amp;', '&#0;', ']]>', '<![CDATA[', '\u0000', '\uFEFF', 'é', '€'];
const XML_BOMBS = [
  '<!DOCTYPE usageFeed [<!ENTITY x "xxxxxxxx">]>',
  '<!DOCTYPE r SYSTEM "file:///etc/passwd">',
  '<!ENTITY % p SYSTEM "http://127.0.0.1:1/x">',
  '<__proto__>x</__proto__>',
  '<constructor><prototype>1</prototype></constructor>',
  '<usage id="__proto__"><product>CPU_HOUR</product></usage>',
  '<?xml-stylesheet href="x"?>',
  '&x;',
];
const QUANTITIES = ['1e3', '1,000', '1.000,50', '', ' ', 'NaN', 'Infinity', '0x10', '007', '34100000000000000001', '-3', '0.0000001', '99999999999999999999999999999999999'];

function randomBytes(rng: Rng, n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, () => rng.int(0, 255)));
}

function splitLines(b: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < b.length; i += 1) {
    if (b[i] === 0x0a) {
      lines.push(b.subarray(start, i + 1));
      start = i + 1;
    }
  }
  if (start < b.length) lines.push(b.subarray(start));
  return lines;
}

type Operator = (b: Buffer, rng: Rng, feed: FixtureFeed) => [Buffer, string];

const OPERATORS: Operator[] = [
  (b, rng) => {
    const at = rng.int(0, b.length);
    const n = rng.int(1, 40);
    return [Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + n))]), `delete ${n} bytes at ${at}`];
  },
  (b, rng) => {
    const at = rng.int(0, b.length);
    const s = rng.pick(SPECIALS);
    return [Buffer.concat([b.subarray(0, at), Buffer.from(s), b.subarray(at)]), `insert ${JSON.stringify(s)} at ${at}`];
  },
  (b, rng) => {
    const at = rng.int(0, b.length);
    const junk = randomBytes(rng, rng.int(1, 8));
    return [Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]), `insert bytes ${junk.toString('hex')} at ${at}`];
  },
  (b, rng) => {
    if (b.length === 0) return [b, 'nothing to replace'];
    const copy = Buffer.from(b);
    const at = rng.int(0, b.length - 1);
    copy[at] = rng.int(0, 255);
    return [copy, `replace byte ${at} with ${copy[at].toString(16)}`];
  },
  (b, rng) => {
    const at = rng.int(0, b.length);
    return [b.subarray(0, at), `truncate at ${at}`];
  },
  (b, rng) => {
    const lines = splitLines(b);
    if (lines.length < 2) return [b, 'too short to duplicate a line'];
    const i = rng.int(0, lines.length - 1);
    lines.splice(rng.int(0, lines.length), 0, lines[i]!);
    return [Buffer.concat(lines), `duplicate line ${i + 1}`];
  },
  (b, rng) => {
    const lines = splitLines(b);
    if (lines.length < 2) return [b, 'too short to swap lines'];
    const i = rng.int(0, lines.length - 1);
    const j = rng.int(0, lines.length - 1);
    [lines[i], lines[j]] = [lines[j]!, lines[i]!];
    return [Buffer.concat(lines), `swap lines ${i + 1} and ${j + 1}`];
  },
  (b, rng) => {
    const lines = splitLines(b);
    const i = rng.int(0, Math.max(0, lines.length - 1));
    lines.splice(i, 1);
    return [Buffer.concat(lines), `remove line ${i + 1}`];
  },
  (b, rng, feed) => {
    // A quantity-looking value swapped for a spelling the engine must refuse or read exactly.
    const text = b.toString('latin1');
    const numbers = [...text.matchAll(/(?<=[,;>])-?\d+([.,]\d+)?(?=[,;<\r\n])/g)];
    if (numbers.length === 0) return [b, 'no number to replace'];
    const m = rng.pick(numbers);
    const q = rng.pick(QUANTITIES);
    const value = feed.format === 'xml' ? q.replaceAll('&', '&amp;') : q.includes(',') ? `"${q}"` : q;
    return [Buffer.from(text.slice(0, m.index) + value + text.slice(m.index + m[0].length), 'latin1'), `quantity ${m[0]} -> ${q}`];
  },
  (b, rng, feed) => {
    if (feed.format === 'xml') {
      const text = b.toString('latin1');
      const bomb = rng.pick(XML_BOMBS);
      const at = bomb.startsWith('<!DOCTYPE') ? text.indexOf('<usageFeed') : rng.int(0, text.length);
      const where = at < 0 ? rng.int(0, text.length) : at;
      return [Buffer.from(text.slice(0, where) + bomb + text.slice(where), 'latin1'), `insert ${bomb} at ${where}`];
    }
    // CSV: a header cell renamed, repeated or emptied.
    const lines = splitLines(b);
    const header = lines[0]?.toString('latin1') ?? '';
    const cells = header.replace(/\r?\n$/, '').split(/[,;]/);
    const i = rng.int(0, Math.max(0, cells.length - 1));
    const change = rng.pick(['rename', 'repeat', 'empty']);
    const next = change === 'rename' ? cells.map((c, k) => (k === i ? `${c}x` : c)) : change === 'repeat' ? [...cells, cells[i] ?? ''] : cells.map((c, k) => (k === i ? '' : c));
    lines[0] = Buffer.from(`${next.join(header.includes(';') ? ';' : ',')}\n`, 'latin1');
    return [Buffer.concat(lines), `header: ${change} column ${i + 1}`];
  },
  (b, rng, feed) => {
    if (feed.format === 'xml') {
      const depth = rng.int(20, 80);
      const text = b.toString('latin1');
      const at = Math.max(0, text.indexOf('<usage '));
      const nest = `${'<a>'.repeat(depth)}x${'</a>'.repeat(depth)}`;
      return [Buffer.from(text.slice(0, at) + nest + text.slice(at), 'latin1'), `nest ${depth} deep at ${at}`];
    }
    // CSV: an unterminated quote somewhere in a row.
    const lines = splitLines(b);
    if (lines.length < 2) {
      // Nothing but a header (or nothing at all, after earlier mutations): the quote goes anywhere.
      const at = rng.int(0, b.length);
      return [Buffer.concat([b.subarray(0, at), Buffer.from('"'), b.subarray(at)]), `stray quote at byte ${at}`];
    }
    const i = rng.int(1, lines.length - 1);
    const line = lines[i]!.toString('latin1');
    const at = rng.int(0, line.length);
    lines[i] = Buffer.from(`${line.slice(0, at)}"${line.slice(at)}`, 'latin1');
    return [Buffer.concat(lines), `stray quote in line ${i + 1} at ${at}`];
  },
  (b, rng) => {
    // A record far longer than the test's record limit.
    const at = rng.int(0, b.length);
    const long = 'z'.repeat(rng.int(5_000, 20_000));
    return [Buffer.concat([b.subarray(0, at), Buffer.from(long), b.subarray(at)]), `insert ${long.length} chars at ${at}`];
  },
  (b, rng) => {
    // Latin-1 text where UTF-8 is required: a pound sign as the single byte 0xA3.
    const at = rng.int(0, b.length);
    return [Buffer.concat([b.subarray(0, at), Buffer.from([0xa3]), b.subarray(at)]), `latin-1 pound sign at ${at}`];
  },
  (b, rng) => {
    // Line endings changed throughout: CRLF, CR only, or LF.
    const eol = rng.pick(['\r\n', '\r', '\n']);
    return [Buffer.from(b.toString('latin1').replace(/\r?\n/g, eol), 'latin1'), `line endings ${JSON.stringify(eol)}`];
  },
];

/** The test's record limit: small, so that a runaway record is cheap to make. */
export const FUZZ_MAX_RECORD_CHARS = 4096;

/** Mutation `index` of the seed: a fixture and one to three operators, always the same for the same pair. */
export function mutate(feeds: readonly FixtureFeed[], seed: number, index: number, prepare?: (bytes: Buffer, index: number) => Buffer): Mutation {
  const rng = createRng(seed).fork(`case-${index}`);
  const source = rng.pick(feeds);
  let bytes = prepare ? prepare(source.bytes, index) : source.bytes;
  const steps: string[] = [];
  const rounds = rng.int(1, 3);
  for (let i = 0; i < rounds; i += 1) {
    const [next, step] = rng.pick(OPERATORS)(bytes, rng, source);
    bytes = next;
    steps.push(step);
  }
  return { seed, index, source, steps, bytes };
}

/**
 * Gives the fixtures' usage ids (ACME-0001, JS-101, N-1001, T-2 ...) a per-case prefix, so mutations
 * of one fixture ingested into one database are not all duplicates of the first.
 */
export function distinctUsageIds(bytes: Buffer, index: number): Buffer {
  return Buffer.from(bytes.toString('latin1').replace(/\b(ACME|JS|N|R|C|F|M|V|T)-(\d+)\b/g, `$1-Z${index}-$2`), 'latin1');
}

export function describeMutation(m: Mutation): string {
  return `seed ${m.seed} case ${m.index}: ${m.source.label} with ${m.steps.join('; ')}`;
}

/** The seed for this run of a fuzz test: FUZZ_SEED to replay one, else a fixed default so CI is repeatable. */
export function fuzzSeed(): number {
  return Number(process.env.FUZZ_SEED ?? 20261121);
}
