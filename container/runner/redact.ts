/**
 * Redaction of a job's secret values (and redacted parameter values) from everything the runner
 * stores: log lines, the executed notebook, the job's error and progress. Each occurrence of a value,
 * and of its common encodings, becomes `[redacted:NAME]`.
 *
 * What this is for: keeping values out of what people and agents read afterwards (logs, notebooks,
 * HTML, result summaries) when a notebook prints, displays or raises with them by accident. It is
 * not a barrier against a notebook that wants to leak its own secret: code that prints it reversed,
 * split across outputs, or drawn into an image gets it out. A notebook is trusted with the secrets
 * its job names (docs/architecture.md, Secrets).
 */
import { MIN_SECRET_CHARS, redactionMark } from '../../lambda/core/secrets.ts';
import type { JobError } from '../../lambda/core/job.ts';

/** Non-ASCII characters as \uXXXX, as Python's json.dumps writes them by default (ensure_ascii). */
const asciiEscaped = (json: string) =>
  json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

const jsonInner = (text: string) => JSON.stringify(text).slice(1, -1);

/**
 * The base64 text of `bytes` wherever they sit in a longer encoded text: for each of the three
 * alignments, the characters that depend on these bytes only (base64 encodes 3 bytes as 4
 * characters, so a value at another offset encodes differently).
 */
function base64Cores(bytes: Buffer): string[] {
  const cores: string[] = [];
  for (let shift = 0; shift < 3; shift++) {
    const encoded = Buffer.concat([Buffer.alloc(shift), bytes]).toString('base64');
    const firstGroup = shift === 0 ? 0 : 1; // a group with filler bytes depends on unknown bytes
    const lastGroup = Math.floor((shift + bytes.length) / 3); // groups made of value bytes only
    const core = encoded.slice(firstGroup * 4, lastGroup * 4);
    if (core.length >= 8) cores.push(core);
  }
  return cores;
}

/** Every form of one value that is searched for. */
export function valueForms(value: string): string[] {
  const forms = new Set<string>();
  const addText = (text: string) => {
    forms.add(text);
    const json = jsonInner(text);
    forms.add(json); // inside a JSON string (a notebook, a printed json.dumps)
    forms.add(asciiEscaped(json));
    forms.add(jsonInner(json)); // JSON inside JSON
    forms.add(encodeURIComponent(text));
    forms.add(encodeURIComponent(text).replace(/%20/g, '+')); // form encoding (urlencode)
  };
  addText(value);
  // A multi-line value (a PEM key) is printed and logged line by line: each line is searched too.
  if (/[\r\n]/.test(value)) for (const line of value.split(/\r?\n|\r/)) if (line.trim()) addText(line);
  const bytes = Buffer.from(value, 'utf8');
  forms.add(bytes.toString('base64'));
  forms.add(bytes.toString('base64url'));
  for (const core of base64Cores(bytes)) forms.add(core);
  return [...forms].filter((form) => form.length >= MIN_SECRET_CHARS);
}

/** A string's UTF-8 bytes, one latin1 character per byte. */
const asLatin1 = (text: string) => Buffer.from(text, 'utf8').toString('latin1');

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The values of one job, and every place they are redacted from. */
export class Redactor {
  private readonly marks = new Map<string, string>();
  private pattern: RegExp | null = null;
  /** The same forms as UTF-8 bytes seen as latin1 characters: for files that need not be text. */
  private bytePattern: RegExp | null = null;

  /** Adds a value to redact, shown as `[redacted:name]`. */
  add(name: string, value: string): void {
    for (const form of valueForms(value))
      if (!this.marks.has(form)) this.marks.set(form, redactionMark(name));
    // Longest first, so a value containing another is replaced whole.
    const forms = [...this.marks.keys()].sort((a, b) => b.length - a.length);
    this.pattern = forms.length ? new RegExp(forms.map(escapeRegExp).join('|'), 'g') : null;
    this.bytePattern = forms.length
      ? new RegExp(forms.map((form) => escapeRegExp(asLatin1(form))).join('|'), 'g')
      : null;
  }

  get active(): boolean {
    return this.pattern !== null;
  }

  text(text: string): string {
    return this.pattern ? text.replace(this.pattern, (form) => this.marks.get(form) as string) : text;
  }

  /**
   * A line cut short (a log line over its limit): besides whole occurrences, an end that is the
   * beginning of a value is redacted, since the cut may fall inside one.
   */
  truncated(text: string): string {
    const out = this.text(text);
    let cut = 0;
    let cutMark = '';
    for (const [form, mark] of this.marks) {
      for (let k = Math.min(form.length - 1, out.length); k > cut; k--) {
        if (out.endsWith(form.slice(0, k))) {
          cut = k;
          cutMark = mark;
          break;
        }
      }
    }
    return cut ? out.slice(0, out.length - cut) + cutMark : out;
  }

  /** A stored file's bytes (the executed notebook), as UTF-8 text. */
  buffer(body: Buffer): Buffer {
    return this.pattern ? Buffer.from(this.text(body.toString('utf8')), 'utf8') : body;
  }

  /**
   * A file the notebook wrote, text or binary: every form is matched as its UTF-8 bytes, and the
   * bytes around it are kept as they are (a binary file is not decoded as text).
   */
  bytes(body: Buffer): Buffer {
    if (!this.bytePattern) return body;
    const marks = new Map([...this.marks].map(([form, mark]) => [asLatin1(form), asLatin1(mark)]));
    const out = body.toString('latin1').replace(this.bytePattern, (form) => marks.get(form) as string);
    return Buffer.from(out, 'latin1');
  }

  error(error: JobError | null): JobError | null {
    if (!error || !this.pattern) return error;
    const opt = (text: string | null | undefined) => (typeof text === 'string' ? this.text(text) : text);
    return {
      ...error,
      message: this.text(error.message),
      ...(error.ename !== undefined ? { ename: opt(error.ename) } : {}),
      ...(error.evalue !== undefined ? { evalue: opt(error.evalue) } : {}),
      ...(error.traceback ? { traceback: error.traceback.map((line) => this.text(line)) } : {}),
    };
  }
}
