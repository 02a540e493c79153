// The trace.dat header we write (recorder/trace-dat.ts), read back field by field as
// trace-cmd.dat.v6(5) lays it out; the formats taken from an instance directory; the CPUs'
// pages laid out behind it, from an instance directory whose trace_pipe_raw files are plain
// files (a read of one returns a page, as the kernel's does, the last one short). The whole
// file against the real kernel and trace-cmd is in test/system/ftrace.test.ts.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { eventFormats, subbufBytes, traceDatHeader, writeTraceDat } from '../../recorder/trace-dat.js';

const HEADER_PAGE = [
  '\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;',
  '\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;',
  '\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;',
  '\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;',
  '',
].join('\n');

const tmp = mkdtempSync(join(tmpdir(), 'fbx-tracedat-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A reader of the v6 header, independent of the writer. */
function readHeader(b: Buffer) {
  let p = 0;
  const take = (n: number) => { const v = b.subarray(p, p + n); p += n; return v; };
  const cstr = () => { const e = b.indexOf(0, p); const v = b.toString('utf8', p, e); p = e + 1; return v; };
  const u32 = () => { const v = b.readUInt32LE(p); p += 4; return v; };
  const u64 = () => { const v = Number(b.readBigUInt64LE(p)); p += 8; return v; };
  const out: Record<string, unknown> = {};
  out.magic = [...take(10)];
  out.version = cstr();
  out.endian = take(1)[0];
  out.longSize = take(1)[0];
  out.pageSize = u32();
  out.hp = cstr(); out.headerPage = take(u64()).toString();
  out.he = cstr(); out.headerEvent = take(u64()).toString();
  const nf = u32();
  out.ftrace = Array.from({ length: nf }, () => take(u64()).toString());
  const ns = u32();
  out.systems = Array.from({ length: ns }, () => {
    const name = cstr();
    const ne = u32();
    return [name, Array.from({ length: ne }, () => take(u64()).toString())];
  });
  out.kallsyms = u32();
  out.printk = u32();
  out.cmdlines = take(u64()).toString();
  out.cpus = u32();
  out.options = take(10).toString('latin1');
  out.optionEnd = b.readUInt16LE(p); p += 2;
  out.flyrecord = take(10).toString('latin1');
  out.rest = b.length - p;
  return out;
}

describe('trace.dat header (trace-cmd.dat.v6)', () => {
  it('lays out every field in order, little-endian, 64-bit longs', () => {
    const formats = new Map([['raw_syscalls', [Buffer.from('name: sys_enter\n'), Buffer.from('name: sys_exit\n')]], ['sched', [Buffer.from('name: sched_switch\n')]]]);
    const h = traceDatHeader({
      pageBytes: 4096, headerPage: Buffer.from(HEADER_PAGE), headerEvent: Buffer.from('# compressed entry header\n'),
      ftraceFormats: [Buffer.from('name: print\n')], eventFormats: formats, cmdlines: Buffer.from('1 systemd\n2 kthreadd\n'), cpus: 3,
    });
    expect(readHeader(h)).toEqual({
      magic: [0x17, 0x08, 0x44, ...Buffer.from('tracing')], version: '6', endian: 0, longSize: 8, pageSize: 4096,
      hp: 'header_page', headerPage: HEADER_PAGE, he: 'header_event', headerEvent: '# compressed entry header\n',
      ftrace: ['name: print\n'],
      systems: [['raw_syscalls', ['name: sys_enter\n', 'name: sys_exit\n']], ['sched', ['name: sched_switch\n']]],
      kallsyms: 0, printk: 0, cmdlines: '1 systemd\n2 kthreadd\n', cpus: 3,
      options: 'options  \0', optionEnd: 0, flyrecord: 'flyrecord\0', rest: 0,
    });
  });

  it.each<[string, number | null]>([
    [HEADER_PAGE, 4096],
    [HEADER_PAGE.replace('size:4080', 'size:65520'), 65536],
    [HEADER_PAGE.replace('field: char data', 'field: char stuff'), null],
    ['', null],
  ])('the page size from header_page (%#)', (text, bytes) => {
    expect(subbufBytes(text)).toBe(bytes);
  });

  it('takes the formats of the recorded events only: named events, and every event of a whole system', () => {
    const inst = join(tmp, 'inst');
    const mk = (sys: string, ev: string) => {
      mkdirSync(join(inst, 'events', sys, ev), { recursive: true });
      writeFileSync(join(inst, 'events', sys, ev, 'format'), `name: ${ev}\n`);
    };
    for (const e of ['sched_switch', 'sched_wakeup', 'sched_process_exit']) mk('sched', e);
    for (const e of ['sys_enter', 'sys_exit']) mk('raw_syscalls', e);
    mk('irq', 'irq_handler_entry');
    mk('ftrace', 'print');
    mkdirSync(join(inst, 'events', 'irq', 'not_an_event'), { recursive: true }); // no format file
    const f = eventFormats(inst, ['sched/sched_switch', 'sched/sched_process_exit', 'raw_syscalls', 'irq', 'ftrace/print', 'nosuch/thing', 'sched/sched_switch']);
    expect([...f.entries()].map(([s, fs]) => [s, fs.map((b) => b.toString())])).toEqual([
      ['irq', ['name: irq_handler_entry\n']],
      ['raw_syscalls', ['name: sys_enter\n', 'name: sys_exit\n']],
      ['sched', ['name: sched_process_exit\n', 'name: sched_switch\n']],
    ]);
  });
});

describe('trace.dat pages (writeTraceDat)', () => {
  /** An instance directory with `cpus` CPUs whose trace_pipe_raw hold these bytes. */
  function instance(name: string, cpus: Buffer[]): { inst: string; root: string } {
    const root = join(tmp, name);
    const inst = join(root, 'instances', 'fbx');
    mkdirSync(join(inst, 'events', 'sched', 'sched_switch'), { recursive: true });
    writeFileSync(join(inst, 'events', 'header_page'), HEADER_PAGE);
    writeFileSync(join(inst, 'events', 'header_event'), '# compressed entry header\n');
    writeFileSync(join(inst, 'events', 'sched', 'sched_switch', 'format'), 'name: sched_switch\n');
    writeFileSync(join(root, 'saved_cmdlines'), '1 systemd\n');
    cpus.forEach((data, i) => {
      mkdirSync(join(inst, 'per_cpu', `cpu${i}`), { recursive: true });
      writeFileSync(join(inst, 'per_cpu', `cpu${i}`, 'trace_pipe_raw'), data);
    });
    return { inst, root };
  }

  /** The offsets table behind the header, and each CPU's data as the table says. */
  function cpuData(file: Buffer, ncpu: number): { offset: number; size: number; data: Buffer }[] {
    const h = readHeader(file.subarray(0, file.length));
    const at = file.length - (h.rest as number);
    return Array.from({ length: ncpu }, (_, i) => {
      const offset = Number(file.readBigUInt64LE(at + 16 * i));
      const size = Number(file.readBigUInt64LE(at + 16 * i + 8));
      return { offset, size, data: file.subarray(offset, offset + size) };
    });
  }

  const pad = (b: Buffer): Buffer => Buffer.concat([b, Buffer.alloc((4096 - (b.length % 4096)) % 4096)]);

  it('every CPU\'s pages right after the one before, page-aligned, the last page zero-padded; more than one write\'s worth of pages', async () => {
    // CPU 0: 300 pages and a short one (more than the 256 pages gathered into one write);
    // CPU 1: nothing; CPU 2: three pages.
    const cpus = [randomBytes(300 * 4096 + 1000), Buffer.alloc(0), randomBytes(3 * 4096)];
    const { inst, root } = instance('layout', cpus);
    const out = join(tmp, 'out-layout');
    mkdirSync(out);
    const r = await writeTraceDat({ instanceDir: inst, tracefsRoot: root, events: ['sched/sched_switch'], dir: out, name: 'raw.dat', deadline: Date.now() + 60_000, bufferBytesPerCpu: 2 * 1024 * 1024 });
    const file = readFileSync(join(out, 'raw.dat'));
    expect(r).toEqual({ bytes: file.length, cpuBytes: [301 * 4096, 0, 3 * 4096], cutAtDeadline: false });
    const got = cpuData(file, 3);
    expect(got[0]!.offset % 4096).toBe(0);
    expect(got[0]!.offset).toBeLessThan(4096 * 2); // right after the header
    expect(got[1]!.offset).toBe(got[0]!.offset + got[0]!.size);
    expect(got[2]!.offset).toBe(got[1]!.offset + got[1]!.size);
    expect(got[2]!.offset + got[2]!.size).toBe(file.length);
    got.forEach((c, i) => expect(c.data.equals(pad(cpus[i]!))).toBe(true));
    // no holes: the file's blocks cover it
    const st = statSync(join(out, 'raw.dat'));
    expect(st.blocks * 512).toBeGreaterThanOrEqual(st.size - 4096);
  });

  it('the deadline passed while reading: the CPUs read until then, said so', async () => {
    const cpus = [randomBytes(10 * 4096), randomBytes(10 * 4096)];
    const { inst, root } = instance('deadline', cpus);
    const out = join(tmp, 'out-deadline');
    mkdirSync(out);
    // A clock that passes the deadline after CPU 0's fourth page.
    let reads = 0;
    const r = await writeTraceDat({
      instanceDir: inst, tracefsRoot: root, events: ['sched/sched_switch'], dir: out, name: 'raw.dat', deadline: 1000, bufferBytesPerCpu: 1024 * 1024, now: () => (++reads > 4 ? 1000 : 0),
    });
    expect(r.cutAtDeadline).toBe(true);
    expect(r.cpuBytes).toEqual([4 * 4096, 0]);
    const got = cpuData(readFileSync(join(out, 'raw.dat')), 2);
    expect(got[0]!.data.equals(cpus[0]!.subarray(0, 4 * 4096))).toBe(true);
    expect(got[1]!.size).toBe(0);
  });

  it('a CPU handing out more than its ring buffer: an error, and no partial file left', async () => {
    const { inst, root } = instance('overfull', [randomBytes(40 * 4096)]);
    const out = join(tmp, 'out-overfull');
    mkdirSync(out);
    await expect(writeTraceDat({ instanceDir: inst, tracefsRoot: root, events: ['sched/sched_switch'], dir: out, name: 'raw.dat', deadline: Date.now() + 60_000, bufferBytesPerCpu: 8 * 4096 }))
      .rejects.toThrow(/more than its ring buffer/);
    expect(existsSync(join(out, 'raw.dat'))).toBe(false);
    expect(readdirSync(out)).toEqual([]);
  });
});
