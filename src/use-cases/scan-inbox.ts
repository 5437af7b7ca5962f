import { listDrops, moveInto, storedPath } from '../../adapters/inbox/inbox-store';
import type { Deps } from '../deps';
import { type RegisteredFile, registerFile, reserveFileId } from './register-file';

/**
 * Claims every settled file in the partner folders and registers it. The claim is an atomic rename
 * into processing/, so when several scanners race for a file exactly one wins; the losers see it
 * vanish and move on.
 */
export async function scanInbox(deps: Deps): Promise<RegisteredFile[]> {
  // Settling is about the file system, so it is measured with the file system's clock, not billing time.
  const drops = await listDrops(deps.config.inboxDir, deps.config.inbox.settleMs, Date.now());
  const registered: RegisteredFile[] = [];
  for (const drop of drops) {
    const fileId = await reserveFileId(deps);
    const relative = storedPath('processing', drop.partnerCode, fileId, drop.name);
    if (!(await moveInto(deps.config.inboxDir, drop.absolutePath, relative))) continue;
    registered.push(await registerFile(deps, { fileId, partnerCode: drop.partnerCode, name: drop.name, relative, source: 'inbox' }));
  }
  return registered;
}
