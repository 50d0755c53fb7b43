import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    allowOnly: false,
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', PYDEVD_DISABLE_FILE_VALIDATION: '1' },
    pool: 'forks',
    // Integration tests start real kernels; two cores are all we have.
    maxWorkers: 2,
  },
});
