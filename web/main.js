// The wgsparse demo: load EfficientNet-Lite0, prune it on the GPU as the slider
// moves, and compare the pruned model's predictions and latency with the dense one.
import init, { Runtime, Model } from "../pkg/wgsparse.js";

const MODEL_URL = "/cache/lite0.safetensors";
const IMAGES = "/cache/images/";
const RUNS = 3; // forward passes per configuration; the latency shown is their median
const DEBOUNCE_MS = 150;
const COLORS = { "unstructured": "#d9480f", "2:4": "#1971c2", "1:4": "#0c8599", "block:4x4": "#7048e8",
  "block:8x8": "#ae3ec9", "block:16x16": "#e64980" };

const $ = (id) => document.getElementById(id);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[(s.length - 1) >> 1] : NaN; };
const fmtMs = (ms) => (Number.isFinite(ms) ? `${ms.toFixed(ms < 100 ? 1 : 0)} ms` : "–");

let model = null;
let image = null;          // ImageData of the current picture
let applied = null;        // the {pattern, sparsity, imageId} the page shows
let imageId = 0;           // bumps on every new picture
let working = false;       // one prune/classify chain at a time
const denseMs = [];        // recent dense forward times
const points = [];         // {sparsity, ms, pattern} for the scatter

function status(text, state = "ready") {
  const el = $("status");
  el.textContent = text;
  el.dataset.state = state;
}

function fail(what, err, hint = "") {
  console.error(err);
  status(`${what}: ${err && err.message ? err.message : err}${hint ? "\n" + hint : ""}`, "error");
  $("progress").hidden = true;
}

/** The user's requested configuration. */
function wanted() {
  const pattern = $("pattern").value;
  const nm = pattern.includes(":") && !pattern.startsWith("block");
  return { pattern, sparsity: nm ? null : Number($("sparsity").value) / 100, imageId };
}

const same = (a, b) => a && b && a.pattern === b.pattern && a.sparsity === b.sparsity && a.imageId === b.imageId;

// ---- loading ---------------------------------------------------------------

async function fetchWithProgress(url, onProgress) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get("content-length")) || 0;
  const reader = res.body.getReader();
  const chunks = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.length;
    onProgress(got, total);
  }
  const bytes = new Uint8Array(got);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  return bytes;
}

async function toImageData(source) {
  const bitmap = source instanceof Blob ? await createImageBitmap(source) : source;
  const c = document.createElement("canvas");
  c.width = bitmap.width; c.height = bitmap.height;
  const g = c.getContext("2d", { willReadFrequently: true });
  g.drawImage(bitmap, 0, 0);
  // The preview shows the centre square the network sees (the crop is done in wasm).
  const side = Math.min(c.width, c.height) * 224 / 256;
  $("preview").getContext("2d").drawImage(bitmap, (c.width - side) / 2, (c.height - side) / 2, side, side, 0, 0, 224, 224);
  return g.getImageData(0, 0, c.width, c.height);
}

async function setImage(source) {
  try {
    image = await toImageData(source);
    imageId++;
    denseMs.length = 0;
    schedule(0);
  } catch (e) {
    fail("Could not read that image", e, "Try a PNG or JPEG file.");
  }
}

async function loadSample(name) {
  const res = await fetch(IMAGES + name);
  if (!res.ok) return fail("Could not load the sample image", new Error(`${name}: HTTP ${res.status}`));
  await setImage(await res.blob());
}

// ---- the prune / classify loop -------------------------------------------

let timer = 0;
function schedule(delay = DEBOUNCE_MS) {
  clearTimeout(timer);
  timer = setTimeout(pump, delay);
}

/** Brings the page to the wanted configuration; never runs twice at once. */
async function pump() {
  if (working || !model || !image) return;
  working = true;
  try {
    for (let want = wanted(); !same(want, applied); want = wanted()) {
      await apply(want);
    }
  } catch (e) {
    fail("The GPU work failed", e);
    applied = null;
  } finally {
    working = false;
  }
}

