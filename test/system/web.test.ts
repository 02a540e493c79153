// flightbox serve in a real browser (Debian's chromium, driven by playwright-core): a store
// with real crashes (the handler driven as the kernel drives it, on gcore cores of live
// processes, while a daemon with only the metrics recorder runs, so the bundles hold the
// metrics before the crash) and a real snapshot; the real CLI serving it. The list, a
// filter, a crash with its stack trace and charts, a screenshot; the token, the Host check,
// hostile names shown as text, the archive download; and another user's view.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, IS_ROOT, makeTempStore, readJson, runCli, waitFor, type TempStore } from '../helpers.js';
import { noSysctlDropIn, runningDaemon, stopDaemon, type DaemonProc } from './daemon-proc.js';
import { compileWaiter, gcore, kernelArgs, runHandler, sha256, startProcess, stopAll, stopProcess } from './procs.js';

const CHROMIUM = '/usr/bin/chromium';
const HAS_CHROMIUM = existsSync(CHROMIUM);
const HAVE_SETFACL = spawnSync('sh', ['-c', 'command -v setfacl']).status === 0;
// Without the background-networking flags chromium tries to reach Google at start and, on a
// closed network, waits on refused connections.
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];
const METRICS_ONLY = 'recorders:\n  metrics: { interval: 200ms, window: 20s }\n  ftrace: { enabled: false }\n';
/** What a hostile process calls itself (comm: 15 bytes at most) and its executable. */
const HOSTILE_COMM = '<img src=x>';
const HOSTILE_EXE_NAME = '<img src=x onerror=alert(1)>';
const HOSTILE_ARG = '<script>alert(2)</script>';
const URL_LINE = /^http:\/\/127\.0\.0\.1:(\d+)\/\?token=([0-9a-f]{64})$/m;

interface EventJson { id: string; kind: string; pid: number | null; exe: string | null; bundle: string; reason: string | null }
interface ManifestJson {
  id: string;
  files: { path: string; size: number; sha256: string }[];
  recorders?: { name: string; ok: boolean }[];
  exported?: { redact: boolean; removed: string[] };
}

interface Serve {
  child: ChildProcess;
  port: number;
  token: string;
  url: string;
  base: string;
  output: () => string;
}

