// The wgsparse demo: load EfficientNet-Lite0, prune it on the GPU as the slider
// moves, and compare the pruned model's predictions and latency with the dense one.
//
// One loop (pump) does all GPU work, one step at a time, always towards the
// latest state of the controls: re-prune, classify the picture, read back the
// selected layer's mask, classify camera frames. The model takes one call at a
// time (the package would queue overlapping calls, but the page wants the latest
// controls to win, not every value the slider passed), and every step awaits the
// GPU, so the page's main thread stays free.
import init, { Runtime, Model } from "../pkg/wgsparse.js";

const MODEL_URL = "/cache/lite0.safetensors";
const TRAINED_URL = (name) => `/models/${name}.safetensors`;
const IMAGES = "/cache/images/";
const RUNS = 3; // forward passes per configuration and picture
const RECENT = 9; // the latency shown is the median of this many recent runs
const ROLLING = 5; // the chart over time draws the median of this many runs
const TIMELINE_RUNS = 80; // runs of each kind kept in the chart over time
const MASK_CELLS = 256; // the heat map has at most this many cells a side
const DEBOUNCE_MS = 150;
const COLORS = { "unstructured": "#d9480f", "2:4": "#1971c2", "1:4": "#0c8599", "block:4x4": "#7048e8",
  "block:8x8": "#ae3ec9", "block:16x16": "#e64980" };

const $ = (id) => document.getElementById(id);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[(s.length - 1) >> 1] : NaN; };
const fmtMs = (ms) => (Number.isFinite(ms) ? `${ms.toFixed(ms < 100 ? 1 : 0)} ms` : "–");
const pause = (ms) => new Promise((ok) => setTimeout(ok, ms));
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

let model = null;          // the dense checkpoint, pruned live
const trained = new Map(); // sparse-trained file name -> its Model (loaded on first use)
let prunable = [];         // model.prunableLayers
let image = null;          // ImageData of the current picture
let imageId = 0;           // bumps on every new picture
let pruned = null;         // the prune options the model has now
let pruneStarted = 0;      // performance.now() of the last prune, until a classification reports it
let shown = "";            // `${key}#${imageId}` of the picture's results on screen
let denseFor = -1;         // imageId of the dense results on screen
let maskShown = "";        // `${layer}#${key}` of the heat map on screen
let working = false;       // pump is running
let rt = null;             // the WebGPU runtime
let calibrated = null;     // names of the images the model was calibrated on
const runs = [];           // every forward pass: {t, dense, ms, key}
const marks = [];          // re-prunes: {t, label}
const points = new Map();  // `${pattern}|${sparsity}` -> {pattern, sparsity, runs: [ms]}: the scatter
const camera = { stream: null, frames: 0, key: "" };

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

const isNm = (pattern) => pattern.includes(":") && !pattern.startsWith("block");

/** The prune the controls ask for. */
function wanted() {
  const pattern = $("pattern").value;
  return {
    weights: $("weights").value,
    pattern,
    sparsity: isNm(pattern) ? null : Number($("sparsity").value) / 100,
    criterion: $("criterion").value,
    biasCorrection: $("bias").checked,
    renorm: $("renorm").checked,
  };
}

const keyOf = (w) => w.weights !== "live" ? `trained|${w.weights}` :
  `${w.pattern}|${w.sparsity}|${w.criterion}|${w.biasCorrection}|${w.renorm}`;
/** The model that runs the pruned column: the live-pruned one or a sparse-trained file. */
const prunedModel = (w) => (w.weights === "live" ? model : trained.get(w.weights));
/** The fraction pruned: a sparse-trained file's, the slider's, or the N:M pattern's own. */
const sparsityOf = (w) => w.weights !== "live" && trained.has(w.weights) ? trained.get(w.weights).info.sparsity :
  w.sparsity ?? (1 - Number(w.pattern.split(":")[0]) / Number(w.pattern.split(":")[1]));
/** The pattern shown: a sparse-trained file's (marked), or the control's. */
const patternOf = (w) => w.weights !== "live" && trained.has(w.weights) ?
  `${trained.get(w.weights).info.pattern} sparse-trained` : w.pattern;
