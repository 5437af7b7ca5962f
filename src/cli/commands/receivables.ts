import os from 'node:os';
import { type Command, InvalidArgumentError } from 'commander';
import { AGING_BUCKETS, type AgingBucket } from '../../core/aging';
import { type Pennies, formatMoney } from '../../core/money';
import type { Deps } from '../../deps';
import { issueCreditNote } from '../../use-cases/issue-credit-note';
import { recordPayment } from '../../use-cases/record-payment';
import { agingReport, applyCredit, openAmounts, parseDate, resolveInvoiceNumber } from '../../use-cases/receivables';
import { voidInvoice } from '../../use-cases/void-invoice';

/** Where a command writes its lines (stdout in the CLI, an array in tests). */
export type Out = (line: string) => void;

/** The operator at the terminal, for the audit log. */
export function cliActor(): string {
  try {
    return `cli:${os.userInfo().username}`;
  } catch {
    // No passwd entry (some containers): still say it came from the CLI.
    return 'cli:unknown';
  }
}

const money = (p: Pennies, currency: string) => formatMoney(p, currency);

export async function payCommand(
  deps: Deps,
  args: { invoiceNumber: string; amount: string; date: string; reference: string; currency?: string; issuer?: string; actor: string },
  out: Out,
): Promise<void> {
  const invoice = await resolveInvoiceNumber(deps, args.invoiceNumber, args.issuer);
  const r = await recordPayment(deps, {
    invoiceId: invoice.id,
    amount: args.amount,
    ...(args.currency ? { currency: args.currency } : {}),
    receivedOn: args.date,
    reference: args.reference,
    actor: args.actor,
  });
  const c = r.invoice.currency;
  const what = `payment "${r.payment.reference}" of ${money(r.payment.amount, c)} received ${r.payment.receivedOn} on ${r.invoice.number}`;
  out(r.outcome === 'recorded' ? `recorded ${what}` : `already recorded: ${what}; nothing changed`);
  out(`${r.invoice.number}: ${r.invoice.status}, ${money(r.invoice.open, c)} open of ${money(r.invoice.total, c)}`);
  if (r.excess > 0n) out(`${money(r.excess, c)} beyond what was open is now ${invoice.customerCode}'s credit`);
}

export async function creditNoteCommand(deps: Deps, args: { invoiceNumber: string; amount?: string; reason: string; issuer?: string; actor: string }, out: Out): Promise<void> {
  const invoice = await resolveInvoiceNumber(deps, args.invoiceNumber, args.issuer);
  const r = await issueCreditNote(deps, { invoiceId: invoice.id, reason: args.reason, ...(args.amount !== undefined ? { amount: args.amount } : {}), actor: args.actor });
  const c = r.invoice.currency;
  out(`issued credit note ${r.creditNote.number} for ${money(r.creditNote.total, c)} against ${r.invoice.number} (${r.creditNote.lines} line(s)${r.creditNote.mirrored ? ', mirroring the invoice' : ''})`);
  out(`${r.invoice.number}: ${r.invoice.status}, ${money(r.invoice.open, c)} open of ${money(r.invoice.total, c)}`);
  if (r.excess > 0n) out(`${money(r.excess, c)} beyond what was open is now ${invoice.customerCode}'s credit`);
  out(r.deliveryId !== undefined ? `email queued (delivery ${r.deliveryId})` : `not emailed: ${r.note ?? 'no recipients'}`);
}

export async function voidCommand(deps: Deps, args: { invoiceNumber: string; reason: string; issuer?: string; actor: string }, out: Out): Promise<void> {
  const invoice = await resolveInvoiceNumber(deps, args.invoiceNumber, args.issuer);
  const r = await voidInvoice(deps, { invoiceId: invoice.id, reason: args.reason, actor: args.actor });
  out(r.outcome === 'voided' ? `voided ${r.invoice.number}: ${r.invoice.reason}` : `${r.invoice.number} was already void (${r.invoice.voidedAt}: ${r.invoice.reason}); nothing changed`);
  if (r.emailStopped) out('its email had not been sent yet and will not be');
}

