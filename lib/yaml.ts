// The yaml package, loaded on first use, from the one-file copy `npm run build` makes of it
// (dist/vendor/yaml.cjs): required from node_modules it is ~60 CommonJS files, and resolving
// and reading them one by one cost ~50 ms of every CLI command and of every parse of the
// config (66 ms against 106 ms to load here). The package itself where the copy is missing.
import { createRequire } from 'node:module';

export type Yaml = typeof import('yaml');

/** Where `npm run build` puts the one-file copy, relative to this module (or the bundle it is in). */
export const VENDORED_YAML = '../vendor/yaml.cjs';

const load = createRequire(import.meta.url);
let yaml: Yaml | undefined;

/** The path of the vendored copy, or null when there is none. */
export function vendoredYamlPath(): string | null {
  try {
    return load.resolve(VENDORED_YAML);
  } catch {
    return null;
  }
}

export function loadYaml(): Yaml {
  if (!yaml) {
    const vendored = vendoredYamlPath();
    yaml = (vendored ? load(vendored) : load('yaml')) as Yaml;
  }
  return yaml;
}
