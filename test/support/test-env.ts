/** Where tests find their servers. Override with TEST_DATABASE_URL / TEST_REDIS_URL. */
export function testDatabaseUrl(database: string): string {
  const base = new URL(process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/billing_test');
  base.pathname = `/${database}`;
  return base.toString();
}

export const testRedisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
