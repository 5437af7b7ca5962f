import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type ImportDocument, importDocumentSchema } from '../../src/core/partnership-import-schema';
import type { Rng } from './rng';

/**
 * The fault suite's data, a function of the seed: partners, products and partnerships (one per
 * customer, two issuers, five currencies and time zones, splits, every per-usage rule kind), and the
 * feed files, CSV and XML, with a few bad rows and repeated usage ids so the error paths run too.
 * Each file's expected counts are known from how it was made, so the undisturbed run is itself
 * checked before the disturbed one is compared with it.
 */

export interface DatasetOptions {
  usages: number;
  files: number;
  partnerships: number;
  /** 'YYYY-MM': the closed month every usage starts in. */
  period: string;
}

export interface FileCounts {
  read: number;
  accepted: number;
  rejected: number;
  duplicate: number;
}

export interface FeedFile {
  partner: string;
  name: string;
  /** Where the generated file is, under the dataset folder. */
  path: string;
  expected: FileCounts;
}

export interface Dataset {
  period: string;
  partnerships: ImportDocument;
  files: FeedFile[];
  /** The one invoice recipient whose mailbox answers 550: its delivery fails in every run. */
  refusingRecipient: string;
  totals: FileCounts;
}

const CUSTOMERS = ['ALPHA', 'BRAVO', 'CHARLIE', 'DELTA', 'ECHO', 'FOXTROT', 'GOLF', 'HOTEL', 'INDIA', 'JULIETT'];
const PROVIDERS = ['NRF', 'LABS'];
const CURRENCIES = ['GBP', 'EUR', 'USD', 'JPY', 'CHF'];
const ZONES = ['Europe/London', 'Europe/Berlin', 'America/New_York', 'Asia/Tokyo', 'UTC'];
const USERS = Array.from({ length: 12 }, (_, i) => `u${String(i + 1).padStart(2, '0')}`);

interface Product {
  code: string;
  scale: number;
  /** Largest quantity in units of 10^-scale. */
  maxUnits: number;
  /** Share of rows, out of 100. GPU_HOUR is rare: it is priced by position (tiers, allowance), which re-rates. */
  weight: number;
}

const PRODUCTS: Product[] = [
  { code: 'CPU_HOUR', scale: 6, maxUnits: 2_000_000_000, weight: 45 },
  { code: 'CONFOCAL_HOUR', scale: 2, maxUnits: 800, weight: 20 },
  { code: 'STORAGE_TB_DAY', scale: 6, maxUnits: 50_000_000, weight: 24 },
  { code: 'SEQ_RUN', scale: 0, maxUnits: 12, weight: 10 },
  { code: 'GPU_HOUR', scale: 4, maxUnits: 400_000, weight: 1 },
];

function pickProduct(rng: Rng): Product {
  let roll = rng.int(0, 99);
  for (const p of PRODUCTS) {
    if (roll < p.weight) return p;
    roll -= p.weight;
  }
  return PRODUCTS[0]!;
}

/** An integer count of 10^-scale units as a plain decimal ("1234.5", "12"). */
function fixedPoint(units: number, scale: number): string {
  if (scale === 0) return String(units);
  const digits = String(units).padStart(scale + 1, '0');
  const fraction = digits.slice(-scale).replace(/0+$/, '');
  const whole = digits.slice(0, -scale);
  return fraction ? `${whole}.${fraction}` : whole;
}

