import { type Command, InvalidArgumentError } from 'commander';
import { formatMoney } from '../../core/money';
import { isPeriod } from '../../core/period';
import type { Deps } from '../../deps';
import { proposedRuleVersions, quoteUsage } from '../../use-cases/quote-usage';
import { reratePeriod } from '../../use-cases/rerate-period';
import { previewInvoice, requestBillingRun } from '../../use-cases/run-billing-period';
import { PermanentError } from '../../use-cases/errors';
import { cliActor } from './receivables';

type WithDeps = (run: (deps: Deps) => Promise<void>) => Promise<void>;
type Out = (line: string) => void;

function period(value: string): string {
  if (!isPeriod(value)) throw new InvalidArgumentError('expected a month as YYYY-MM, e.g. 2026-10');
  return value;
}

/** Columns padded to their widest cell, numbers right-aligned. */
export function table(rows: string[][], rightAligned: ReadonlySet<number> = new Set()): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((cell, i) => (rightAligned.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd());
}

export async function rerateCommand(
  deps: Deps,
  args: { partnership: string; period: string; dryRun: boolean; product?: string; rulesFile?: string },
  out: Out,
): Promise<void> {
  const ruleVersions = args.rulesFile ? await proposedRuleVersions(args.rulesFile, args.partnership) : undefined;
  const report = await reratePeriod(deps, {
    partnership: args.partnership,
    period: args.period,
    dryRun: args.dryRun,
    ...(args.product ? { product: args.product } : {}),
    ...(ruleVersions ? { ruleVersions } : {}),
    actor: cliActor(),
  });
  const what = args.dryRun ? `dry run${ruleVersions ? ` with the rules in ${args.rulesFile}` : ''}, nothing written` : 're-rated';
  out(`${report.partnership} ${report.period} (${report.currency}): ${what}`);
  out(`usages: ${report.replaced} replaced (not invoiced), ${report.adjusted} adjusted on the next invoice, ${report.unchanged} unchanged`);
  for (const line of table(
    [['account', 'old total', 'new total', 'difference'], ...report.accounts.map((a) => [a.account, a.beforeText, a.afterText, a.differenceText])],
    new Set([1, 2, 3]),
  )) out(line);
}

export async function quoteCommand(
  deps: Deps,
  args: { partnership: string; product: string; quantity: string; user?: string; account?: string; at?: string; rulesFile?: string },
  out: Out,
): Promise<void> {
  const q = await quoteUsage(deps, args);
  out(`${q.quantity} ${q.product} for ${q.partnership} in ${q.period}, after ${q.before} already used this period`);
  out(`rules effective ${q.ruleVersion.effectiveFrom}${q.ruleVersion.proposed ? ' (proposed, from the file)' : ''}${q.provisional ? '; volume tiers: provisional until the period closes' : ''}`);
  for (const a of q.accounts) {
    out(`  ${a.account} (${a.percent} %): ${a.totalText}`);
    for (const t of a.transactions) out(`    ${t.kind.padEnd(10)} ${t.text.padStart(14)}  ${t.description}`);
  }
  out(`total ${q.totalText}`);
}

export async function previewCommand(deps: Deps, args: { partnership: string; period: string }, out: Out): Promise<void> {
  const draft = await previewInvoice(deps, args);
  const doc = draft.document;
  if (!doc) {
    out(`${args.partnership} ${args.period}: ${draft.outcome.outcome}${draft.outcome.note ? ` (${draft.outcome.note})` : ''}`);
    return;
  }
  out(`DRAFT (not issued): ${doc.number} would be ${args.partnership} ${args.period}, ${doc.currency}`);
  for (const line of table(
    [['account', 'description', 'quantity', 'unit price', 'amount'], ...doc.lines.map((l) => [l.accountCode, l.description, l.quantity, l.unitPrice ?? '', formatMoney(l.amount, doc.currency)])],
    new Set([2, 3, 4]),
  )) out(line);
  out(`total ${formatMoney(doc.total, doc.currency)}`);
}

