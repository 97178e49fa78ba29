// The package under Node, as the benchmark harness (bench/web/) drives it:
// without WebGPU it says so (not "vulkan support not compiled in"); with Dawn
// (npm `webgpu`, Chrome's WebGPU) on navigator.gpu but no window-like global it
// says what is missing; with both it runs, checked against a JS reference.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";

const SWIFTSHADER = "/usr/lib/chromium/vk_swiftshader_icd.json"; // Dawn rejects lavapipe
if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER)) process.env.VK_ICD_FILENAMES = SWIFTSHADER;

const pkg = await import("../../pkg/wgsparse.js");
await pkg.default({ module_or_path: readFileSync("pkg/wgsparse_bg.wasm") });

async function createError() {
  try { await pkg.Runtime.create(); return "created"; } catch (e) { return e.message; }
}

test("package under Node: WebGPU missing, then no window global, then Dawn works", { timeout: 300_000 }, async () => {
  // 1. Plain Node: no navigator.gpu.
  const none = await createError();
  console.log(`  no navigator.gpu: ${none}`);
  assert.match(none, /^WebGPU is not available here: this page has no navigator\.gpu\. Open it in a browser with WebGPU/);
  assert.doesNotMatch(none, /vulkan support|install a Vulkan/i);

  // 2. Dawn on navigator.gpu, but no Window / WorkerGlobalScope on the global.
  const { create, globals } = await import("webgpu");
  Object.assign(globalThis, globals);
  Object.defineProperty(globalThis, "navigator", { value: { gpu: create(["backend=vulkan"]) }, configurable: true });
  const noWindow = await createError();
  console.log(`  no Window: ${noWindow}`);
  assert.match(noWindow, /^navigator\.gpu exists, but this global object is neither a window nor a dedicated worker/);

  // 3. What bench/web/dawn.mjs adds: a Window property. Now it runs.
  globalThis.Window = function Window() {};
  const rt = await pkg.Runtime.create();
  console.log(`  Dawn adapter: ${rt.adapterInfo.name} (${rt.adapterInfo.backend})`);
  assert.equal(rt.adapterInfo.backend, "BrowserWebGpu");
  const [m, k, n] = [13, 24, 5];
  const w = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i * 1.3));
  const x = Float32Array.from({ length: k * n }, (_, i) => Math.cos(i * 0.7));
  const mat = rt.sparseMatrix(w, m, k, { pattern: "2:4" });
  const y = await mat.matmul(x, n), kept = await mat.toDense();
  let err = 0, zeros = 0;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += kept[i * k + p] * x[p * n + j];
      err = Math.max(err, Math.abs(s - y[i * n + j]));
    }
  }
  for (const v of kept) zeros += v === 0;
  assert.equal(zeros, m * k / 2, "2:4 keeps half");
  assert.ok(err < 1e-4, `max |GPU - JS| ${err}`);
  assert.throws(() => rt.sparseMatrix(w, m, k, { pattern: "unstructured" }),
    /sparseMatrix options\.sparsity is required for "unstructured"/);
  assert.throws(() => rt.sparseMatrix(w, m, k, { pattern: "2:4", sparsity: 0.9 }),
    /pattern "2:4" fixes the sparsity at 0\.5, but sparsity is 0\.9/);
  assert.throws(() => rt.sparseMatrix(w, m, k, { pattern: "2:4", sparsty: 0.5 }), /unknown option "sparsty"/);
  mat.free();
});
