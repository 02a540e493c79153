// A store directory that someone else could write to (group/other write bits, another
// owner, or created first by another user in a world-writable parent) is refused: the
// crash handler, run by the real kernel, writes nothing into it and says why in the kernel
// log; the CLI exits non-zero with one sentence.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { IS_ROOT, runCli } from '../helpers.js';
import { expectOneSentence } from '../system/procs.js';
import {
  exitWithin, handlersDone, installHandler, killHandlers, kmsgMark, mkdirMode, secStore, startCrash, treeState,
  waitKmsg, type SecStore, useSecCrasher,
} from './sec-helpers.js';

const NOBODY = 65534;

function asNobody(cmd: string[]): void {
  const r = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', ...cmd], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd.join(' ')} as nobody: ${r.stderr}`);
}

interface Case {
  name: string;
  /** make the store unsafe; returns the directory that must stay untouched */
  setup(s: SecStore): string;
  /** what the kernel log and the CLI must say */
  says: RegExp;
  /** whether the CLI (which checks the root only) must refuse too */
  cli: boolean;
}

// The CLI cannot tell a symlink it may not follow (fs.protected_symlinks in a sticky
// directory) from a missing store; the sentence has to name the store either way.
const CLI_NAMES_STORE = /store \S+/;

const CASES: Case[] = [
  {
    name: 'store root chmod 0777',
    setup: (s) => { spawnSync('chmod', ['0777', s.root]); return s.root; },
    says: /store is writable by group or others \(mode 777\); refusing to use it/,
    cli: true,
  },
  {
    name: 'store root chmod 0770',
    setup: (s) => { spawnSync('chmod', ['0770', s.root]); return s.root; },
    says: /store is writable by group or others \(mode 770\); refusing to use it/,
    cli: true,
  },
  {
    name: 'store root owned by another uid (mode 0700)',
    setup: (s) => { spawnSync('chown', [`${NOBODY}:${NOBODY}`, s.root]); return s.root; },
    says: new RegExp(`store is owned by uid ${NOBODY}, not 0; refusing to use it`),
    cli: true,
  },
  {
    name: 'bundles/ chmod 0777 inside a safe root',
    setup: (s) => { mkdirMode(join(s.root, 'bundles'), 0o777); return join(s.root, 'bundles'); },
    says: /bundles is writable by group or others \(mode 777\); refusing to use it/,
    cli: false,
  },
  {
    name: 'store root created first by another user in a world-writable parent',
    setup: (s) => {
      // store.root is <dir>/pub/store, <dir>/pub is sticky and world-writable like /tmp.
      rmSync(s.root, { recursive: true });
      asNobody(['mkdir', '-m', '0700', s.root]);
      asNobody(['touch', join(s.root, 'theirs')]);
      return s.root;
    },
    says: new RegExp(`store is owned by uid ${NOBODY}, not 0; refusing to use it`),
    cli: true,
  },
  {
    name: 'store root planted by another user as a symlink to their directory',
    setup: (s) => {
      rmSync(s.root, { recursive: true });
      const theirs = join(s.dir, 'pub', 'theirs');
      asNobody(['mkdir', '-m', '0755', theirs]);
      asNobody(['ln', '-s', theirs, s.root]);
      return theirs;
    },
    says: /store is a symbolic link; refusing to use it/,
    cli: true,
  },
];

describe.skipIf(!IS_ROOT)('a store that others can write to is refused', () => {
  const crasher = useSecCrasher();
  let s: SecStore | undefined;
  let kernel: { restore(): void } | undefined;

  afterEach(async () => {
    try {
      if (s) await killHandlers(s.configPath);
    } finally {
      kernel?.restore();
      kernel = undefined;
      s?.cleanup();
      s = undefined;
    }
  });

  // Saying "does not exist yet (no crash has been recorded)" hides that every crash is refused.
  it('the CLI on a store root planted by another user as a symlink says it is a symbolic link', () => {
    s = secStore({}, { publicParent: true });
    mkdirMode(s.root, 0o700);
    CASES.find((c) => c.name.includes('symlink'))!.setup(s);
    expectOneSentence(runCli(['--config', s.configPath, 'list']), 'non-zero', /store is a symbolic link/);
  });

  it.each(CASES)('$name: the handler writes nothing there and says so in the kernel log; the CLI refuses in one sentence', async (c) => {
    s = secStore({}, { publicParent: true });
    kernel = installHandler(s);
    const untouched = c.setup(s);
    const before = treeState(untouched);

    const mark = kmsgMark();
    const crash = startCrash(crasher.path, [], { env: { SEC_COMM: 'fbx-unsafe' } });
    const exit = await exitWithin(crash.exited, 5000, 'the crashed process exiting');
    expect(exit.signal).toBe('SIGSEGV');
    expect(await handlersDone(s.configPath, 20_000)).toBe(true);

    expect(treeState(untouched)).toEqual(before);
    await waitKmsg(mark, new RegExp(`^flightbox: process ${crash.pid} \\(fbx-unsafe\\) of user 0 dumped core`));
    await waitKmsg(mark, new RegExp(`^flightbox: failed to capture a crash: .*${c.says.source}`), s.root);

    if (c.cli) {
      for (const args of [['list'], ['info'], ['list', '--json']]) {
        const r = runCli(['--config', s.configPath, ...args]);
        expectOneSentence(r, 'non-zero', c.name.includes('symlink') ? CLI_NAMES_STORE : c.says);
      }
    }
  });
});
