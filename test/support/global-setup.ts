import { createDb, dropDatabase, ensureDatabase, migrateLatest } from '../../adapters/db/database';
import { TEMPLATE_DATABASE, testDatabaseUrl } from './test-env';

/**
 * Builds a migrated template database once per test run; every integration test file then gets its
 * own database copied from it (CREATE DATABASE ... TEMPLATE), so files run in parallel with clean
 * tables and never touch the demo's database.
 */
export default async function setup(): Promise<void> {
  const url = testDatabaseUrl(TEMPLATE_DATABASE);
  await dropDatabase(url);
  await ensureDatabase(url);
  const db = createDb(url, { max: 1 });
  try {
    await migrateLatest(db);
  } finally {
    await db.destroy();
  }
}
