import { describe, expect, it } from 'vitest';
import { formatSize, parseDuration, parseSize } from '../../lib/units.js';

describe('parseSize', () => {
  it.each<[unknown, number]>([
    ['10MB', 10_000_000],
    ['10mb', 10_000_000],
    ['10M', 10_000_000],
    ['2GiB', 2 * 1024 ** 3],
    ['2gib', 2 * 1024 ** 3],
    ['500MiB', 500 * 1024 ** 2],
    ['1TiB', 1024 ** 4],
    ['1TB', 1e12],
    ['3G', 3e9],
    ['4096', 4096],
    [4096, 4096],
    [0, 0],
    ['0', 0],
    ['1.5k', 1500],
    ['1.5KiB', 1536],
    ['1.5 KiB', 1536],
    [' 10 MB ', 10_000_000],
    ['10B', 10],
    ['10b', 10],
    ['7kb', 7000],
    [1.9, 1],
    ['0.5k', 500],
    ['1.0001k', 1000],
  ])('parseSize(%j) = %d', (input, expected) => {
    expect(parseSize(input)).toBe(expected);
  });

  it.each<[unknown]>([
    ['lots'],
    ['-1'],
    [-1],
    ['10XB'],
    ['10 M B'],
    [''],
    ['   '],
    ['MB'],
    ['.5k'],
    ['1e3'],
    ['1,000'],
    ['10MB extra'],
    ['9O%'],
    [Number.NaN],
    [Number.POSITIVE_INFINITY],
    [null],
    [undefined],
    [true],
    [{}],
    [[10]],
  ])('parseSize(%j) is undefined', (input) => {
    expect(parseSize(input)).toBeUndefined();
  });
});

describe('parseDuration', () => {
  it.each<[unknown, number]>([
    ['30s', 30_000],
    ['1h30m', 5_400_000],
    ['1h 30m', 5_400_000],
    ['250ms', 250],
    [250, 250],
    [0, 0],
    ['0s', 0],
    ['5m', 300_000],
    ['5min', 300_000],
    ['10sec', 10_000],
    ['2d', 172_800_000],
    ['1w', 604_800_000],
    ['1.5h', 5_400_000],
    ['5 m', 300_000],
    ['  45s  ', 45_000],
    ['1d2h3m4s5ms', 86_400_000 + 7_200_000 + 180_000 + 4_000 + 5],
    [1.5, 1.5],
  ])('parseDuration(%j) = %d', (input, expected) => {
    expect(parseDuration(input)).toBe(expected);
  });

  it.each<[unknown]>([
    [''],
    ['   '],
    ['5 parsecs'],
    ['s'],
    ['30'],
    ['1m30'],
    ['-5s'],
    ['5mins'],
    ['5 s s'],
    ['1y'],
    ['h1'],
    ['30s!'],
    [-1],
    [Number.NaN],
    [Number.POSITIVE_INFINITY],
    [null],
    [undefined],
    [false],
    [{}],
  ])('parseDuration(%j) is undefined', (input) => {
    expect(parseDuration(input)).toBeUndefined();
  });

  it('is reusable: the sticky regex state does not leak between calls', () => {
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('bad')).toBeUndefined();
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('2s')).toBe(2000);
  });
});

describe('formatSize', () => {
  it.each([
    [0, '0 B'],
    [1, '1 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1536, '1.5 KiB'],
    [10 * 1024, '10 KiB'],
    [500 * 1024, '500 KiB'],
    [1024 ** 2, '1.0 MiB'],
    [5.25 * 1024 ** 2, '5.3 MiB'],
    [123 * 1024 ** 2, '123 MiB'],
    [2 * 1024 ** 3, '2.0 GiB'],
    [1024 ** 4, '1.0 TiB'],
    [2048 * 1024 ** 4, '2048 TiB'],
  ])('formatSize(%d) = %s', (bytes, text) => {
    expect(formatSize(bytes)).toBe(text);
  });

  it('parseSize accepts what formatSize prints (to the printed precision)', () => {
    for (const bytes of [1536, 10 * 1024, 2 * 1024 ** 3, 1024 ** 4]) {
      const back = parseSize(formatSize(bytes).replace(' ', ''));
      expect(back).toBeDefined();
      expect(Math.abs((back as number) - bytes) / bytes).toBeLessThan(0.05);
    }
  });
});