export async function applyCreditCommand(deps: Deps, args: { invoiceNumber: string; amount?: string; issuer?: string; actor: string }, out: Out): Promise<void> {
  const invoice = await resolveInvoiceNumber(deps, args.invoiceNumber, args.issuer);
  const r = await applyCredit(deps, { invoiceId: invoice.id, ...(args.amount !== undefined ? { amount: args.amount } : {}), actor: args.actor });
  const c = r.invoice.currency;
  out(`applied ${money(r.amount, c)} of ${invoice.customerCode}'s credit to ${r.invoice.number}`);
  out(`${r.invoice.number}: ${r.invoice.status}, ${money(r.invoice.open, c)} open; ${invoice.customerCode} has ${money(r.remainingCredit, c)} of ${c} credit left`);
}

export async function openAmountsCommand(deps: Deps, args: { asOf?: string; customer?: string; detail?: boolean }, out: Out): Promise<void> {
  const report = await openAmounts(deps, { ...(args.asOf ? { asOf: args.asOf } : {}), ...(args.customer ? { customer: args.customer } : {}) });
  out(report.asOf ? `open amounts as of ${report.asOf}` : 'open amounts now');
  if (report.rows.length === 0) {
    out('nothing is open and no customer has credit');
    return;
  }
  const rows: string[][] = [];
  for (const r of report.rows) {
    rows.push([r.customerCode, r.currency, String(r.openInvoices), money(r.open, r.currency), money(r.credit, r.currency), money(r.net, r.currency)]);
    if (args.detail) {
      for (const i of r.invoices) rows.push([`  ${i.number}`, '', `due ${i.dueDate}`, money(i.open, r.currency), '', '']);
    }
  }
  for (const t of report.totals) rows.push([`total ${t.currency}`, t.currency, '', money(t.open, t.currency), money(t.credit, t.currency), money(t.net, t.currency)]);
  for (const line of renderTable(['customer', 'currency', 'open invoices', 'open', 'credit', 'net'], rows, [2, 3, 4, 5], report.rows.length + countDetail(report.rows, args.detail))) out(line);
}

const countDetail = (rows: ReadonlyArray<{ invoices: unknown[] }>, detail?: boolean) => (detail ? rows.reduce((a, r) => a + r.invoices.length, 0) : 0);

const BUCKET_LABELS: Record<AgingBucket, string> = { current: 'current', '1-30': '1-30', '31-60': '31-60', '61-90': '61-90', over_90: 'over 90' };

export async function agingCommand(deps: Deps, args: { asOf?: string }, out: Out): Promise<void> {
  const asOf = args.asOf ?? deps.clock.now().toZonedDateTimeISO('UTC').toPlainDate().toString();
  const report = await agingReport(deps, { asOf });
  out(`aging as of ${report.asOf} (days past due)`);
  if (report.rows.length === 0) {
    out('nothing is open and no customer has credit');
    return;
  }
  const rows = report.rows.map((r) => [r.customerCode, r.currency, ...AGING_BUCKETS.map((b) => money(r.buckets[b], r.currency)), money(r.total, r.currency), money(r.credit, r.currency), money(r.net, r.currency)]);
  for (const t of report.totals) rows.push([`total ${t.currency}`, t.currency, ...AGING_BUCKETS.map((b) => money(t.buckets[b], t.currency)), money(t.total, t.currency), money(t.credit, t.currency), money(t.net, t.currency)]);
  const headers = ['customer', 'currency', ...AGING_BUCKETS.map((b) => BUCKET_LABELS[b]), 'total', 'credit', 'net'];
  for (const line of renderTable(headers, rows, headers.map((_, i) => i).filter((i) => i >= 2), report.rows.length)) out(line);
}

