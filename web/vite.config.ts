import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

// During `npm run dev` the API runs elsewhere (a local `myevents serve`); in production the
// backend serves this bundle itself on the same origin, so the app only ever uses relative URLs.
const api = process.env.MYEVENTS_API ?? 'http://127.0.0.1:8181';
const apiPaths = ['/events', '/locations', '/bookings', '/users', '/auth', '/sales', '/health'];

export default defineConfig({
  // Relative asset URLs: the bundle works wherever the backend mounts it.
  base: './',
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false },
  server: {
    proxy: Object.fromEntries(apiPaths.map((p) => [p, { target: api, changeOrigin: false }])),
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
