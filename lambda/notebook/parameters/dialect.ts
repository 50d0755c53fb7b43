/**
 * The one interface every parameter language implements, on the model of papermill's Translator
 * classes (papermill/translators.py): how to write a value as a literal, a comment and an
 * assignment, which names are taken, and how to read the assignments of a parameters cell back.
 * Each language is one module exporting one Dialect (python.ts, csharp.ts, fsharp.ts,
 * powershell.ts); registry.ts lists them. Injection and inspection use only this interface.
 */
import type { IntegerLiteral } from './literals.ts';
import type { Assignment, CharKind } from './source-scan.ts';

export type KernelLanguage = 'python' | 'csharp' | 'fsharp' | 'powershell';

/**
 * How one language writes each kind of JSON value. The shared walker (literals.ts) validates the
 * value, renders children first and hands the pieces here.
 */
export interface LiteralSyntax {
  null: string;
  bool(value: boolean): string;
  /** An integral number (floats are written the same way in every language). */
  integer(value: IntegerLiteral): string;
  string(value: string): string;
  /** `items` are the rendered elements of `values`. */
  list(items: readonly string[], values: readonly unknown[]): string;
  /** Keys and values already rendered, in the object's order. */
  dict(entries: ReadonlyArray<readonly [key: string, value: string]>): string;
}

export interface Dialect {
  readonly language: KernelLanguage;
  /** Kernel names (lower case) that run this language. */
  readonly kernelNames: readonly string[];
  /** Other kernel names of this language (versioned variants), tried after every exact name. */
  readonly kernelNamePattern?: RegExp;
  /** kernelspec `language` values (lower case) that mean this language. */
  readonly declaredLanguages: readonly string[];
  /** The .NET Interactive sub-kernel that runs a cell of this language, if it is one. */
  readonly dotnetKernel?: string;
  /** A one-line comment. */
  comment(text: string): string;
  /** One statement binding `name` to `literal`. */
  assign(name: string, literal: string): string;
  /** True when `name` (already a plain identifier) cannot be assigned in this language. */
  isReserved(name: string): boolean;
  readonly literals: LiteralSyntax;
  /** The assignments declared in the source of a parameters cell, in order. */
  scan(source: string): Assignment[];
  /** The type of a default's literal text (`kind` classifies each character), or null. */
  infer(value: string, kind: readonly CharKind[]): string | null;
}
