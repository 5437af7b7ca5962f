import { execFile } from 'node:child_process';

/**
 * The text of a PDF as poppler's pdftotext reads it (`-layout`, the default, keeps each printed
 * line on one line); pages are separated by form feeds. Used to check what a rendered invoice says with a reader that is not the writer, the way
 * a customer's viewer or an accounting system's import would read it. Needs poppler-utils.
 */
export function pdfText(pdf: Buffer, opts: { layout?: boolean; pdftotext?: string; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      opts.pdftotext ?? 'pdftotext',
      // -raw (content order) also finds rotated text, which -layout leaves out.
      [opts.layout === false ? '-raw' : '-layout', '-enc', 'UTF-8', '-', '-'],
      { encoding: 'utf8', timeout: opts.timeoutMs ?? 20_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`pdftotext could not read the PDF (${pdf.length} bytes): ${stderr.trim() || err.message}`));
        else resolve(stdout);
      },
    );
    child.stdin?.end(pdf);
  });
}
