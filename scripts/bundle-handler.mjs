// Bundles the core_pattern handler (handler/main.ts and everything it imports from this
// project) into one CommonJS file, dist/handler/flightbox-handler-main.cjs, and its loader
// (handler/start.ts: V8's code cache for that file) into dist/handler/flightbox-handler.cjs,
// which the launcher runs; and the yaml package into dist/vendor/yaml.cjs, better-sqlite3's
// JavaScript into dist/vendor/better-sqlite3.cjs.
// Why: every millisecond before the core is read holds the crashed process, and node's ESM
// loader spends ~40 ms resolving, reading and linking some 25 modules one by one (and an ESM
// `import` of node:fs loads its stream classes too). One CommonJS file loads in one read.
// Packages (better-sqlite3, yaml) stay external: they are required lazily, after the release,
// from their one-file copies.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = join(root, 'dist/handler/flightbox-handler-main.cjs');
const startfile = join(root, 'dist/handler/flightbox-handler.cjs');

/** What every file built here shares: one CommonJS file for node 20. */
const common = { absWorkingDir: root, bundle: true, platform: 'node', format: 'cjs', target: 'node20', logLevel: 'warning' };

await build({
  ...common,
  entryPoints: ['handler/main.ts'],
  outfile,
  packages: 'external',
  // The modules find their packages and siblings relative to their own file: in the bundle
  // that is the bundle's own file.
  define: { 'import.meta.url': '__flightboxModuleUrl' },
  banner: { js: "'use strict';\nconst __flightboxModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
  legalComments: 'none',
});
await build({ ...common, entryPoints: ['handler/start.ts'], outfile: startfile, banner: { js: '#!/usr/bin/env node' }, legalComments: 'none' });
// The yaml package as one file (lib/yaml.ts loads it): loading its ~60 files one by one cost
// ~50 ms of every CLI command and every parse of the config.
await build({ ...common, entryPoints: ['yaml'], outfile: join(root, 'dist/vendor/yaml.cjs'), legalComments: 'inline' });
// better-sqlite3's JavaScript as one file, with where its addon is (store/index-db.ts loads
// both): required from node_modules its 14 files cost ~7 ms of every crash's handler in path
// resolution alone. `bindings` (its own search for the addon) stays outside: the addon is
// always named.
const addon = join(dirname(createRequire(import.meta.url).resolve('better-sqlite3/package.json')), 'build', 'Release', 'better_sqlite3.node');
await build({
  ...common,
  stdin: {
    contents: `module.exports = { Database: require('better-sqlite3'), addon: require('node:path').join(__dirname, ${JSON.stringify(relative(join(root, 'dist/vendor'), addon))}) };\n`,
    resolveDir: root,
    sourcefile: 'better-sqlite3-vendored.cjs',
  },
  outfile: join(root, 'dist/vendor/better-sqlite3.cjs'),
  external: ['bindings'],
  legalComments: 'inline',
});
chmodSync(outfile, 0o644);
chmodSync(startfile, 0o755);
