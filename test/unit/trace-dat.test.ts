// The trace.dat header we write (recorder/trace-dat.ts), read back field by field as
// trace-cmd.dat.v6(5) lays it out; the formats taken from an instance directory. The whole
// file against the real kernel and trace-cmd is in test/system/ftrace.test.ts.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { eventFormats, subbufBytes, traceDatHeader } from '../../recorder/trace-dat.js';

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
