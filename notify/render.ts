// Mail rendering, pure: the subject from its template, the plain-text body of a crash, rule
// or digest mail, and the sanitizing of every hostile string (exe, comm, cmdline, reason,
// labels: chosen by whoever crashed or wrote the log line) before it reaches a header.
import { MAIL_TEMPLATE_FIELDS } from '../lib/config.js';
import { escapeControl } from '../lib/escape.js';
import { formatSize } from '../lib/units.js';
import type { DigestItem } from '../store/index-db.js';
import type { Manifest } from '../store/manifest.js';

export type TemplateField = (typeof MAIL_TEMPLATE_FIELDS)[number];
export type SubjectFields = Record<TemplateField, string>;

/** One field of a subject: a long path keeps its end, which names the program. */
export const MAX_SUBJECT_FIELD_CHARS = 100;
/** RFC 5322 recommends lines of at most 78 characters; nodemailer folds, we only cap. */
export const MAX_SUBJECT_CHARS = 250;
export const MAX_BODY_FRAMES = 12;
export const MAX_METRICS_SUMMARY_LINES = 60;
export const MAX_DIGEST_ITEMS = 500;
const MAX_BODY_FIELD_CHARS = 1000;

/**
 * A hostile string made safe for a header: control characters (CR and LF above all), DEL,
 * C1, bidi overrides and zero-width characters become visible escapes (\x0d\x0a), so
 * nothing can end the header line or start another; cut at `max` characters.
 */
export function headerSafe(s: string, max = MAX_SUBJECT_FIELD_CHARS): string {
  const e = escapeControl(s, Number.MAX_SAFE_INTEGER);
  const chars = [...e];
  if (chars.length <= max) return e;
  return `…${chars.slice(chars.length - (max - 1)).join('')}`;
}

/** The last line of defence for a whole header value: no control character survives. */
function noControls(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, ' ');
}

/** A hostile string for one line of the body: escaped, so it cannot forge lines. */
function bodySafe(s: string, max = MAX_BODY_FIELD_CHARS): string {
  return escapeControl(s, max);
}

/** The template fields of an event. Absent values are "?". */
export function subjectFields(m: Manifest, extra: { rule?: string | null; reason?: string | null } = {}): SubjectFields {
  const p = m.process;
  const q = (v: string | number | null | undefined): string => (v === null || v === undefined || v === '' ? '?' : String(v));
  return {
    host: q(m.host.hostname),
    exe: q(p?.exe ?? (p?.comm ? `(${p.comm})` : null)),
    comm: q(p?.comm),
    pid: q(p?.pid),
    uid: q(p?.uid),
    signal: q(p?.signalName ?? p?.signal),
    id: m.id,
    signature: q(m.signature?.hash.slice(0, 12)),
    time: m.time,
    kind: m.kind,
    rule: q(extra.rule ?? m.rule),
    reason: q(extra.reason ?? m.reason),
  };
}

/** Fill `{field}`s; every value is made header-safe on the way in. Unknown fields stay as written. */
export function renderSubject(template: string, fields: Partial<SubjectFields>): string {
  const filled = template.replace(/\{([A-Za-z]+)\}/g, (all, name: string) => {
    const v = (fields as Record<string, string | undefined>)[name];
    return v === undefined ? all : headerSafe(v);
  });
  const s = noControls(filled).replace(/ {2,}/g, ' ').trim();
  const chars = [...s];
  return chars.length <= MAX_SUBJECT_CHARS ? s : `${chars.slice(0, MAX_SUBJECT_CHARS - 1).join('')}…`;
}

/** What became of the archive, for the body. */
export type AttachmentNote =
  | { kind: 'full'; filename: string; bytes: number }
  | { kind: 'no-core'; filename: string; bytes: number; fullBytes: number | null }
  | { kind: 'none'; why: string };

export interface BodyInput {
  /** why this mail: a crash (mail.to), a rule's mail action, or `flightbox mail` */
  kind: 'crash' | 'rule' | 'manual';
  manifest: Manifest;
  rule: string | null;
  reason: string | null;
  /** "host:/var/lib/flightbox/bundles/DAY/ID" */
  location: string;
  /** the command line as it may be mailed (redacted when mail.redact) */
  cmdline: string[] | null;
  /** recorder/metrics/summary.txt of the bundle, if any */
  metricsSummary: string | null;
  attachment: AttachmentNote;
  redact: boolean;
  maxAttachmentBytes: number;
  /** flightbox's version, for the footer */
  version: string;
}

function row(label: string, value: string): string {
  return `  ${label.padEnd(11)}${value}`;
}

