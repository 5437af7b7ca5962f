import { randomBytes } from 'node:crypto';
import type { TestProject } from 'vitest/node';
import { createDb, dropDatabase, ensureDatabase, migrateLatest } from '../../adapters/db/database';
import { testDatabaseUrl } from './test-env';

declare module 'vitest' {
  export interface ProvidedContext {
    templateDatabase: string;
  }
}

/**
 * Builds a migrated template database once per test run; every integration test file then gets its
 * own database copied from it (CREATE DATABASE ... TEMPLATE), so files run in parallel with clean
 * tables and never touch the demo's database. The template's name is unique to this run, so two
 * runs at once (two developers, or CI beside a developer) do not rebuild each other's template.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const template = `billing_test_template_${randomBytes(4).toString('hex')}`;
  const url = testDatabaseUrl(template);
  await ensureDatabase(url);
  const db = createDb(url, { max: 1 });
  try {
    await migrateLatest(db);
  } finally {
    await db.destroy();
  }
  project.provide('templateDatabase', template);
  return () => dropDatabase(url);
}
