// `npm run bench`: every section of the performance benchmark in order, one table at the end,
// bench/results.json and bench/results.md written. Benchmarks measure and print; they assert
// nothing.
//
//   npm run bench [-- --quick] [--only 1,2,6] [--runs N]
//
// Needs root, gcc, zstd; systemd-coredump is measured when its Debian package is installed
// (see bench/ingest.ts: mask its sysctl.d file). Sections 1-3 change core_pattern,
// core_pipe_limit and suid_dumpable, sections 4-6 tracefs and LTTng: all are machine-wide and
// restored at the end (and on Ctrl-C), so run one benchmark at a time and no kernel tests
// meanwhile, e.g. `flock -o LOCKFILE npm run bench` with a lock file the tests share (-o: the
// daemons and listeners the benchmark starts must not inherit the lock).
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderMarkdown, renderTable, runCleanups, setTrash, type BenchOptions, type Row, type Section } from './lib.js';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));

interface SectionEntry {
  n: number;
  title: string;
  /** The module, relative to bench/, and the export that runs the section. */
  file: string;
  exportName: string;
}

const SECTIONS: readonly SectionEntry[] = [
  { n: 1, title: '1 ingestion', file: 'ingest.ts', exportName: 'ingestion' },
  { n: 2, title: '2 small crash', file: 'ingest.ts', exportName: 'smallCrash' },
  { n: 3, title: '3 crash storm', file: 'ingest.ts', exportName: 'storm' },
  { n: 4, title: '4 snapshots', file: 'snapshots.ts', exportName: 'run' },
  { n: 5, title: '5 triggers', file: 'triggers.ts', exportName: 'run' },
  { n: 6, title: '6 idle cost', file: 'idle.ts', exportName: 'run' },
  { n: 7, title: '7 queries', file: 'queries.ts', exportName: 'run' },
];

const USAGE = `usage: npm run bench [-- --quick] [--only 1,2,6] [--runs N]
  --quick     small sizes and 3 runs: for developing the benchmark, not for the README
  --only L    these sections only (a comma-separated list, ranges allowed: 1-3,6)
  --runs N    runs per figure (default 5, --quick 3); figures are medians
Needs root, gcc and zstd. systemd-coredump is measured when its Debian package is installed
(apt-get install systemd-coredump, then restore core_pattern, core_pipe_limit and
suid_dumpable, and mask its sysctl.d file: ln -s /dev/null /etc/sysctl.d/50-coredump.conf,
or a later sysctl --system hands the machine's crashes to it).`;

interface Args {
  quick: boolean;
  only: Set<number> | null;
  runs: number | null;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { quick: false, only: null, runs: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') args.quick = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a === '--only' ? argv[++i] : a.slice(7);
      if (!v) throw new Error('--only needs a list of sections, e.g. --only 1,2');
      args.only = new Set();
      for (const part of v.split(',')) {
        const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
        if (!m) throw new Error(`--only: not a section or a range: ${JSON.stringify(part)}`);
        for (let n = Number(m[1]); n <= Number(m[2] ?? m[1]); n++) args.only.add(n);
      }
    } else if (a === '--runs' || a.startsWith('--runs=')) {
      const v = Number(a === '--runs' ? argv[++i] : a.slice(7));
      if (!Number.isInteger(v) || v < 1) throw new Error('--runs needs a positive whole number');
      args.runs = v;
    } else if (a === '--help' || a === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown argument ${JSON.stringify(a)}\n${USAGE}`);
  }
  return args;
}

function machine(): Record<string, unknown> {
  const c = cpus();
  return {
    kernel: release(),
    cpus: c.length,
    cpuModel: c[0]?.model ?? null,
    memory: totalmem(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    date: new Date().toISOString(),
  };
}

function notes(rows: readonly Row[]): string[] {
  return rows.filter((r) => r.note).map((r) => `${r.section} | ${r.case} | ${r.subject}: ${r.note}`);
}

async function main(): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    console.error('the benchmark crashes processes through the kernel core_pattern and uses tracefs: run it as root');
    return 77;
  }
  const workDir = mkdtempSync(join(tmpdir(), 'fbx-bench-'));
  const started = Date.now();
  const log = (msg: string): void => console.error(`[${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s] ${msg}`);
  const opts: BenchOptions = { quick: args.quick, runs: args.runs ?? (args.quick ? 3 : 5), workDir, log };
  setTrash(join(workDir, 'trash'));
  const stop = (signal: NodeJS.Signals): void => {
    log(`${signal}: restoring the kernel's settings and stopping what the benchmark started`);
    runCleanups(log);
    rmSync(workDir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);

  const rows: Row[] = [];
  try {
    for (const s of SECTIONS) {
      if (args.only && !args.only.has(s.n)) continue;
      if (!existsSync(join(BENCH_DIR, s.file))) {
        log(`section ${s.title}: bench/${s.file} does not exist yet, skipped`);
        rows.push({ section: s.title, case: '(not run)', subject: '', value: null, unit: 'count', runs: 0, note: `bench/${s.file} does not exist yet` });
        continue;
      }
      log(`section ${s.title}${opts.quick ? ' (quick)' : ''}, ${opts.runs} runs`);
      const t0 = Date.now();
      try {
        const mod = (await import(`./${s.file.replace(/\.ts$/, '.js')}`)) as Record<string, unknown>;
        const fn = mod[s.exportName] as Section | undefined;
        if (typeof fn !== 'function') throw new Error(`bench/${s.file} exports no ${s.exportName}`);
        rows.push(...(await fn(opts)));
      } catch (err) {
        log(`section ${s.title} failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
        rows.push({ section: s.title, case: '(failed)', subject: '', value: null, unit: 'count', runs: 0, note: `failed: ${err instanceof Error ? err.message : String(err)}` });
      } finally {
        runCleanups(log); // whatever a failed section left registered
      }
      log(`section ${s.title} done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }

  const table = renderTable(rows);
  const noteLines = notes(rows);
  console.log(table);
  if (noteLines.length > 0) console.log(`\nnotes:\n${noteLines.map((n) => `- ${n}`).join('\n')}`);
  const info = machine();
  const options = { quick: opts.quick, runs: opts.runs, only: args.only ? [...args.only] : null };
  writeFileSync(join(BENCH_DIR, 'results.json'), `${JSON.stringify({ machine: info, options, rows }, null, 2)}\n`);
  const md = [
    `# flightbox benchmark results`,
    '',
    `${info.date}: Linux ${info.kernel}, ${info.cpus} CPUs (${info.cpuModel}), ${info.memoryGiB} GiB, Node ${info.node}` +
      `${opts.quick ? ', --quick' : ''}, medians of ${opts.runs} runs unless a row says otherwise.`,
    '',
    renderMarkdown(rows),
    '',
    ...(noteLines.length > 0 ? ['Notes:', '', ...noteLines.map((n) => `- ${n}`), ''] : []),
  ].join('\n');
  writeFileSync(join(BENCH_DIR, 'results.md'), md);
  log(`wrote bench/results.json and bench/results.md in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    runCleanups();
    process.exit(1);
  },
);
