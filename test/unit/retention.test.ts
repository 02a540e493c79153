// planVacuum from tables: the deletion order of retention, pins, the limits' defaults.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_RETENTION_CAP_BYTES, defaultConfig, defaultsYaml, loadConfig } from '../../lib/config.js';
import { SNAPSHOT_GROUP, UNKNOWN_EXE_GROUP, groupOf, limitsFromConfig, planVacuum, resolveSizeLimit, type VacuumEvent, type VacuumLimits } from '../../store/retention.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const DAY = 86_400_000;
const NOW = Date.UTC(2026, 10, 26);
const NONE: VacuumLimits = { maxUseBytes: null, keepFreeBytes: null, maxAgeMs: null, maxPerExe: null };
const FS = { sizeBytes: 1000 * MiB, freeBytes: 900 * MiB };

/** "a3": the 3rd event of /bin/a, 3 minutes after the start; "s1": a snapshot; "*": pinned. */
function ev(spec: string, size = MiB): VacuumEvent {
  const m = /^([a-z])(\d+)(\*?)$/.exec(spec)!;
  const letter = m[1]!;
  const n = Number(m[2]);
  return {
    id: spec.replace('*', ''), time: NOW - DAY + n * 60_000, size, pinned: m[3] === '*',
    exe: letter === 's' ? null : `/bin/${letter}`, kind: letter === 's' ? 'snapshot' : 'crash',
  };
}
const plan = (specs: string[], limits: Partial<VacuumLimits>, fs = FS, keep?: string[]) =>
  planVacuum({ events: specs.map((s) => ev(s)), fs, limits: { ...NONE, ...limits }, now: NOW, keep: keep ? new Set(keep) : undefined });
const ids = (p: ReturnType<typeof planVacuum>) => p.deletions.map((d) => d.id);

describe('planVacuum', () => {
  it.each<[string, string[], Partial<VacuumLimits>, string[]]>([
    ['nothing over any limit', ['a1', 'b2', 's3'], { maxUseBytes: 10 * MiB, keepFreeBytes: 10 * MiB }, []],
    ['over maxUse: the group with the most events loses its oldest first', ['a1', 'a2', 'a3', 'b4', 'b5', 'c6'], { maxUseBytes: 4 * MiB }, ['a1', 'a2']],
    ['then groups take turns, ties go to the older oldest', ['a1', 'a2', 'a3', 'b4', 'b5', 'c6'], { maxUseBytes: 2 * MiB }, ['a1', 'a2', 'b4', 'a3']],
    ['the order of the input does not matter', ['c6', 'b5', 'a3', 'b4', 'a2', 'a1'], { maxUseBytes: 4 * MiB }, ['a1', 'a2']],
    ['a rare crash keeps its only core while a loop is trimmed', ['r1', 'l2', 'l3', 'l4', 'l5'], { maxUseBytes: 2 * MiB }, ['l2', 'l3', 'l4']],
    ['snapshots are one group', ['s1', 's2', 's3', 'a4', 'a5'], { maxUseBytes: 3 * MiB }, ['s1', 's2']],
    ['pinned events are never deleted and do not make a group bigger', ['a1*', 'a2*', 'a3*', 'b4', 'b5'], { maxUseBytes: 4 * MiB }, ['b4']],
    ['only pinned left: stop', ['a1*', 'a2*', 'b3'], { maxUseBytes: 0 }, ['b3']],
    ['maxAge: everything older, oldest first', ['a1', 'b2', 'a1000', 'b1500'], { maxAgeMs: DAY - 100 * 60_000 }, ['a1', 'b2']],
    ['maxAge spares pinned events', ['a1*', 'b2'], { maxAgeMs: 1000 }, ['b2']],
    ['maxPerExe: the oldest beyond the limit, per group', ['a1', 'a2', 'a3', 'b4', 'b5', 's6', 's7', 's8'], { maxPerExe: 2 }, ['a1', 's6']],
    ['maxPerExe: pinned count toward the limit, never deleted', ['a1*', 'a2', 'a3*', 'a4'], { maxPerExe: 2 }, ['a2', 'a4']],
    ['maxAge, then maxPerExe, then size', ['a1', 'a1400', 'a1401', 'a1402', 'b1403', 'b1404'], { maxAgeMs: DAY / 2, maxPerExe: 2, maxUseBytes: 2 * MiB }, ['a1', 'a1400', 'a1401', 'b1403']],
  ])('%s', (_name, specs, limits, expected) => {
    expect(ids(plan(specs, limits))).toEqual(expected);
  });

  it('keepFree: deletes until enough is free, counting what each deletion frees', () => {
    const p = plan(['a1', 'a2', 'a3', 'b4'], { keepFreeBytes: 102 * MiB }, { sizeBytes: 1000 * MiB, freeBytes: 100 * MiB });
    expect(ids(p)).toEqual(['a1', 'a2']);
    expect(p.deletions.map((d) => d.reason)).toEqual(['keepFree', 'keepFree']);
    expect(p.freeAfter).toBe(102 * MiB);
  });

  it('names the reason of each deletion: maxUse while over it, else keepFree', () => {
    const p = plan(['a1', 'a2', 'a3', 'b4'], { maxUseBytes: 3 * MiB, keepFreeBytes: 3 * MiB }, { sizeBytes: 10 * MiB, freeBytes: MiB });
    expect(p.deletions.map((d) => [d.id, d.reason])).toEqual([['a1', 'maxUse'], ['a2', 'keepFree']]);
  });

  it('reports limits it cannot meet because only pinned events are left', () => {
    const p = plan(['a1*', 'b2'], { maxUseBytes: 0, keepFreeBytes: 2000 * MiB });
    expect(ids(p)).toEqual(['b2']);
    expect(p.unsatisfied).toEqual(['maxUse', 'keepFree']);
    expect(p.usedBefore).toBe(2 * MiB);
    expect(p.usedAfter).toBe(MiB);
  });

  it('never deletes an event it is told to keep (the crash just recorded)', () => {
    expect(ids(plan(['a1', 'a2', 'b3'], { maxUseBytes: 0 }, FS, ['a1']))).toEqual(['a2', 'b3']);
  });

  it('weighs sizes, not counts, against maxUse', () => {
    const events = [ev('a1', 10 * MiB), ev('a2', MiB), ev('b3', MiB)];
    const p = planVacuum({ events, fs: FS, limits: { ...NONE, maxUseBytes: 3 * MiB }, now: NOW });
    expect(ids(p)).toEqual(['a1']);
  });
});

