import PDFDocument from 'pdfkit';
import {
  type AccountGroup,
  type InvoiceDocument,
  type InvoiceDocumentLine,
  type InvoiceParty,
  accountKindLabel,
  assertLinesAddUp,
  dateLabel,
  documentTitle,
  groupByAccount,
  linesInOrder,
  periodLabel,
} from '../../src/core/invoice-document';
import { type Pennies, formatMoney, negatePennies } from '../../src/core/money';
import { cacheStandardFontMetrics } from './standard-font-cache';
import { toWinAnsi } from './win-ansi';

/**
 * The invoice as a PDF a customer's accounts department can file: issuer and customer with their
 * addresses, the document's facts, the amount due, lines grouped per account with subtotals, the
 * total and the payment terms. A credit note is titled as such and names the invoice it corrects;
 * a void invoice carries VOID across every page.
 *
 * The output is a pure function of the document: the creation date is the issue date and nothing
 * reads the clock, so the same invoice renders to the same bytes (the PDF's file id is a hash of its
 * info dictionary). Layout is done here, not by pdfkit's text flow: every row is measured first and
 * a page is started before a row that would not fit, with the table header repeated.
 */
export async function renderInvoicePdf(doc: InvoiceDocument): Promise<Buffer> {
  assertLinesAddUp(doc);
  cacheStandardFontMetrics();
  const title = documentTitle(doc.kind);
  const pdf = new PDFDocument({
    size: 'A4',
    // Margins are ours (see the constants): with pdfkit's at zero it never breaks a page by itself.
    margin: 0,
    autoFirstPage: false,
    bufferPages: true,
    compress: true,
    lang: 'en-GB',
    displayTitle: true,
    info: {
      Title: text(`${title} ${doc.number}`),
      Author: text(doc.issuer.name),
      Subject: text(`${title} ${doc.number} for ${periodLabel(doc.period)} to ${doc.customer.name}`),
      CreationDate: new Date(`${doc.issueDate}T00:00:00Z`),
    },
  });
  const chunks: Buffer[] = [];
  pdf.on('data', (chunk: Buffer) => chunks.push(chunk));
  const finished = new Promise<Buffer>((resolve, reject) => {
    pdf.on('end', () => resolve(Buffer.concat(chunks)));
    pdf.on('error', reject);
  });

  const layout = new Layout(pdf, doc);
  layout.render();
  pdf.end();
  return finished;
}

// A4 in points, and the frame everything is laid out in.
const PAGE_WIDTH = 595.28;
const PAGE_HEIGHT = 841.89;
const LEFT = 48;
const RIGHT = PAGE_WIDTH - 48;
const WIDTH = RIGHT - LEFT;
const TOP = 48;
const FOOTER_Y = PAGE_HEIGHT - 36;
const BOTTOM = FOOTER_Y - 16;

const INK = '#1a1a1a';
const MUTED = '#666666';
const ACCENT = '#1f3a5f';
const RULE = '#d5d9de';
const BAND = '#eef1f5';
const VOID_RED = '#c62828';

const REGULAR = 'Helvetica';
const BOLD = 'Helvetica-Bold';

/** The right-hand column of the head: title, facts and the amount box. */
const FACTS_WIDTH = 220;
const FACTS_X = RIGHT - FACTS_WIDTH;

interface Column {
  heading: string;
  width: number;
  align: 'left' | 'right';
}

// Description takes what the others leave.
const FIXED_COLUMNS: Column[] = [
  { heading: 'Period', width: 48, align: 'left' },
  { heading: 'Quantity', width: 74, align: 'right' },
  { heading: 'Unit', width: 56, align: 'left' },
  { heading: 'Unit price', width: 62, align: 'right' },
  { heading: 'Amount', width: 74, align: 'right' },
];
const COLUMNS: Column[] = [{ heading: 'Description', width: WIDTH - FIXED_COLUMNS.reduce((s, c) => s + c.width, 0), align: 'left' }, ...FIXED_COLUMNS];
const CELL_PAD = 4;

/** Text as the standard fonts can print it, on one line. */
function text(value: string): string {
  return toWinAnsi(value).replace(/ {2,}/g, ' ').trim();
}

function addressLines(party: InvoiceParty): string[] {
  return (party.address ?? '').split(/\r\n|\r|\n/).map(text).filter((l) => l !== '');
}

interface TextStyle {
  font?: string;
  size?: number;
  color?: string;
}

class Layout {
  private y = TOP;
  // What the page has set: nothing yet, so the first style() sets all three.
  private font = '';
  private size = 0;
  private color = '';
  private readonly widths = new Map<string, number>();
  private readonly lineHeights = new Map<InvoiceDocumentLine, number>();
  private readonly money = (p: Pennies) => text(formatMoney(p, this.doc.currency));