export function registerRatingCommands(program: Command, withDeps: WithDeps): void {
  const out: Out = (line) => console.log(line);
  program
    .command('rerate')
    .argument('<partnership>', 'partnership code')
    .argument('<period>', 'the month to re-rate, YYYY-MM', period)
    .option('--dry-run', 'print old and new totals per account and write nothing')
    .option('--product <code>', 'only this product')
    .option('--rules-file <file>', 'with --dry-run: rate under the rules this partnerships file proposes instead of the stored ones')
    .description('re-rate a period after a rule change: uninvoiced records replaced, invoiced ones adjusted on the next invoice (safe to run twice)')
    .action((partnership: string, p: string, opts: { dryRun?: boolean; product?: string; rulesFile?: string }) =>
      withDeps((deps) =>
        rerateCommand(deps, { partnership, period: p, dryRun: opts.dryRun === true, ...(opts.product ? { product: opts.product } : {}), ...(opts.rulesFile ? { rulesFile: opts.rulesFile } : {}) }, out),
      ),
    );

  program
    .command('quote')
    .argument('<partnership>', 'partnership code')
    .argument('<product>', 'product code')
    .argument('<quantity>', 'an exact decimal quantity, e.g. 12.5')
    .option('--user <ref>', "whose usage (their account split applies)")
    .option('--account <code>', 'charge this account')
    .option('--at <timestamp>', 'when the usage starts (default: now), e.g. 2026-10-14T09:00:00Z')
    .option('--rules-file <file>', 'quote under the rules this partnerships file proposes')
    .description('what a usage would cost under the rules, at its place in the period so far (writes nothing)')
    .action((partnership: string, product: string, quantity: string, opts: { user?: string; account?: string; at?: string; rulesFile?: string }) =>
      withDeps((deps) => quoteCommand(deps, { partnership, product, quantity, ...opts }, out)),
    );

  program
    .command('preview')
    .argument('<partnership>', 'partnership code')
    .argument('<period>', 'YYYY-MM', period)
    .description("a draft of the partnership's invoice for the period, settlement included (writes nothing)")
    .action((partnership: string, p: string) => withDeps((deps) => previewCommand(deps, { partnership, period: p }, out)));

  program
    .command('request-run')
    .argument('<period>', 'the month to invoice, YYYY-MM', period)
    .description('queue a billing run for the workers and print its id (follow it with GET /billing-runs/:id or `billing run-status`)')
    .action((p: string) =>
      withDeps(async (deps) => {
        const { billingRunId } = await requestBillingRun(deps, { period: p, requestedBy: cliActor() });
        out(`billing run ${billingRunId} queued for ${p}`);
      }),
    );

  program
    .command('run-status')
    .argument('<id>', 'billing run id')
    .description("a billing run's status and what it did per partnership")
    .action((id: string) =>
      withDeps(async (deps) => {
        const run = await deps.db('billing_runs').where('id', id).first<
          { id: string; period: string; status: string; requested_by: string; invoices_created: number; error: string | null; summary: Array<{ partnership: string; outcome: string; invoiceNumber?: string; totalPennies?: string; note?: string }> | null; queued_at: Date; started_at: Date | null; finished_at: Date | null } | undefined
        >('*');
        if (!run) throw new PermanentError(`no billing run ${id}`);
        out(`billing run ${run.id} for ${run.period}: ${run.status} (requested by ${run.requested_by}, queued ${run.queued_at.toISOString()}${run.started_at ? `, started ${run.started_at.toISOString()}` : ''}${run.finished_at ? `, finished ${run.finished_at.toISOString()}` : ''})`);
        if (run.error) out(`error: ${run.error}`);
        out(`${run.invoices_created} invoice(s) created`);
        for (const r of run.summary ?? []) out(`  ${r.partnership.padEnd(20)} ${r.outcome.padEnd(18)} ${r.invoiceNumber ?? ''} ${r.totalPennies ?? ''} ${r.note ?? ''}`.trimEnd());
      }),
    );
}
