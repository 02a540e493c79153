// The one-file copy of the yaml package that the build makes (dist/vendor/yaml.cjs) parses
// as the package does, and the built code loads it (not the package's ~60 files).
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultsYaml } from '../../lib/config.js';
import { ROOT } from '../helpers.js';

const req = createRequire(import.meta.url);
type Yaml = typeof import('yaml');

describe('the vendored yaml', () => {
  const vendored = req(join(ROOT, 'dist/vendor/yaml.cjs')) as Yaml;
  const pkg = req('yaml') as Yaml;

  it('parses the default config exactly as the package does', () => {
    const text = defaultsYaml();
    expect(text.length).toBeGreaterThan(500);
    expect(vendored.parse(text)).toEqual(pkg.parse(text));
  });

  it('reports the same errors at the same places', () => {
    const text = 'store:\n  root: /x\n  root: /y\ncore: [unclosed\n';
    const lc1 = new vendored.LineCounter();
    const lc2 = new pkg.LineCounter();
    const d1 = vendored.parseDocument(text, { lineCounter: lc1, uniqueKeys: true, prettyErrors: false });
    const d2 = pkg.parseDocument(text, { lineCounter: lc2, uniqueKeys: true, prettyErrors: false });
    expect(d1.errors.length).toBeGreaterThan(0);
    expect(d1.errors.map((e) => [e.code, lc1.linePos(e.pos[0]).line])).toEqual(d2.errors.map((e) => [e.code, lc2.linePos(e.pos[0]).line]));
  });

  it('is what the built code loads', async () => {
    const built = (await import(join(ROOT, 'dist/lib/yaml.js'))) as { vendoredYamlPath(): string | null; loadYaml(): Yaml };
    expect(built.vendoredYamlPath()).toBe(join(ROOT, 'dist/vendor/yaml.cjs'));
    expect(built.loadYaml()).toBe(vendored);
  });
});