  constructor(
    private readonly pdf: PDFKit.PDFDocument,
    private readonly doc: InvoiceDocument,
  ) {}

  render(): void {
    this.newPage();
    this.head();
    this.billTo();
    this.notice();
    this.table();
    this.totals();
    this.terms();
    this.decoratePages();
  }

  // -- pieces of the first page ------------------------------------------------------------------

  /** Issuer on the left; the document's title and facts on the right. */
  private head(): void {
    const { doc } = this;
    let left = TOP;
    left += this.write(text(doc.issuer.name), LEFT, left, { width: FACTS_X - LEFT - 24, font: BOLD, size: 15, color: ACCENT }) + 4;
    for (const line of [...addressLines(doc.issuer), ...(doc.issuer.email ? [text(doc.issuer.email)] : [])]) {
      left += this.write(line, LEFT, left, { width: FACTS_X - LEFT - 24, size: 9, color: MUTED });
    }

    let right = TOP - 2;
    right += this.write(documentTitle(doc.kind).toUpperCase(), FACTS_X, right, { width: FACTS_WIDTH, align: 'right', font: BOLD, size: 22, color: ACCENT }) + 8;
    for (const [label, value] of this.facts()) {
      const h = this.write(value, FACTS_X + 90, right, { width: FACTS_WIDTH - 90, align: 'right', font: BOLD, size: 9 });
      this.write(label, FACTS_X, right, { width: 90, size: 9, color: MUTED });
      right += Math.max(h, 12) + 2;
    }
    this.y = Math.max(left, right) + 22;
  }

  private facts(): [string, string][] {
    const { doc } = this;
    const out: [string, string][] = [[`${documentTitle(doc.kind)} number`, text(doc.number)]];
    if (doc.credits) out.push(['Credits invoice', text(doc.credits.number)]);
    out.push(['Issue date', dateLabel(doc.issueDate)]);
    if (doc.kind === 'invoice') out.push(['Due date', dateLabel(doc.dueDate)]);
    out.push(['Billing period', periodLabel(doc.period)], ['Currency', text(doc.currency)]);
    return out;
  }

  /** The customer on the left; what is due (or credited) in a box on the right. */
  private billTo(): void {
    const { doc } = this;
    const top = this.y;
    let left = top;
    left += this.write('BILL TO', LEFT, left, { font: BOLD, size: 7.5, color: MUTED }) + 3;
    left += this.write(text(doc.customer.name), LEFT, left, { width: FACTS_X - LEFT - 24, font: BOLD, size: 11 }) + 2;
    for (const line of [...addressLines(doc.customer), ...(doc.customer.email ? [text(doc.customer.email)] : [])]) {
      left += this.write(line, LEFT, left, { width: FACTS_X - LEFT - 24, size: 9 });
    }
    left += 3;
    left += this.write(`Customer ${text(doc.customer.code)}  ·  Contract ${text(doc.partnershipCode)}`, LEFT, left, { width: FACTS_X - LEFT - 24, size: 8, color: MUTED });

    const box = this.amountBox();
    const boxHeight = 66;
    this.pdf.save().rect(FACTS_X, top, FACTS_WIDTH, boxHeight).fill(box.void ? '#fdecea' : BAND).restore();
    let y = top + 10;
    y += this.write(box.label, FACTS_X + 12, y, { width: FACTS_WIDTH - 24, size: 9, color: box.void ? VOID_RED : MUTED }) + 2;
    y += this.write(box.amount, FACTS_X + 12, y, { width: FACTS_WIDTH - 24, font: BOLD, size: 18, color: box.void ? VOID_RED : INK }) + 2;
    this.write(box.note, FACTS_X + 12, y, { width: FACTS_WIDTH - 24, size: 8.5, color: MUTED });
    this.y = Math.max(left, top + boxHeight) + 20;
  }

  private amountBox(): { label: string; amount: string; note: string; void: boolean } {
    const { doc } = this;
    if (doc.status === 'void') {
      return { label: 'VOID', amount: 'Nothing due', note: doc.voidedOn ? `Voided on ${dateLabel(doc.voidedOn)}` : 'This document was voided', void: true };
    }
    if (doc.kind === 'credit_note') {
      const credited = doc.total < 0n ? negatePennies(doc.total) : doc.total;
      return {
        label: 'Amount credited',
        amount: this.money(credited),
        note: doc.credits ? `Against invoice ${text(doc.credits.number)}` : 'Credit note',
        void: false,
      };
    }
    return { label: 'Amount due', amount: this.money(doc.total), note: `Due by ${dateLabel(doc.dueDate)}`, void: false };
  }

