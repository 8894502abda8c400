/**
 * `sluice install-cni`: the DaemonSet's init step. Copies the CNI plugin into
 * the node's CNI bin directory under the name the conflist uses, atomically
 * (a runtime may be executing the old copy: rename, never overwrite in place),
 * and optionally writes the conflist. The agent writes the conflist itself once
 * it is ready, so a node is Ready only when its agent is.
 *
 * The DaemonSet runs it twice: `--mount-bpffs DIR --bpffs-only` in the one
 * privileged init container (a mount the host must see needs Bidirectional
 * propagation, which Kubernetes allows only to privileged containers), then
 * the copy in an init container with no capabilities at all.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ensureBpffs } from '../datapath/bpffs.ts';
import { writeFileAtomic } from './atomic-file.ts';
import { readConflistTemplate, writeConflist } from './cni-conf.ts';

const USAGE = `usage: sluice install-cni [--source FILE] [--bin-dir DIR] [--name NAME] [--conf FILE [--conf-template FILE]]

  --source FILE         the plugin to install (default /usr/bin/sluice-cni)
  --bin-dir DIR         the node's CNI bin directory (default /opt/cni/bin)
  --name NAME           its name there, the conflist's "type" (default sluice)
  --conf FILE           also write the network config there (default: leave it to the agent)
  --conf-template FILE  the conflist to write (default: the sluice plugin alone)
  --mount-bpffs DIR     mount bpffs there unless it already is (with Bidirectional propagation: on the host)
  --bpffs-only          only that mount: copy and write nothing (the DaemonSet's privileged step)`;

/** Runs the install step; returns the exit code. */
export async function installCniCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      source: { type: 'string', default: '/usr/bin/sluice-cni' },
      'bin-dir': { type: 'string', default: '/opt/cni/bin' },
      name: { type: 'string', default: 'sluice' },
      conf: { type: 'string' },
      'conf-template': { type: 'string' },
      'mount-bpffs': { type: 'string' },
      'bpffs-only': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values['mount-bpffs']) {
    ensureBpffs(values['mount-bpffs']);
    console.error(`install-cni: bpffs at ${values['mount-bpffs']}`);
  }
  if (values['bpffs-only']) {
    if (values['mount-bpffs']) return 0;
    console.error('install-cni: --bpffs-only needs --mount-bpffs DIR');
    return 2;
  }
  const dest = path.join(values['bin-dir'], values.name);
  const changed = writeFileAtomic(dest, fs.readFileSync(values.source), 0o755);
  console.error(`install-cni: ${dest} ${changed ? 'installed' : 'already up to date'}`);
  if (values.conf) {
    const wrote = writeConflist(values.conf, readConflistTemplate(values['conf-template']));
    console.error(`install-cni: ${values.conf} ${wrote ? 'written' : 'already up to date'}`);
  }
  return 0;
}
