/**
 * Builds Sluice's single executables: esbuild bundles an entry point into one
 * CommonJS file, native addons and the BPF object become SEA assets, and
 * `node --build-sea` (Node 26, the pinned `node` package) writes the binary.
 *
 * usage: node tools/build-sea.ts <entry.ts> <output> [--bpf]
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as esbuild from 'esbuild';

const ROOT = path.resolve(import.meta.dirname, '..');
const BUILD_DIR = path.join(ROOT, 'dist', 'build');
const BPF_OBJECT = path.join(ROOT, 'dist', 'sluice.bpf.o');
const TRACE_OBJECT = path.join(ROOT, 'dist', 'sluice-trace.bpf.o');

/** Native addons, by the module specifier that loads them in node_modules. */
const NATIVE_ADDONS = [
  {
    specifier: '@koromix/koffi-linux-x64',
    file: path.join(ROOT, 'node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node'),
    name: 'koffi',
    // koffi's loader requires the platform package and expects the addon's exports.
    wrap: (asset: string) => `module.exports = loadNativeAsset(${JSON.stringify(asset)});`,
  },
  {
    specifier: 'node-gyp-build',
    file: path.join(ROOT, 'node_modules/netlink/prebuilds/linux-x64/node.napi.node'),
    name: 'netlink',
    // netlink calls require('node-gyp-build')(dir) and expects the addon's exports.
    wrap: (asset: string) => `module.exports = () => loadNativeAsset(${JSON.stringify(asset)});`,
  },
];

function contentHash(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex').slice(0, 16);
}

async function main(): Promise<void> {
  const [entry, output, ...flags] = process.argv.slice(2);
  if (!entry || !output) throw new Error('usage: build-sea.ts <entry.ts> <output> [--bpf]');
  const name = path.basename(output);
  fs.mkdirSync(BUILD_DIR, { recursive: true });

  const assets: Record<string, string> = {};
  const addons = NATIVE_ADDONS.map((addon) => {
    const asset = `${addon.name}-${contentHash(addon.file)}.node`;
    assets[asset] = addon.file;
    return { ...addon, asset };
  });
  if (flags.includes('--bpf')) {
    assets['sluice.bpf.o'] = BPF_OBJECT;
    assets['sluice-trace.bpf.o'] = TRACE_OBJECT;
    assets['sluice-security.bpf.o'] = path.join(ROOT, 'dist', 'sluice-security.bpf.o');
    assets['security-default-rules.yaml'] = path.join(ROOT, 'security', 'rules', 'default.yaml');
    assets['sluice-service-lb.bpf.o'] = path.join(ROOT, 'dist', 'sluice-service-lb.bpf.o');
  }

  const loader = path.join(ROOT, 'tools', 'native-asset.ts');
  const bundle = path.join(BUILD_DIR, `${name}.cjs`);
  await esbuild.build({
    entryPoints: [path.join(ROOT, entry)],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node26',
    minifyWhitespace: true,
    legalComments: 'none',
    logLevel: 'warning',
    // Embedded CommonJS has no __filename, and ESM dependencies call createRequire(import.meta.url).
    banner: {
      js: '"use strict"; var __filename = __filename || process.execPath; var __dirname = __dirname || require("node:path").dirname(__filename); var __import_meta_url = require("node:url").pathToFileURL(__filename).href;',
    },
    define: { 'import.meta.url': '__import_meta_url', 'import.meta.dirname': '__dirname' },
    plugins: [
      {
        name: 'sea-native-addons',
        setup(build) {
          // koffi's CommonJS entry requires its platform package statically, which is what we redirect.
          build.onResolve({ filter: /^koffi$/ }, () => ({ path: path.join(ROOT, 'node_modules/koffi/index.cjs') }));
          for (const addon of addons) {
            const filter = new RegExp(`^${addon.specifier.replace(/[/.@-]/g, '\\$&')}$`);
            build.onResolve({ filter }, () => ({ path: addon.asset, namespace: 'sea-native' }));
          }
          build.onLoad({ filter: /.*/, namespace: 'sea-native' }, (args) => {
            const addon = addons.find((a) => a.asset === args.path)!;
            return {
              contents: `const { loadNativeAsset } = require(${JSON.stringify(loader)});\n${addon.wrap(addon.asset)}`,
              resolveDir: ROOT,
              loader: 'js',
            };
          });
        },
      },
    ],
  });

  const seaConfig = path.join(BUILD_DIR, `${name}.sea.json`);
  fs.writeFileSync(
    seaConfig,
    JSON.stringify({
      main: bundle,
      // Written beside and renamed over: a running agent keeps its old executable.
      output: `${path.resolve(output)}.tmp`,
      disableExperimentalSEAWarning: true,
      useCodeCache: true,
      assets,
    }),
  );
  execFileSync(process.execPath, ['--build-sea', seaConfig], { stdio: 'inherit' });
  fs.renameSync(`${path.resolve(output)}.tmp`, path.resolve(output));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