  /** What makes this document different from a plain invoice: the invoice it credits, the void, the reason. */
  private notice(): void {
    const { doc } = this;
    const parts: string[] = [];
    if (doc.credits) parts.push(`This credit note corrects invoice ${text(doc.credits.number)} of ${dateLabel(doc.credits.issueDate)}.`);
    if (doc.status === 'void') parts.push(`This ${documentTitle(doc.kind).toLowerCase()} was voided${doc.voidedOn ? ` on ${dateLabel(doc.voidedOn)}` : ''}; it keeps its number and nothing is due on it.`);
    if (doc.reason) parts.push(`Reason: ${text(doc.reason)}`);
    if (parts.length === 0) return;
    const color = doc.status === 'void' ? VOID_RED : INK;
    this.y += this.write(parts.join(' '), LEFT, this.y, { width: WIDTH, size: 9.5, color, font: doc.status === 'void' ? BOLD : REGULAR }) + 14;
  }

  // -- the lines table ---------------------------------------------------------------------------

  private table(): void {
    this.tableHeader();
    const groups = groupByAccount(linesInOrder(this.doc));
    for (const group of groups) {
      const heading = this.groupHeading(group);
      const first = group.lines[0];
      // Keep an account's heading with its first line.
      this.ensureSpace(this.groupHeadingHeight(heading) + (first ? this.lineHeight(first) : 0), true);
      this.drawGroupHeading(heading);
      for (const line of group.lines) {
        this.ensureSpace(this.lineHeight(line), true);
        this.drawLine(line);
      }
      this.ensureSpace(22, true);
      this.drawSubtotal(group);
    }
  }

  private tableHeader(): void {
    const height = 18;
    this.pdf.save().rect(LEFT, this.y, WIDTH, height).fill(BAND).restore();
    let x = LEFT;
    for (const col of COLUMNS) {
      this.write(col.heading, x + CELL_PAD, this.y + 5, { width: col.width - 2 * CELL_PAD, align: col.align, font: BOLD, size: 8, color: ACCENT });
      x += col.width;
    }
    this.y += height + 2;
  }

  private groupHeading(group: AccountGroup): string {
    return `${accountKindLabel(group.accountKind)} ${text(group.accountCode)}  ·  ${text(group.accountName)}`;
  }

  private groupHeadingHeight(heading: string): number {
    return this.measure(heading, { width: WIDTH - 2 * CELL_PAD, font: BOLD, size: 9 }) + 10;
  }

  private drawGroupHeading(heading: string): void {
    const h = this.groupHeadingHeight(heading);
    this.write(heading, LEFT + CELL_PAD, this.y + 6, { width: WIDTH - 2 * CELL_PAD, font: BOLD, size: 9, color: ACCENT });
    this.y += h;
  }

  private lineCells(line: InvoiceDocumentLine): string[] {
    return [
      text(line.description),
      text(line.usagePeriod),
      text(line.quantity),
      text(line.unit),
      line.unitPrice === null ? 'mixed' : text(line.unitPrice),
      this.money(line.amount),
    ];
  }

  // The product code under the description ties the line to the CSV and the price list.
  private productNote(line: InvoiceDocumentLine): string | undefined {
    return line.productCode ? text(line.productCode) : undefined;
  }

  private lineHeight(line: InvoiceDocumentLine): number {
    const known = this.lineHeights.get(line);
    if (known !== undefined) return known;
    const cells = this.lineCells(line);
    let h = 0;
    cells.forEach((cell, i) => {
      const col = COLUMNS[i]!;
      h = Math.max(h, this.measure(cell, { width: col.width - 2 * CELL_PAD, size: 9 }));
    });
    const note = this.productNote(line);
    const descriptionHeight = this.measure(cells[0]!, { width: COLUMNS[0]!.width - 2 * CELL_PAD, size: 9 }) +
      (note ? this.measure(note, { width: COLUMNS[0]!.width - 2 * CELL_PAD, size: 7 }) + 1 : 0);
    const height = Math.max(h, descriptionHeight) + 8;
    this.lineHeights.set(line, height);
    return height;
  }

  private drawLine(line: InvoiceDocumentLine): void {
    const cells = this.lineCells(line);
    const h = this.lineHeight(line);
    let x = LEFT;
    cells.forEach((cell, i) => {
      const col = COLUMNS[i]!;
      const drawn = this.write(cell, x + CELL_PAD, this.y + 4, { width: col.width - 2 * CELL_PAD, align: col.align, size: 9 });
      const note = i === 0 ? this.productNote(line) : undefined;
      if (note) this.write(note, x + CELL_PAD, this.y + 4 + drawn + 1, { width: col.width - 2 * CELL_PAD, size: 7, color: MUTED });
      x += col.width;
    });
    this.y += h;
    this.rule(LEFT, RIGHT, this.y, RULE, 0.5);
  }

