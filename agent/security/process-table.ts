/**
 * What the sensor remembers of each process from its exec (binary, arguments,
 * parent's name), so that its opens, connects, setuid calls and exit carry
 * them too. Bounded: past MAX_PROCESSES the oldest entry goes. A process that
 * was running before the sensor started is looked up in /proc once.
 */
import { readFileSync, readlinkSync } from 'node:fs';

export interface ProcessInfo {
  exepath: string;
  args: string[];
  pname: string;
}

const MAX_PROCESSES = 32768;

export class ProcessTable {
  private readonly byPid = new Map<number, ProcessInfo>();
  private readonly max: number;
  private readonly procfs: string;

  private readonly useProc: boolean;

  /** procfs null: never look in /proc (its pids are not the kernel's, e.g. in a pod without hostPID). */
  constructor(opts: { max?: number; procfs?: string | null } = {}) {
    this.max = opts.max ?? MAX_PROCESSES;
    this.procfs = opts.procfs ?? '/proc';
    this.useProc = opts.procfs !== null;
  }

  /** Records a process's new image (an exec replaces what was there). */
  exec(pid: number, info: ProcessInfo): void {
    this.byPid.delete(pid);
    this.byPid.set(pid, info);
    if (this.byPid.size > this.max) this.byPid.delete(this.byPid.keys().next().value!);
  }

  /** What is known of pid: from its exec, else from /proc (then remembered); null when gone and never seen. */
  get(pid: number): ProcessInfo | null {
    const known = this.byPid.get(pid);
    if (known || !this.useProc) return known ?? null;
    try {
      const exepath = readlinkSync(`${this.procfs}/${pid}/exe`);
      const args = readFileSync(`${this.procfs}/${pid}/cmdline`, 'utf8').split('\0');
      if (args.at(-1) === '') args.pop();
      const info = { exepath, args, pname: '' };
      this.exec(pid, info);
      return info;
    } catch {
      return null;
    }
  }

  /** Forgets pid (it exited). */
  exit(pid: number): void {
    this.byPid.delete(pid);
  }

  get size(): number {
    return this.byPid.size;
  }
}
