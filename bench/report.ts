import os from 'node:os';
import { redactUrl } from '../src/config';
import type { Services } from './harness';

/**
 * A benchmark's results as one table: each figure next to the baseline measured in the same run,
 * their ratio, the target from the issue, and whether it was met. Printed as a Markdown table so it
 * can be pasted into an issue as is.
 */

export interface Target {
  /** As written in the issue, e.g. "<= 5x \copy". */
  text: string;
  met: boolean;
}

export interface ReportRow {
  figure: string;
  measured: string;
  baseline?: string;
  ratio?: string;
  target?: Target;
}

export interface BenchReport {
  title: string;
  command: string;
  startedAt: Date;
  finishedAt: Date;
  /** Machine and service versions, one line each. */
  environment: string[];
  rows: ReportRow[];
  /** Details below the table: timelines, counts, how the baseline was taken. */
  notes: string[];
}

/** `value <= limit`, with the target written the way the issue writes it. */
export function atMost(value: number, limit: number, text: string): Target {
  return { text, met: Number.isFinite(value) && value <= limit };
}

export function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

export function formatRate(rows: number, ms: number): string {
  return `${Math.trunc((rows * 1000) / ms).toLocaleString('en-GB')} rows/s`;
}

export function formatRatio(ratio: number): string {
  return `${ratio.toFixed(ratio < 10 ? 2 : 1)}x`;
}

export function formatMb(kb: number): string {
  return Number.isFinite(kb) ? `${(kb / 1024).toFixed(0)} MB` : 'n/a';
}

export function formatBytes(bytes: number): string {
  return bytes >= 1024 ** 2 ? `${(bytes / 1024 ** 2).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

export function renderTable(rows: ReportRow[]): string {
  const header = ['figure', 'measured', 'baseline (same run)', 'ratio', 'target', 'result'];
  const cells = rows.map((r) => [
    r.figure,
    r.measured,
    r.baseline ?? '-',
    r.ratio ?? '-',
    r.target?.text ?? '-',
    r.target ? (r.target.met ? 'pass' : 'MISS') : '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => `| ${c.map((s, i) => s.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n');
}

export function renderReport(report: BenchReport): string {
  const misses = report.rows.filter((r) => r.target && !r.target.met).length;
  const targets = report.rows.filter((r) => r.target).length;
  return [
    `## ${report.title}`,
    '',
    `command:  ${report.command}`,
    `started:  ${report.startedAt.toISOString()}    finished: ${report.finishedAt.toISOString()} (${formatSeconds(report.finishedAt.getTime() - report.startedAt.getTime())})`,
    ...report.environment.map((e) => `          ${e}`),
    '',
    renderTable(report.rows),
    '',
    `${targets - misses} of ${targets} targets met${misses ? `, ${misses} missed` : ''}.`,
    ...(report.notes.length ? ['', ...report.notes] : []),
    '',
  ].join('\n');
}

/** Machine, services and where the run went, one line each. */
export function environmentLines(services: Services, ctx: { databaseUrl: string; redisUrl: string }): string[] {
  return [
    `node ${process.version}, PostgreSQL ${services.postgres}, Redis ${services.redis} (maxmemory-policy ${services.redisPolicy}), ${services.psql}`,
    `${os.cpus()[0]?.model ?? 'cpu'} x ${os.cpus().length}, ${formatMb(os.totalmem() / 1024)} RAM, ${os.type()} ${os.release()}, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} at the end`,
    `database server ${redactUrl(ctx.databaseUrl)}, redis ${redactUrl(ctx.redisUrl)}`,
  ];
}

/**
 * Several benchmarks' results as one table (issue 7: "prints one table"), then each benchmark's
 * notes: how it was measured, timelines, counts.
 */
export function renderCombined(reports: BenchReport[], header: { command: string; startedAt: Date; finishedAt: Date; environment: string[] }): string {
  const rows = reports.flatMap((r) => r.rows);
  const misses = rows.filter((r) => r.target && !r.target.met).length;
  const targets = rows.filter((r) => r.target).length;
  return [
    `## billing-engine benchmarks`,
    '',
    `command:  ${header.command}`,
    `started:  ${header.startedAt.toISOString()}    finished: ${header.finishedAt.toISOString()} (${formatSeconds(header.finishedAt.getTime() - header.startedAt.getTime())})`,
    ...header.environment.map((e) => `          ${e}`),
    '',
    renderTable(rows),
    '',
    `${targets - misses} of ${targets} targets met${misses ? `, ${misses} missed` : ''}.`,
    ...reports.flatMap((r) => ['', `### ${r.title}`, ...(r.notes.length ? ['', ...r.notes] : [])]),
    '',
  ].join('\n');
}

/** `value >= limit`, with the target written the way the issue writes it. */
export function atLeast(value: number, limit: number, text: string): Target {
  return { text, met: Number.isFinite(value) && value >= limit };
}

/** `value < limit`, with the target written the way the issue writes it. */
export function below(value: number, limit: number, text: string): Target {
  return { text, met: Number.isFinite(value) && value < limit };
}