  private drawSubtotal(group: AccountGroup): void {
    const amountCol = COLUMNS[COLUMNS.length - 1]!;
    const labelWidth = WIDTH - amountCol.width - 2 * CELL_PAD;
    this.write(`Subtotal ${text(group.accountCode)}`, LEFT, this.y + 5, { width: labelWidth, align: 'right', font: BOLD, size: 9 });
    this.write(this.money(group.subtotal), RIGHT - amountCol.width + CELL_PAD, this.y + 5, { width: amountCol.width - 2 * CELL_PAD, align: 'right', font: BOLD, size: 9 });
    this.y += 24;
  }

  // -- after the table ---------------------------------------------------------------------------

  private totals(): void {
    const { doc } = this;
    this.ensureSpace(44, false);
    this.y += 4;
    this.rule(FACTS_X, RIGHT, this.y, INK, 1);
    const label = `Total (${text(doc.currency)})`;
    this.write(label, FACTS_X, this.y + 8, { width: FACTS_WIDTH / 2, font: BOLD, size: 11 });
    this.write(this.money(doc.total), FACTS_X + FACTS_WIDTH / 2, this.y + 8, { width: FACTS_WIDTH / 2 - CELL_PAD, align: 'right', font: BOLD, size: 11 });
    this.y += 26;
    this.rule(FACTS_X, RIGHT, this.y, INK, 1);
    this.rule(FACTS_X, RIGHT, this.y + 2, INK, 1);
    this.y += 24;
  }

  private terms(): void {
    const { doc } = this;
    const paragraphs: string[] = [];
    if (doc.status === 'void') {
      paragraphs.push(`This ${documentTitle(doc.kind).toLowerCase()} is void: nothing is due on it.`);
    } else if (doc.kind === 'credit_note') {
      paragraphs.push(
        doc.credits
          ? `This credit note reduces the amount due on invoice ${text(doc.credits.number)}; if that invoice is already paid, the credit is applied to your account. No payment is due on it.`
          : 'No payment is due on this credit note; the credit is applied to your account.',
      );
    } else {
      paragraphs.push(
        `Payment is due within ${doc.paymentTermsDays} days of the invoice date, by ${dateLabel(doc.dueDate)}. ` +
          `Please quote ${text(doc.number)} with your payment.`,
      );
    }
    if (doc.issuer.email) paragraphs.push(`Questions about this ${documentTitle(doc.kind).toLowerCase()}: ${text(doc.issuer.email)}.`);
    paragraphs.push(`Each line is the sum of the usage billed to that account; the attached CSV lists every transaction with the usage behind it.`);
    const heading = doc.kind === 'invoice' ? 'Payment terms' : 'Notes';
    const body = paragraphs.join('\n');
    const height = 14 + this.measure(body, { width: WIDTH, size: 8.5 });
    this.ensureSpace(height, false);
    this.y += this.write(heading, LEFT, this.y, { font: BOLD, size: 9, color: ACCENT }) + 3;
    this.y += this.write(body, LEFT, this.y, { width: WIDTH, size: 8.5, color: MUTED, lineGap: 1.5 });
  }

  /** Footer (and VOID across the page) on every page, once the page count is known. */
  private decoratePages(): void {
    const { doc, pdf } = this;
    const range = pdf.bufferedPageRange();
    for (let i = range.start; i < range.start + range.count; i++) {
      pdf.switchToPage(i);
      this.forgetStyle();
      this.rule(LEFT, RIGHT, FOOTER_Y - 6, RULE, 0.5);
      const left = `${text(doc.issuer.name)}  ·  ${documentTitle(doc.kind)} ${text(doc.number)}${doc.status === 'void' ? '  ·  VOID' : ''}`;
      this.write(left, LEFT, FOOTER_Y, { width: WIDTH - 80, size: 7.5, color: MUTED, lineBreak: false });
      this.write(`Page ${i - range.start + 1} of ${range.count}`, RIGHT - 80, FOOTER_Y, { width: 80, align: 'right', size: 7.5, color: MUTED, lineBreak: false });
      if (doc.status === 'void') this.voidMark();
      this.forgetStyle();
    }
  }

