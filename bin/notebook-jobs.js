#!/usr/bin/env node
// npm `bin` entry: load the TypeScript CLI through tsx.
import { register } from 'tsx/esm/api';

register();
await import('./notebook-jobs.ts');