function partnershipsDocument(count: number, period: string, refusingRecipient: string): ImportDocument {
  const year = Number(period.slice(0, 4));
  const customers = CUSTOMERS.slice(0, count);
  const raw = {
    partners: [
      { code: 'NRF', kind: 'company', name: 'Northbridge Research Facility', email: 'billing@northbridge.example' },
      { code: 'LABS', kind: 'company', name: 'Shared Labs, Inc.', email: 'billing@shared-labs.example' },
      ...customers.map((c) => ({ code: c, kind: 'company', name: `${c[0]}${c.slice(1).toLowerCase()} Research Ltd`, email: `finance@${c.toLowerCase()}.example` })),
    ],
    products: PRODUCTS.map((p) => ({ code: p.code, name: p.code.replace('_', ' ').toLowerCase(), unit: p.code.split('_')[1]!.toLowerCase(), quantity_scale: String(p.scale) })),
    partnerships: customers.map((c, i) => {
      const rules: object[] = [
        { kind: 'unit_price', product: 'CPU_HOUR', price: ['0.045', '0.0525', '0.04', '7', '0.05'][i % 5] },
        { kind: 'unit_price', product: 'CONFOCAL_HOUR', price: ['42.50', '39.90', '45', '6200', '41.25'][i % 5] },
        { kind: 'unit_price', product: 'STORAGE_TB_DAY', price: ['1.3333', '1.25', '1.4', '190', '1.3'][i % 5] },
        i % 5 === 3
          ? { kind: 'package', product: 'SEQ_RUN', block: '4', price: '160000' }
          : { kind: 'unit_price', product: 'SEQ_RUN', price: ['1250', '1100', '1300', '170000', '1200'][i % 5] },
        // Priced by the usage's place in the period: graduated tiers for one partnership, an
        // included allowance for another, so files rated in any order must still agree.
        i % 5 === 0
          ? { kind: 'graduated_tiers', product: 'GPU_HOUR', tiers: [{ up_to: '100', price: '2.35' }, { up_to: '500', price: '2.00' }, { price: '1.65' }] }
          : { kind: 'unit_price', product: 'GPU_HOUR', price: ['2.35', '2.10', '2.5', '330', '2.2'][i % 5] },
      ];
      if (i % 5 === 1) rules.push({ kind: 'included_allowance', product: 'GPU_HOUR', units: '50' });
      if (i % 5 === 2) rules.push({ kind: 'discount', percent: '10', products: ['CONFOCAL_HOUR'] });
      if (i % 5 === 4) rules.push({ kind: 'surcharge', percent: '2.5' });
      const provider = PROVIDERS[i % PROVIDERS.length]!;
      return {
        code: `${provider}-${c}`,
        provider,
        customer: c,
        currency: CURRENCIES[i % CURRENCIES.length]!,
        time_zone: ZONES[i % ZONES.length]!,
        contract_start: `${year - 1}-01-01`,
        payment_terms_days: String(14 + 7 * (i % 3)),
        rounding_mode: i % 2 === 0 ? 'half_up' : 'half_even',
        invoice_recipients: [i === count - 1 ? refusingRecipient : `accounts@${c.toLowerCase()}.example`],
        default_account: `${c}-OPS`,
        accounts: [
          { code: `${c}-OPS`, name: 'Operations', kind: 'cost_centre' },
          { code: `${c}-G1`, name: 'Grant one', kind: 'expense_code' },
          { code: `${c}-G2`, name: 'Grant two', kind: 'expense_code' },
        ],
        splits: [
          { user: 'u01', shares: [{ account: `${c}-G1`, percent: '60' }, { account: `${c}-G2`, percent: '40' }] },
          {
            user: 'u02',
            product: 'CPU_HOUR',
            shares: [{ account: `${c}-OPS`, percent: '33.3333' }, { account: `${c}-G1`, percent: '33.3333' }, { account: `${c}-G2`, percent: '33.3334' }],
          },
        ],
        rules: [{ effective_from: `${year - 1}-01-01`, rules }],
      };
    }),
  };
  return importDocumentSchema.parse(raw);
}

interface Row {
  id: string;
  product: string;
  user: string;
  account: string;
  quantity: string;
  start: string;
  end: string;
  description: string;
}

type BadKind = 'quantity_comma' | 'unknown_product' | 'end_before_start' | 'too_many_places';

function goodRow(rng: Rng, customer: string, id: string, periodStartMs: number): Row {
  const product = pickProduct(rng);
  const units = 1 + Math.floor(rng.next() * (product.maxUnits - 1));
  // Starts between day 2 and day 26 of the month (UTC), inside the month in every zone used.
  const startMs = periodStartMs + 86_400_000 + Math.floor(rng.next() * 25 * 1440) * 60_000;
  const hasEnd = product.code !== 'STORAGE_TB_DAY' && rng.chance(0.7);
  const descriptions = ['Batch job', 'Imaging, 63x oil', 'Project share /data', 'Run "alpha", lane 2', 'R&D <sweep>', ''];
  return {
    id,
    product: product.code,
    user: rng.pick(USERS),
    account: rng.chance(0.15) ? `${customer}-${rng.pick(['OPS', 'G1', 'G2'])}` : '',
    quantity: fixedPoint(units, product.scale),
    start: new Date(startMs).toISOString().replace('.000Z', 'Z'),
    end: hasEnd ? new Date(startMs + (1 + rng.int(0, 47)) * 900_000).toISOString().replace('.000Z', 'Z') : '',
    description: rng.pick(descriptions),
  };
}

function spoil(row: Row, kind: BadKind): Row {
  switch (kind) {
    case 'quantity_comma': return { ...row, quantity: '1,5' };
    case 'unknown_product': return { ...row, product: 'LASER_HOUR' };
    case 'end_before_start': return { ...row, end: new Date(Date.parse(row.start) - 3_600_000).toISOString().replace('.000Z', 'Z') };
    case 'too_many_places': return { ...row, product: 'CONFOCAL_HOUR', quantity: '1.234' };
  }
}

