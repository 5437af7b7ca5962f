import { createHash } from 'node:crypto';
import { createReadStream, type Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

/**
 * The inbox on disk:
 *   <inbox>/<PARTNER>/<file>                         dropped by upstream systems
 *   <inbox>/processing/<PARTNER>/<fileId>__<file>    claimed (atomic rename: one claimer wins)
 *   <inbox>/archive/<PARTNER>/<fileId>__<file>       ingested, or a duplicate
 *   <inbox>/failed/<PARTNER>/<fileId>__<file>        rejected as a whole
 * Files keep their id in the name, so an orphan found after a crash can be matched to its row.
 */
export const STAGES = ['processing', 'archive', 'failed'] as const;
export type Stage = (typeof STAGES)[number];

const PARTNER_DIR = /^[A-Za-z0-9_-]{1,64}$/;
// Upstream tools write under a temporary name and rename when done; never claim those.
const IN_PROGRESS = /(^\.)|(\.(tmp|part|partial|crdownload|swp)$)|(~$)/i;

export function isReservedPartnerCode(code: string): boolean {
  return (STAGES as readonly string[]).includes(code.toLowerCase());
}

/** A file name safe to keep on disk and show in logs: no separators, no control characters, bounded. */
export function safeFileName(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  const cleaned = base.replace(/[\u0000-\u001f\u007f]/g, '_').replace(/^\.+/, '_').slice(-200);
  return cleaned.length > 0 ? cleaned : 'unnamed';
}

export function storedPath(stage: Stage, partnerCode: string, fileId: number, name: string): string {
  return path.posix.join(stage, partnerCode, `${fileId}__${safeFileName(name)}`);
}

/** Parses a stored file's name back into its id and original name. */
export function parseStoredName(fileName: string): { fileId: number; name: string } | undefined {
  const m = /^(\d+)__(.+)$/.exec(fileName);
  return m ? { fileId: Number(m[1]), name: m[2] ?? '' } : undefined;
}

/** Resolves a path relative to the inbox and refuses anything that would escape it. */
export function resolveInside(inboxDir: string, relative: string): string {
  if (relative.includes('\0')) throw new Error('path contains a NUL byte');
  const root = path.resolve(inboxDir);
  const full = path.resolve(root, relative);
  if (full !== root && !full.startsWith(root + path.sep)) throw new Error(`path "${relative}" is outside the inbox`);
  return full;
}

export interface Drop {
  partnerCode: string;
  name: string;
  absolutePath: string;
}

/** Files waiting in partner folders that have settled (not modified for `settleMs`). */
export async function listDrops(inboxDir: string, settleMs: number, nowMs: number): Promise<Drop[]> {
  const drops: Drop[] = [];
  let dirs: Dirent[];
  try {
    dirs = await fs.readdir(inboxDir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  for (const dir of dirs) {
    if (!dir.isDirectory() || isReservedPartnerCode(dir.name) || !PARTNER_DIR.test(dir.name)) continue;
    const folder = path.join(inboxDir, dir.name);
    for (const entry of await fs.readdir(folder, { withFileTypes: true })) {
      if (!entry.isFile() || IN_PROGRESS.test(entry.name)) continue;
      const absolutePath = path.join(folder, entry.name);
      const stat = await fs.stat(absolutePath).catch(() => undefined);
      if (!stat || (settleMs > 0 && nowMs - stat.mtimeMs < settleMs)) continue;
      drops.push({ partnerCode: dir.name, name: entry.name, absolutePath });
    }
  }
  return drops.sort((a, b) => a.absolutePath.localeCompare(b.absolutePath));
}

/** Moves a file to `relative` inside the inbox. Returns false if the source vanished (someone else claimed it). */
export async function moveInto(inboxDir: string, source: string, relative: string): Promise<boolean> {
  const target = resolveInside(inboxDir, relative);
  await fs.mkdir(path.dirname(target), { recursive: true });
  try {
    await fs.rename(source, target);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** Copies a file in (CLI ingest), through a temporary name so a scanner never sees half of it. */
export async function copyInto(inboxDir: string, source: string, relative: string): Promise<void> {
  const target = resolveInside(inboxDir, relative);
  await fs.mkdir(path.dirname(target), { recursive: true });
  const temp = `${target}.${process.pid}.tmp`;
  await fs.copyFile(source, temp);
  await fs.rename(temp, target);
}

export async function hashFile(absolutePath: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  await pipeline(createReadStream(absolutePath), async function* (source: AsyncIterable<Buffer>) {
    for await (const chunk of source) {
      size += chunk.length;
      hash.update(chunk);
    }
    yield* [];
  });
  return { sha256: hash.digest('hex'), size };
}

/** Claimed files whose name carries an id, for the reconciler to match against the database. */
export async function listStage(inboxDir: string, stage: Stage): Promise<Array<{ partnerCode: string; relative: string; fileId: number; name: string; mtimeMs: number }>> {
  const root = path.join(inboxDir, stage);
  const out: Array<{ partnerCode: string; relative: string; fileId: number; name: string; mtimeMs: number }> = [];
  const partners = await fs.readdir(root, { withFileTypes: true }).catch(() => []);
  for (const p of partners) {
    if (!p.isDirectory()) continue;
    for (const f of await fs.readdir(path.join(root, p.name))) {
      const parsed = parseStoredName(f);
      if (!parsed) continue;
      const stat = await fs.stat(path.join(root, p.name, f)).catch(() => undefined);
      if (!stat) continue;
      out.push({ partnerCode: p.name, relative: path.posix.join(stage, p.name, f), ...parsed, mtimeMs: stat.mtimeMs });
    }
  }
  return out;
}

/** Finds a stored file at its recorded path, or where a move interrupted by a crash left it. */
export async function locateStored(inboxDir: string, recorded: string, partnerCode: string, fileId: number, name: string): Promise<string | undefined> {
  const candidates = [recorded, ...STAGES.map((s) => storedPath(s, partnerCode, fileId, name))];
  for (const rel of candidates) {
    const full = resolveInside(inboxDir, rel);
    if (await fs.stat(full).then((s) => s.isFile(), () => false)) return rel;
  }
  return undefined;
}