function labelOf(w) {
  if (w.weights !== "live") return $("weights").selectedOptions[0].textContent;
  let s = w.sparsity === null ? w.pattern : `${w.pattern} at ${Math.round(w.sparsity * 100)}%`;
  if (w.criterion !== "magnitude") s += `, ${w.criterion}`;
  if (w.biasCorrection) s += ", bias-corrected";
  if (w.renorm) s += ", re-normalized";
  return s;
}

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

/** RGBA pixels of an image, bitmap or video frame; the preview shows the centre square the network sees. */
function toImageData(source, width, height, preview = true) {
  const c = document.createElement("canvas");
  c.width = width; c.height = height;
  const g = c.getContext("2d", { willReadFrequently: true });
  g.drawImage(source, 0, 0, width, height);
  if (!preview) return g.getImageData(0, 0, width, height);
  // The crop itself is done in wasm; this only mirrors it.
  const side = Math.min(width, height) * 224 / 256;
  $("preview").getContext("2d").drawImage(c, (width - side) / 2, (height - side) / 2, side, side, 0, 0, 224, 224);
  return g.getImageData(0, 0, width, height);
}

async function setImage(blob) {
  try {
    const bitmap = await createImageBitmap(blob);
    stopCamera();
    image = toImageData(bitmap, bitmap.width, bitmap.height);
    imageId++;
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

// ---- the GPU loop ----------------------------------------------------------

let timer = 0;
function schedule(delay = DEBOUNCE_MS) {
  clearTimeout(timer);
  timer = setTimeout(pump, delay);
}

/** Brings the page to what the controls ask for, one GPU step at a time; never runs twice at once. */
async function pump() {
  if (working || !model) return;
  working = true;
  try {
    for (;;) {
      const want = wanted(), key = keyOf(want);
      const layer = Number($("mask-layer").value);
      if (!pruned || keyOf(pruned) !== key) {
        if (want.weights === "live") await prune(want);
        else await useTrained(want);
      } else if (!camera.stream && image && shown !== `${key}#${imageId}`) {
        await classifyPicture(want);
      } else if (prunable.length && maskShown !== `${layer}#${key}`) {
        await showMask(layer, key, want);
      } else if (camera.stream) {
        await classifyFrame(want);
        await pause(0); // let input and rendering in between frames
      } else {
        // Nothing left to run (e.g. a prune that needed no new classification).
        if ($("status").dataset.state === "busy") status(`Ready: ${labelOf(want)}.`);
        break;
      }
    }
  } catch (e) {
    fail("The GPU work failed", e);
    stopCamera();
    pruned = null;
  } finally {
    working = false;
  }
}

/** Switches the pruned column to a sparse-trained file (downloaded and loaded once). */
async function useTrained(want) {
  if (!trained.has(want.weights)) {
    status(`Downloading the ${labelOf(want)} weights…`, "busy");
    const bytes = await fetchWithProgress(TRAINED_URL(want.weights), () => {});
    status(`Uploading the ${labelOf(want)} network to the GPU…`, "busy");
    const m = await Model.load(rt, bytes);
    if (!m.info) throw new Error(`${want.weights} is not a sparse file`);
    trained.set(want.weights, m);
  }
  const info = trained.get(want.weights).info;
  $("weights-note").textContent = info.sparseTrained || "";
  pruned = want;
  marks.push({ t: performance.now(), label: labelOf(want) });
  showLayers(info.layers);
}

/** The prune options for wasm (an N:M pattern fixes the sparsity itself). */
const options = (w) => ({ pattern: w.pattern, ...(w.sparsity === null ? {} : { sparsity: w.sparsity }),
  criterion: w.criterion, biasCorrection: w.biasCorrection, renorm: w.renorm });

const needsCalibration = (w) => w.criterion !== "magnitude" || w.biasCorrection || w.renorm;

/**
 * The activation criterion and bias correction need activation statistics:
 * measured once, on the sample images other than the current picture (as the
 * CLI does, never the classified image itself).
 */
async function calibrate() {
  const names = [...$("image").options].map((o) => o.value).filter((n) => n !== $("image").value || camera.stream);
  status(`Calibrating the activation statistics on ${names.length} sample images…`, "busy");
  const images = [];
  for (const name of names) {
    const res = await fetch(IMAGES + name);
    if (!res.ok) throw new Error(`calibration image ${name}: HTTP ${res.status}`);
    const bitmap = await createImageBitmap(await res.blob());
    images.push(toImageData(bitmap, bitmap.width, bitmap.height, false));
  }
  const t0 = performance.now();
  await model.calibrate(images);
  calibrated = names;
  $("toggles-note").textContent = `Calibrated on ${names.map((n) => n.replace(/\.\w+$/, "")).join(", ")}` +
    ` (${fmtMs(performance.now() - t0)}).`;
}

async function prune(want) {
  status(`Pruning to ${labelOf(want)} on the GPU…`, "busy");
  pruneStarted = performance.now();
  let report;
  try {
    if (needsCalibration(want) && !calibrated) {
      await calibrate();
      status(`Pruning to ${labelOf(want)} on the GPU…`, "busy");
      pruneStarted = performance.now(); // the figure is about the prune, not the one-off calibration
    }
    report = await model.prune(options(want));
  } catch (e) {
    if (!needsCalibration(want)) throw e;
    // Was it the criterion or bias correction (or their calibration)? Prune without
    // them; if that works, they do not work here: switch the toggles off and say so.
    const plain = { ...want, criterion: "magnitude", biasCorrection: false, renorm: false };
    report = await model.prune(options(plain));
    disableToggles(e);
    want = plain;
  }
  pruned = want;
  marks.push({ t: performance.now(), label: want.sparsity === null ? want.pattern : `${Math.round(want.sparsity * 100)}%` });
  showLayers(report.layers);
}

function disableToggles(err) {
  console.warn("prune refused the criterion / bias correction options:", err);
  $("criterion").value = "magnitude";
  $("bias").checked = $("renorm").checked = false;
  $("criterion").disabled = $("bias").disabled = $("renorm").disabled = true;
  $("toggles-note").textContent = `Switched off: ${err && err.message ? err.message : err}`;
}

/** Dense (once per picture) and pruned runs of the current picture. */
async function classifyPicture(want) {
  const key = keyOf(want), id = imageId, img = image, label = labelOf(want);
  const t0 = pruneStarted || performance.now(), reprune = pruneStarted > 0;
  const moved = () => imageId !== id || keyOf(wanted()) !== key || camera.stream;
  if (denseFor !== id) {
    status("Classifying with the dense model…", "busy");
    let dense;
    for (let i = 0; i < RUNS; i++) {
      dense = await model.classify(img, { dense: true });
      record(true, dense.forwardMs, want);
      if (imageId !== id || camera.stream) return;
    }
    showTop5($("dense-top5"), dense.top5);
    denseFor = id;
  }
  status(`Classifying with the pruned model (${label})…`, "busy");
  let sparse;
  for (let i = 0; i < RUNS; i++) {
    if (moved()) return; // the latest controls win: don't finish runs nobody waits for
    sparse = await prunedModel(want).classify(img);
    record(false, sparse.forwardMs, want);
  }
  showTop5($("sparse-top5"), sparse.top5);
  shown = `${key}#${id}`;
  pruneStarted = 0;
  const wall = performance.now() - t0;
  $("reprune-ms").textContent = fmtMs(wall);
  status(`Ready: ${label}. ${reprune ? "Re-prune + classify" : "Classify"} took ${fmtMs(wall)}.`);
}

/** One camera frame through the dense and the pruned model. */
async function classifyFrame(want) {
  const v = $("video");
  if (v.readyState < 2 || !v.videoWidth) return pause(50); // no frame yet
  const frame = toImageData(v, v.videoWidth, v.videoHeight);
  const t0 = performance.now();
  const dense = await model.classify(frame, { dense: true });
  record(true, dense.forwardMs, want);
  if (!camera.stream) return;
  const sparse = await prunedModel(want).classify(frame);
  record(false, sparse.forwardMs, want);
  if (!camera.stream) return; // stopped meanwhile: the last shown frame stays
  showTop5($("dense-top5"), dense.top5);
  showTop5($("sparse-top5"), sparse.top5);
  camera.frames++;
  camera.key = keyOf(want);
  image = frame;
  pruneStarted = 0;
  $("camera-msg").dataset.state = "on";
  $("camera-msg").textContent = `Camera: ${camera.frames} frame${camera.frames > 1 ? "s" : ""} classified, ` +
    `${fmtMs(performance.now() - t0)} for the last (dense + pruned).`;
  status(`Camera: ${labelOf(want)}, frame ${camera.frames}.`);
}

/** Every forward pass goes into the latency figures and charts. */
function record(dense, ms, want) {
  runs.push({ t: performance.now(), dense, ms });
  // Bounded for long camera sessions: the charts use the last TIMELINE_RUNS of each kind.
  if (runs.length > 8 * TIMELINE_RUNS) runs.splice(0, runs.length - 4 * TIMELINE_RUNS);
  if (marks.length > TIMELINE_RUNS) marks.splice(0, marks.length - TIMELINE_RUNS);
  if (!dense) {
    const k = `${patternOf(want)}|${sparsityOf(want)}`;
    if (!points.has(k)) points.set(k, { pattern: patternOf(want), sparsity: sparsityOf(want), runs: [] });
    const p = points.get(k);
    p.runs.push(ms);
    if (p.runs.length > 4 * RECENT) p.runs.splice(0, p.runs.length - RECENT);
    $("sparse-ms").textContent = fmtMs(median(p.runs.slice(-RECENT)));
  } else {
    $("dense-ms").textContent = fmtMs(median(denseRuns().slice(-RECENT)));
  }
  drawTimeline();
  drawScatter();
}

const denseRuns = () => runs.filter((r) => r.dense).map((r) => r.ms);

// ---- camera ----------------------------------------------------------------

async function startCamera() {
  const msg = $("camera-msg");
  const say = (text, state) => { msg.textContent = text; msg.dataset.state = state; };
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return say("This browser gives the page no camera (it needs https or localhost, and camera support).", "error");
  }
  $("camera").disabled = true;
  say("Asking for the camera…", "busy");
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } } });
    const v = $("video");
    v.srcObject = stream;
    await v.play();
    camera.stream = stream;
    camera.frames = 0;
    for (const t of stream.getVideoTracks()) t.addEventListener("ended", () => stopCamera("The camera went away."));
    $("camera").hidden = true;
    $("camera-stop").hidden = false;
    say(model ? "Camera on: classifying frames…" : "Camera on: waiting for the model…", "on");
    schedule(0);
  } catch (e) {
    const why = {
      NotAllowedError: "Camera permission was denied. Allow the camera for this page in the browser's site " +
        "settings and press the button again; sample images and your own photos work without it.",
      SecurityError: "The browser does not allow the camera on this page.",
      NotFoundError: "No camera found. Use a sample image or drop a photo instead.",
      OverconstrainedError: "No camera found that can give video. Use a sample image or drop a photo instead.",
      NotReadableError: "The camera is in use by another program, or the system blocked it.",
    }[e && e.name] || `Could not start the camera: ${e && e.message ? e.message : e}`;
    say(why, "error");
  } finally {
    $("camera").disabled = false;
  }
}