function csvCell(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

function renderCsv(rows: Row[]): string {
  const lines = ['usage_id,product,user,account,quantity,start_time,end_time,description'];
  for (const r of rows) lines.push([r.id, r.product, r.user, r.account, r.quantity, r.start, r.end, r.description].map(csvCell).join(','));
  return `${lines.join('\n')}\n`;
}

function xmlText(value: string): string {
  return value.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

function renderXml(partner: string, rows: Row[]): string {
  const out = ['<?xml version="1.0" encoding="UTF-8"?>', `<usageFeed partner="${partner}">`];
  for (const r of rows) {
    const parts = [`  <usage id="${xmlText(r.id)}">`, `<product>${xmlText(r.product)}</product>`, `<user>${xmlText(r.user)}</user>`];
    if (r.account) parts.push(`<account>${xmlText(r.account)}</account>`);
    parts.push(`<quantity>${xmlText(r.quantity)}</quantity>`, `<start>${r.start}</start>`);
    if (r.end) parts.push(`<end>${r.end}</end>`);
    if (r.description) parts.push(r.description.includes('<') ? `<description><![CDATA[${r.description}]]></description>` : `<description>${xmlText(r.description)}</description>`);
    out.push(`${parts.join('')}</usage>`);
  }
  out.push('</usageFeed>', '');
  return out.join('\n');
}

/** Writes the dataset's feeds under `dir` and returns what the pipeline should make of them. */
export async function generateDataset(rng: Rng, opts: DatasetOptions, dir: string): Promise<Dataset> {
  const partnerships = Math.min(opts.partnerships, CUSTOMERS.length);
  const customers = CUSTOMERS.slice(0, partnerships);
  const refusingRecipient = `refuses@${customers[customers.length - 1]!.toLowerCase()}.example`;
  const periodStartMs = Date.parse(`${opts.period}-01T00:00:00Z`);
  const doc = partnershipsDocument(partnerships, opts.period, refusingRecipient);

  // Usages spread over the files with some unevenness; files go round-robin over the customers.
  const weights = Array.from({ length: opts.files }, () => rng.between(0.6, 1.4));
  const weightSum = weights.reduce((a, b) => a + b, 0);
  const sizes = weights.map((w) => Math.max(3, Math.floor((opts.usages * w) / weightSum)));
  sizes[0]! += Math.max(0, opts.usages - sizes.reduce((a, b) => a + b, 0));

  const files: FeedFile[] = [];
  const totals: FileCounts = { read: 0, accepted: 0, rejected: 0, duplicate: 0 };
  for (let f = 0; f < opts.files; f += 1) {
    const customer = customers[f % customers.length]!;
    const format = (f + Math.floor(f / customers.length)) % 3 === 1 ? 'xml' : 'csv';
    const rows: Row[] = [];
    const good: Row[] = [];
    const expected: FileCounts = { read: 0, accepted: 0, rejected: 0, duplicate: 0 };
    for (let n = 1; rows.length < sizes[f]!; n += 1) {
      const row = goodRow(rng, customer, `${customer}-F${String(f + 1).padStart(2, '0')}-${String(n).padStart(6, '0')}`, periodStartMs);
      const roll = rng.next();
      if (roll < 0.004) {
        rows.push(spoil(row, rng.pick<BadKind>(['quantity_comma', 'unknown_product', 'end_before_start', 'too_many_places'])));
        expected.rejected += 1;
      } else if (roll < 0.006 && good.length > 0) {
        rows.push(rng.pick(good)); // the same usage again, later in the same file
        expected.duplicate += 1;
      } else {
        rows.push(row);
        good.push(row);
        expected.accepted += 1;
      }
    }
    expected.read = rows.length;
    const name = `${customer.toLowerCase()}-usage-${opts.period}-part${String(f + 1).padStart(2, '0')}.${format}`;
    const file = path.join(dir, customer, name);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, format === 'csv' ? renderCsv(rows) : renderXml(customer, rows));
    files.push({ partner: customer, name, path: file, expected });
    for (const k of ['read', 'accepted', 'rejected', 'duplicate'] as const) totals[k] += expected[k];
  }
  return { period: opts.period, partnerships: doc, files, refusingRecipient, totals };
}

/** The last month that has ended everywhere (UTC-12 to UTC+14) by `now`. */
export function closedPeriod(now: Date): string {
  const back = now.getUTCDate() < 3 ? 2 : 1;
  const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - back, 1));
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
}