async function apply(want) {
  const t0 = performance.now();
  const label = want.sparsity === null ? want.pattern : `${want.pattern} at ${Math.round(want.sparsity * 100)}%`;
  if (!applied || applied.imageId !== want.imageId) {
    status("Classifying with the dense model…", "busy");
    let dense;
    for (let i = 0; i < RUNS; i++) {
      dense = await model.classify(image, true);
      denseMs.push(dense.ms);
    }
    showTop5($("dense-top5"), dense.top5);
  }
  const pruneChanged = !applied || applied.pattern !== want.pattern || applied.sparsity !== want.sparsity;
  if (pruneChanged) {
    status(`Pruning to ${label} on the GPU…`, "busy");
    const report = await model.prune({ pattern: want.pattern, sparsity: want.sparsity ?? 0 });
    showLayers(report.layers);
  }
  status(`Classifying with the pruned model (${label})…`, "busy");
  const runs = [];
  let sparse;
  for (let i = 0; i < RUNS; i++) {
    sparse = await model.classify(image, false);
    runs.push(sparse.ms);
  }
  showTop5($("sparse-top5"), sparse.top5);
  const ms = median(runs);
  const sparsity = want.sparsity ?? (want.pattern === "2:4" ? 0.5 : 0.75);
  points.push({ sparsity, ms, pattern: want.pattern });
  $("sparse-ms").textContent = fmtMs(ms);
  $("dense-ms").textContent = fmtMs(median(denseMs.slice(-9)));
  drawScatter();
  const wall = performance.now() - t0;
  $("reprune-ms").textContent = fmtMs(wall);
  applied = want;
  status(`Ready: ${label}. ${pruneChanged ? "Re-prune + classify" : "Classify"} took ${fmtMs(wall)}.`);
}

// ---- drawing ---------------------------------------------------------------

function showTop5(el, top5) {
  el.replaceChildren(...top5.map((p) => {
    const row = document.createElement("div");
    row.className = "pred";
    row.dataset.class = p.class;
    row.innerHTML = `<span class="name" title="${p.class}"></span><span class="mono">${(p.prob * 100).toFixed(1)}%</span>` +
      `<div class="bar"><div style="width:${(p.prob * 100).toFixed(1)}%"></div></div>`;
    row.querySelector(".name").textContent = p.name;
    return row;
  }));
}

function showLayers(layers) {
  const el = $("layers");
  if (!layers.length) {
    el.innerHTML = `<span class="muted">dense: every layer 100%</span>`;
    $("layers-summary").textContent = "";
    return;
  }
  el.replaceChildren(...layers.map((l) => {
    const density = 1 - l.achieved;
    const row = document.createElement("div");
    row.className = "layer";
    row.dataset.density = density.toFixed(4);
    row.title = `${l.rows}×${l.cols}, ${l.pattern}, kernel ${l.kernel}, ${l.sparseBytes} of ${l.denseBytes} bytes`;
    row.innerHTML = `<span class="mono"></span><div class="bar"><div style="width:${(density * 100).toFixed(1)}%"></div></div>` +
      `<span class="mono">${(density * 100).toFixed(1)}%</span>`;
    row.firstChild.textContent = l.name;
    return row;
  }));
  const dense = layers.reduce((s, l) => s + l.denseBytes, 0), sparse = layers.reduce((s, l) => s + l.sparseBytes, 0);
  $("layers-summary").textContent =
    `— ${layers.length} layers, ${(sparse / 2 ** 20).toFixed(1)} MiB stored vs ${(dense / 2 ** 20).toFixed(1)} MiB dense`;
}

