import { createReadStream } from 'node:fs';
import path from 'node:path';
import { adapterForFormat, formatForFileName } from '../../adapters/formats/registry';
import { copyInto, storedPath } from '../../adapters/inbox/inbox-store';
import type { Deps } from '../deps';
import { PermanentError } from './errors';
import { type IngestOutcome, type IngestProgress, ingestFile } from './ingest-file';
import { type RateOutcome, rateFile } from './rate-file';
import { type RegisteredFile, registerFile, reserveFileId } from './register-file';

/**
 * `billing ingest <file>`: stores a copy as an inbox drop would be stored, then ingests and rates it
 * in this process, reporting progress. The partner comes from --partner or from the file itself.
 */
export async function ingestLocalFile(
  deps: Deps,
  input: { file: string; partnerCode?: string; supersedes?: number; onProgress?: IngestProgress },
): Promise<{ registered: RegisteredFile; ingest?: IngestOutcome; rate?: RateOutcome }> {
  const name = path.basename(input.file);
  let partnerCode = input.partnerCode;
  if (!partnerCode) {
    const format = formatForFileName(name);
    const adapter = format ? adapterForFormat(format) : undefined;
    const header = adapter?.sniff ? await adapter.sniff(createReadStream(input.file), { fileName: name, maxRecordChars: deps.config.limits.maxRecordChars }) : undefined;
    partnerCode = header?.partner;
    if (!partnerCode) throw new PermanentError(`${name}: no partner given; pass --partner CODE (only XML feeds name their partner)`);
  }
  const fileId = await reserveFileId(deps);
  const relative = storedPath('processing', partnerCode, fileId, name);
  await copyInto(deps.config.inboxDir, input.file, relative);
  const registered = await registerFile(deps, { fileId, partnerCode, name, relative, source: 'cli', enqueue: false, ...(input.supersedes ? { supersedes: input.supersedes } : {}) });
  if (registered.status !== 'received') return { registered };
  const ingest = await ingestFile(deps, fileId, input.onProgress);
  if (ingest.kind !== 'parsed') return { registered, ingest };
  return { registered, ingest, rate: await rateFile(deps, fileId) };
}