/** The plain-text body of a mail about one event. */
export function renderBody(b: BodyInput): string {
  const m = b.manifest;
  const p = m.process;
  const host = bodySafe(m.host.hostname, 255);
  const out: string[] = [];
  if (b.kind === 'rule' && b.rule) {
    out.push(`Rule ${bodySafe(b.rule, 64)} fired on ${host}${b.reason ? `: ${bodySafe(b.reason)}` : ''}.`);
  } else if (m.kind === 'crash') {
    out.push(`A process crashed on ${host}: ${bodySafe(p?.exe ?? p?.comm ?? 'unknown program')}${p ? `, signal ${p.signal} (${bodySafe(p.signalName, 16)})` : ''}.`);
  } else {
    out.push(`A snapshot was taken on ${host}${m.reason ? `: ${bodySafe(m.reason)}` : ''}.`);
  }
  out.push('');
  out.push(row('event', m.id));
  out.push(row('time', m.time));
  out.push(row('host', `${host} (kernel ${bodySafe(m.host.kernel, 100)}${m.host.bootId ? `, boot ${bodySafe(m.host.bootId, 40)}` : ''})`));
  if (m.rule) out.push(row('rule', bodySafe(m.rule, 64)));
  if (m.reason && !(b.kind === 'rule' && b.reason === m.reason)) out.push(row('reason', bodySafe(m.reason)));
  for (const [k, v] of Object.entries(m.labels ?? {})) out.push(row(`label`, `${bodySafe(k, 64)}=${bodySafe(v, 200)}`));
  if (p) {
    out.push(row('executable', bodySafe(p.exe ?? '(unknown)')));
    const ns = p.pidInNamespace !== null && p.pidInNamespace !== p.pid ? ` (${p.pidInNamespace} in its namespace)` : '';
    out.push(row('process', `${p.comm === null ? '(unknown)' : JSON.stringify(bodySafe(p.comm, 64))}, pid ${p.pid}${ns}, uid ${p.uid}, gid ${p.gid}`));
    out.push(row('signal', `${p.signal} (${bodySafe(p.signalName, 16)})`));
    if (b.cmdline) out.push(row('command', bodySafe(b.cmdline.join(' '), 2000)));
    if (p.unit) out.push(row('unit', bodySafe(p.unit, 200)));
    if (p.inContainer) out.push(row('container', 'yes'));
  }
  if (m.signature) out.push(row('signature', `${m.signature.hash.slice(0, 16)} ${bodySafe(m.signature.text, 300)}`));
  if (m.core) {
    const c = m.core;
    out.push(row('core', c.stored
      ? `${formatSize(c.size)}${c.compression && c.compression !== 'none' ? ` (${c.compression}, ${formatSize(c.storedSize)} stored)` : ''}${c.truncated ? `, truncated (${bodySafe(c.reason ?? 'limit', 80)})` : ''}`
      : `not stored${c.reason ? ` (${bodySafe(c.reason, 80)})` : ''}`));
  }

  if (m.kind === 'crash') {
    out.push('');
    const frames = m.backtrace?.frames ?? [];
    if (m.backtrace && frames.length > 0) {
      const tid = m.backtrace.crashingTid !== null ? ` (thread ${m.backtrace.crashingTid})` : '';
      out.push(`Stack trace of the crashing thread${tid}, ${m.backtrace.tool ?? 'unknown tool'}:`);
      frames.slice(0, MAX_BODY_FRAMES).forEach((f, i) => {
        const where = [f.module ? `in ${bodySafe(f.module, 200)}` : '', f.source ? `at ${bodySafe(f.source, 300)}` : ''].filter(Boolean).join(' ');
        out.push(`  #${String(i).padEnd(3)}${f.addr ? `${bodySafe(f.addr, 20)} ` : ''}${bodySafe(f.fn ?? '??', 300)}${where ? ` ${where}` : ''}`);
      });
      if (frames.length > MAX_BODY_FRAMES) out.push(`  ... ${frames.length - MAX_BODY_FRAMES} more frame(s) in backtrace.txt`);
    } else {
      out.push('No stack trace was taken (see the warnings).');
    }
  }

  out.push('');
  if (b.metricsSummary !== null && b.metricsSummary.trim() !== '') {
    out.push(m.kind === 'crash' ? 'Before the crash, the flight recorder saw:' : 'The flight recorder saw:');
    const lines = b.metricsSummary.replace(/\n$/, '').split('\n');
    for (const l of lines.slice(0, MAX_METRICS_SUMMARY_LINES)) out.push(`  ${bodySafe(l, 300)}`.trimEnd());
    if (lines.length > MAX_METRICS_SUMMARY_LINES) out.push(`  ... (${lines.length - MAX_METRICS_SUMMARY_LINES} more lines in recorder/metrics/summary.txt)`);
  } else {
    out.push('No metrics from the flight recorder are in this bundle.');
  }

  if (m.warnings.length > 0) {
    out.push('', `Warnings (${m.warnings.length}):`);
    for (const w of m.warnings.slice(0, 20)) out.push(`  - ${bodySafe(w, 500)}`);
    if (m.warnings.length > 20) out.push(`  ... ${m.warnings.length - 20} more (flightbox info ${m.id})`);
  }

  out.push('');
  const redacted = b.redact ? ', without environ and with secrets in command lines masked' : '';
  const limit = formatSize(b.maxAttachmentBytes);
  const where = bodySafe(b.location, 2000);
  switch (b.attachment.kind) {
    case 'full':
      out.push(`Attached: ${b.attachment.filename} (${formatSize(b.attachment.bytes)}), the whole bundle${redacted}.`);
      break;
    case 'no-core':
      out.push(`Attached: ${b.attachment.filename} (${formatSize(b.attachment.bytes)}), the bundle without the core dump${redacted}:`);
      out.push(`with the core it is ${b.attachment.fullBytes === null ? 'larger than' : `${formatSize(b.attachment.fullBytes)}, over`} mail.maxAttachment (${limit}).`);
      out.push(`The full bundle is on ${where}`);
      break;
    case 'none':
      out.push(`Nothing is attached: ${bodySafe(b.attachment.why, 500)}.`);
      out.push(`The bundle is on ${where}`);
      break;
  }
  out.push('', `On ${host}: flightbox info ${m.id}${m.core?.stored ? `; flightbox debug ${m.id}` : ''}`);
  out.push('', '-- ', `flightbox ${b.version}`);
  return `${out.join('\n')}\n`;
}

