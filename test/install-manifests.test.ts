/**
 * The install/ manifests as a security reviewer reads them (issue 31): every
 * container drops all capabilities and adds back only what it needs, each
 * with its reason beside it; the runtime's default seccomp profile; no
 * privilege escalation where a container is not privileged; the one
 * privileged container does the bpffs mount and nothing else, with its
 * reason; the image named by digest. Also the rules Kubernetes 1.20's API
 * validation applies to these fields, so `kubectl apply` cannot refuse them.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { V1Container, V1DaemonSet, V1PodSpec, V1SecurityContext } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { isMap, isScalar, isSeq, parseAllDocuments, type Document } from 'yaml';
import { isBpffs } from '../datapath/bpffs.ts';
import { installCniCommand } from '../install/install-cni.ts';
import { imageRefOf, pinImageDigest, repositoryOf } from '../tools/image.ts';

const INSTALL = path.join(import.meta.dirname, '..', 'install');
const DAEMONSET = path.join(INSTALL, '30-daemonset.yaml');

/** What each container may add, and no more: a new capability is a decision, made here too. */
const ALLOWED_CAPABILITIES: Record<string, string[]> = {
  'install-cni': [],
  agent: ['BPF', 'PERFMON', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_PTRACE'],
};
/** The only container that may be privileged, and what it may run. */
const PRIVILEGED = { name: 'mount-bpffs', command: ['/usr/bin/sluice', 'install-cni', '--mount-bpffs', '/sys/fs/bpf', '--bpffs-only'] };

function documents(file: string): Document[] {
  const docs = parseAllDocuments(fs.readFileSync(file, 'utf8'));
  if (!Array.isArray(docs)) throw new Error(`${file}: not a YAML stream`);
  for (const d of docs) if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
  return docs;
}

function daemonSetDocument(): Document {
  const doc = documents(DAEMONSET).find((d) => (d.toJS() as { kind?: string } | null)?.kind === 'DaemonSet');
  if (!doc) throw new Error(`${DAEMONSET}: no DaemonSet`);
  return doc;
}

const podSpec = (doc: Document): V1PodSpec => (doc.toJS() as V1DaemonSet).spec!.template.spec!;
const allContainers = (spec: V1PodSpec): V1Container[] => [...(spec.initContainers ?? []), ...spec.containers];
const sc = (c: V1Container): V1SecurityContext => c.securityContext ?? {};

/** The comment a scalar carries (same line, or the lines above it), '' when none. */
function commentOf(node: unknown): string {
  if (!isScalar(node)) return '';
  return `${node.commentBefore ?? ''} ${node.comment ?? ''}`.trim();
}

/** The comment of a key of the map at mapPath: the lines above the key, and after its value. */
function keyComment(doc: Document, mapPath: (string | number)[], key: string): string {
  const map = doc.getIn(mapPath, true);
  if (!isMap(map)) return '';
  const i = map.items.findIndex((p) => isScalar(p.key) && p.key.value === key);
  if (i < 0) return '';
  // Lines above a map's first key belong to the map itself in yaml's tree.
  const above = i === 0 ? (map.commentBefore ?? '') : '';
  return `${above} ${commentOf(map.items[i]!.key)} ${commentOf(map.items[i]!.value)}`.trim();
}

/** The YAML node at a path of keys and indexes, for its comments. */
function nodeAt(doc: Document, keys: (string | number)[]): unknown {
  return doc.getIn(keys, true);
}

function containerPath(doc: Document, name: string): (string | number)[] {
  const spec = podSpec(doc);
  const init = (spec.initContainers ?? []).findIndex((c) => c.name === name);
  if (init >= 0) return ['spec', 'template', 'spec', 'initContainers', init];
  return ['spec', 'template', 'spec', 'containers', spec.containers.findIndex((c) => c.name === name)];
}

describe('install/ manifests', () => {
  it('every file parses as Kubernetes objects, each with apiVersion, kind and a name', () => {
    const files = fs.readdirSync(INSTALL).filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThanOrEqual(4);
    for (const f of files) {
      for (const d of documents(path.join(INSTALL, f))) {
        const o = d.toJS() as { apiVersion?: string; kind?: string; metadata?: { name?: string } };
        expect(o.apiVersion, f).toBeTruthy();
        expect(o.kind, f).toBeTruthy();
        expect(o.metadata?.name, f).toBeTruthy();
      }
    }
  });

  it('every container runs under the runtime default seccomp profile', () => {
    const spec = podSpec(daemonSetDocument());
    for (const c of allContainers(spec)) {
      const profile = sc(c).seccompProfile ?? spec.securityContext?.seccompProfile;
      expect(profile?.type, c.name).toBe('RuntimeDefault');
    }
  });

  it('every container that is not privileged drops ALL, adds only its own capabilities, each with its reason beside it', () => {
    const doc = daemonSetDocument();
    const unprivileged = allContainers(podSpec(doc)).filter((c) => sc(c).privileged !== true);
    expect(unprivileged.map((c) => c.name).sort()).toEqual(Object.keys(ALLOWED_CAPABILITIES).sort());
    for (const c of unprivileged) {
      const caps = sc(c).capabilities;
      // Kubernetes' spelling; and the API refuses `CAP_SYS_ADMIN` beside allowPrivilegeEscalation: false.
      for (const cap of [...(caps?.add ?? []), ...(caps?.drop ?? [])]) expect(cap, c.name).not.toMatch(/^CAP_/);
      expect(caps?.drop, c.name).toEqual(['ALL']);
      expect([...(caps?.add ?? [])].sort(), c.name).toEqual([...ALLOWED_CAPABILITIES[c.name]!].sort());
      const added = nodeAt(doc, [...containerPath(doc, c.name), 'securityContext', 'capabilities', 'add']);
      if (caps?.add?.length) {
        expect(isSeq(added), `${c.name}: one capability a line, so each has its comment`).toBe(true);
        if (!isSeq(added)) continue;
        for (const item of added.items) expect(commentOf(item).length, `${c.name}: why ${String(isScalar(item) ? item.value : item)}?`).toBeGreaterThan(20);
      }
    }
  });

  it('every container that is not privileged forbids privilege escalation and has a read-only root', () => {
    for (const c of allContainers(podSpec(daemonSetDocument())).filter((x) => sc(x).privileged !== true)) {
      expect(sc(c).allowPrivilegeEscalation, c.name).toBe(false);
      expect(sc(c).readOnlyRootFilesystem, c.name).toBe(true);
    }
  });

  it('the one privileged container only mounts bpffs, and says why it must be privileged', () => {
    const doc = daemonSetDocument();
    const privileged = allContainers(podSpec(doc)).filter((c) => sc(c).privileged === true);
    expect(privileged.map((c) => c.name)).toEqual([PRIVILEGED.name]);
    const c = privileged[0]!;
    expect(c.command).toEqual(PRIVILEGED.command);
    expect(c.args ?? []).toEqual([]);
    // Of the host, only /sys/fs/bpf; the cache is the pod's own emptyDir (checked below).
    expect(c.volumeMounts?.map((m) => m.name).sort()).toEqual(['bpffs', 'cache']);
    const why = keyComment(doc, [...containerPath(doc, c.name), 'securityContext'], 'privileged');
    expect(why).toMatch(/Bidirectional/);
    // Kubernetes refuses allowPrivilegeEscalation: false beside privileged: true.
    expect(sc(c).allowPrivilegeEscalation).toBeUndefined();
  });

  it('every container writes the executable\'s native addons to an emptyDir at /var/cache/sluice (its root is read-only)', () => {
    const spec = podSpec(daemonSetDocument());
    for (const c of allContainers(spec)) {
      const cache = c.volumeMounts?.find((m) => m.mountPath === '/var/cache/sluice');
      expect(cache, `${c.name}: without it, sluice cannot load koffi on a read-only root`).toBeDefined();
      expect(cache!.readOnly ?? false).toBe(false);
      expect(spec.volumes?.find((v) => v.name === cache!.name)?.emptyDir, c.name).toBeDefined();
    }
  });

  it('Bidirectional mount propagation only where the container is privileged (Kubernetes validation)', () => {
    for (const c of allContainers(podSpec(daemonSetDocument()))) {
      for (const m of c.volumeMounts ?? []) if (m.mountPropagation === 'Bidirectional') expect(sc(c).privileged, `${c.name} ${m.name}`).toBe(true);
    }
  });

  it('every container names the image by digest, the same image, whose tag tools/image.ts builds', () => {
    const containers = allContainers(podSpec(daemonSetDocument()));
    const images = new Set(containers.map((c) => c.image));
    expect(images.size).toBe(1);
    const [image] = [...images];
    expect(image).toMatch(/^\S+:[^\s@/:]+@sha256:[0-9a-f]{64}$/);
    expect(`${imageRefOf(DAEMONSET)}@`).toBe(image!.slice(0, image!.indexOf('@') + 1));
  });
});

describe('make image: pinning the digest into the manifest', () => {
  const digest = (c: string) => `sha256:${c.repeat(64)}`;
  const manifest = [
    'containers:',
    '  - name: a',
    '    image: localhost/sluice:0.1.0',
    '  - image: "localhost/sluice:0.1.0@' + digest('a') + '"',
    '    name: b',
    '  - name: other',
    '    image: k8s.gcr.io/pause:3.2',
    '',
  ].join('\n');

  it('sets every image of the repository to REPO:TAG@DIGEST, a pinned one too, and leaves other images alone', () => {
    const pinned = pinImageDigest(manifest, 'localhost/sluice:0.1.0', digest('b'));
    expect(pinned.match(/image: .*/g)).toEqual([`image: localhost/sluice:0.1.0@${digest('b')}`, `image: localhost/sluice:0.1.0@${digest('b')}`, 'image: k8s.gcr.io/pause:3.2']);
    expect(pinImageDigest(pinned, 'localhost/sluice:0.1.0', digest('b'))).toBe(pinned);
  });

  it('reads the reference back without its digest, and a registry port is not a tag', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-install-manifests-'));
    try {
      const file = path.join(dir, 'ds.yaml');
      fs.writeFileSync(file, pinImageDigest(manifest, 'localhost/sluice:0.1.0', digest('c')));
      expect(imageRefOf(file)).toBe('localhost/sluice:0.1.0');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(repositoryOf('registry:5000/sluice:0.1.0')).toBe('registry:5000/sluice');
    expect(repositoryOf('registry:5000/sluice')).toBe('registry:5000/sluice');
    expect(repositoryOf(`localhost/sluice@${digest('d')}`)).toBe('localhost/sluice');
  });

  it('refuses what is not a sha256 digest', () => {
    expect(() => pinImageDigest(manifest, 'localhost/sluice:0.1.0', 'sha256:xyz')).toThrow(/not a sha256 digest/);
  });
});

describe('sluice install-cni --bpffs-only (the privileged init step)', () => {
  it('refuses to run without --mount-bpffs', async () => {
    expect(await installCniCommand(['--bpffs-only'])).toBe(2);
  });

  // Where /sys/fs/bpf is bpffs already the mount is a no-op, so this needs no root and changes nothing.
  it.skipIf(!isBpffs('/sys/fs/bpf'))('mounts and copies nothing else: no plugin lands in the bin directory', async () => {
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-install-cni-'));
    try {
      expect(await installCniCommand(['--mount-bpffs', '/sys/fs/bpf', '--bpffs-only', '--bin-dir', bin, '--source', '/nonexistent/sluice-cni'])).toBe(0);
      expect(fs.readdirSync(bin)).toEqual([]);
    } finally {
      fs.rmSync(bin, { recursive: true, force: true });
    }
  });
});

describe('the agent without kube-proxy (issue 17)', () => {
  const agent = () => podSpec(daemonSetDocument()).containers.find((c) => c.name === 'agent')!;

  it('takes the API server address from ConfigMap sluice-kube-apiserver when there is one', () => {
    const env = Object.fromEntries((agent().env ?? []).map((e) => [e.name, e]));
    for (const [name, key] of [['KUBERNETES_SERVICE_HOST', 'host'], ['KUBERNETES_SERVICE_PORT', 'port']] as const) {
      expect(env[name]?.valueFrom?.configMapKeyRef).toMatchObject({ name: 'sluice-kube-apiserver', key });
    }
  });

  // Optional: without the ConfigMap the kubelet's own KUBERNETES_SERVICE_* (the ClusterIP, via kube-proxy) stay, and
  // a cluster that keeps kube-proxy installs unchanged. A required reference would keep the agent from starting there.
  it('every ConfigMap or Secret the agent reads into its environment is optional', () => {
    for (const e of agent().env ?? []) {
      const ref = e.valueFrom?.configMapKeyRef ?? e.valueFrom?.secretKeyRef;
      if (ref) expect(ref.optional, e.name).toBe(true);
    }
  });
});
