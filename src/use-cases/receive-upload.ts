import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { feedAdapters, formatForFileName } from '../../adapters/formats/registry';
import { resolveInside, safeFileName, storedPath } from '../../adapters/inbox/inbox-store';
import type { Deps } from '../deps';
import { type RegisteredFile, registerFile, reserveFileId } from './register-file';

export class UploadRefused extends Error {
  constructor(
    readonly status: 400 | 404 | 413 | 415,
    message: string,
  ) {
    super(message);
  }
}

/** Names that could escape the inbox or hide as something else are refused, not cleaned up. */
export function checkUploadName(name: string): void {
  // eslint-disable-next-line no-control-regex
  if (name.length === 0 || name.length > 200 || /[/\\\u0000-\u001f\u007f]/.test(name) || name === '.' || name === '..' || name.startsWith('.')) {
    throw new UploadRefused(400, `file name ${JSON.stringify(name)} is not allowed: no paths, control characters or leading dots`);
  }
}

/**
 * Stores an uploaded feed exactly as an inbox drop would be stored, streaming it to disk (never
 * held in memory) and stopping at the size limit, then registers it and queues its ingest.
 */
export async function receiveUpload(
  deps: Deps,
  input: { partnerCode: string; name: string; format?: string; body: ReadableStream<Uint8Array> | Readable; maxBytes: number; supersedes?: number },
): Promise<RegisteredFile> {
  checkUploadName(input.name);
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(input.partnerCode)) throw new UploadRefused(400, `partner code ${JSON.stringify(input.partnerCode)} is not valid`);
  const partner = await deps.db('partners').where('code', input.partnerCode).first<{ id: string } | undefined>('id');
  if (!partner) throw new UploadRefused(404, `unknown partner "${input.partnerCode}"`);

  let name = safeFileName(input.name);
  if (input.format !== undefined) {
    const adapter = feedAdapters.find((a) => a.format === input.format);
    if (!adapter) throw new UploadRefused(415, `unknown format "${input.format}"; known: ${feedAdapters.map((a) => a.format).join(', ')}`);
    if (formatForFileName(name) !== adapter.format) name = `${name}.${adapter.extensions[0] ?? adapter.format}`;
  } else if (!formatForFileName(name)) {
    throw new UploadRefused(415, `cannot tell the format of ${JSON.stringify(name)}: give format=csv or format=xml, or a .csv/.xml name`);
  }

  const fileId = await reserveFileId(deps);
  const relative = storedPath('processing', input.partnerCode, fileId, name);
  const target = resolveInside(deps.config.inboxDir, relative);
  const temp = `${target}.upload.tmp`;
  await mkdir(path.dirname(target), { recursive: true });
  let bytes = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      if (bytes > input.maxBytes) done(new UploadRefused(413, `upload is larger than the limit of ${input.maxBytes} bytes`));
      else done(null, chunk);
    },
  });
  const source = input.body instanceof Readable ? input.body : Readable.fromWeb(input.body);
  try {
    await pipeline(source, limit, createWriteStream(temp, { flags: 'wx' }));
    await rename(temp, target);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  return registerFile(deps, { fileId, partnerCode: input.partnerCode, name, relative, source: 'api', ...(input.supersedes ? { supersedes: input.supersedes } : {}) });
}
