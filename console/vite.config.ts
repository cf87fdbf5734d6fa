/// <reference types="vitest/config" />
import react from '@vitejs/plugin-react';
import {defineConfig} from 'vite';

// Hashed file names under assets/ (the server caches those as immutable); no inline script or
// style (the server's Content-Security-Policy forbids them); no modulepreload polyfill (every
// browser the console supports has modulepreload).
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    assetsInlineLimit: 0,
    modulePreload: {polyfill: false},
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: true,
  },
  server: {
    // `npm run dev` against a gantry server: GANTRY_URL=http://127.0.0.1:8080 npm run dev
    proxy: {'/api': process.env.GANTRY_URL ?? 'http://127.0.0.1:8080'},
  },
  test: {
    environment: 'jsdom',
    globals: true,
    include: ['src/**/*.test.{ts,tsx}'],
    setupFiles: ['src/test-setup.ts'],
    testTimeout: 20000,
  },
});
