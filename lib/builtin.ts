// Node's heavier built-in modules, loaded on first use. The core_pattern handler holds the
// crashed process until the core is read, and a static import of node:child_process, node:net
// or node:crypto costs 1-5 ms each at start even when the crash never needs them (a statically
// imported node:fs in an ES module also loads its stream classes). Modules on the handler's
// path before the release take these through here, where they are needed.
import { createRequire } from 'node:module';

interface Builtins {
  'node:child_process': typeof import('node:child_process');
  'node:crypto': typeof import('node:crypto');
  'node:net': typeof import('node:net');
}

const load = createRequire(import.meta.url);

export function builtin<K extends keyof Builtins>(name: K): Builtins[K] {
  return load(name) as Builtins[K];
}