function drawScatter() {
  const c = $("scatter"), g = c.getContext("2d");
  const W = c.width, H = c.height, L = 46, B = 24, T = 8, R = 18;
  g.clearRect(0, 0, W, H);
  const all = points.map((p) => p.ms).concat(denseMs);
  const yMax = Math.max(1, ...all) * 1.1;
  const x = (s) => L + (s / 0.95) * (W - L - R), y = (ms) => H - B - (ms / yMax) * (H - B - T);
  g.strokeStyle = "#adb5bd"; g.fillStyle = "#666"; g.font = "11px system-ui"; g.lineWidth = 1;
  g.beginPath(); g.moveTo(L, T); g.lineTo(L, H - B); g.lineTo(W - R, H - B); g.stroke();
  for (const s of [0, 0.25, 0.5, 0.75, 0.95]) g.fillText(`${Math.round(s * 100)}%`, x(s) - 10, H - 8);
  for (const f of [0, 0.5, 1]) g.fillText(`${Math.round(yMax * f / 1.1)}`, 4, y(yMax * f / 1.1) + 4);
  g.fillText("ms", L + 6, T + 10);
  if (denseMs.length) {
    g.setLineDash([5, 4]); g.strokeStyle = "#7a8899";
    const yd = y(median(denseMs.slice(-9)));
    g.beginPath(); g.moveTo(L, yd); g.lineTo(W - R, yd); g.stroke(); g.setLineDash([]);
  }
  for (const p of points) {
    g.fillStyle = COLORS[p.pattern] || "#333";
    g.beginPath(); g.arc(x(p.sparsity), y(p.ms), 3.5, 0, 2 * Math.PI); g.fill();
  }
}

// ---- start -----------------------------------------------------------------

function wireControls() {
  const slider = $("sparsity");
  const syncLabel = () => {
    const nm = wanted().sparsity === null;
    slider.disabled = nm;
    $("sparsity-label").textContent = nm ? `${$("pattern").value === "2:4" ? 50 : 75}%` : `${slider.value}%`;
    $("sparsity-note").textContent = nm ? "(fixed by the N:M pattern)" : "";
  };
  slider.addEventListener("input", () => { syncLabel(); schedule(); });
  $("pattern").addEventListener("change", () => { syncLabel(); schedule(0); });
  $("image").addEventListener("change", () => loadSample($("image").value));
  $("file").addEventListener("change", (e) => e.target.files[0] && setImage(e.target.files[0]));
  const drop = $("drop");
  for (const ev of ["dragenter", "dragover"]) document.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const ev of ["dragleave", "drop"]) document.addEventListener(ev, () => drop.classList.remove("over"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    const f = [...(e.dataTransfer?.files || [])].find((f) => f.type.startsWith("image/"));
    if (f) setImage(f);
  });
  syncLabel();
}

async function main() {
  wireControls();
  if (!navigator.gpu) {
    $("adapter").textContent = "No WebGPU in this browser.";
    return fail("WebGPU is not available", new Error("navigator.gpu is missing"),
      "Open this page in Chrome or Edge 113+ (or Safari 26 / Firefox 141+), or enable WebGPU in your browser's " +
      "settings (chrome://flags/#enable-unsafe-webgpu). Without a browser GPU, run the native demo: scripts/demo.sh");
  }
  let rt;
  try {
    await init();
    rt = await Runtime.create();
  } catch (e) {
    $("adapter").textContent = "No WebGPU adapter.";
    return fail("Could not start WebGPU", e,
      "The browser exposes WebGPU but gave no usable adapter: update the GPU driver, try another browser, " +
      "or run the native demo: scripts/demo.sh");
  }
  const info = rt.adapterInfo;
  $("adapter").textContent = `Adapter: ${info.name || "(unnamed)"} — ${info.backend}, ${info.deviceType}` +
    `${info.timestampQuery ? ", GPU timestamps" : ""}`;

  let bytes;
  try {
    status("Downloading EfficientNet-Lite0 weights…", "busy");
    bytes = await fetchWithProgress(MODEL_URL, (got, total) => {
      const bar = $("progress");
      if (total) { bar.max = total; bar.value = got; } else bar.removeAttribute("value");
      status(`Downloading EfficientNet-Lite0 weights… ${(got / 2 ** 20).toFixed(1)}` +
        `${total ? ` of ${(total / 2 ** 20).toFixed(1)}` : ""} MiB`, "busy");
    });
    status("Uploading the network to the GPU…", "busy");
    model = await Model.load(rt, bytes);
  } catch (e) {
    return fail("Could not load the model", e,
      `Is ${MODEL_URL} the EfficientNet-Lite0 checkpoint? Fetch it again with: cargo run --release -- fetch --cache cache`);
  }
  $("progress").hidden = true;
  await loadSample($("image").value);
}

window.demo = { points, denseMs }; // for the browser tests
main();
