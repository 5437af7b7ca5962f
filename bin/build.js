#!/usr/bin/env node
// `npm run build`: compiles src/, jobs/ and adapters/ to dist/ with tsc (tsconfig.build.json), then
// makes the output runnable by Node as it is:
//   - relative imports are written without an extension in the sources (resolved by tsx, vitest and
//     tsc's bundler resolution); Node's ESM loader needs the file, so './csv' becomes './csv.js' and
//     a folder import its index.js;
//   - code that finds repository folders relative to its own file (fixtures/, docs/) sees them
//     through links in dist/, since it now sits one folder deeper.
// Then it stamps the build, so that bin/billing.js uses dist/ only while it is newer than the sources.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const COMPILED = ['src', 'jobs', 'adapters'];
const NOT_LINKED = new Set([...COMPILED, 'dist', 'node_modules', 'test', 'bench', 'bin', 'var', '.git']);

rmSync(dist, { recursive: true, force: true });
const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);

const SPECIFIER = /((?:^|[\s;(])(?:import|export)\b[^'"`]*?\bfrom\s*|\bimport\s*\(\s*|^\s*import\s*)(['"])(\.{1,2}\/[^'"]*)\2/gm;
let rewritten = 0;
for (const file of walk(dist)) {
  if (!file.endsWith('.js')) continue;
  const text = readFileSync(file, 'utf8');
  const out = text.replace(SPECIFIER, (whole, before, quote, spec) => {
    const target = path.resolve(path.dirname(file), spec);
    if (existsSync(`${target}.js`)) return `${before}${quote}${spec}.js${quote}`;
    if (existsSync(path.join(target, 'index.js'))) return `${before}${quote}${spec}/index.js${quote}`;
    return whole;
  });
  if (out !== text) {
    writeFileSync(file, out);
    rewritten += 1;
  }
}

for (const entry of readdirSync(root, { withFileTypes: true })) {
  if (!entry.isDirectory() || NOT_LINKED.has(entry.name) || entry.name.startsWith('.')) continue;
  symlinkSync(path.join('..', entry.name), path.join(dist, entry.name), 'dir');
}

writeFileSync(path.join(dist, '.built'), `${new Date().toISOString()}\n`);
console.log(`built dist/ (${rewritten} files with relative imports made explicit)`);

function* walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(full);
    else if (entry.isFile()) yield full;
  }
}