describe('groups and limits', () => {
  it.each([
    [{ exe: '/bin/a', kind: 'crash' as const }, '/bin/a'],
    [{ exe: null, kind: 'snapshot' as const }, SNAPSHOT_GROUP],
    [{ exe: null, kind: 'crash' as const }, UNKNOWN_EXE_GROUP],
  ])('groupOf(%j) is %s', (e, g) => {
    expect(groupOf(e)).toBe(g);
  });

  it.each([
    [null, 10, 64 * MiB, Math.floor(6.4 * MiB)],
    [null, 10, 100 * GiB, DEFAULT_RETENTION_CAP_BYTES],
    [null, 15, 100 * GiB, 4 * GiB],
    [{ percent: 10 }, 10, 100 * GiB, 10 * GiB],
    [{ bytes: 123 }, 10, 100 * GiB, 123],
  ])('resolveSizeLimit(%j, %d%%, %d) = %d', (limit, pct, fs, want) => {
    expect(resolveSizeLimit(limit, pct, fs)).toBe(want);
  });

  it('limitsFromConfig applies the defaults to the filesystem', () => {
    expect(limitsFromConfig({ maxUse: null, keepFree: null, maxAgeMs: null, maxPerExe: null }, 1000 * MiB))
      .toEqual({ maxUseBytes: 100 * MiB, keepFreeBytes: 150 * MiB, maxAgeMs: null, maxPerExe: null });
  });
});

describe('retention: in the config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fbx-retention-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const load = (yaml: string) => {
    const path = join(dir, `c${n++}.yaml`);
    writeFileSync(path, yaml);
    return loadConfig(path, { explicit: true });
  };

  it('defaults: the share of the filesystem (null), no age or count limit', () => {
    expect(defaultConfig().retention).toEqual({ maxUse: null, keepFree: null, maxAgeMs: null, maxPerExe: null });
    expect(defaultsYaml()).toMatch(/^retention:\n  maxUse: null .*10%.*4GiB\n  keepFree: null .*15%.*4GiB\n  maxAge: null .*\n  maxPerExe: null /m);
  });

  it('accepts sizes, percentages, durations and counts', () => {
    const r = load('retention:\n  maxUse: 4GiB\n  keepFree: 12.5%\n  maxAge: 30d\n  maxPerExe: 3\n');
    expect(r.errors).toEqual([]);
    expect(r.config.retention).toEqual({ maxUse: { bytes: 4 * GiB }, keepFree: { percent: 12.5 }, maxAgeMs: 30 * DAY, maxPerExe: 3 });
  });

  it.each([
    ['maxUse: lots', 'retention.maxUse', /expected a size such as 4GiB, a percentage .* got "lots"/],
    ['keepFree: 150%', 'retention.keepFree', /expected a percentage from 0% to 100%, got "150%"/],
    ['maxAge: forever', 'retention.maxAge', /expected a duration such as 30d, or null, got "forever"/],
    ['maxPerExe: 0', 'retention.maxPerExe', /expected a whole number from 1 to .*got 0/],
    ['maxPerExe: 2.5', 'retention.maxPerExe', /got 2.5/],
    ['maxSize: 1GiB', 'retention.maxSize', /unknown option \(known: retention.maxUse, retention.keepFree, retention.maxAge, retention.maxPerExe\)/],
  ])('refuses %s with file, line and key', (line, key, message) => {
    const r = load(`store:\n  root: /tmp/x\nretention:\n  ${line}\n`);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ key, line: 4 });
    expect(r.errors[0]!.file).toMatch(/\.yaml$/);
    expect(r.errors[0]!.message).toMatch(message);
  });
});
