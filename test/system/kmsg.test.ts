// KmsgSource against the real kernel log: lines written to /dev/kmsg come back once, with
// their priority and unescaped. Needs root (writing to /dev/kmsg, reading with
// dmesg_restrict); the record parser is tested from a table everywhere.
import { existsSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { KmsgSource, parseKmsgRecord, type KmsgRecord } from '../../triggers/kmsg.js';
import { IS_ROOT, sleep, waitUntil } from '../helpers.js';

const POLL_MS = 50;
const SETTLE_MS = 10 * POLL_MS;

describe('parseKmsgRecord', () => {
  it.each([
    ['6,339,5140900,-;NET: Registered protocol family 10\n', 6, 0, 339, 5140900, 'NET: Registered protocol family 10'],
    ['3,1033,3016845121,-;Out of memory: Killed process 1234 (foo) total-vm:1024kB\n', 3, 0, 1033, 3016845121,
      'Out of memory: Killed process 1234 (foo) total-vm:1024kB'],
    // userspace writes get facility 1 (user); a dictionary follows as " KEY=value" lines.
    ['14,1261,2640032713,-;e1000e 0000:00:19.0: eth0 link up\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:19.0\n', 6, 1, 1261, 2640032713,
      'e1000e 0000:00:19.0: eth0 link up'],
    // CONFIG_PRINTK_CALLER adds a field; a ';' in the message is the message's.
    ['4,77,123,c,caller=T42;a;b\n', 4, 0, 77, 123, 'a;b'],
    // \xNN: control bytes, the backslash itself, UTF-8 bytes; an invalid sequence → U+FFFD.
    ['12,5,1,-;bell\\x07 back\\x5cslash \\xc3\\xa9t\\xc3\\xa9 bad\\xff end\n', 4, 1, 5, 1, 'bell\x07 back\\slash été bad\uFFFD end'],
    // A backslash the kernel would never leave unescaped is kept as it is.
    ['6,9,1,-;odd \\q \\x4\n', 6, 0, 9, 1, 'odd \\q \\x4'],
  ])('%j', (text, priority, facility, seq, timestampUs, message) => {
    expect(parseKmsgRecord(text)).toEqual({ priority, facility, seq, timestampUs, message });
  });

  it.each(['', 'no header at all\n', 'x,1,2,-;bad pri\n', '6,1;too few fields\n'])('refuses %j', (text) => {
    expect(parseKmsgRecord(text)).toBeNull();
  });
});

const canRun = IS_ROOT && existsSync('/dev/kmsg');

describe.skipIf(!canRun)('KmsgSource on /dev/kmsg (needs root and /dev/kmsg)', () => {
  const sources: KmsgSource[] = [];
  afterEach(async () => {
    await Promise.all(sources.splice(0).map((s) => s.close()));
  });

  function tag(): string {
    return `fbxtest-${randomBytes(6).toString('hex')}`;
  }

  async function follow(only: string) {
    const got: { line: string; t: number; rec: KmsgRecord }[] = [];
    const src = new KmsgSource((line, t, rec) => {
      if (line.includes(only)) got.push({ line, t, rec });
    }, { pollIntervalMs: POLL_MS });
    sources.push(src);
    await src.start();
    return { src, got };
  }

  it('reports a line written after start once, with its priority; not the ones before', async () => {
    const id = tag();
    writeFileSync('/dev/kmsg', `<6>${id}: before start\n`);
    const t0 = Date.now();
    const { got } = await follow(id);
    writeFileSync('/dev/kmsg', `<6>${id}: hello\n`);
    writeFileSync('/dev/kmsg', `<3>${id}: second\n`);
    await waitUntil(() => got.length >= 2, 'the two lines');
    await sleep(SETTLE_MS);
    expect(got.map((g) => g.line)).toEqual([`${id}: hello`, `${id}: second`]);
    expect(got.map((g) => g.rec.priority)).toEqual([6, 3]);
    // Userspace writes to /dev/kmsg are filed under facility 1 (user).
    expect(got.map((g) => g.rec.facility)).toEqual([1, 1]);
    expect(got[1]!.rec.seq).toBe(got[0]!.rec.seq + 1);
    for (const g of got) expect(g.t).toBeGreaterThanOrEqual(t0);
  });

  it('unescapes a line with non-printable and non-ASCII bytes', async () => {
    const id = tag();
    const { got } = await follow(id);
    const text = `${id}: bell\x07 esc\x1b[31m tab\t back\\slash été end`;
    writeFileSync('/dev/kmsg', `<4>${text}\n`);
    await waitUntil(() => got.length >= 1, 'the line');
    await sleep(SETTLE_MS);
    expect(got).toHaveLength(1);
    expect(got[0]!.line).toBe(text);
    expect(got[0]!.rec.priority).toBe(4);
  });

  it('sees many records arriving between two ticks', async () => {
    const id = tag();
    const { got } = await follow(id);
    // Each open of /dev/kmsg has its own write rate limit (10 per 5 s): one fd per line.
    for (let i = 0; i < 200; i++) writeFileSync('/dev/kmsg', `<7>${id}: n=${i}\n`);
    await waitUntil(() => got.length >= 200, '200 lines');
    await sleep(SETTLE_MS);
    expect(got.map((g) => g.line)).toEqual(Array.from({ length: 200 }, (_, i) => `${id}: n=${i}`));
  });

  it('close() stops reporting, releases its timer, and is safe twice', async () => {
    const id = tag();
    const { src, got } = await follow(id);
    writeFileSync('/dev/kmsg', `<6>${id}: open\n`);
    await waitUntil(() => got.length >= 1, 'the first line');
    const during = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    await src.close();
    await src.close();
    writeFileSync('/dev/kmsg', `<6>${id}: closed\n`);
    await sleep(SETTLE_MS);
    expect(got.map((g) => g.line)).toEqual([`${id}: open`]);
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBeLessThan(during);
    await expect(src.start()).rejects.toThrow(/closed/);
  });

  it('refuses to start on a path that is not there, with a clear error', async () => {
    const src = new KmsgSource(() => undefined, { path: '/dev/no-such-kmsg' });
    await expect(src.start()).rejects.toThrow(/cannot read the kernel log \/dev\/no-such-kmsg/);
    await src.close();
  });
});
