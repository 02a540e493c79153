// A sparse core compressed without reading its holes. A core is mostly untouched memory, which
// the handler leaves as holes; reading a hole still allocates page cache for it (on a VM whose
// free memory went back to the host, 0.5-4 s per GiB here) and zstd then compresses those
// zeros. Instead the file's data extents are asked of the filesystem (SEEK_DATA/SEEK_HOLE),
// each long hole becomes a zstd frame of RLE blocks written here (4 bytes per 128 KiB, no
// reading, no compressing) and only the data between goes through zstd. A zstd file may be
// any sequence of frames: `zstd -d` gives back the core byte for byte.

/** A run of data in the file: [start, end). */
export interface Extent {
  start: number;
  end: number;
}

/** What the compressed file is made of, in order: data through zstd, or a run of zeros as an RLE frame. */
export type Piece = { kind: 'data'; start: number; end: number } | { kind: 'zeros'; length: number };

/** Holes shorter than this are compressed with the data around them (not worth a frame and a zstd run of their own). */
export const ZERO_FRAME_MIN_BYTES = 8 * 1024 * 1024;
/** More data pieces than this (a zstd run each): the file is compressed as one stream instead. */
export const MAX_DATA_PIECES = 32;
/** More extents than this are not parsed (a file fragmented into tiny runs gains nothing). */
export const MAX_EXTENTS = 100_000;

const ZSTD_MAGIC = 0xfd2fb528;
/** Block_Maximum_Size: the window (128 KiB, below) caps it at 128 KiB. */
const RLE_BLOCK_BYTES = 128 * 1024;
/** Window_Descriptor of 128 KiB: exponent 7 (2^(10+7)), mantissa 0. */
const WINDOW_128K = 7 << 3;
/** Frame_Header_Descriptor: an 8-byte Frame_Content_Size, a window descriptor, no checksum, no dictionary. */
const FHD_FCS8 = 3 << 6;
const BLOCK_RLE = 1;
/** Blocks per write, so that a long hole never needs one huge buffer. */
const BLOCKS_PER_CHUNK = 8192;

/**
 * A zstd frame that decompresses to `length` zero bytes (RFC 8878): its header, then RLE
 * blocks of 128 KiB (each a 3-byte block header and the byte 0), the last one shorter and
 * flagged last. Returned in chunks of at most BLOCKS_PER_CHUNK blocks.
 */
export function* zeroFrame(length: number): Generator<Buffer> {
  if (!Number.isSafeInteger(length) || length <= 0) throw new RangeError(`a zero frame needs a positive length, got ${length}`);
  const head = Buffer.alloc(4 + 1 + 1 + 8);
  head.writeUInt32LE(ZSTD_MAGIC, 0);
  head[4] = FHD_FCS8;
  head[5] = WINDOW_128K;
  head.writeBigUInt64LE(BigInt(length), 6);
  yield head;
  const blocks = Math.ceil(length / RLE_BLOCK_BYTES);
  for (let first = 0; first < blocks; first += BLOCKS_PER_CHUNK) {
    const n = Math.min(BLOCKS_PER_CHUNK, blocks - first);
    const buf = Buffer.alloc(n * 4); // each block's content byte stays 0
    for (let i = 0; i < n; i++) {
      const b = first + i;
      const last = b === blocks - 1;
      const size = last ? length - b * RLE_BLOCK_BYTES : RLE_BLOCK_BYTES;
      const header = (size << 3) | (BLOCK_RLE << 1) | (last ? 1 : 0);
      buf.writeUIntLE(header, i * 4, 3);
    }
    yield buf;
  }
}

/**
 * The program that lists a file's data extents: perl, on its stdin, with SEEK_DATA (3) and
 * SEEK_HOLE (4) (node has no lseek). One "start end" line per extent, then "end SIZE": a list
 * without that last line is incomplete (perl stopped) and is not used. Only ENXIO from
 * SEEK_DATA means "no data after here"; any other failure, or a hole that does not come after
 * its data, ends perl with a non-zero status and no "end" line: an error must never turn the
 * rest of a core into zeros.
 */
export const EXTENTS_PERL = [
  'my $e = (-s STDIN) || 0; my $p = 0;',
  'while ($p < $e) {',
  '  my $d = sysseek(STDIN, $p, 3);',
  '  if (!defined $d) { last if $!{ENXIO}; exit 3 }',
  '  $d += 0;',
  '  my $h = sysseek(STDIN, $d, 4);',
  '  exit 4 unless defined $h;',
  '  $h += 0;',
  '  exit 5 unless $h > $d && $d >= $p;',
  '  print "$d $h\\n"; $p = $h',
  '}',
  'print "end $e\\n"',
].join(' ');

/** The extents perl printed for a file of `size` bytes, or null when the list is not whole and well-formed. */
export function parseExtents(text: string, size: number, max = MAX_EXTENTS): Extent[] | null {
  const lines = text.split('\n');
  if (lines.pop() !== '') return null; // ends with a newline
  const last = /^end (\d{1,16})$/.exec(lines.pop() ?? '');
  if (!last || Number(last[1]) !== size || lines.length > max) return null;
  const out: Extent[] = [];
  let pos = 0;
  for (const line of lines) {
    const m = /^(\d{1,16}) (\d{1,16})$/.exec(line);
    if (!m) return null;
    const start = Number(m[1]);
    const end = Math.min(Number(m[2]), size);
    if (start < pos || end <= start) return null;
    out.push({ start, end });
    pos = end;
  }
  return out;
}

/**
 * The pieces of a `size`-byte file with these data extents: holes of at least `minHole`
 * bytes become zero pieces, shorter ones go with the data around them. Null when there is
 * no such hole, or more than `maxData` data pieces (then one zstd run over the file is better).
 */
export function planPieces(extents: readonly Extent[], size: number, minHole = ZERO_FRAME_MIN_BYTES, maxData = MAX_DATA_PIECES): Piece[] | null {
  const pieces: Piece[] = [];
  let dataFrom: number | null = null;
  let pos = 0;
  const hole = (from: number, to: number): void => {
    if (to - from >= minHole) {
      if (dataFrom !== null) pieces.push({ kind: 'data', start: dataFrom, end: from });
      pieces.push({ kind: 'zeros', length: to - from });
      dataFrom = null;
    } else if (to > from) {
      dataFrom ??= from;
    }
  };
  for (const e of extents) {
    hole(pos, e.start);
    dataFrom ??= e.start;
    pos = e.end;
  }
  hole(pos, size);
  if (dataFrom !== null) pieces.push({ kind: 'data', start: dataFrom, end: size });
  if (!pieces.some((p) => p.kind === 'zeros')) return null;
  if (pieces.filter((p) => p.kind === 'data').length > maxData) return null;
  return pieces;
}
