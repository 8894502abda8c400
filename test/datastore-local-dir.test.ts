/**
 * The local datastore directory as the agent reads it: a refresh parses only
 * the files added or rewritten since the last one, forgets removed ones, and
 * says whether anything changed; the objects it gives are those of a full
 * read, in the same order.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalDirDatastore } from '../agent/datastore/datastore.ts';
import { LocalDatastore, type KubeObject } from '../agent/datastore/local.ts';

const pod = (ns: string, name: string, app: string): KubeObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { namespace: ns, name, labels: { app } }, status: { podIPs: [{ ip: '10.0.0.1' }] } });

describe('LocalDirDatastore', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  const setup = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-localdir-'));
    dirs.push(dir);
    return { dir, store: new LocalDatastore(dir), ds: new LocalDirDatastore(dir) };
  };

  it('parses only what changed, and gives what a full read gives', () => {
    const { store, ds } = setup();
    for (let i = 0; i < 50; i++) store.put(pod(`ns${i % 3}`, `p${i}`, 'a'));
    store.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns0' } });
    expect(ds.refresh()).toBe(true);
    expect(ds.lastParsed).toBe(51);
    expect(ds.objects().pods).toEqual(store.list('Pod'));
    expect(ds.objects().namespaces.map((n) => n.metadata.name)).toEqual(['ns0']);

    expect(ds.refresh()).toBe(false);
    expect(ds.lastParsed).toBe(0);

    store.put(pod('ns1', 'p7', 'b')); // rewritten
    store.put(pod('ns2', 'new', 'c')); // added
    store.delete('Pod', 'p3', 'ns0'); // removed
    expect(ds.refresh()).toBe(true);
    expect(ds.lastParsed).toBe(2);
    expect(ds.objects().pods).toEqual(store.list('Pod'));
    expect(ds.objects().pods.find((p) => p.metadata.name === 'p7')!.metadata.labels).toEqual({ app: 'b' });
    expect(ds.objects().pods.some((p) => p.metadata.name === 'p3')).toBe(false);
  });
});
