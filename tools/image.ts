/**
 * Builds an OCI image archive with no registry and no container engine: a
 * root filesystem of the given files plus the shared libraries they need
 * (resolved with ldd from this Debian host, with an ld.so.cache), one
 * uncompressed layer tar, and the OCI config, manifest, index and layout
 * written here. `ctr -n k8s.io images import FILE` loads it under --ref and
 * under REPO@DIGEST (the manifest's digest), the name a pull would also
 * create, so a pod that names the image by digest finds it without a registry.
 * --pin-into rewrites the image: fields of a Kubernetes manifest to
 * REPO:TAG@DIGEST, so the image cannot change under a running node.
 *
 * usage: node tools/image.ts --out FILE (--ref REF | --ref-from MANIFEST.yaml) [--pin-into MANIFEST.yaml]...
 *          [--add SRC:DEST]... [--lib SRC]... [--ldd SRC]... [--symlink LINK=TARGET]...
 *          [--dir PATH]... [--entrypoint PATH] [--cmd ARG]...
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

/** An `image:` field of a YAML manifest: its reference up to any `@digest`, and the digest. */
const IMAGE_FIELD = /^(\s*-?\s*image:\s*)["']?([^\s"'@]+)(@sha256:[0-9a-f]{64})?["']?/gm;

/** The image reference (REPO:TAG, without a pinned digest) in a manifest's first `image:` field (install/ is the source of truth). */
export function imageRefOf(manifestFile: string): string {
  const m = new RegExp(IMAGE_FIELD.source, 'm').exec(fs.readFileSync(manifestFile, 'utf8'));
  if (!m) throw new Error(`${manifestFile}: no image: field`);
  return m[2]!;
}

/** The repository of a reference: REPO of REPO:TAG or REPO@DIGEST (a registry's :port is not a tag). */
export function repositoryOf(ref: string): string {
  const name = ref.split('@')[0]!;
  const colon = name.lastIndexOf(':');
  return colon > name.lastIndexOf('/') ? name.slice(0, colon) : name;
}

/** The manifest text with every `image:` of ref's repository set to ref@digest (other images untouched). */
export function pinImageDigest(manifest: string, ref: string, digest: string): string {
  if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new Error(`not a sha256 digest: ${digest}`);
  const repo = repositoryOf(ref);
  return manifest.replace(IMAGE_FIELD, (field, prefix: string, found: string) => (repositoryOf(found) === repo ? `${prefix}${ref}@${digest}` : field));
}

/** The shared libraries (resolved paths) an ELF file loads, per ldd; [] for a static file. */
function sharedLibraries(file: string): string[] {
  let out: string;
  try {
    out = execFileSync('ldd', [file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return []; // "not a dynamic executable"
  }
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]!);
  }
  return libs;
}

function sha256(file: string): { digest: string; size: number } {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(1 << 20);
  let size = 0;
  for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; size += n) hash.update(buf.subarray(0, n));
  fs.closeSync(fd);
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

function writeBlob(blobs: string, contents: string): { digest: string; size: number } {
  const digest = createHash('sha256').update(contents).digest('hex');
  fs.writeFileSync(path.join(blobs, digest), contents);
  return { digest: `sha256:${digest}`, size: Buffer.byteLength(contents) };
}

function copyInto(root: string, src: string, dest: string, mode?: number): void {
  const target = path.join(root, dest);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.copyFileSync(fs.realpathSync(src), target);
  fs.chmodSync(target, mode ?? fs.statSync(fs.realpathSync(src)).mode & 0o7777);
}

