import type { Knex } from 'knex';

/**
 * Positional bindings for raw bulk statements. pg sends JavaScript arrays (nulls included) as
 * PostgreSQL arrays, which `unnest` turns into rows: one statement for a whole chunk. knex's types
 * do not admit arrays containing null, hence this one cast.
 */
export function bindings(...values: unknown[]): readonly Knex.RawBinding[] {
  return values as Knex.RawBinding[];
}
