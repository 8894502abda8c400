/**
 * SHA-256 of a string (UTF-8) as lowercase hex, the same digest as
 * createHash('sha256').update(text).digest('hex'). Pure JS (@noble/hashes):
 * node:crypto costs the CNI plugin tens of milliseconds to load on every
 * ADD and DEL, where it only names things.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';

/** The hex SHA-256 digest of `text` encoded as UTF-8. */
export function sha256Hex(text: string): string {
  return bytesToHex(sha256(utf8ToBytes(text)));
}
