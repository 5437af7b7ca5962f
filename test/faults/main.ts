import { parseArgs } from 'node:util';
import { DEFAULT_OPTIONS, runFaultSuite } from './suite';
import { randomSeed } from './rng';

/**
 * npm run test:faults [-- --seed N --usages N --files N --partnerships N --kills N --workers N --chunk-rows N --keep]
 * Sizes also come from FAULTS_USAGES, FAULTS_FILES, FAULTS_PARTNERSHIPS, FAULTS_KILLS, FAULTS_WORKERS,
 * FAULTS_CHUNK_ROWS, FAULTS_SEED.
 * Exits 0 when the disturbed run equals the undisturbed one, 1 otherwise.
 */
const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    usages: { type: 'string' },
    files: { type: 'string' },
    partnerships: { type: 'string' },
    kills: { type: 'string' },
    workers: { type: 'string' },
    'chunk-rows': { type: 'string' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  console.log('usage: npm run test:faults -- [--seed N] [--usages 200000] [--files 20] [--partnerships 5] [--kills 20] [--workers 3] [--chunk-rows 2000] [--keep]');
  process.exit(0);
}

function count(name: string, flag: string | undefined, env: string | undefined, fallback: number, min: number): number {
  const raw = flag ?? env;
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min) {
    console.error(`--${name} must be a whole number of at least ${min}, got "${raw}"`);
    process.exit(2);
  }
  return Number(raw);
}

const report = await runFaultSuite({
  seed: count('seed', values.seed, process.env.FAULTS_SEED, randomSeed(), 0),
  usages: count('usages', values.usages, process.env.FAULTS_USAGES, DEFAULT_OPTIONS.usages, 100),
  files: count('files', values.files, process.env.FAULTS_FILES, DEFAULT_OPTIONS.files, 1),
  partnerships: count('partnerships', values.partnerships, process.env.FAULTS_PARTNERSHIPS, DEFAULT_OPTIONS.partnerships, 1),
  kills: count('kills', values.kills, process.env.FAULTS_KILLS, DEFAULT_OPTIONS.kills, 0),
  workers: count('workers', values.workers, process.env.FAULTS_WORKERS, DEFAULT_OPTIONS.workers, 1),
  chunkRows: count('chunk-rows', values['chunk-rows'], process.env.FAULTS_CHUNK_ROWS, DEFAULT_OPTIONS.chunkRows, 1),
  keep: values.keep,
  stallTimeoutMs: DEFAULT_OPTIONS.stallTimeoutMs,
  log: (m) => console.log(m),
});
process.exit(report.ok ? 0 : 1);
