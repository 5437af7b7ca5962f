import type { Dataset } from './dataset';
import type { Snapshot } from './snapshot';

export interface Comparison {
  /** What was compared, with how many items, for the report. */
  compared: Array<{ what: string; items: number }>;
  /** Every difference found; empty means the runs agree. */
  differences: string[];
  /** Deliveries left `unknown` in the disturbed run whose message the recipient has: the documented window. */
  unknownWindow: Array<{ invoice: string; copiesReceived: number; reference: string }>;
}

const EXAMPLES = 5;

function compareMaps(what: string, expected: Map<string, string>, actual: Map<string, string>, out: Comparison): void {
  const missing: string[] = [];
  const extra: string[] = [];
  const changed: string[] = [];
  for (const [key, value] of expected) {
    const other = actual.get(key);
    if (other === undefined) missing.push(key);
    else if (other !== value) changed.push(`${key}: expected ${value} | got ${other}`);
  }
  for (const key of actual.keys()) if (!expected.has(key)) extra.push(key);
  out.compared.push({ what, items: expected.size });
  const say = (label: string, items: string[]) => {
    if (items.length > 0) out.differences.push(`${what}: ${items.length} ${label}, e.g. ${items.slice(0, EXAMPLES).join(' ;; ')}`);
  };
  say('missing from the disturbed run', missing);
  say('only in the disturbed run', extra);
  say('different', changed);
}

/**
 * The disturbed run against the undisturbed one: every usage, billing record (with its
 * transactions and the invoice they went on), total per account and kind, invoice and line, file
 * count and row error must be the same; deliveries too, except that one may end `unknown` where the
 * reference sent it (the crash window between the server's 250 and our record of it), and then at
 * most one copy may have reached the mailbox. No invariant may be broken and no Message-ID received
 * twice, in either run.
 */
export function compareRuns(reference: Snapshot, disturbed: Snapshot): Comparison {
  const out: Comparison = { compared: [], differences: [], unknownWindow: [] };
  compareMaps('files (status and counts)', reference.files, disturbed.files, out);
  compareMaps('row errors', reference.fileErrors, disturbed.fileErrors, out);
  compareMaps('usages', reference.usages, disturbed.usages, out);
  compareMaps('billing records with their transactions', reference.records, disturbed.records, out);
  compareMaps('transaction sums per account and kind', reference.accountTotals, disturbed.accountTotals, out);
  compareMaps('invoices (numbers and totals)', reference.invoices, disturbed.invoices, out);
  compareMaps('invoice lines', reference.invoiceLines, disturbed.invoiceLines, out);

  for (const [name, snap] of [['undisturbed', reference], ['disturbed', disturbed]] as const) {
    for (const [check, rows] of Object.entries(snap.invariants)) {
      if (rows.length > 0) out.differences.push(`${name} run breaks invariant ${check}: ${JSON.stringify(rows.slice(0, EXAMPLES))}`);
    }
    const copies = new Map<string, number>();
    for (const m of snap.mail) copies.set(m.messageId, (copies.get(m.messageId) ?? 0) + 1);
    for (const [id, n] of copies) if (n > 1) out.differences.push(`${name} run: Message-ID ${id} was received ${n} times`);
  }
  out.compared.push({ what: 'invariants (duplicates, gaps, totals) per run', items: Object.keys(reference.invariants).length });

  const refMail = new Map(reference.mail.map((m) => [m.messageId, m]));
  const gotMail = new Map(disturbed.mail.map((m) => [m.messageId, m]));
  const copiesOf = (id: string) => disturbed.mail.filter((m) => m.messageId === id).length;
  for (const [number, ref] of reference.deliveries) {
    const got = disturbed.deliveries.get(number);
    if (!got) {
      out.differences.push(`delivery of ${number}: missing from the disturbed run`);
      continue;
    }
    if (got.content !== ref.content) out.differences.push(`delivery of ${number}: expected ${ref.content} | got ${got.content}`);
    const messageId = ref.content.split('|').at(-1)!;
    const copies = copiesOf(messageId);
    // After the operator's step (left if the recipient has it, resent if not) every invoice the
    // undisturbed run emailed has reached its recipient exactly once, and no other.
    if (copies !== (ref.status === 'sent' ? 1 : 0)) out.differences.push(`${messageId} of ${number}: ${copies} copies received, the undisturbed run ${ref.status === 'sent' ? 'sent one' : 'sent none'}`);
    if (got.status === 'unknown' && ref.status === 'sent' && copies === 1) {
      out.unknownWindow.push({ invoice: number, copiesReceived: copies, reference: ref.status });
    } else if (got.status !== ref.status) {
      out.differences.push(`delivery of ${number}: expected status ${ref.status} | got ${got.status} (${got.lastError})`);
    }
    const expectedMail = refMail.get(messageId);
    const actualMail = gotMail.get(messageId);
    if (got.status === 'sent' && !actualMail) out.differences.push(`delivery of ${number} is sent but ${messageId} never reached the mailbox`);
    if (got.status === 'failed' && actualMail) out.differences.push(`delivery of ${number} is failed but ${messageId} reached the mailbox`);
    if (expectedMail && actualMail && JSON.stringify(expectedMail) !== JSON.stringify(actualMail)) {
      out.differences.push(`email ${messageId}: expected ${JSON.stringify(expectedMail)} | got ${JSON.stringify(actualMail)}`);
    }
  }
  for (const number of disturbed.deliveries.keys()) {
    if (!reference.deliveries.has(number)) out.differences.push(`delivery of ${number}: only in the disturbed run`);
  }
  for (const id of gotMail.keys()) if (!refMail.has(id)) out.differences.push(`email ${id}: only in the disturbed run`);
  out.compared.push({ what: 'deliveries and emails received', items: reference.deliveries.size });
  return out;
}

/** The undisturbed run against what the dataset was made to contain: a broken pipeline shows here first. */
export function checkAgainstDataset(reference: Snapshot, dataset: Dataset): string[] {
  const problems: string[] = [];
  for (const f of dataset.files) {
    const row = reference.files.get(f.name);
    const expected = `rated|${f.name.endsWith('.xml') ? 'xml' : 'csv'}|${f.expected.read}|${f.expected.accepted}|${f.expected.rejected}|${f.expected.duplicate}|`;
    if (row !== expected) problems.push(`file ${f.name}: expected ${expected} | got ${row ?? 'nothing'}`);
  }
  if (reference.usages.size !== dataset.totals.accepted) problems.push(`usages: expected ${dataset.totals.accepted}, got ${reference.usages.size}`);
  const partnerships = dataset.partnerships.partnerships.length;
  if (reference.invoices.size !== partnerships) problems.push(`invoices: expected ${partnerships}, got ${reference.invoices.size}`);
  const statuses = [...reference.deliveries.values()].map((d) => d.status).sort();
  const expectedStatuses = [...Array.from({ length: partnerships - 1 }, () => 'sent'), 'failed'].sort();
  if (JSON.stringify(statuses) !== JSON.stringify(expectedStatuses)) {
    problems.push(`deliveries: expected ${partnerships - 1} sent and 1 failed (the 550 mailbox), got ${statuses.join(', ')}`);
  }
  return problems;
}
