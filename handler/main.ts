#!/usr/bin/env node
// Entry point the kernel runs through core_pattern (via the launcher that install writes):
//   main.js [--config FILE] -- %P %i %I %u %g %s %t %c %h %d %F
//   main.js [--config FILE] --drain STORE_ROOT   (the launcher, after a storm's crash: handler/overflow.ts)
// No stdout or stderr exists here; everything goes to /dev/kmsg and the store's log.
// A broken config falls back to the defaults: a crash must still be recorded.
import { readFileSync, readdirSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { setPriority } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { DEFAULT_CONFIG_PATH, formatConfigIssue, loadConfig, type LoadedConfig } from '../lib/config.js';
import { errnoCode, messageOf } from '../lib/errors.js';
import { kmsg } from '../lib/log.js';
import { vendoredYamlPath } from '../lib/yaml.js';
import { checkSecureDir, ensureSecureDir, readSmallNoFollow, writeFileAtomic } from '../lib/safe-fs.js';
import { captureCrash } from './capture.js';
import { checkSpoolEntry, drainIncoming, incomingWaiting, loadSpooled } from './overflow.js';
import { markTaken, parentLauncher, waitForGo } from './early.js';
import { builtin } from '../lib/builtin.js';
import { Store } from '../store/store.js';
import { HANDLERS_DIR } from '../store/handler-slots.js';
import { HANDLER_RUN_DIR, overflowDir } from './run-dir.js';

/**
 * Parsed configs, so that a crash does not wait for the YAML parser: loading it and parsing
 * a config costs 60-90 ms, about as much as starting node, and every millisecond before the
 * core is read holds the crashed process. In the handler's run directory (handler/run-dir.ts);
 * an entry holds what its config holds, secrets included, and is as private (0600).
 */
const CONFIG_CACHE_DIR = HANDLER_RUN_DIR;
const CONFIG_CACHE_FORMAT = 1;
const CONFIG_CACHE_MAX_BYTES = 1024 * 1024;
/** Enough for every config of a host; the oldest go when there are more (temporary configs of tests). */
const CONFIG_CACHE_MAX_ENTRIES = 64;

interface CacheEntry {
  format: number;
  /** Identifies the code that parsed the config (see parserStamp). */
  stamp: string;
  path: string;
  explicit: boolean;
  /** The config file's exact text: the entry answers for this text only. */
  text: string;
  loaded: LoadedConfig;
}

/** A short, stable file name for a config path (FNV-1a, 32 bits; the entry holds the path itself). */
function cacheName(path: string, explicit: boolean): string {
  let h = 0x811c9dc5;
  for (const ch of `${explicit ? 1 : 0}${path}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return `config-${h.toString(16).padStart(8, '0')}.json`;
}

/**
 * The parser's identity: flightbox's config modules and the yaml package, by inode, size and
 * modification time. A build or an upgrade rewrites them, and with them every cached entry
 * becomes a miss.
 */
function parserStamp(): string {
  const files = [
    // this file: the bundle the launcher runs holds the config code itself
    fileURLToPath(import.meta.url),
    fileURLToPath(new URL('../lib/config.js', import.meta.url)),
    fileURLToPath(new URL('../lib/rules-config.js', import.meta.url)),
    yamlParserFile(),
  ];
  return files.map((f) => {
    const st = statSync(f);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  }).join(',');
}

/**
 * The YAML parser's file: the one-file copy the build makes (lib/yaml.ts), else the yaml
 * package's package.json where node resolves it.
 */
function yamlParserFile(): string {
  return vendoredYamlPath() ?? createRequire(import.meta.url).resolve('yaml/package.json');
}

interface ConfigLoad {
  loaded: LoadedConfig;
  /** Set on a miss that may be cached once the crash is captured. */
  store?: () => void;
}

/**
 * loadConfig, answered from the cache when this exact text of this file was parsed by this
 * exact code before. Anything unusual (no cache directory, not root, a relative path, a
 * file that is not there) simply goes to loadConfig: the result is always what it returns.
 */
function loadHandlerConfig(path: string, explicit: boolean): ConfigLoad {
  if (!isAbsolute(path)) return { loaded: loadConfig(path, { explicit }) };
  let text: string;
  let stamp: string;
  try {
    text = readFileSync(path, 'utf8');
    stamp = parserStamp();
  } catch {
    return { loaded: loadConfig(path, { explicit }) }; // loadConfig reports a missing file as it should
  }
  const name = cacheName(path, explicit);
  try {
    checkSecureDir(CONFIG_CACHE_DIR);
    const entry = JSON.parse(readSmallNoFollow(join(CONFIG_CACHE_DIR, name), CONFIG_CACHE_MAX_BYTES)) as CacheEntry;
    if (entry.format === CONFIG_CACHE_FORMAT && entry.stamp === stamp && entry.path === path && entry.explicit === explicit && entry.text === text) {
      return { loaded: entry.loaded };
    }
  } catch {
    // no entry, or not one to trust: parse
  }
  const loaded = loadConfig(path, { explicit });
  return {
    loaded,
    store: () => {
      // Only what survives JSON unchanged is cached, and only if the file did not change
      // while it was parsed (the entry must describe the text that was parsed).
      const entry: CacheEntry = { format: CONFIG_CACHE_FORMAT, stamp, path, explicit, text, loaded };
      const json = JSON.stringify(entry);
      if (!isDeepStrictEqual(JSON.parse(json), entry) || readFileSync(path, 'utf8') !== text || json.length > CONFIG_CACHE_MAX_BYTES) return;
      ensureSecureDir(CONFIG_CACHE_DIR, 0o700);
      writeFileAtomic(CONFIG_CACHE_DIR, name, json, 0o600);
      const names = readdirSync(CONFIG_CACHE_DIR).filter((n) => n.startsWith('config-'));
      if (names.length > CONFIG_CACHE_MAX_ENTRIES) {
        const byAge = names.map((n) => ({ n, t: statSync(join(CONFIG_CACHE_DIR, n)).mtimeMs })).sort((a, b) => a.t - b.t);
        for (const { n } of byAge.slice(0, names.length - CONFIG_CACHE_MAX_ENTRIES)) unlinkSync(join(CONFIG_CACHE_DIR, n));
      }
    },
  };
}

async function main(argv: string[]): Promise<number> {
  process.umask(0o077);
  let configPath: string | null = null;
  let i = 0;
  if (argv[i] === '--config') {
    configPath = argv[i + 1] ?? null;
    i += 2;
  }
  let drainFrom: string | null = null;
  let spooledDir: string | null = null;
  let earlyDir: string | null = null;
  if (argv[i] === '--drain') drainFrom = argv[i + 1] ?? '';
  if (argv[i] === '--early') earlyDir = argv[i + 1] ?? '';
  let prefixStatus = 0;
  if (argv[i] === '--spooled') {
    spooledDir = argv[i + 1] ?? '';
    prefixStatus = /^\d{1,3}$/.test(argv[i + 2] ?? '') ? Number(argv[i + 2]) : 0;
  }
  if (argv[i] === '--') i++;
  const kernelArgs = argv.slice(i);

  // Every valid option is honoured and each broken one falls back to its default (an
  // unparseable file means all defaults), so a typo cannot move crashes to another store.
  const { loaded, store: cacheConfig } = configPath ? loadHandlerConfig(configPath, true) : loadHandlerConfig(DEFAULT_CONFIG_PATH, false);
  const config = loaded.config;
  const configWarnings = loaded.errors.map((e) => `config option ignored, using its default: ${formatConfigIssue(e)}`);
  if (configWarnings.length > 0) kmsg(`configuration is broken, capturing with the defaults: ${configWarnings[0]}`, 4);

  let code = 0;
  if (drainFrom !== null) {
    // The launcher recorded crashes of a storm itself and exec'd into this (handler/overflow.ts).
    try {
      setPriority(10);
    } catch {
      // not fatal
    }
    try {
      const r = await drainIncoming(config, { from: isAbsolute(drainFrom) ? drainFrom : undefined });
      if (r.failed > 0) code = 1;
    } catch (err) {
      kmsg(`failed to record the crashes of a storm: ${messageOf(err)}`, 3);
      code = 1;
    }
  } else if (earlyDir !== null) {
    const r = await recordEarly(earlyDir, config, configWarnings);
    code = r.code;
    // Left to the launcher (or, the launcher gone, to a drainer): nothing more to do here.
    if (!r.took) return code;
  } else if (spooledDir !== null) {
    // The launcher copied /proc and the core's first part, and exec'd into this.
    try {
      const { args, spooled, bundleId, warnings } = loadSpooled(spooledDir, prefixStatus);
      await captureCrash(args, { config, configWarnings: [...configWarnings, ...warnings], spooled, bundleId });
      // Published: the launcher's copy has served. (On failure it stays: a drainer records
      // what it holds, with a warning, once this process is gone.)
      rmSync(spooledDir, { recursive: true, force: true });
    } catch (err) {
      kmsg(`failed to capture a crash: ${messageOf(err)}`, 3);
      code = 1;
    }
  } else {
    try {
      await captureCrash(kernelArgs, { config, configWarnings });
    } catch (err) {
      kmsg(`failed to capture a crash: ${messageOf(err)}`, 3);
      code = 1;
    }
  }
  if (drainFrom === null) {
    // The launcher's directory is on tmpfs: after a reboot, the first crash makes it (when
    // the launcher names it: a handler run by hand makes nothing).
    if (process.getuid?.() === 0 && process.env.FLIGHTBOX_SPOOL === overflowDir(config.store.root)) {
      try {
        ensureSecureDir(overflowDir(config.store.root), 0o700);
        ensureSecureDir(join(overflowDir(config.store.root), HANDLERS_DIR), 0o700);
      } catch {
        // the launcher then starts node for every crash, as without it
      }
    }
    // Crashes a storm's launchers left behind (a drainer that died, the last one of a burst):
    // one readdir when there are none.
    if (incomingWaiting(config.store.root)) {
      try {
        await drainIncoming(config);
      } catch (err) {
        kmsg(`failed to record the crashes of a storm: ${messageOf(err)}`, 3);
      }
    }
  }
  // After the capture, off the crash path: the next crash reads the parsed config.
  if (cacheConfig) {
    try {
      cacheConfig();
    } catch (err) {
      if (errnoCode(err) !== 'EACCES' && errnoCode(err) !== 'EROFS') kmsg(`could not cache the parsed configuration, ignoring: ${messageOf(err)}`, 4);
    }
  }
  return code;
}

/**
 * The node the launcher started beside its copies (handler/early.ts): it loads what every
 * capture needs (node:crypto, the bundle's modules, the store and its index) while the launcher
 * works, then records the crash once the launcher says so, as `--spooled` does. It does nothing
 * with the crash when the launcher goes away first or the entry with it (the launcher killed
 * before it wrote its word: a drainer records the entry), and nothing when it cannot say that
 * it took the crash (the launcher then records it with a node of its own).
 */
async function recordEarly(dir: string, config: LoadedConfig['config'], configWarnings: string[]): Promise<{ code: number; took: boolean }> {
  const launcher = parentLauncher();
  if (launcher === null) return { code: 0, took: false };
  try {
    checkSpoolEntry(dir);
  } catch (err) {
    // (the launcher's own node, exec'd with the same entry, says it again)
    kmsg(`not waiting beside the launcher: ${messageOf(err)}`, 4);
    return { code: 1, took: false };
  }
  let store: Store | undefined;
  try {
    builtin('node:crypto');
    await Promise.all([import('../store/manifest.js'), import('./signature.js'), import('./backtrace.js'), import('../store/compress.js')]);
    store = new Store(config.store.root, { create: true, busyTimeoutMs: config.store.busyTimeoutMs });
    store.index();
  } catch {
    // the capture opens (and reports) what could not be opened here
  }
  // (The store is opened here, while waiting, but this node records one crash: it lowers its
  // priority after the release as an exec'd node does.)
  const readyAt = Date.now();
  const status = await waitForGo(dir, launcher);
  const goAt = Date.now();
  try {
    if (status === null || !markTaken(dir)) return { code: 0, took: false };
    try {
      const { args, spooled, bundleId, warnings } = loadSpooled(dir, status, { exeFrom: launcher });
      await captureCrash(args, { config, configWarnings: [...configWarnings, ...warnings], spooled, bundleId, store, reniceAfterRelease: true, early: { launcherPid: launcher.pid, readyAt, goAt } });
      rmSync(dir, { recursive: true, force: true });
      return { code: 0, took: true };
    } catch (err) {
      kmsg(`failed to capture a crash: ${messageOf(err)}`, 3);
      return { code: 1, took: true };
    }
  } finally {
    store?.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    kmsg(`handler failed: ${messageOf(err)}`, 3);
    process.exit(1);
  },
);
