/** The agent's log: one line per event on stderr, with a timestamp. */
export function log(message: string): void {
  process.stderr.write(`${new Date().toISOString()} sluice-agent: ${message}\n`);
}
