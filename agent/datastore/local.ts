/**
 * The local datastore: a directory of ordinary Kubernetes objects, one YAML
 * file each (`<plural>/<namespace>/<name>.yaml`, or `<plural>/<name>.yaml` for
 * cluster-scoped kinds). The `sluice local` commands write it; the agent reads it.
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

/** The fields every object has. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    creationTimestamp?: string;
  };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

const PLURALS: Record<string, { plural: string; namespaced: boolean }> = {
  Pod: { plural: 'pods', namespaced: true },
  Namespace: { plural: 'namespaces', namespaced: false },
  Node: { plural: 'nodes', namespaced: false },
  NetworkPolicy: { plural: 'networkpolicies', namespaced: true },
  Service: { plural: 'services', namespaced: true },
};

function kindInfo(kind: string): { plural: string; namespaced: boolean } {
  const info = PLURALS[kind];
  if (!info) throw new Error(`the local datastore does not store kind ${kind} (it knows ${Object.keys(PLURALS).join(', ')})`);
  return info;
}

function readdirIfPresent(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** A directory of Kubernetes objects. */
export class LocalDatastore {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  private file(kind: string, name: string, namespace?: string): string {
    const info = kindInfo(kind);
    if (info.namespaced && !namespace) throw new Error(`${kind} ${name} needs a namespace`);
    return info.namespaced ? path.join(this.dir, info.plural, namespace!, `${name}.yaml`) : path.join(this.dir, info.plural, `${name}.yaml`);
  }

  /** Writes the object atomically (temp file + rename). */
  put(obj: KubeObject): void {
    const file = this.file(obj.kind, obj.metadata.name, obj.metadata.namespace);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, YAML.stringify(obj));
    fs.renameSync(tmp, file);
  }

  /** The object, or null when absent. */
  get(kind: string, name: string, namespace?: string): KubeObject | null {
    try {
      return YAML.parse(fs.readFileSync(this.file(kind, name, namespace), 'utf8')) as KubeObject;
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /** Removes the object; false when it was absent. */
  delete(kind: string, name: string, namespace?: string): boolean {
    try {
      fs.unlinkSync(this.file(kind, name, namespace));
      return true;
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /** Every object of the kind, sorted by namespace and name. */
  list(kind: string): KubeObject[] {
    const info = kindInfo(kind);
    const root = path.join(this.dir, info.plural);
    if (!fs.existsSync(root)) return [];
    const files = info.namespaced
      ? fs.readdirSync(root).flatMap((ns) => readdirIfPresent(path.join(root, ns)).map((f) => path.join(root, ns, f)))
      : fs.readdirSync(root).map((f) => path.join(root, f));
    const objects: KubeObject[] = [];
    for (const f of files.filter((name) => name.endsWith('.yaml')).sort()) {
      try {
        objects.push(YAML.parse(fs.readFileSync(f, 'utf8')) as KubeObject);
      } catch (err: unknown) {
        // Deleted between the listing and the read: it is simply gone.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    return objects;
  }
}
