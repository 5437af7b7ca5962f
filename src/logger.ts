import { pino, type DestinationStream, type Logger } from 'pino';
import { redactUrl } from './config';

export type { Logger };

/**
 * Where a secret or a whole usage row could sit in a log object: tokens, passwords, headers and
 * cookies, connection URLs (passwords inside them), and feed rows. Paths are matched at the top
 * level and one level down (pino's `*` matches one key), which covers `{ config: ... }`,
 * `{ headers: ... }` and `{ req: { headers } }`-style objects.
 */
const SECRET_KEYS = ['token', 'tokens', 'adminTokens', 'password', 'secret', 'authorization', 'cookie', 'set-cookie'];
const URL_KEYS = ['databaseUrl', 'redisUrl', 'smtpUrl', 'DATABASE_URL', 'REDIS_URL', 'SMTP_URL'];
const ROW_KEYS = ['row', 'rows', 'usage', 'usages'];

export const REDACT_PATHS = [
  ...[...SECRET_KEYS, ...URL_KEYS, ...ROW_KEYS].flatMap((k) => [jsonPath(k), `*${jsonPath(k)}`]),
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
];

function jsonPath(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `["${key}"]`;
}

/** URLs keep their host and database (useful when debugging) and lose only the password. */
function censor(value: unknown, path: string[]): unknown {
  const key = path[path.length - 1] ?? '';
  if (URL_KEYS.includes(key) && typeof value === 'string') return redactUrl(value);
  return '[redacted]';
}

/**
 * Structured JSON logs. Secrets never reach a log line: the redaction list covers the places a
 * token, password, connection URL or a whole usage row could appear.
 */
export function createLogger(level: string, base: Record<string, unknown> = {}, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { pid: process.pid, ...base },
    redact: { paths: REDACT_PATHS.map((p) => p.replace(/^\./, '')), censor },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}
