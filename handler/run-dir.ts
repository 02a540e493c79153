// The crash handler's own caches: a root-only directory on tmpfs (gone at boot) holding the
// parsed configs (handler/main.ts) and V8's compiled code of the handler (handler/start.ts).
// Nothing in it is trusted unless the directory is a real one of ours that no one else may
// write (lib/safe-fs checkSecureDir); every file in it is a cache that may simply be rebuilt.
export const HANDLER_RUN_DIR = '/run/flightbox';

/** Where the loader (start.ts) leaves what became of the code cache, for the manifest. */
export const CODE_CACHE_STATE = Symbol.for('flightbox.handler.codeCache');