function main(): void {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      ref: { type: 'string' },
      'ref-from': { type: 'string' },
      'pin-into': { type: 'string', multiple: true, default: [] },
      add: { type: 'string', multiple: true, default: [] },
      lib: { type: 'string', multiple: true, default: [] },
      ldd: { type: 'string', multiple: true, default: [] },
      symlink: { type: 'string', multiple: true, default: [] },
      dir: { type: 'string', multiple: true, default: [] },
      entrypoint: { type: 'string' },
      cmd: { type: 'string', multiple: true, default: [] },
    },
  });
  const ref = values.ref ?? (values['ref-from'] ? imageRefOf(values['ref-from']) : undefined);
  if (!values.out || !ref) throw new Error('usage: image.ts --out FILE (--ref REF | --ref-from MANIFEST) [--add SRC:DEST]...');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-image-'));
  try {
    const root = path.join(work, 'rootfs');
    for (const d of ['etc', 'tmp', 'var/cache', 'run', 'proc', 'sys', 'dev', ...values.dir]) fs.mkdirSync(path.join(root, d), { recursive: true });
    fs.chmodSync(path.join(root, 'tmp'), 0o1777);
    fs.writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n');
    fs.writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');

    const elves: string[] = [...values.lib, ...values.ldd];
    for (const spec of values.add) {
      const i = spec.lastIndexOf(':');
      if (i <= 0) throw new Error(`--add ${spec}: expected SRC:DEST`);
      copyInto(root, spec.slice(0, i), spec.slice(i + 1));
      elves.push(spec.slice(0, i));
    }
    // Libraries keep the path ldd reports (and their soname): the loader and dlopen find them there.
    const libs = new Set<string>(values.lib);
    for (const f of elves) for (const l of sharedLibraries(f)) libs.add(l);
    for (const l of [...libs]) for (const dep of sharedLibraries(l)) libs.add(dep);
    for (const l of libs) copyInto(root, l, l);
    for (const spec of values.symlink) {
      const [link, target] = spec.split('=');
      if (!link || !target) throw new Error(`--symlink ${spec}: expected LINK=TARGET`);
      fs.mkdirSync(path.dirname(path.join(root, link)), { recursive: true });
      fs.symlinkSync(target, path.join(root, link));
    }
    if (libs.size > 0) {
      const dirs = [...new Set([...libs].map((l) => path.dirname(l)))].sort();
      fs.writeFileSync(path.join(root, 'etc/ld.so.conf'), `${dirs.join('\n')}\n`);
      execFileSync('ldconfig', ['-r', root], { stdio: 'inherit' });
    }

    const oci = path.join(work, 'oci');
    const blobs = path.join(oci, 'blobs', 'sha256');
    fs.mkdirSync(blobs, { recursive: true });
    const layerTmp = path.join(work, 'layer.tar');
    execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-cf', layerTmp, '-C', root, '.']);
    const layer = sha256(layerTmp);
    fs.renameSync(layerTmp, path.join(blobs, layer.digest.slice('sha256:'.length)));

    const config = writeBlob(
      blobs,
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        created: '1970-01-01T00:00:00Z',
        config: {
          Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
          ...(values.entrypoint ? { Entrypoint: [values.entrypoint] } : {}),
          ...(values.cmd.length > 0 ? { Cmd: values.cmd } : {}),
        },
        rootfs: { type: 'layers', diff_ids: [layer.digest] },
        history: [{ created: '1970-01-01T00:00:00Z', created_by: 'sluice tools/image.ts' }],
      }),
    );
    const manifest = writeBlob(
      blobs,
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
      }),
    );
    const tag = ref.includes(':', ref.lastIndexOf('/')) ? ref.slice(ref.lastIndexOf(':') + 1) : 'latest';
    fs.writeFileSync(path.join(oci, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    const platform = { architecture: 'amd64', os: 'linux' };
    const manifestDescriptor = { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, platform };
    const byDigest = `${repositoryOf(ref)}@${manifest.digest}`;
    fs.writeFileSync(
      path.join(oci, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          { ...manifestDescriptor, annotations: { 'io.containerd.image.name': ref, 'org.opencontainers.image.ref.name': tag } },
          // The name a pull creates too: CRI resolves REPO:TAG@DIGEST (as REPO@DIGEST) and REPO@DIGEST by it.
          { ...manifestDescriptor, annotations: { 'io.containerd.image.name': byDigest } },
        ],
      }),
    );
    const out = path.resolve(values.out);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-cf', `${out}.tmp`, '-C', oci, 'oci-layout', 'index.json', 'blobs']);
    // Pinned before the archive lands, so the manifest is never newer than the image it names (make stays idle).
    for (const file of values['pin-into']) {
      const text = fs.readFileSync(file, 'utf8');
      const pinned = pinImageDigest(text, ref, manifest.digest);
      if (pinned === text) continue;
      fs.writeFileSync(`${file}.tmp`, pinned);
      fs.renameSync(`${file}.tmp`, file);
      console.error(`image ${ref}: ${file} now names ${byDigest}`);
    }
    fs.renameSync(`${out}.tmp`, out);
    console.error(`image ${byDigest} (${ref}): ${out} (${(fs.statSync(out).size / 1e6).toFixed(0)} MB, ${libs.size} libraries, layer ${layer.digest.slice(0, 19)})`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) main();
