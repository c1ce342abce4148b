import { defineConfig } from "vite";

// Content-hashed files under dist/assets/ (served with a one-year cache by tasks-api); no inline
// script or style, so the page runs under a strict Content-Security-Policy.
export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
  server: { proxy: { "/v1": "http://127.0.0.1:8080" } },
});
