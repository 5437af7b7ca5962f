import type { Command } from 'commander';
import { type QueueStatus, describeQueues } from '../../../jobs/queues';
import type { Deps } from '../../deps';
import { type PipelineCounts, readPipelineCounts } from '../../metrics';
import { within } from '../../process';

/** Where a command writes its lines (stdout in the CLI, an array in tests). */
export type Out = (line: string) => void;

/** Files not finished yet: claimed or uploaded, being parsed, or parsed and waiting to be rated. */
const IN_PROGRESS = ['received', 'parsing', 'parsed'] as const;

const COLUMNS: Array<{ title: string; value: (q: QueueStatus) => string; left?: boolean }> = [
  { title: 'queue', value: (q) => q.name, left: true },
  { title: 'waiting', value: (q) => String(q.counts.waiting) },
  { title: 'active', value: (q) => String(q.counts.active) },
  { title: 'delayed', value: (q) => String(q.counts.delayed) },
  { title: 'failed', value: (q) => String(q.counts.failed) },
  { title: 'completed', value: (q) => String(q.counts.completed) },
  { title: 'prioritized', value: (q) => String(q.counts.prioritized) },
  { title: 'children', value: (q) => String(q.counts['waiting-children']) },
  { title: 'oldest waiting', value: (q) => (q.oldestWaitingAgeSeconds === null ? '-' : formatAge(q.oldestWaitingAgeSeconds)) },
  { title: 'workers', value: (q) => String(q.workers) },
  { title: 'paused', value: (q) => (q.paused ? 'yes' : 'no'), left: true },
];

/** 45s, 4m05s, 3h05m, 2d04h: short enough for a table, exact enough to act on. */
export function formatAge(seconds: number): string {
  const two = (n: number) => String(n).padStart(2, '0');
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${two(seconds % 60)}s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h${two(Math.floor((seconds % 3600) / 60))}m`;
  return `${Math.floor(seconds / 86400)}d${two(Math.floor((seconds % 86400) / 3600))}h`;
}

/** The queues as an aligned table, then the files in progress and the deliveries to look at. */
export function renderStatus(prefix: string, queues: QueueStatus[], counts: PipelineCounts): string[] {
  const rows = [COLUMNS.map((c) => c.title), ...queues.map((q) => COLUMNS.map((c) => c.value(q)))];
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((cell, i) => (COLUMNS[i]?.left ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const inProgress = IN_PROGRESS.map((s) => counts.files[s] ?? 0);
  const total = inProgress.reduce((a, b) => a + b, 0);
  return [
    `Queues (prefix "${prefix}")`,
    ...rows.map(line),
    '',
    `Files in progress: ${total} (${IN_PROGRESS.map((s, i) => `${s} ${inProgress[i]}`).join(', ')})`,
    `Deliveries to look at: unknown ${counts.deliveries.unknown ?? 0}, failed ${counts.deliveries.failed ?? 0}`,
  ];
}

export async function statusCommand(deps: Deps, out: Out): Promise<void> {
  const [queues, counts] = await Promise.all([
    within(5000, describeQueues(deps.queues, Date.now())).catch((e: Error) => {
      throw new Error(`Redis did not answer (${e.message}): check REDIS_URL`);
    }),
    within(5000, readPipelineCounts(deps.db)).catch((e: Error) => {
      throw new Error(`PostgreSQL did not answer (${e.message}): check DATABASE_URL`);
    }),
  ]);
  for (const l of renderStatus(deps.queues.prefix, queues, counts)) out(l);
}

export function registerStatusCommand(program: Command, withDeps: (run: (deps: Deps) => Promise<void>) => Promise<void>): void {
  program
    .command('status')
    .description('show each queue (jobs per state, oldest waiting job, workers), the files in progress and deliveries to look at')
    .addHelpText(
      'after',
      '\nThe same figures as GET /queues, plus counts from PostgreSQL. "unknown" deliveries may or may not have reached\n' +
        'the recipient (a crash mid-send) and need a person to check; "failed" ones were refused by the mail server.',
    )
    .action(() => withDeps((deps) => statusCommand(deps, (l) => console.log(l))));
}
