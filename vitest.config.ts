import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native addons are safest in forked processes (one addon instance per worker).
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
