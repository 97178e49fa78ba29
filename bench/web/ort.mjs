// ONNX Runtime Web (npm `onnxruntime-web`) on the same Dawn `navigator.gpu` as
// the wgsparse package: its WebGPU execution provider, and its wasm (CPU) one.
// The ONNX file comes from scripts/lite0-onnx.py --external (a graph whose
// weights are the very bytes of the checkpoint our package loads).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

const require = createRequire(import.meta.url);
// The package exports no package.json; its wasm file sits in dist/ with the modules.
const ORT_DIR = dirname(require.resolve("onnxruntime-web/ort-wasm-simd-threaded.wasm"));

export function ortVersion() {
  return JSON.parse(readFileSync(join(ORT_DIR, "..", "package.json"), "utf8")).version;
}

/**
 * dawn.node's `writeBuffer`/`writeTexture` reject views of a SharedArrayBuffer
 * ("Invalid argument"), and ORT's wasm memory is one even with one thread:
 * copy such views into a plain buffer first. Browsers accept both; this only
 * makes Dawn under Node take what Chrome takes.
 */
function copySharedViews() {
  const q = globalThis.GPUQueue?.prototype;
  if (!q || q.__wgsparseCopiesShared) return;
  const plain = (d) => {
    const buf = ArrayBuffer.isView(d) ? d.buffer : d;
    if (typeof SharedArrayBuffer === "undefined" || !(buf instanceof SharedArrayBuffer)) return d;
    const bytes = ArrayBuffer.isView(d) ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : new Uint8Array(d);
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    return ArrayBuffer.isView(d) ? new d.constructor(copy.buffer, 0, d.byteLength / (d.BYTES_PER_ELEMENT || 1)) :
      copy.buffer;
  };
  const wb = q.writeBuffer, wt = q.writeTexture;
  // writeBuffer(buffer, offset, data, dataOffset?, size?): dataOffset/size count elements of a typed array.
  q.writeBuffer = function (buffer, offset, data, ...rest) { return wb.call(this, buffer, offset, plain(data), ...rest); };
  q.writeTexture = function (dst, data, ...rest) { return wt.call(this, dst, plain(data), ...rest); };
  q.__wgsparseCopiesShared = true;
}

/**
 * Loads ONNX Runtime Web for `ep` ("webgpu" or "wasm") and creates a session
 * on the ONNX bytes. One wasm thread: threads need workers fed from file URLs
 * under Node, and the comparison is with our single-threaded wasm.
 */
export async function ortSession(onnxBytes, ep, externalData = []) {
  copySharedViews();
  const file = ep === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs";
  const ort = await import(pathToFileURL(join(ORT_DIR, file)).href);
  ort.env.wasm.wasmPaths = pathToFileURL(ORT_DIR + "/").href;
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = "error";
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(onnxBytes, {
    executionProviders: [ep],
    graphOptimizationLevel: "all",
    externalData, // [{ path, data }]: the weights file an ONNX with external data names
  });
  return { ort, session, createMs: performance.now() - t0 };
}

/** Logits of one `[1, 3, 224, 224]` input, and the wall-clock ms of `run` (upload, run, read-back). */
export async function ortRun({ ort, session }, input) {
  const t0 = performance.now();
  const out = await session.run({ input: new ort.Tensor("float32", input, [1, 3, 224, 224]) });
  const logits = out.logits.data instanceof Float32Array ? out.logits.data : await out.logits.getData();
  return { logits: Float32Array.from(logits), ms: performance.now() - t0 };
}
