// What a page gives the wgsparse package and ONNX Runtime Web, given to Node:
// Dawn (Chrome's WebGPU implementation, npm `webgpu` = dawn.node) on
// `navigator.gpu`, and PNG photos as ImageData-shaped objects. The package
// itself has no Node-specific code; these polyfills live here, in the harness.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { PNG } from "pngjs";

const require = createRequire(import.meta.url);

/** The `webgpu` package's version (dawn.node), for the figures' device line. */
export function dawnVersion() {
  return JSON.parse(readFileSync(join(dirname(require.resolve("webgpu")), "package.json"), "utf8")).version;
}

/**
 * Installs Dawn as the page's `navigator.gpu` and returns the `GPU` object.
 * `backend` is dawn.node's backend name ("vulkan" here and on the lent GPU).
 *
 * What wgpu's web backend and its wasm-bindgen glue need, and why:
 * - the WebGPU classes on the global (`GPUValidationError` is checked with instanceof);
 * - `navigator.gpu` (Node >= 21 has a read-only `navigator`: defined, not assigned);
 * - a `Window` property on the global: wgpu takes `navigator.gpu` from a window or
 *   a dedicated worker and refuses anything else ("Accessing the GPU is only
 *   supported on the main thread or from a dedicated worker").
 */
export async function installWebGpu({ backend = "vulkan" } = {}) {
  const { create, globals } = await import("webgpu");
  Object.assign(globalThis, globals);
  const gpu = create([`backend=${backend}`]);
  Object.defineProperty(globalThis, "navigator", { value: { gpu, userAgent: `node ${process.version}` },
    configurable: true, writable: true });
  if (!("Window" in globalThis)) globalThis.Window = function Window() {};
  return gpu;
}

/** Adapter facts for the report: name, vendor, architecture, description. */
export async function adapterFacts(gpu) {
  const a = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!a) throw new Error("Dawn found no adapter: on a machine without a GPU point Vulkan at SwiftShader " +
    "(VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json; Dawn rejects Mesa's lavapipe)");
  const i = a.info || {};
  return { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description,
    features: [...a.features].sort() };
}

/** A PNG file as `{ width, height, data }` of RGBA bytes: what the package takes where a page passes ImageData. */
export function readImage(path) {
  const png = PNG.sync.read(readFileSync(path));
  return { width: png.width, height: png.height, data: new Uint8ClampedArray(png.data.buffer, png.data.byteOffset,
    png.data.length) };
}
