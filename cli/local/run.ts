/** Runs a system command (ip, ping) for the local cluster; rejects with its stderr. */
import { execFile } from 'node:child_process';

/** Resolves with stdout; rejects with an Error naming the command and its stderr. */
export function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}
