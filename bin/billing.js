#!/usr/bin/env node
// The `billing` command. It runs the compiled CLI from dist/ (`npm run build`) when dist/ is newer
// than every source file: a worker then loads plain JavaScript, about 100 MB lighter than
// transpiling TypeScript at run time. Otherwise (a fresh checkout, or sources edited since the last
// build) it runs the TypeScript sources through tsx's loader, so `npx billing ...` always runs what
// is on disk. BILLING_FROM_SOURCE=1 forces the sources; BILLING_FROM_DIST=1 takes dist/ as built
// (the benchmarks build it, then keep using that build whatever is edited meanwhile).
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';

// Long-running processes keep their heap close to what they use. V8 lets the heap grow to about
// four times the live data between full collections; a worker ingesting a million rows holds about
// 30 MB live and would sit at 130 MB of heap, mostly garbage. Growing by at most half keeps its peak
// resident set about 90 MB lower, measured at the same speed (README, Benchmarks). Unlike a hard
// --max-old-space-size, it never makes a job that needs more memory fail. NODE_OPTIONS wins.
const LONG_RUNNING = new Set(['worker', 'start', 'api']);
if (LONG_RUNNING.has(process.argv[2] ?? '') && !/heap-growing-percent/.test(`${process.env.NODE_OPTIONS ?? ''} ${process.execArgv.join(' ')}`)) {
  v8.setFlagsFromString(`--heap-growing-percent=${process.env.BILLING_HEAP_GROWING_PERCENT ?? '50'}`);
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(full));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(full).mtimeMs);
  }
  return newest;
}

function distIsFresh() {
  if (process.env.BILLING_FROM_SOURCE === '1') return false;
  let built;
  try {
    built = statSync(path.join(root, 'dist', '.built')).mtimeMs;
  } catch {
    return false;
  }
  const sources = Math.max(...['src', 'jobs', 'adapters'].map((d) => newestSource(path.join(root, d))));
  if (sources <= built || process.env.BILLING_FROM_DIST === '1') return true;
  // Said to a person at a terminal only: scripts and tests read stderr for the command's own errors.
  if (process.stderr.isTTY) process.stderr.write('billing: dist/ is older than the sources; running the sources through tsx (npm run build to refresh it)\n');
  return false;
}

if (distIsFresh()) {
  const { main } = await import('../dist/src/cli/main.js');
  await main(process.argv);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  const { main } = await import('../src/cli/main.ts');
  await main(process.argv);
}