/** Stops the camera; its last frame stays as the picture, with its results. */
function stopCamera(reason) {
  if (!camera.stream) return;
  for (const t of camera.stream.getTracks()) t.stop();
  camera.stream = null;
  $("video").srcObject = null;
  $("camera").hidden = false;
  $("camera-stop").hidden = true;
  $("camera-msg").dataset.state = "off";
  $("camera-msg").textContent = `${reason || "Camera stopped"} after ${camera.frames} frame${camera.frames === 1 ? "" : "s"}.`;
  if (camera.frames > 0) {
    imageId++;
    denseFor = imageId;
    shown = `${camera.key}#${imageId}`; // the last frame's results are on screen
  }
  schedule(0);
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

/** Reads back the selected layer's mask and draws it: at most MASK_CELLS² cells, shade = fraction kept. */
async function showMask(layer, key, want) {
  const m = await prunedModel(want).layerMask(layer);
  const R = Math.min(m.rows, MASK_CELLS), C = Math.min(m.cols, MASK_CELLS);
  const kept = new Float32Array(R * C), count = new Float32Array(R * C);
  const colCell = new Int32Array(m.cols);
  for (let c = 0; c < m.cols; c++) colCell[c] = Math.floor((c * C) / m.cols);
  for (let r = 0; r < m.rows; r++) {
    const base = Math.floor((r * R) / m.rows) * C, row = r * m.cols;
    for (let c = 0; c < m.cols; c++) {
      kept[base + colCell[c]] += m.data[row + c];
      count[base + colCell[c]] += 1;
    }
  }
  const canvas = $("mask");
  canvas.width = C; canvas.height = R;
  // Keep the matrix's aspect ratio in a 256 px box; cells may be stretched.
  const scale = 256 / Math.max(m.rows, m.cols);
  canvas.style.width = `${Math.max(2, Math.round(m.cols * scale))}px`;
  canvas.style.height = `${Math.max(2, Math.round(m.rows * scale))}px`;
  const g = canvas.getContext("2d");
  const px = g.createImageData(C, R);
  const lo = [241, 243, 245], hi = [217, 72, 15]; // pruned .. kept (--sparse)
  for (let i = 0; i < R * C; i++) {
    const d = kept[i] / count[i];
    for (let ch = 0; ch < 3; ch++) px.data[4 * i + ch] = Math.round(lo[ch] + (hi[ch] - lo[ch]) * d);
    px.data[4 * i + 3] = 255;
  }
  g.putImageData(px, 0, 0);
  const density = m.kept / (m.rows * m.cols);
  Object.assign(canvas.dataset, { layer: m.name, density: density.toFixed(4), pattern: patternOf(want),
    sparsity: String(sparsityOf(want)) });
  const cell = m.rows > R || m.cols > C ? `; a cell is ~${(m.rows / R).toFixed(1)}×${(m.cols / C).toFixed(1)} weights, ` +
    "shade = fraction kept" : "; one cell per weight";
  $("mask-info").textContent = `${m.name}: ${m.rows}×${m.cols} (out × in), ${m.kept.toLocaleString()} of ` +
    `${(m.rows * m.cols).toLocaleString()} kept (${(100 * density).toFixed(1)}%)${cell}. Dark = kept, light = pruned.`;
  maskShown = `${layer}#${key}`;
}

/** A small SVG chart frame: returns the scales and the axes' markup. */
function frame(W, H, xMax, yMax, xTicks, xLabel) {
  const L = 40, B = 22, T = 10, R = 12;
  const x = (v) => L + (v / xMax) * (W - L - R), y = (ms) => H - B - (ms / yMax) * (H - B - T);
  let s = `<path class="axis" d="M${L} ${T}V${H - B}H${W - R}"/>`;
  for (const v of xTicks) s += `<text text-anchor="middle" x="${Math.min(x(v), W - 14)}" y="${H - 6}">${xLabel(v)}</text>`;
  for (const f of [0, 0.5, 1]) {
    const ms = (yMax * f) / 1.1;
    s += `<text text-anchor="end" x="${L - 4}" y="${y(ms) + 4}">${ms >= 1000 ? `${(ms / 1000).toFixed(1)}k` : Math.round(ms)}</text>`;
  }
  s += `<text x="${L + 6}" y="${T + 10}">ms</text>`;
  return { x, y, s, L, R, W, T, B, H };
}

/** Latency over time: the rolling median of dense and of pruned runs, single runs as dots, re-prunes as ticks. */
function drawTimeline() {
  const svg = $("timeline");
  const dense = runs.filter((r) => r.dense).slice(-TIMELINE_RUNS), sparse = runs.filter((r) => !r.dense).slice(-TIMELINE_RUNS);
  const kept = dense.concat(sparse);
  if (!kept.length) return;
  const t0 = Math.min(...kept.map((r) => r.t)), t1 = Math.max(...kept.map((r) => r.t));
  const secs = Math.max(1, (t1 - t0) / 1000);
  const f = frame(400, 170, secs * 1.02, Math.max(1, ...kept.map((r) => r.ms)) * 1.1,
    [0, secs / 2, secs], (v) => `${v.toFixed(v < 10 ? 1 : 0)} s`);
  let s = f.s;
  for (const m of marks) {
    if (m.t < t0) continue;
    const x = f.x((m.t - t0) / 1000);
    s += `<path class="axis" stroke-dasharray="2 3" d="M${x} ${f.T}V${f.H - f.B}"/><text x="${x + 2}" y="${f.T + 22}">${esc(m.label)}</text>`;
  }
  for (const [cls, rs] of [["dense", dense], ["sparse", sparse]]) {
    const line = rs.map((r, i) => {
      const ms = median(rs.slice(Math.max(0, i - ROLLING + 1), i + 1).map((q) => q.ms));
      return `${f.x((r.t - t0) / 1000).toFixed(1)},${f.y(ms).toFixed(1)}`;
    });
    s += `<polyline class="${cls}" data-points="${rs.length}" points="${line.join(" ")}"/>`;
    for (const r of rs) s += `<circle class="${cls} run" r="2" opacity=".45" cx="${f.x((r.t - t0) / 1000).toFixed(1)}" cy="${f.y(r.ms).toFixed(1)}"/>`;
  }
  svg.innerHTML = s;
}

/** Pruned latency against sparsity, one point per (pattern, sparsity) visited; dense as a dashed line. */
function drawScatter() {
  const svg = $("scatter");
  const ps = [...points.values()].map((p) => ({ ...p, ms: median(p.runs.slice(-RECENT)) }));
  const dense = median(denseRuns().slice(-RECENT));
  const yMax = Math.max(1, dense || 0, ...ps.map((p) => p.ms)) * 1.1;
  const f = frame(400, 200, 0.95, yMax, [0, 0.25, 0.5, 0.75, 0.95], (v) => `${Math.round(v * 100)}%`);
  let s = f.s;
  if (Number.isFinite(dense)) {
    s += `<path class="dense" stroke-dasharray="5 4" d="M${f.L} ${f.y(dense)}H${f.W - f.R}"/>`;
  }
  for (const p of ps) {
    s += `<circle class="point" r="4" fill="${COLORS[p.pattern] || "#333"}" cx="${f.x(p.sparsity)}" cy="${f.y(p.ms)}"` +
      ` data-pattern="${esc(p.pattern)}" data-sparsity="${p.sparsity}" data-ms="${p.ms}">` +
      `<title>${esc(p.pattern)} at ${Math.round(p.sparsity * 100)}%: ${fmtMs(p.ms)} (median of ${Math.min(p.runs.length, RECENT)})</title></circle>`;
  }
  svg.innerHTML = s;
}

// ---- start -----------------------------------------------------------------

function wireControls() {
  const slider = $("sparsity");
  const syncLabel = () => {
    const nm = wanted().sparsity === null, live = $("weights").value === "live";
    slider.disabled = nm || !live;
    for (const id of ["pattern", "criterion", "bias", "renorm"]) $(id).disabled = !live;
    if (live) $("weights-note").textContent = "";
    $("sparsity-label").textContent = nm ? `${Math.round(100 * sparsityOf(wanted()))}%` : `${slider.value}%`;
    $("sparsity-note").textContent = nm ? "(fixed by the N:M pattern)" : "";
  };
  slider.addEventListener("input", () => { syncLabel(); schedule(); });
  $("pattern").addEventListener("change", () => { syncLabel(); schedule(0); });
  $("weights").addEventListener("change", () => { syncLabel(); schedule(0); });
  $("criterion").addEventListener("change", () => schedule(0));
  $("bias").addEventListener("change", () => schedule(0));
  $("renorm").addEventListener("change", () => schedule(0));
  $("mask-layer").addEventListener("change", () => schedule(0));
  $("image").addEventListener("change", () => loadSample($("image").value));
  $("file").addEventListener("change", (e) => e.target.files[0] && setImage(e.target.files[0]));
  $("camera").addEventListener("click", startCamera);
  $("camera-stop").addEventListener("click", () => stopCamera());
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

function listLayers() {
  prunable = model.prunableLayers;
  const sel = $("mask-layer");
  sel.replaceChildren(...prunable.map((l) => {
    const o = document.createElement("option");
    o.value = l.index;
    o.textContent = `${l.name} (${l.rows}×${l.cols})`;
    return o;
  }));
  // Start with the largest layer that fits the heat map one cell per weight.
  const fit = prunable.filter((l) => l.rows <= MASK_CELLS && l.cols <= MASK_CELLS);
  const first = fit.reduce((a, l) => (l.rows * l.cols > a.rows * a.cols ? l : a), fit[0] || prunable[0]);
  if (first) sel.value = first.index;
  sel.disabled = false;
}

async function main() {
  wireControls();
  if (!navigator.gpu) {
    $("adapter").textContent = "No WebGPU in this browser.";
    return fail("WebGPU is not available", new Error("navigator.gpu is missing"),
      "Open this page in Chrome or Edge 113+ (or Safari 26 / Firefox 141+), or enable WebGPU in your browser's " +
      "settings (chrome://flags/#enable-unsafe-webgpu). Without a browser GPU, run the native demo: scripts/demo.sh");
  }
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
  listLayers();
  if (camera.stream) schedule(0); // the camera was switched on while the model loaded
  else await loadSample($("image").value);
}

// For the browser tests: the raw runs and the scatter's configurations.
window.demo = { runs, points, camera };
main();
