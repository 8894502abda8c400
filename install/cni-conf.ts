/**
 * The node's CNI network config for Sluice: written atomically (see atomic-file.ts:
 * the runtime never reads half a file) once the agent is ready,
 * removed when Sluice is uninstalled so the node goes NotReady instead of
 * half-working.
 */
import fs from 'node:fs';
import { writeFileAtomic } from './atomic-file.ts';

export { writeFileAtomic };

/** The conflist used when no template is given: the sluice plugin alone. */
export const DEFAULT_CONFLIST = { cniVersion: '1.0.0', name: 'sluice', plugins: [{ type: 'sluice' }] };

/** Reads a conflist template (JSON); throws with the file name when it is not a conflist. */
export function readConflistTemplate(file: string | undefined): Record<string, unknown> {
  if (!file) return DEFAULT_CONFLIST;
  const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  if (!Array.isArray(parsed.plugins) || typeof parsed.name !== 'string') throw new Error(`${file}: a CNI conflist needs "name" and "plugins"`);
  return parsed;
}

/** Writes the conflist (atomically); true when it changed. */
export function writeConflist(file: string, conflist: Record<string, unknown>): boolean {
  return writeFileAtomic(file, `${JSON.stringify(conflist, null, 2)}\n`);
}

/** Removes the conflist; false when it was not there. */
export function removeConflist(file: string): boolean {
  try {
    fs.unlinkSync(file);
    return true;
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