export interface DigestInput {
  host: string;
  /** "crash" or "rule:NAME" */
  group: string;
  windowStart: number;
  windowMs: number;
  maxPerHour: number;
  items: DigestItem[];
  version: string;
}

function describeGroup(group: string): string {
  return group === 'crash' ? 'crashes' : group.startsWith('rule:') ? `rule ${group.slice(5)}` : group;
}

export function digestSubject(d: Pick<DigestInput, 'host' | 'group' | 'items'>): string {
  const n = d.items.length;
  const what = d.group === 'crash' ? `crash${n === 1 ? '' : 'es'}` : `event${n === 1 ? '' : 's'} of ${headerSafe(describeGroup(d.group), 80)}`;
  return renderSubject(`[flightbox] {host}: ${n} more ${what} not mailed one by one`, { host: d.host });
}

/** The digest: one line per event that storm control kept from being mailed on its own. */
export function renderDigest(d: DigestInput): string {
  const host = bodySafe(d.host, 255);
  const out: string[] = [];
  const what = describeGroup(d.group);
  out.push(`${d.items.length} event${d.items.length === 1 ? '' : 's'} of ${bodySafe(what, 80)} on ${host} were not mailed one by one:`);
  out.push(`mail.maxPerHour allows ${d.maxPerHour} mail${d.maxPerHour === 1 ? '' : 's'} per ${Math.round(d.windowMs / 60_000)} min, and this window began at ${new Date(d.windowStart).toISOString()}.`);
  out.push('');
  for (const it of d.items.slice(0, MAX_DIGEST_ITEMS)) {
    const t = new Date(it.time ?? it.created_at).toISOString();
    const what2 = it.exe ?? (it.comm ? `(${it.comm})` : null);
    const detail = [
      what2 ? bodySafe(what2, 200) : null,
      it.pid !== null ? `pid ${it.pid}` : null,
      it.signal_name ? bodySafe(it.signal_name, 16) : null,
      it.signature_text ? bodySafe(it.signature_text, 200) : null,
      it.kind === 'rule' && (it.reason ?? it.event_reason) ? bodySafe((it.reason ?? it.event_reason)!, 300) : null,
      it.time === null ? '(no longer in the index)' : null,
    ].filter((x): x is string => x !== null);
    out.push(`  ${t}  ${it.event_id ?? '-'}  ${detail.join(', ')}`);
  }
  if (d.items.length > MAX_DIGEST_ITEMS) out.push(`  ... and ${d.items.length - MAX_DIGEST_ITEMS} more (flightbox list on ${host})`);
  out.push('', `On ${host}: flightbox info ID for any of them.`);
  out.push('', '-- ', `flightbox ${d.version}`);
  return `${out.join('\n')}\n`;
}
