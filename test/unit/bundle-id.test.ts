import { describe, expect, it } from 'vitest';
import { BUNDLE_ID_RE, bundleDay, isBundleId, makeBundleId } from '../../store/bundle-id.js';

const T = new Date(Date.UTC(2026, 10, 26, 6, 50, 12, 345));

describe('makeBundleId', () => {
  it.each<[Date, number, Buffer, string]>([
    [T, 1234, Buffer.from([0xa1, 0xb2, 0xc3]), '20261126T065012-1234-a1b2c3'],
    [T, 1, Buffer.from([0, 0, 0]), '20261126T065012-1-000000'],
    [new Date(Date.UTC(2026, 0, 2, 3, 4, 5)), 4194304, Buffer.from([0xff, 0xff, 0xff]), '20260102T030405-4194304-ffffff'],
    [new Date(Date.UTC(2026, 11, 31, 23, 59, 59, 999)), 42, Buffer.from([1, 2, 3]), '20261231T235959-42-010203'],
    [T, 7, Buffer.from([0xab]), '20261126T065012-7-0000ab'],
    [T, 7, Buffer.from([1, 2, 3, 4, 5]), '20261126T065012-7-010203'],
  ])('makeBundleId(%s, %i, …) = %s', (time, pid, random, id) => {
    expect(makeBundleId(time, pid, random)).toBe(id);
  });

  it('uses UTC, not local time', () => {
    // 23:30 UTC on Nov 26 is Nov 27 in UTC+1 and still Nov 26 in UTC-5: the id does not care
    const id = makeBundleId(new Date('2026-11-26T23:30:00Z'), 5, Buffer.from([1, 2, 3]));
    expect(id).toBe('20261126T233000-5-010203');
  });

  it('with default randomness matches BUNDLE_ID_RE and is accepted by isBundleId', () => {
    const id = makeBundleId(T, 999);
    expect(id).toMatch(BUNDLE_ID_RE);
    expect(isBundleId(id)).toBe(true);
    expect(id.startsWith('20261126T065012-999-')).toBe(true);
  });

  it('ids made in the same second by the same pid are unique', () => {
    const ids = new Set(Array.from({ length: 50 }, () => makeBundleId(T, 1234)));
    expect(ids.size).toBe(50);
  });

  it('ids sort by time (same pid)', () => {
    const a = makeBundleId(new Date(Date.UTC(2026, 10, 26, 6, 59, 59)), 10, Buffer.from([0xff, 0xff, 0xff]));
    const b = makeBundleId(new Date(Date.UTC(2026, 10, 26, 7, 0, 0)), 10, Buffer.from([0, 0, 0]));
    expect([b, a].sort()).toEqual([a, b]);
  });

  it('contains only [0-9A-Za-z-]', () => {
    for (let i = 0; i < 20; i++) expect(makeBundleId(new Date(), process.pid)).toMatch(/^[0-9A-Za-z-]+$/);
  });
});

describe('isBundleId', () => {
  it.each([
    '20261126T065012-1234-a1b2c3',
    '20261126T065012-1-000000',
    '20261126T065012-4294967295-ffffff',
  ])('accepts %j', (s) => {
    expect(isBundleId(s)).toBe(true);
  });

  it.each([
    '',
    '.',
    '..',
    '/',
    '../20261126T065012-1234-a1b2c3',
    '20261126T065012-1234-a1b2c3/..',
    '20261126T065012-1234-a1b2c3/',
    '/20261126T065012-1234-a1b2c3',
    '2026-11-26/20261126T065012-1234-a1b2c3',
    '20261126T065012-1234-a1b2c3\n',
    '\n20261126T065012-1234-a1b2c3',
    ' 20261126T065012-1234-a1b2c3',
    '20261126T065012-1234-a1b2c3 ',
    '20261126T065012-1234-A1B2C3',
    '20261126T065012-1234-a1b2c',
    '20261126T065012-1234-a1b2c3d',
    '20261126T065012--a1b2c3',
    '20261126T065012-12345678901-a1b2c3',
    '20261126-065012-1234-a1b2c3',
    '2026112T065012-1234-a1b2c3',
    '20261126T065012-1234-a1b2c3\0',
    '20261126T065012-1234-a1b2g3',
    '*',
    '2026*',
    '20261126T065012-1234-%',
  ])('rejects %j', (s) => {
    expect(isBundleId(s)).toBe(false);
  });
});

describe('bundleDay', () => {
  it.each([
    ['20261126T065012-1234-a1b2c3', '2026-11-26'],
    ['20260102T030405-1-000000', '2026-01-02'],
    ['20261231T235959-42-010203', '2026-12-31'],
  ])('bundleDay(%j) = %j', (id, day) => {
    expect(bundleDay(id)).toBe(day);
  });

  it('is the UTC day of the time the id was made from', () => {
    const t = new Date('2026-11-26T23:59:59Z');
    expect(bundleDay(makeBundleId(t, 3))).toBe('2026-11-26');
  });
});
