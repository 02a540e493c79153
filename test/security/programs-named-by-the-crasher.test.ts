// The crashed process names programs, libraries and scripts (PATH, LD_PRELOAD, HOME and
// XDG_CONFIG_HOME with a .gdbinit, a gdb auto-load script next to its executable, fake tools
// in its cwd) and plants a "core" symlink in its cwd. Crashed through the real kernel, as an
// unprivileged user, with gdb as the stack-trace tool: nothing it names is ever run or
// loaded, and nothing is written into its cwd.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from '../helpers.js';
import {
  compileFixture, exitWithin, handlersDone, installHandler, manifestOf, mkdirMode, secStore, startCrash, treeState, waitEvent,
  type SecStore,
} from './sec-helpers.js';

const NOBODY = 65534;
const FAKE_TOOLS = ['eu-stack', 'gdb', 'zstd', 'gzip', 'sh', 'bash', 'node', 'cat', 'readlink', 'python3', 'addr2line', 'debuginfod-find', 'objcopy'];

describe.skipIf(!IS_ROOT)('programs named by the crashed process are never run', () => {
  let work: string;
  let s: SecStore;
  let kernel: { restore(): void } | undefined;

  beforeAll(() => {
    work = mkdtempSync('/tmp/fbx-sec-bin-');
    chmodSync(work, 0o755);
    s = secStore({ backtrace: ['tool: gdb'] });
    kernel = installHandler(s);
  });
  afterAll(() => {
    try {
      kernel?.restore();
    } finally {
      s.cleanup();
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('PATH, LD_PRELOAD, HOME/.gdbinit, an auto-load script and fake tools in its cwd: none run; its cwd untouched', async () => {
    const marks = join(work, 'marks');
    mkdirMode(marks, 0o777);
    const ran = join(marks, 'ran');
    const fakeBin = join(work, 'fake-bin');
    mkdirMode(fakeBin, 0o755);
    const cwd = join(work, 'cwd');
    mkdirMode(cwd, 0o755);
    const exeDir = join(work, 'exe-dir');
    mkdirMode(exeDir, 0o755);
    const exe = join(exeDir, 'sec-crasher');
    compileFixture('sec-crasher', exeDir, { out: exe });
    const preload = compileFixture('sec-preload', work, { shared: true });

    // Each fake program records that it ran, whoever runs it.
    const fake = `#!/bin/sh\necho "$0 $*" >> ${ran}\n`;
    for (const t of FAKE_TOOLS) {
      for (const d of [fakeBin, cwd]) {
        writeFileSync(join(d, t), fake);
        chmodSync(join(d, t), 0o755);
      }
    }
    const gdbScript = `shell touch ${marks}/gdbinit\npython import os; os.system("touch ${marks}/gdbinit-py")\n`;
    writeFileSync(join(cwd, '.gdbinit'), gdbScript);
    mkdirMode(join(cwd, '.config', 'gdb'), 0o755);
    writeFileSync(join(cwd, '.config', 'gdb', 'gdbinit'), gdbScript);
    writeFileSync(join(exeDir, '.gdbinit'), gdbScript);
    writeFileSync(`${exe}-gdb.py`, `import os\nos.system("touch ${marks}/auto-load")\n`);
    writeFileSync(`${exe}-gdb.gdb`, `shell touch ${marks}/auto-load-gdb\n`);
    // Where a naive handler would drop a core file: a link to something it must not write.
    const victim = join(work, 'victim');
    writeFileSync(victim, 'do not touch\n');
    symlinkSync(victim, join(cwd, 'core'));
    copyFileSync(victim, join(cwd, 'core.keep'));
    // The crasher runs as nobody: its files are nobody's, as an attacker's would be.
    for (const d of [cwd, exeDir, fakeBin]) spawnSync('chown', ['-R', `${NOBODY}:${NOBODY}`, d]);
    const cwdBefore = treeState(cwd);

    const c = startCrash(exe, ['--name', 'eu-stack', 'gdb'], {
      cwd,
      env: {
        PATH: `${fakeBin}:.`,
        LD_PRELOAD: preload,
        LD_LIBRARY_PATH: fakeBin,
        SEC_MARKER: join(marks, 'preloaded'),
        SEC_SKIP_EXE: exe,
        HOME: cwd,
        XDG_CONFIG_HOME: join(cwd, '.config'),
        GDBHISTFILE: join(marks, 'gdb-history'),
        PYTHONSTARTUP: join(cwd, '.gdbinit'),
        BASH_ENV: join(cwd, '.gdbinit'),
        ENV: join(cwd, '.gdbinit'),
        DEBUGINFOD_URLS: 'http://127.0.0.1:9/',
        SEC_COMM: 'gdb',
      },
      uid: NOBODY,
      gid: NOBODY,
    });
    const exit = await exitWithin(c.exited, 5000, 'the crashed process exiting');
    expect(exit.signal).toBe('SIGSEGV');
    const e = await waitEvent(s, c.pid);
    expect(await handlersDone(s.configPath, 30_000)).toBe(true);
    const m = manifestOf(s, e);
    expect(m.process.uid).toBe(NOBODY);

    // gdb really ran on this crash (so every bait above was in its way) and found the frames.
    expect(m.backtrace?.tool).toBe('gdb');
    expect(m.backtrace?.frames.map((f) => f.fn)).toContain('sec_crash_here');
    // The environment was captured as data, not used.
    expect(readFileSync(join(s.root, e.bundle, 'proc', 'environ'), 'utf8')).toContain(`LD_PRELOAD=${preload}`);

    expect(existsSync(ran) ? readFileSync(ran, 'utf8') : '').toBe('');
    for (const mk of ['preloaded', 'gdbinit', 'gdbinit-py', 'auto-load', 'auto-load-gdb', 'gdb-history']) {
      expect(existsSync(join(marks, mk)), mk).toBe(false);
    }
    expect(treeState(cwd)).toEqual(cwdBefore);
    expect(readFileSync(victim, 'utf8')).toBe('do not touch\n');
  });
});
