// The browser entry: src/browser/index.ts bundled into one ESM file, lib/otlm.browser.js, with no
// Node built-ins. Modules that need Node (the addon loader, the .wasm file reader, the model
// files, the package directory, the tfjs path) are swapped for the stand-ins in src/browser/.
// Run by `npm run build:ts`.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const swap = {
  'src/native/loader.ts': 'src/browser/loader.ts',
  'src/native/wasm-node.ts': 'src/browser/wasm-loader.ts',
  'src/native/package-root.ts': 'src/browser/package-root.ts',
  'src/train/model-file.ts': 'src/browser/model-file.ts',
  'src/paths/tfjs/index.ts': 'src/browser/tfjs.ts',
};
const byPath = new Map(Object.entries(swap).map(([from, to]) => [join(root, from), join(root, to)]));

const browserSwap = {
  name: 'otlm-browser-swap',
  setup(b) {
    b.onResolve({ filter: /\.js$/ }, (args) => {
      if (!args.path.startsWith('.')) return undefined;
      const ts = resolve(args.resolveDir, args.path).replace(/\.js$/, '.ts');
      const to = byPath.get(ts);
      return to ? { path: to } : undefined;
    });
  },
};

const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
const result = await build({
  entryPoints: [join(root, 'src/browser/index.ts')],
  outfile: join(root, 'lib/otlm.browser.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: true,
  metafile: true,
  define: { __OTLM_VERSION__: JSON.stringify(version) },
  plugins: [browserSwap],
  logLevel: 'warning',
});
// Fail the build if a Node built-in slipped in (a new import of node:* from the entry's graph).
const nodeImports = Object.values(result.metafile.inputs).flatMap((i) => i.imports.filter((x) => x.path.startsWith('node:')));
if (nodeImports.length) {
  console.error(`build-browser: the bundle imports Node built-ins: ${nodeImports.map((x) => x.path).join(', ')}`);
  process.exit(1);
}
