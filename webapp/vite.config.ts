/// <reference types="vitest/config" />
import tailwindcss from '@tailwindcss/vite';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The API the dev server proxies to (`suiftly api` listens on 127.0.0.1:9470 by default).
const api = process.env.SUIFTLY_API_URL ?? 'http://127.0.0.1:9470';
const apiPrefixes = ['/auth', '/services', '/keys', '/billing', '/stats', '/openapi.json', '/health'];

export default defineConfig({
  // Served by `suiftly api` under /app/ (api/src/static_files.rs MOUNT): keep them equal.
  base: '/app/',
  plugins: [react(), tailwindcss()],
  build: {
    // Chromium supports modulepreload natively; the polyfill would be inline code the CSP refuses.
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: Object.fromEntries(apiPrefixes.map((p) => [p, { target: api, changeOrigin: false }])),
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
