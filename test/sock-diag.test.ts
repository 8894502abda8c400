/**
 * SOCK_DESTROY through sock_diag (datapath/sock-diag.ts), on the real kernel:
 * UDP sockets connected to a given peer get ECONNABORTED, in a pod's network
 * namespace and in the caller's own; sockets connected elsewhere, and the
 * same port on another address, are left alone.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { destroyUdpSocketsTo } from '../datapath/sock-diag.ts';

const NETNS = `sluice-sd-${randomBytes(3).toString('hex')}`;
const PORT = 20_000 + (randomBytes(2).readUInt16BE(0) % 20_000);

/** Holds UDP sockets connected to each target; on a line on stdin, reports each one's state. */
const HOLDER = `
import json, socket, sys
targets = json.loads(sys.argv[1])
socks = []
for host, port in targets:
    s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    socks.append(s)
print('ready', flush=True)
sys.stdin.readline()
out = []
for s in socks:
    s.setblocking(False)
    try:
        s.recv(1)
        out.append('data')
    except BlockingIOError:
        out.append('alive')
    except ConnectionAbortedError:
        out.append('aborted')
    except OSError as e:
        out.append(e.strerror)
print(json.dumps(out), flush=True)
`;

function hold(targets: [string, number][], netns?: string): { proc: ChildProcessWithoutNullStreams; ready: Promise<void>; report: () => Promise<string[]> } {
  const args = ['python3', '-c', HOLDER, JSON.stringify(targets)];
  const proc = netns ? spawn('ip', ['netns', 'exec', netns, ...args]) : spawn(args[0]!, args.slice(1));
  let out = '';
  const lines: ((line: string) => void)[] = [];
  proc.stdout.setEncoding('utf8').on('data', (c: string) => {
    out += c;
    let i;
    while ((i = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, i);
      out = out.slice(i + 1);
      lines.shift()?.(line);
    }
  });
  const next = () => new Promise<string>((r) => lines.push(r));
  const ready = next().then((l) => expect(l).toBe('ready'));
  return {
    proc,
    ready,
    report: async () => {
      const line = next();
      proc.stdin.write('\n');
      return JSON.parse(await line) as string[];
    },
  };
}

describe('destroyUdpSocketsTo', () => {
  beforeAll(() => {
    expect(spawnSync('ip', ['netns', 'add', NETNS]).status).toBe(0);
    spawnSync('ip', ['-n', NETNS, 'link', 'set', 'lo', 'up']);
  });
  afterAll(() => {
    spawnSync('ip', ['netns', 'del', NETNS]);
  });

  it('aborts the UDP sockets connected to the peer in a pod netns, and only those', async () => {
    const h = hold([['127.0.0.1', PORT], ['127.0.0.2', PORT], ['127.0.0.1', PORT + 1], ['::1', PORT]], NETNS);
    try {
      await h.ready;
      const n = await destroyUdpSocketsTo([{ address: '127.0.0.1', port: PORT }, { address: '::1', port: PORT }], `/run/netns/${NETNS}`);
      expect(n).toBe(2);
      expect(await h.report()).toEqual(['aborted', 'alive', 'alive', 'aborted']);
    } finally {
      h.proc.kill();
    }
  });

  it("works in the caller's own namespace, and finds nothing to do when no socket matches", async () => {
    const h = hold([['127.0.0.1', PORT + 2], ['127.0.0.1', PORT + 3]]);
    try {
      await h.ready;
      expect(await destroyUdpSocketsTo([{ address: '127.0.0.1', port: PORT + 2 }])).toBe(1);
      expect(await destroyUdpSocketsTo([{ address: '127.0.0.9', port: PORT + 2 }])).toBe(0);
      expect(await h.report()).toEqual(['aborted', 'alive']);
    } finally {
      h.proc.kill();
    }
  });
});