  private voidMark(): void {
    const { pdf } = this;
    pdf.save();
    pdf.rotate(-35, { origin: [PAGE_WIDTH / 2, PAGE_HEIGHT / 2] });
    pdf.fillOpacity(0.14).fillColor(VOID_RED).font(BOLD).fontSize(150);
    pdf.text('VOID', 0, PAGE_HEIGHT / 2 - 75, { width: PAGE_WIDTH, align: 'center', lineBreak: false });
    pdf.restore();
  }

  // -- primitives --------------------------------------------------------------------------------

  /** Starts a new page if `height` does not fit; inside the table the header is repeated. */
  private ensureSpace(height: number, inTable: boolean): void {
    if (this.y + height <= BOTTOM) return;
    this.newPage();
    if (inTable) {
      this.y += this.write(`${documentTitle(this.doc.kind)} ${text(this.doc.number)} (continued)`, LEFT, this.y, { size: 8.5, color: MUTED }) + 6;
      this.tableHeader();
    }
  }

  private newPage(): void {
    this.pdf.addPage({ size: 'A4', margin: 0 });
    this.y = TOP;
    this.forgetStyle();
  }

  /** A new page (or one returned to) starts from the PDF's defaults, whatever style() last set. */
  private forgetStyle(): void {
    this.font = '';
    this.size = 0;
    this.color = '';
  }

  private rule(x1: number, x2: number, y: number, color: string, width: number): void {
    this.pdf.save().moveTo(x1, y).lineTo(x2, y).lineWidth(width).strokeColor(color).stroke().restore();
  }

  // Only what changed is set: every fillColor() is parsed and written to the page again.
  private style(s: TextStyle): void {
    const font = s.font ?? REGULAR;
    const size = s.size ?? 9;
    const color = s.color ?? INK;
    if (font !== this.font) this.pdf.font(font);
    if (size !== this.size) this.pdf.fontSize(size);
    if (color !== this.color) this.pdf.fillColor(color);
    this.font = font;
    this.size = size;
    this.color = color;
  }

  /**
   * The width of `value` in the current font and size. Every cell is measured for layout, then for
   * alignment: pdfkit lays the string out (glyphs and kerning pairs) each time it is asked, so the
   * answer is kept for the rest of the document.
   */
  private widthOf(value: string, characterSpacing = 0): number {
    const key = `${this.font}\u0000${this.size}\u0000${characterSpacing}\u0000${value}`;
    let width = this.widths.get(key);
    if (width === undefined) {
      width = this.pdf.widthOfString(value, characterSpacing ? { characterSpacing } : {});
      this.widths.set(key, width);
    }
    return width;
  }

  private measure(value: string, s: TextStyle & { width: number; lineGap?: number }): number {
    this.style(s);
    if (this.fitsOnOneLine(value, s.width)) return this.pdf.currentLineHeight(true) + (s.lineGap ?? 0);
    return this.pdf.heightOfString(value, { width: s.width, ...(s.lineGap === undefined ? {} : { lineGap: s.lineGap }) });
  }

  /**
   * Draws text at (x, y) and returns the height it took. Most cells are one short line: those are
   * placed directly (aligned by their measured width), which skips pdfkit's line wrapper, the
   * most expensive part of rendering an invoice. Longer text wraps within `width`.
   */
  private write(
    value: string,
    x: number,
    y: number,
    s: TextStyle & { width?: number; align?: 'left' | 'right' | 'center'; characterSpacing?: number; lineBreak?: boolean; lineGap?: number },
  ): number {
    this.style(s);
    const spacing = s.characterSpacing === undefined ? {} : { characterSpacing: s.characterSpacing };
    if (s.width === undefined || s.lineBreak === false || this.fitsOnOneLine(value, s.width, s.characterSpacing)) {
      const free = s.width === undefined ? 0 : s.width - this.widthOf(value, s.characterSpacing);
      const dx = s.align === 'right' ? free : s.align === 'center' ? free / 2 : 0;
      this.pdf.text(value, x + Math.max(dx, 0), y, { lineBreak: false, ...spacing });
      return this.pdf.currentLineHeight(true) + (s.lineGap ?? 0);
    }
    const options: PDFKit.Mixins.TextOptions = { width: s.width, lineBreak: true, ...spacing };
    if (s.align) options.align = s.align;
    if (s.lineGap !== undefined) options.lineGap = s.lineGap;
    this.pdf.text(value, x, y, options);
    // pdfkit leaves its cursor below what it wrapped: measuring again would lay the text out twice.
    return this.pdf.y - y;
  }

  private fitsOnOneLine(value: string, width: number, characterSpacing = 0): boolean {
    return !value.includes('\n') && this.widthOf(value, characterSpacing) <= width;
  }
}
