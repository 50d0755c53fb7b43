/**
 * Notebook parameters with papermill's semantics (papermill/translators.py, parameterize.py),
 * as a registry of language dialects under ./parameters/: one module per language (python.ts,
 * csharp.ts, fsharp.ts, powershell.ts) behind one interface (dialect.ts), with injection
 * (inject.ts) and inspection (inspect.ts) on top. This module is the public face the service,
 * the runner and the tests import.
 */
export type { ParameterInfo } from '../core/contract.ts';
export type { KernelLanguage } from './parameters/dialect.ts';
export { KERNEL_LANGUAGES, languageForKernel } from './parameters/registry.ts';
export {
  codifyParameters,
  INJECTED_PARAMETERS_TAG,
  injectParameters,
  renderValue,
} from './parameters/inject.ts';
export {
  inspectParameters,
  inspectParametersSource,
  PARAMETERS_TAG,
  unknownParameters,
} from './parameters/inspect.ts';