/** `flightbox serve --listen 127.0.0.1:0` (as `as`, if given), once it has printed its URL. */
async function startServe(store: TempStore, as?: { uid: number; gid: number }): Promise<Serve> {
  const child = spawn(process.execPath, [CLI, '--config', store.configPath, 'serve', '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'], cwd: '/', ...(as ?? {}),
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const m = await waitFor('serve to print its URL', () => {
    if (child.exitCode !== null) throw new Error(`serve exited: ${out}`);
    return URL_LINE.exec(out);
  }, 20_000);
  const port = Number(m[1]);
  return { child, port, token: m[2]!, url: m[0], base: `http://127.0.0.1:${port}`, output: () => out };
}

async function stopServe(s: Serve | undefined): Promise<number | null> {
  if (!s || s.child.exitCode !== null) return s?.child.exitCode ?? null;
  const exited = new Promise<number | null>((r) => s.child.once('exit', (c) => r(c)));
  s.child.kill('SIGTERM');
  return exited;
}

/** A fresh chromium (its own profile directory), closed whatever happens. */
async function withPage<T>(fn: (page: Page, ctx: BrowserContext) => Promise<T>): Promise<T> {
  const profile = mkdtempSync(join(tmpdir(), 'fbx-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, acceptDownloads: true, viewport: { width: 1280, height: 900 },
  });
  try {
    const page = await ctx.newPage();
    return await fn(page, ctx);
  } finally {
    await ctx.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

function ensureUser(name: string): { uid: number; gid: number } {
  if (spawnSync('id', ['-u', name]).status !== 0) {
    const add = spawnSync('useradd', ['-M', '-r', '-s', '/usr/sbin/nologin', name], { encoding: 'utf8' });
    if (add.status !== 0) throw new Error(`useradd ${name}: ${add.stderr}`);
  }
  const id = (flag: string) => Number(spawnSync('id', [flag, name], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}

function events(store: TempStore): EventJson[] {
  const r = runCli(['--config', store.configPath, 'list', '--json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as EventJson[]) : [];
}

describe.skipIf(!IS_ROOT || !HAS_CHROMIUM)('flightbox serve, in chromium', () => {
  let work: string;
  let store: TempStore;
  let daemon: DaemonProc | undefined;
  let serve: Serve | undefined;
  let user: { uid: number; gid: number } | null = null;
  const ids = { plain: '', hostile: '', snapshot: '', user: '' };

  /** Crash a live `bin` (named `comm`) through the handler, as the kernel would; returns its event. */
  async function crash(bin: string, args: string[], comm: string, signal: number, uid = 0): Promise<EventJson> {
    // A user's crash is a process of that user: the handler grants access only to a crash
    // whose /proc says so.
    const p = await startProcess(bin, args, comm, uid === 0 ? {} : { uid, gid: user!.gid });
    let core: string;
    try {
      core = gcore(p.pid, join(work, 'core'));
      const r = await runHandler(store.configPath, kernelArgs({ pid: p.pid, uid, gid: uid === 0 ? 0 : user!.gid, signal }), core);
      expect(r.code).toBe(0);
    } finally {
      stopProcess(p);
    }
    rmSync(core, { force: true });
    // Indexed, with the flight recorder's snapshot in the bundle.
    return waitFor(`the crash of ${comm} indexed with its metrics`, () => {
      const e = events(store).find((x) => x.pid === p.pid && x.kind === 'crash');
      if (!e) return undefined;
      const m = readJson<ManifestJson>(join(store.root, e.bundle, 'manifest.json'));
      return m.recorders?.some((r) => r.name === 'metrics' && r.ok) ? e : undefined;
    }, 60_000);
  }

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'fbx-web-'));
    chmodSync(work, 0o755);
    const waiter = compileWaiter(work);
    chmodSync(waiter, 0o755);
    // The same program under a name that is markup.
    const hostileDir = join(work, 'h');
    mkdirSync(hostileDir, { mode: 0o755 });
    const hostileBin = join(hostileDir, HOSTILE_EXE_NAME);
    copyFileSync(waiter, hostileBin);
    chmodSync(hostileBin, 0o755);

    store = makeTempStore(METRICS_ONLY);
    noSysctlDropIn(store);
    // Another user must reach the config (the store itself stays root's 0700).
    chmodSync(store.dir, 0o755);
    chmodSync(store.configPath, 0o644);
    if (HAVE_SETFACL) user = ensureUser('fbxwebuser');

    daemon = await runningDaemon(store, ['--no-install']);
    await new Promise((r) => setTimeout(r, 2500)); // some history in the metrics ring
    ids.plain = (await crash(waiter, ['fbx-web'], 'fbx-web', 11)).id;
    ids.hostile = (await crash(hostileBin, [HOSTILE_COMM, HOSTILE_ARG], HOSTILE_COMM, 6)).id;
    if (user) ids.user = (await crash(waiter, ['fbx-web-user'], 'fbx-web-user', 11, user.uid)).id;
    const snap = runCli(['--config', store.configPath, 'snapshot', '--reason', 'before <b>the</b> deploy']);
    expect(snap.code, snap.stderr).toBe(0);
    ids.snapshot = snap.stdout.trim();
    await waitFor('the snapshot indexed', () => events(store).some((e) => e.id === ids.snapshot), 30_000);
    await stopDaemon(daemon);
    daemon = undefined;

    serve = await startServe(store);
  }, 180_000);

  afterAll(async () => {
    try {
      expect(await stopServe(serve)).toBe(0);
    } finally {
      stopAll();
      await stopDaemon(daemon);
      store?.cleanup();
      if (work) rmSync(work, { recursive: true, force: true });
    }
  });

  it('prints a localhost URL with a 64-hex-digit token, and nothing on stderr', () => {
    expect(serve!.output().trim()).toBe(serve!.url);
  });

  it('answers 401 with no data without the token or with a wrong one; 403 to another Host; 405 to POST', async () => {
    const s = serve!;
    for (const path of ['/', '/groups', `/event/${ids.plain}`, `/event/${ids.plain}/archive.tar.gz`, '/api/events', '/nowhere']) {
      const r = await fetch(`${s.base}${path}`, { redirect: 'manual' });
      expect(r.status, path).toBe(401);
      const body = await r.text();
      expect(body).not.toContain(ids.plain);
      expect(body).not.toContain('fbx');
    }
    const wrong = await fetch(`${s.base}/?token=${'0'.repeat(64)}`, { redirect: 'manual' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();
    // The token with its last digit changed (a fixed '0' was the token itself one time in 16).
    const wrongToken = `${s.token.slice(0, 63)}${s.token.endsWith('0') ? '1' : '0'}`;
    expect(wrongToken).not.toBe(s.token);
    const wrongCookie = await fetch(`${s.base}/`, { headers: { Cookie: `flightbox_${s.port}=${wrongToken}` } });
    expect(wrongCookie.status).toBe(401);

    // The token once: a cookie, and the same URL without it.
    const once = await fetch(`${s.url}&exe=fbxwaiter`, { redirect: 'manual' });
    expect(once.status).toBe(303);
    expect(once.headers.get('location')).toBe('/?exe=fbxwaiter');
    const cookie = once.headers.get('set-cookie')!;
    expect(cookie).toBe(`flightbox_${s.port}=${s.token}; Path=/; HttpOnly; SameSite=Strict`);
    const page = await fetch(`${s.base}/api/events`, { headers: { Cookie: cookie.split(';')[0]! } });
    expect(page.status).toBe(200);
    expect(((await page.json()) as EventJson[]).map((e) => e.id).sort()).toEqual(Object.values(ids).filter(Boolean).sort());
    for (const [k, v] of Object.entries({
      'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY', 'cache-control': 'no-store',
    })) expect(page.headers.get(k), k).toBe(v);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'self'.*script-src 'none'/);

    // DNS rebinding: a page of evil.example resolving to 127.0.0.1, even holding the cookie.
    const rebind = spawnSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', `Host: evil.example:${s.port}`, '-H', `Cookie: ${cookie.split(';')[0]}`, `${s.base}/`], { encoding: 'utf8' });
    expect(rebind.stdout).toBe('403');
    const post = await fetch(`${s.base}/`, { method: 'POST', headers: { Cookie: cookie.split(';')[0]! } });
    expect(post.status).toBe(405);
  });

  it('the list, a filter by executable, a crash with its stack trace and its metrics chart; a screenshot', async () => {
    const shot = join(work, 'event.png');
    await withPage(async (page) => {
      const cspErrors: string[] = [];
      page.on('console', (msg) => { if (/Content.Security.Policy/i.test(msg.text())) cspErrors.push(msg.text()); });
      const first = await page.goto(serve!.url);
      expect(first?.status()).toBe(200);
      expect(new URL(page.url()).search).toBe(''); // the token has left the address bar
      expect(await page.locator('table.events tbody tr').count()).toBe(Object.values(ids).filter(Boolean).length);
      // The style sheet ran under the CSP (its nonce): the header is dark.
      expect(await page.$eval('header', (h) => getComputedStyle(h).backgroundColor)).toBe('rgb(38, 50, 56)');

      await page.fill('input[name=exe]', 'fbxwaiter');
      await Promise.all([page.waitForURL(/exe=fbxwaiter/), page.click('button[type=submit]')]);
      const rows = page.locator('table.events tbody tr');
      expect(await rows.count()).toBe(user ? 2 : 1);
      await Promise.all([page.waitForURL(new RegExp(`/event/${ids.plain}$`)), page.click(`a[href="/event/${ids.plain}"]`)]);

      await expect.poll(() => page.locator('h1.event-title').textContent()).toBe('fbx-web [' + events(store).find((e) => e.id === ids.plain)!.pid + '] killed by SIGSEGV');
      // The crashing thread's frames, by name.
      expect(await page.locator('section.thread.crashing td.fn').allTextContents()).toContain('fbx_fixture_wait_here');
      // The CPU chart: a line through the samples before the crash, really drawn.
      const chart = page.locator('figure.chart').first();
      expect(await chart.locator('figcaption').textContent()).toBe('CPU busy (all CPUs)');
      const drawn = await chart.locator('polyline.series').evaluateAll((ls) => ls.map((l) => ({
        n: Number(l.getAttribute('data-points')), length: (l as SVGPolylineElement).getTotalLength(), box: (l as SVGPolylineElement).getBBox().width,
      })));
      expect(drawn.length).toBeGreaterThan(0);
      expect(drawn.reduce((a, d) => a + d.n, 0)).toBeGreaterThanOrEqual(5);
      expect(drawn.every((d) => d.length > 0 && d.box > 0)).toBe(true);
      expect(await page.locator('figure.chart').count()).toBeGreaterThanOrEqual(3);

      await page.screenshot({ path: shot, fullPage: true });
      expect(cspErrors).toEqual([]);

      // Groups, and the snapshot's page with its own charts.
      await page.click('header a[href="/groups"]');
      expect(await page.locator('table.groups tbody tr').count()).toBeGreaterThanOrEqual(2);
      await page.goto(`${serve!.base}/event/${ids.snapshot}`);
      expect(await page.locator('h1.event-title').textContent()).toBe('Snapshot');
      expect(await page.locator('td', { hasText: 'before <b>the</b> deploy' }).count()).toBe(1);
      expect(await page.locator('figure.chart polyline.series').count()).toBeGreaterThan(0);
    });
    const png = readFileSync(shot);
    expect(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);
    expect(png.length).toBeGreaterThan(20_000);
  });

  it('shows hostile names as text: no element is created from a comm, an executable or an argument', async () => {
    await withPage(async (page) => {
      let dialogs = 0;
      page.on('dialog', (d) => { dialogs++; void d.dismiss(); });
      await page.goto(serve!.url);
      expect(await page.locator('td.comm', { hasText: HOSTILE_COMM }).count()).toBe(1);
      expect(await page.locator('td.what', { hasText: HOSTILE_EXE_NAME }).count()).toBe(1);
      expect(await page.$('img[src=x]')).toBeNull();

      await page.goto(`${serve!.base}/event/${ids.hostile}`);
      expect(await page.locator('h1.event-title').textContent()).toMatch(new RegExp(`^${HOSTILE_COMM.replace(/[[\]()]/g, '\\$&')} \\[\\d+\\] killed by SIGABRT$`));
      expect(await page.locator('ol.argv li').allTextContents()).toEqual([join(work, 'h', HOSTILE_EXE_NAME), HOSTILE_COMM, HOSTILE_ARG]);
      expect(await page.$('img[src=x]')).toBeNull();
      expect(await page.$('img')).toBeNull();
      expect(await page.$('script')).toBeNull();

      // A filter value is echoed back into the form as text, too.
      await page.goto(`${serve!.base}/?exe=${encodeURIComponent(`"><img src=x>`)}`);
      expect(await page.inputValue('input[name=exe]')).toBe('"><img src=x>');
      expect(await page.$('img[src=x]')).toBeNull();
      expect(dialogs).toBe(0);
    });
  });

  it('the archive link downloads a redacted tar.gz whose manifest matches its files', async () => {
    const dest = join(work, 'download.tar.gz');
    const out = join(work, 'unpacked');
    await withPage(async (page) => {
      await page.goto(serve!.url);
      await page.goto(`${serve!.base}/event/${ids.plain}`);
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('a.archive')]);
      expect(download.suggestedFilename()).toBe(`${ids.plain}.tar.gz`);
      await download.saveAs(dest);
    });
    mkdirSync(out);
    const tar = spawnSync('tar', ['-xzf', dest, '-C', out], { encoding: 'utf8' });
    expect(tar.status, tar.stderr).toBe(0);
    expect(readdirSync(out)).toEqual([ids.plain]);
    const top = join(out, ids.plain);
    const m = readJson<ManifestJson>(join(top, 'manifest.json'));
    expect(m.id).toBe(ids.plain);
    expect(m.exported?.redact).toBe(true);
    expect(existsSync(join(top, 'proc/environ'))).toBe(false);
    expect(m.files.map((f) => f.path)).not.toContain('proc/environ');
    expect(m.files.map((f) => f.path)).toContain('recorder/metrics/samples.jsonl');
    for (const f of m.files) {
      const p = join(top, f.path);
      expect(statSync(p).size, f.path).toBe(f.size);
      expect(sha256(readFileSync(p)), f.path).toBe(f.sha256);
    }
    // Nothing left behind in the temp directory by the export.
    expect(readdirSync(tmpdir()).filter((n) => n.startsWith('flightbox-web-'))).toEqual([]);
  });

  it.skipIf(!HAVE_SETFACL)('another user sees what the CLI shows them: their own crash, no one else\'s, no archive', async () => {
    const u = user!;
    const mine = await startServe(store, u);
    try {
      const cli = runCli(['--config', store.configPath, 'list', '--json'], { uid: u.uid, gid: u.gid, cwd: '/' });
      expect(cli.code, cli.stderr).toBe(0);
      expect((JSON.parse(cli.stdout) as EventJson[]).map((e) => e.id)).toEqual([ids.user]);
      const cookie = `flightbox_${mine.port}=${mine.token}`;
      const get = (path: string) => fetch(`${mine.base}${path}`, { headers: { Cookie: cookie } });
      const list = await get('/api/events');
      expect(((await list.json()) as EventJson[]).map((e) => e.id)).toEqual([ids.user]);
      const html = await (await get('/')).text();
      expect(html).toContain(ids.user);
      expect(html).not.toContain(ids.plain);
      expect(html).not.toContain(ids.snapshot);
      expect((await get(`/event/${ids.plain}`)).status).toBe(404);
      const own = await get(`/event/${ids.user}`);
      expect(own.status).toBe(200);
      expect(await own.text()).toContain('fbx_fixture_wait_here');
      expect((await get(`/event/${ids.user}/archive.tar.gz`)).status).toBe(403);
      // The root server's token is not this one's.
      expect((await fetch(`${mine.base}/`, { headers: { Cookie: `flightbox_${mine.port}=${serve!.token}` } })).status).toBe(401);
    } finally {
      expect(await stopServe(mine)).toBe(0);
    }
  });
});