/** A plain text table: padded columns, numbers right-aligned, a rule under the header and above the totals. */
export function renderTable(headers: string[], rows: string[][], rightAligned: number[], bodyRows = rows.length): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (cells: string[]) =>
    cells.map((cell, i) => (rightAligned.includes(i) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  const lines = [fmt(headers), rule, ...rows.slice(0, bodyRows).map(fmt)];
  if (bodyRows < rows.length) lines.push(rule, ...rows.slice(bodyRows).map(fmt));
  return lines;
}

function date(value: string): string {
  try {
    return parseDate(value, 'date');
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

type WithDeps = (run: (deps: Deps) => Promise<void>) => Promise<void>;

const print: Out = (line) => console.log(line);

/** Adds the receivables commands to the CLI; `withDeps` opens and closes connections around each. */
export function registerReceivablesCommands(program: Command, withDeps: WithDeps): void {
  program
    .command('pay')
    .argument('<invoice-number>', 'e.g. INV-2026-000001')
    .requiredOption('--amount <amount>', "in the invoice's currency, e.g. 12.34 (no more decimals than the currency has)")
    .requiredOption('--date <YYYY-MM-DD>', 'the day the money was received', date)
    .requiredOption('--reference <text>', 'the payment reference; the same reference again is recorded once')
    .option('--currency <code>', "the currency the money came in (refused unless it is the invoice's)")
    .option('--issuer <code>', 'the issuing partner, when two issuers have used the same number')
    .description("record a payment against an invoice; an overpayment becomes the customer's credit")
    .action((invoiceNumber: string, o: { amount: string; date: string; reference: string; currency?: string; issuer?: string }) =>
      withDeps((deps) => payCommand(deps, { invoiceNumber, ...o, actor: cliActor() }, print)),
    );

  program
    .command('credit-note')
    .argument('<invoice-number>', 'the invoice to credit')
    .option('--amount <amount>', 'credit this much (default: everything not yet credited)')
    .requiredOption('--reason <text>', 'why, as printed on the credit note')
    .option('--issuer <code>', 'the issuing partner, when two issuers have used the same number')
    .description('issue a credit note (CN-YYYY-NNNNNN) for an invoice and email it')
    .action((invoiceNumber: string, o: { amount?: string; reason: string; issuer?: string }) =>
      withDeps((deps) => creditNoteCommand(deps, { invoiceNumber, ...o, actor: cliActor() }, print)),
    );

  program
    .command('void')
    .argument('<invoice-number>', 'an issued invoice with no payments or credit notes')
    .requiredOption('--reason <text>', 'why it is void')
    .option('--issuer <code>', 'the issuing partner, when two issuers have used the same number')
    .description('void an invoice: it keeps its number, leaves the open amounts, and its charges are not billed again')
    .action((invoiceNumber: string, o: { reason: string; issuer?: string }) => withDeps((deps) => voidCommand(deps, { invoiceNumber, ...o, actor: cliActor() }, print)));

  program
    .command('apply-credit')
    .argument('<invoice-number>', 'an open invoice')
    .option('--amount <amount>', 'apply this much (default: as much as is open and available)')
    .option('--issuer <code>', 'the issuing partner, when two issuers have used the same number')
    .description("apply the customer's credit balance to one of their open invoices")
    .action((invoiceNumber: string, o: { amount?: string; issuer?: string }) => withDeps((deps) => applyCreditCommand(deps, { invoiceNumber, ...o, actor: cliActor() }, print)));

  program
    .command('open-amounts')
    .option('--as-of <YYYY-MM-DD>', 'as of the end of this day (default: everything recorded)', date)
    .option('--customer <code>', 'one customer only')
    .option('--detail', 'list the open invoices under each customer')
    .description('open amounts per customer and currency: open invoices, credit balance, net')
    .action((o: { asOf?: string; customer?: string; detail?: boolean }) => withDeps((deps) => openAmountsCommand(deps, o, print)));

  program
    .command('aging')
    .option('--as-of <YYYY-MM-DD>', 'as of the end of this day (default: today, UTC)', date)
    .description('aging report: open amounts by days past due, per customer and currency')
    .action((o: { asOf?: string }) => withDeps((deps) => agingCommand(deps, o, print)));
}
