// Builds the page's script: src/page.ts and its npm dependencies into dist/nmt-web.js, beside
// onnxruntime-web's WebAssembly binary and the page. `nmt export --format web` copies dist/.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";

const nodeOnly = {
  name: "node-only",
  setup(b) {
    b.onResolve({ filter: /^(fs|path|crypto|url|module|worker_threads)$/ }, (a) => ({ path: a.path, namespace: "node-only" }));
    b.onLoad({ filter: /.*/, namespace: "node-only" }, () => ({ contents: "export default {};" }));
  },
};

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist");
await build({
  entryPoints: ["src/page.ts"],
  outfile: "dist/nmt-web.js",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  legalComments: "linked",
  // sentencepiece's emscripten module imports node's modules, and uses them only under node
  plugins: [nodeOnly],
  logLevel: "warning",
});
// the search alone, as a module node runs: tests/runs/test_web.py compares it with the
// runtime's on scripted log-probabilities
await build({
  entryPoints: ["src/search.ts"],
  outfile: "dist/search.mjs",
  bundle: true,
  format: "esm",
  platform: "node",
  target: "es2022",
  logLevel: "warning",
});
copyFileSync("node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm", "dist/ort-wasm-simd-threaded.wasm");
copyFileSync("index.html", "dist/index.html");
// what make's target checks: the build finished
writeFileSync("dist/.built", "");
