import { type CsvCell, csvNumber, toCsv } from './csv-export';
import {
  type AccountGroup,
  type InvoiceDocument,
  type InvoiceDocumentLine,
  type InvoiceParty,
  type InvoiceRecordRow,
  accountKindLabel,
  assertLinesAddUp,
  documentTitle,
  groupByAccount,
  linesInOrder,
} from './invoice-document';
import { type Pennies, formatAmount, formatMoney, negatePennies, sumPennies } from './money';

export interface InvoiceEmail {
  subject: string;
  text: string;
  html: string;
  pdfFileName: string;
  csvFileName: string;
}

/**
 * The CSV's columns: one row per transaction the invoice claimed, with its billing record and
 * usage, so an accounting system can trace every amount to the usage behind it. Free text from
 * feeds comes last, so a quoted comma in it cannot shift the figures for a naive reader.
 */
export const INVOICE_CSV_HEADER = [
  'invoice_number',
  'account_code',
  'account_name',
  'usage_period',
  'product_code',
  'product_name',
  'kind',
  'usage_id',
  'user',
  'started_at',
  'ended_at',
  'quantity',
  'unit',
  'split_percent',
  'unit_price',
  'amount',
  'currency',
  'billing_record_id',
  'transaction_id',
  'description',
  'usage_description',
] as const;

/** Everything an issued invoice's email needs: subject, plain-text and HTML bodies, attachment names. */
export function renderInvoiceEmail(doc: InvoiceDocument): InvoiceEmail {
  assertLinesAddUp(doc);
  const groups = groupByAccount(linesInOrder(doc));
  return {
    subject: invoiceSubject(doc),
    text: renderText(doc, groups),
    html: renderHtml(doc, groups),
    pdfFileName: `${safeFileStem(doc.number)}.pdf`,
    csvFileName: `${safeFileStem(doc.number)}.csv`,
  };
}

/** "Invoice INV-2026-000001 from Northbridge for 2026-10"; a credit note names the invoice it corrects. */
export function invoiceSubject(doc: InvoiceDocument): string {
  const base = `${documentTitle(doc.kind)} ${oneLine(doc.number)} from ${oneLine(doc.issuer.name)} for ${oneLine(doc.period)}`;
  return doc.credits ? `${base} (credits ${oneLine(doc.credits.number)})` : base;
}

/**
 * The CSV attachment: a header and one row per invoiced transaction (see INVOICE_CSV_HEADER).
 * A document that claimed no transactions of its own, such as a credit note, lists its lines
 * instead, with the record columns empty. Either way the amounts add up to the total, or nothing
 * is rendered. Totals are left out: they are sums of the amount column.
 */
export function renderInvoiceCsv(doc: InvoiceDocument, records: readonly InvoiceRecordRow[]): string {
  assertLinesAddUp(doc);
  const rows: CsvCell[][] = [[...INVOICE_CSV_HEADER]];
  const amount = (p: Pennies) => csvNumber(formatAmount(p, doc.currency));
  const price = (p: string | null) => (p === null ? null : csvNumber(p));
  if (records.length === 0) {
    for (const line of linesInOrder(doc)) {
      rows.push([
        doc.number, line.accountCode, line.accountName, line.usagePeriod, line.productCode, line.productName, line.kind,
        null, null, null, null, csvNumber(line.quantity), line.unit, null, price(line.unitPrice), amount(line.amount), doc.currency,
        null, null, line.description, null,
      ]);
    }
    return toCsv(rows);
  }
  const sum = sumPennies(records.map((r) => r.amount));
  if (sum !== doc.total) {
    throw new Error(
      `${documentTitle(doc.kind).toLowerCase()} ${doc.number}: its transactions add up to ${formatAmount(sum, doc.currency)} but the total is ${formatAmount(doc.total, doc.currency)}`,
    );
  }
  for (const r of records) {
    rows.push([
      doc.number, r.accountCode, r.accountName, r.usagePeriod, r.productCode, r.productName, r.kind,
      r.usageId, r.user, r.startedAt, r.endedAt, csvNumber(r.quantity), r.unit, csvNumber(r.splitPercent), price(r.unitPrice),
      amount(r.amount), doc.currency, BigInt(r.billingRecordId), BigInt(r.transactionId), r.description, r.usageDescription,
    ]);
  }
  return toCsv(rows);
}

/**
 * Partner names and feed text end up in the Subject header and in table cells. A CR or LF there
 * would start a new header line (or break the table), and bidi overrides can make a name read
 * differently from what it is, so all of them collapse to one space.
 */
export function oneLine(text: string): string {
  return text.replace(/[\s\p{Cc}\p{Zl}\p{Zp}\u202A-\u202E\u2066-\u2069]+/gu, ' ').trim();
}

