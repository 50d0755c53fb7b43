/**
 * The parameter languages, registered by name as papermill's PapermillTranslators registers its
 * translators, and the lookup from a kernel to its language. Adding a language is one Dialect
 * module and one entry here.
 */
import { csharp } from './csharp.ts';
import type { Dialect, KernelLanguage } from './dialect.ts';
import { fsharp } from './fsharp.ts';
import { powershell } from './powershell.ts';
import { python } from './python.ts';

const DIALECTS: Readonly<Record<KernelLanguage, Dialect>> = { python, csharp, fsharp, powershell };

export const KERNEL_LANGUAGES = Object.keys(DIALECTS) as readonly KernelLanguage[];

export function dialectFor(language: KernelLanguage): Dialect {
  return DIALECTS[language];
}

/**
 * The parameter language of a kernel: by kernel name first (python3, .net-csharp, .net-fsharp,
 * .net-pwsh, then versioned names such as python3.12), else by the kernelspec's declared language
 * (python, C#, F#, PowerShell), as papermill's find_translator does. Null when neither is known.
 */
export function languageForKernel(kernelName: string, declared?: string | null): KernelLanguage | null {
  const name = kernelName.trim().toLowerCase();
  const dialects = KERNEL_LANGUAGES.map(dialectFor);
  const byName =
    dialects.find((d) => d.kernelNames.includes(name)) ??
    dialects.find((d) => d.kernelNamePattern?.test(name));
  if (byName) return byName.language;
  const lang = (declared ?? '').trim().toLowerCase();
  return dialects.find((d) => d.declaredLanguages.includes(lang))?.language ?? null;
}
