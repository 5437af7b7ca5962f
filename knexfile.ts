// For the knex CLI, if someone prefers it to `billing migrate`. The application builds its own
// connection from the validated config (src/config.ts); this file reads the same setting.
import type { Knex } from 'knex';
import { loadConfig } from './src/config';
import { migrationSource } from './adapters/db/migrations/index';

const config: Knex.Config = {
  client: 'pg',
  connection: loadConfig().databaseUrl,
  migrations: { migrationSource, tableName: 'knex_migrations' },
};

export default config;