/** A file name stem that is safe on every mail client and file system: [A-Za-z0-9._-], no leading dot or dash. */
export function safeFileStem(text: string): string {
  const stem = text
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[._-]+/, '')
    .slice(0, 100);
  return stem === '' ? 'invoice' : stem;
}

function partyLines(party: InvoiceParty): string[] {
  const out = [`${oneLine(party.name)} (${oneLine(party.code)})`];
  if (party.address) out.push(...addressLines(party.address));
  if (party.email) out.push(oneLine(party.email));
  return out;
}

// A postal address legitimately spans lines; each of its lines is still made safe on its own.
function addressLines(address: string): string[] {
  return address
    .split(/\r\n|\r|\n/)
    .map(oneLine)
    .filter((l) => l !== '');
}

function details(doc: InvoiceDocument): [string, string][] {
  const out: [string, string][] = [[`${documentTitle(doc.kind)} number`, oneLine(doc.number)]];
  if (doc.credits) out.push(['Credits invoice', `${oneLine(doc.credits.number)} of ${oneLine(doc.credits.issueDate)}`]);
  out.push(['Billing period', oneLine(doc.period)], ['Issue date', oneLine(doc.issueDate)]);
  if (doc.kind === 'invoice') out.push(['Due date', oneLine(doc.dueDate)], ['Payment terms', `${doc.paymentTermsDays} days`]);
  out.push(['Currency', oneLine(doc.currency)]);
  if (doc.status === 'void') out.push(['Status', `VOID${doc.voidedOn ? ` since ${oneLine(doc.voidedOn)}` : ''}`]);
  if (doc.reason) out.push(['Reason', oneLine(doc.reason)]);
  return out;
}

/** What the reader must do about the document, in one sentence. */
function closingLine(doc: InvoiceDocument): string {
  const money = (p: Pennies) => formatMoney(p, doc.currency);
  if (doc.status === 'void') {
    return `This ${documentTitle(doc.kind).toLowerCase()} is VOID${doc.voidedOn ? ` since ${oneLine(doc.voidedOn)}` : ''}: nothing is due on it.`;
  }
  if (doc.kind === 'credit_note') {
    const against = doc.credits ? ` against invoice ${oneLine(doc.credits.number)}` : '';
    return doc.total < 0n ? `Credited: ${money(negatePennies(doc.total))}${against}.` : `Total: ${money(doc.total)}${against}.`;
  }
  return `Total due: ${money(doc.total)} by ${oneLine(doc.dueDate)}`;
}

function attachmentsLine(doc: InvoiceDocument): string {
  const stem = safeFileStem(doc.number);
  return `Attached: ${stem}.pdf (the ${documentTitle(doc.kind).toLowerCase()}) and ${stem}.csv (one row per invoiced transaction, with its billing record and usage).`;
}

const TABLE_HEADINGS = ['Account', 'Product', 'Period', 'Description', 'Quantity', 'Unit', 'Unit price', 'Amount'];
const RIGHT_ALIGNED = new Set([4, 6, 7]);

function lineCells(line: InvoiceDocumentLine, currency: string): string[] {
  return [
    `${oneLine(line.accountCode)} ${oneLine(line.accountName)}`,
    // A settlement line (fee, true-up, cap, voucher) has no product; its description says what it is.
    `${oneLine(line.productCode)} ${oneLine(line.productName)}`.trim(),
    oneLine(line.usagePeriod),
    oneLine(line.description),
    oneLine(line.quantity),
    oneLine(line.unit),
    line.unitPrice === null ? 'mixed' : oneLine(line.unitPrice),
    formatMoney(line.amount, currency),
  ];
}

function subtotalLabel(group: AccountGroup): string {
  const kind = group.accountKind === 'purchase_order' ? `${accountKindLabel(group.accountKind)} ` : '';
  return `Subtotal ${kind}${oneLine(group.accountCode)} ${oneLine(group.accountName)}`;
}

function documentHeading(doc: InvoiceDocument): string {
  return `${documentTitle(doc.kind)} ${oneLine(doc.number)}${doc.status === 'void' ? ' (VOID)' : ''}`;
}

function renderText(doc: InvoiceDocument, groups: AccountGroup[]): string {
  const out: string[] = [];
  const title = documentHeading(doc);
  out.push(title, '='.repeat(title.length), '');

  const from = partyLines(doc.issuer);
  const to = partyLines(doc.customer);
  from.forEach((l, i) => out.push(`${i === 0 ? 'From: ' : '      '}${l}`));
  out.push('');
  to.forEach((l, i) => out.push(`${i === 0 ? 'To:   ' : '      '}${l}`));
  out.push('');

  const facts = details(doc);
  const labelWidth = Math.max(...facts.map(([label]) => label.length)) + 1;
  for (const [label, value] of facts) out.push(`${`${label}:`.padEnd(labelWidth)} ${value}`);
  out.push('');

  // One table: line rows, a subtotal row after each account and the total, all amounts in one column.
  const rows: TextRow[] = [{ cells: TABLE_HEADINGS }, 'rule'];
  for (const group of groups) {
    for (const line of group.lines) rows.push({ cells: lineCells(line, doc.currency) });
    rows.push({ label: subtotalLabel(group), amount: formatMoney(group.subtotal, doc.currency) });
  }
  rows.push('rule', { label: 'Total', amount: formatMoney(doc.total, doc.currency) });
  out.push(...textTable(rows));

  out.push('', closingLine(doc));
  out.push('', attachmentsLine(doc));
  return out.join('\n') + '\n';
}

