// What the crash handler loads before it looks at a crash. node loads a built-in module the
// first time something requires it, and node:child_process (with node:net), node:crypto and
// node:zlib cost milliseconds each at start: the handler takes them only where a crash needs
// them (lib/builtin.ts), never as a static import of a module on its path. The real handler
// bundle is run in a mode that returns at once (a drainer with nothing to drain), and node
// itself says which built-ins it loaded (process.moduleLoadList).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HANDLER } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'fbx-startup-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the handler\'s start', () => {
  it('loads none of the heavy built-ins before a crash needs them', () => {
    const hook = join(dir, 'hook.cjs');
    const out = join(dir, 'modules.json');
    writeFileSync(hook, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify(process.moduleLoadList)));\n`);
    const config = join(dir, 'flightbox.yaml');
    writeFileSync(config, `store:\n  root: ${join(dir, 'store')}\n`);
    const r = spawnSync(process.execPath, ['-r', hook, HANDLER, '--config', config, '--drain', join(dir, 'no-such-store')], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    const loaded = JSON.parse(readFileSync(out, 'utf8')) as string[];
    // the hook itself needs node:fs; the bundle ran: its config module is loaded
    expect(loaded).toContain('NativeModule fs');
    for (const heavy of ['child_process', 'net', 'crypto', 'zlib']) expect(loaded).not.toContain(`NativeModule ${heavy}`);
  });
});