/** A table row: one cell per heading, a label spanning the row up to its amount, or a rule. */
type TextRow = { cells: string[] } | { label: string; amount: string } | 'rule';

function textTable(rows: TextRow[]): string[] {
  const amountCol = TABLE_HEADINGS.length - 1;
  const widthIn = (row: TextRow, col: number): number => {
    if (row === 'rule') return 0;
    if ('cells' in row) return (row.cells[col] ?? '').length;
    return col === amountCol ? row.amount.length : 0;
  };
  const widths = TABLE_HEADINGS.map((_, col) => Math.max(...rows.map((row) => widthIn(row, col))));
  const lastWidth = widths[amountCol] ?? 0;
  const totalWidth = widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  return rows.map((row) => {
    if (row === 'rule') return '-'.repeat(totalWidth);
    // A label runs across the columns before the amount instead of widening the first column.
    if ('label' in row) return `${row.label.padEnd(totalWidth - lastWidth - 2)}  ${row.amount.padStart(lastWidth)}`;
    return row.cells
      .map((cell, col) => (RIGHT_ALIGNED.has(col) ? cell.padStart(widths[col] ?? 0) : cell.padEnd(widths[col] ?? 0)))
      .join('  ')
      .trimEnd();
  });
}

const CELL = 'padding:4px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top';
const CELL_RIGHT = 'padding:4px 8px;border-bottom:1px solid #ddd;text-align:right;vertical-align:top;white-space:nowrap';

function renderHtml(doc: InvoiceDocument, groups: AccountGroup[]): string {
  const e = escapeHtml;
  const cell = (text: string, col: number, tag: 'td' | 'th' = 'td'): string =>
    `<${tag} style="${RIGHT_ALIGNED.has(col) ? CELL_RIGHT : CELL}">${e(text)}</${tag}>`;
  const labelRow = (label: string, amount: string, weight: string): string =>
    `<tr style="font-weight:${weight}"><td colspan="${TABLE_HEADINGS.length - 1}" style="${CELL}">${e(label)}</td>` +
    `<td style="${CELL_RIGHT}">${e(amount)}</td></tr>`;
  const party = (heading: string, p: InvoiceParty): string =>
    `<td style="padding:0 24px 0 0;vertical-align:top"><strong>${heading}</strong><br>` +
    partyLines(p).map(e).join('<br>') +
    '</td>';

  const bodyRows: string[] = [];
  for (const group of groups) {
    for (const line of group.lines) {
      bodyRows.push(`<tr>${lineCells(line, doc.currency).map((c, i) => cell(c, i)).join('')}</tr>`);
    }
    bodyRows.push(labelRow(subtotalLabel(group), formatMoney(group.subtotal, doc.currency), '600'));
  }

  const title = documentHeading(doc);
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    `<head><meta charset="utf-8"><title>${e(title)}</title></head>`,
    '<body style="margin:0;padding:16px;font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222">',
    `<h1 style="font-size:20px;margin:0 0 16px">${e(title)}</h1>`,
    `<table role="presentation" style="border-collapse:collapse;margin:0 0 16px"><tr>${party('From', doc.issuer)}${party('To', doc.customer)}</tr></table>`,
    '<table role="presentation" style="border-collapse:collapse;margin:0 0 16px">',
    ...details(doc).map(
      ([label, value]) =>
        `<tr><th style="padding:2px 16px 2px 0;text-align:left;font-weight:600">${e(label)}</th><td style="padding:2px 0">${e(value)}</td></tr>`,
    ),
    '</table>',
    '<table style="border-collapse:collapse;width:100%">',
    `<thead><tr style="background:#f3f3f3">${TABLE_HEADINGS.map((h, i) => cell(h, i, 'th')).join('')}</tr></thead>`,
    '<tbody>',
    ...bodyRows,
    '</tbody>',
    `<tfoot>${labelRow('Total', formatMoney(doc.total, doc.currency), '700')}</tfoot>`,
    '</table>',
    `<p style="margin:16px 0 0;font-weight:600">${e(closingLine(doc))}</p>`,
    `<p style="margin:8px 0 0;color:#555">${e(attachmentsLine(doc))}</p>`,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
