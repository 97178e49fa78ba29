// The browser-equivalent benchmark: Node + Dawn (Chrome's WebGPU, npm `webgpu`)
// drives the wasm package exactly as a page does (init, Runtime.create,
// Model.load, classify, prune), and ONNX Runtime Web runs the same checkpoint
// (scripts/lite0-onnx.py) on the same navigator.gpu in the same process.
// Every figure is measured in this run and logged; nothing is asserted except
// that the outputs are right (logits against the CPU reference forward).
//
//   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json node bench/web/run.mjs [options]
//
// --runs N            classify calls per configuration (median; default 10)
// --configs LIST      pruned configurations, comma-separated: 2:4, unstructured:0.9,
//                     block:16x16:0.9, ... (default: the grid)
// --trained LIST|all|none  sparse-trained files of models/ (default all)
// --ort LIST|none     ONNX Runtime Web execution providers: webgpu, wasm (default both)
// --ort-runs N        runs per ORT provider (default --runs)
// --image PATH        PNG (default cache/images/chelsea.png)
// --backend NAME      dawn.node backend (default vulkan)
// --kernels           also the GPU time of every layer, dense and in the first pruned
//                     configuration (Model.layerTimes: timestamp queries; ~4 forward passes each)
// --json PATH         write every figure as JSON (default target/web/bench.json)
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { adapterFacts, dawnVersion, installWebGpu, readImage } from "./dawn.mjs";
import { ortRun, ortSession, ortVersion } from "./ort.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const GRID = ["2:4", "unstructured:0.9", "block:16x16:0.9", "block:32x32:0.9"];

function parseArgs(argv) {
  const a = { runs: 10, configs: GRID, trained: "all", ort: ["webgpu", "wasm"], ortRuns: null,
    image: "cache/images/chelsea.png", backend: "vulkan", json: "target/web/bench.json" };
  const list = (v) => (v === "none" || v === "" ? [] : v.split(","));
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i], v = () => {
      if (i + 1 >= argv.length) throw new Error(`${k} needs a value`);
      return argv[++i];
    };
    const whole = (s) => {
      const n = Number(s);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${k} takes a whole number >= 1, got ${s}`);
      return n;
    };
    if (k === "--runs") a.runs = whole(v());
    else if (k === "--ort-runs") a.ortRuns = whole(v());
    else if (k === "--configs") a.configs = list(v());
    else if (k === "--trained") a.trained = v();
    else if (k === "--ort") a.ort = list(v());
    else if (k === "--image") a.image = v();
    else if (k === "--backend") a.backend = v();
    else if (k === "--json") a.json = v();
    else if (k === "--kernels") a.kernels = true;
    else throw new Error(`unknown option ${k} (see the head of bench/web/run.mjs)`);
  }
  for (const ep of a.ort) if (!["webgpu", "wasm"].includes(ep)) throw new Error(`--ort: no provider ${ep} (webgpu, wasm)`);
  a.ortRuns ??= a.runs;
  return a;
}

/** "2:4" -> { pattern: "2:4" }; "unstructured:0.9" / "block:16x16:0.9" -> with sparsity. */
function pruneOptions(spec) {
  const m = spec.match(/^(.*):(0?\.\d+|0|1)$/);
  if (m && !/^\d+$/.test(m[1])) return { pattern: m[1], sparsity: Number(m[2]) };
  return { pattern: spec };
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[(s.length - 1) >> 1]; };
const f1 = (x) => (x === undefined || x === null ? "-" : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const CLASSES = readFileSync(join(ROOT, "data/imagenet_classes.txt"), "utf8").split("\n");

function top5(logits) {
  const max = Math.max(...logits);
  let sum = 0;
  for (const l of logits) sum += Math.exp(l - max);
  return [...logits.keys()].sort((a, b) => logits[b] - logits[a]).slice(0, 5)
    .map((c) => ({ class: c, name: CLASSES[c], prob: Math.exp(logits[c] - max) / sum }));
}
const showTop = (t) => t.map((p) => `${p.class} ${p.name} ${(100 * p.prob).toFixed(1)}%`).join(" | ");

/** Largest |a - b| relative to the largest |b|, and whether the top-1 agrees. */
function compare(a, b) {
  let d = 0, m = 0;
  for (let i = 0; i < b.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
  return { maxAbs: d, rel: d / m, top1: top5(a)[0].class === top5(b)[0].class };
}

/** `n` calls of `f` one after another: each result, and the medians of its ms fields. */
async function series(n, f) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await f());
  const med = (k) => (out[0][k] === undefined ? undefined : median(out.map((r) => r[k])));
  return { last: out[out.length - 1], ms: med("ms"), forwardMs: med("forwardMs"), all: out.map((r) => r.ms) };
}

const log = (s) => console.log(s);

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const R = { date: new Date().toISOString(), node: process.version, webgpu: dawnVersion(), ort: ortVersion(),
    args: a, ours: {}, pruned: [], trained: [], peers: [] };
  const gpu = await installWebGpu({ backend: a.backend });
  R.adapter = await adapterFacts(gpu);
  log(`bench/web: Node ${process.version}, webgpu (dawn.node) ${R.webgpu}, onnxruntime-web ${R.ort}`);
  R.loadavgStart = loadavg();
  log(`machine: ${cpus().length} CPUs, load average ${R.loadavgStart.map((x) => x.toFixed(2)).join(" ")} at the start` +
    " (SwiftShader runs on these cores: other work on them slows every figure)");
  log(`adapter: ${R.adapter.description || R.adapter.device} (${R.adapter.vendor}, ${R.adapter.architecture})` +
    `, backend ${a.backend}`);

  const pkg = await import(join(ROOT, "pkg/wgsparse.js"));
  let t = performance.now();
  await pkg.default({ module_or_path: readFileSync(join(ROOT, "pkg/wgsparse_bg.wasm")) });
  R.ours.initMs = performance.now() - t;
  t = performance.now();
  const rt = await pkg.Runtime.create();
  R.ours.createMs = performance.now() - t;
  R.ours.adapterInfo = rt.adapterInfo;
  const checkpoint = readFileSync(join(ROOT, "cache/lite0.safetensors"));
  t = performance.now();
  const model = await pkg.Model.load(rt, checkpoint);
  R.ours.loadMs = performance.now() - t;
  const img = readImage(resolve(ROOT, a.image));
  log(`image: ${a.image} ${img.width}x${img.height}, centre crop to 224x224`);
  log(`wgsparse: init ${f1(R.ours.initMs)} ms, Runtime.create ${f1(R.ours.createMs)} ms, Model.load ` +
    `${f1(R.ours.loadMs)} ms (${R.ours.adapterInfo.name}, ${R.ours.adapterInfo.backend})`);

  t = performance.now();
  const ref = await model.referenceLogits(img);
  R.reference = { ms: performance.now() - t, top5: top5(ref) };
  log(`CPU reference forward (wasm): ${f1(R.reference.ms)} ms, top-5 ${showTop(R.reference.top5)}`);

  const first = await model.classify(img, { dense: true });
  const dense = await series(a.runs, () => model.classify(img, { dense: true }));
  const dcheck = compare(dense.last.logits, ref);
  R.ours.dense = { firstMs: first.ms, ms: dense.ms, forwardMs: dense.forwardMs, runs: dense.all,
    top5: dense.last.top5, vsReference: dcheck };
  log(`\nwgsparse dense: first classify ${f1(first.ms)} ms, median of ${a.runs} ${f1(dense.ms)} ms` +
    ` (forward ${f1(dense.forwardMs)} ms); logits vs CPU reference: max |diff| ${dcheck.maxAbs.toExponential(2)}` +
    ` (${(100 * dcheck.rel).toFixed(3)}% of max |logit|), top-1 ${dcheck.top1 ? "agrees" : "DIFFERS"}`);
  log(`  top-5 ${showTop(dense.last.top5)}`);

  if (a.kernels) R.ours.dense.kernels = await kernels(model, "dense");

  const denseTop1 = top5(ref)[0].class;
  for (const spec of a.configs) {
    const opts = pruneOptions(spec);
    const report = await model.prune(opts);
    const firstRun = await model.classify(img);
    const s = await series(a.runs, () => model.classify(img));
    const kernelsUsed = [...new Set(report.layers.map((l) => l.kernel))].join(",");
    const row = { spec, opts, pruneMs: report.ms, firstMs: firstRun.ms, moveMs: report.ms + firstRun.ms, ms: s.ms,
      forwardMs: s.forwardMs, runs: s.all, top5: s.last.top5, agreesWithDense: s.last.top5[0].class === denseTop1,
      kernels: kernelsUsed, speedup: R.ours.dense.forwardMs / s.forwardMs };
    R.pruned.push(row);
    log(`wgsparse ${spec}: prune ${f1(row.pruneMs)} ms + first classify ${f1(row.firstMs)} ms = slider move` +
      ` ${f1(row.moveMs)} ms; median of ${a.runs} ${f1(row.ms)} ms (forward ${f1(row.forwardMs)} ms,` +
      ` ${row.speedup.toFixed(2)}x dense); kernels ${kernelsUsed}`);
    log(`  top-5 ${showTop(row.top5)}`);
    if (a.kernels && spec === a.configs[0]) row.kernelTimes = await kernels(model, spec);
  }
  if (a.configs.length) {
    // The same prune again: what a slider move back to a visited setting costs.
    const opts = pruneOptions(a.configs[0]);
    const again = await model.prune(opts);
    const c = await model.classify(img);
    R.reprune = { spec: a.configs[0], pruneMs: again.ms, firstMs: c.ms, moveMs: again.ms + c.ms };
    log(`re-prune to ${a.configs[0]}: ${f1(again.ms)} ms + classify ${f1(c.ms)} ms = ${f1(R.reprune.moveMs)} ms`);
  }

  const files = a.trained === "none" ? [] : a.trained === "all" ?
    readdirSync(join(ROOT, "models")).filter((f) => f.endsWith(".safetensors")).map((f) => f.replace(/\.safetensors$/, "")) :
    a.trained.split(",");
  for (const name of files) {
    t = performance.now();
    const m = await pkg.Model.load(rt, readFileSync(join(ROOT, "models", `${name}.safetensors`)));
    const loadMs = performance.now() - t;
    const f = await m.classify(img);
    const s = await series(a.runs, () => m.classify(img));
    const row = { name, pattern: m.info.pattern, sparsity: m.info.sparsity, loadMs, firstMs: f.ms, ms: s.ms,
      forwardMs: s.forwardMs, runs: s.all, top5: s.last.top5, agreesWithDense: s.last.top5[0].class === denseTop1,
      speedup: R.ours.dense.forwardMs / s.forwardMs };
    R.trained.push(row);
    log(`wgsparse ${name} (${row.pattern}, ${(100 * row.sparsity).toFixed(0)}%): load ${f1(loadMs)} ms, first` +
      ` ${f1(f.ms)} ms, median of ${a.runs} ${f1(s.ms)} ms (forward ${f1(s.forwardMs)} ms, ${row.speedup.toFixed(2)}x dense)`);
    log(`  top-5 ${showTop(row.top5)}`);
    m.free();
  }

  if (a.ort.length) {
    const onnxPath = join(ROOT, "target/web/lite0.onnx");
    let onnx;
    try { onnx = readFileSync(onnxPath); } catch {
      throw new Error(`${onnxPath} is missing: python3 scripts/lite0-onnx.py --external (needs pip install onnx==1.23.2)`);
    }
    // Its weights are external data inside the checkpoint: the same bytes Model.load took.
    const external = [{ path: "lite0.safetensors", data: new Uint8Array(checkpoint) }];
    const x = model.preprocess(img); // the very input our classify ran on
    for (const ep of a.ort) {
      const session = await ortSession(onnx, ep, external);
      const firstRun = await ortRun(session, x);
      const s = await series(a.ortRuns, () => ortRun(session, x));
      const check = compare(s.last.logits, ref);
      const row = { ep, createMs: session.createMs, firstMs: firstRun.ms, ms: s.ms, runs: s.all, top5: top5(s.last.logits),
        vsReference: check };
      R.peers.push(row);
      log(`\nonnxruntime-web ${ep}: session ${f1(row.createMs)} ms, first run ${f1(row.firstMs)} ms, median of` +
        ` ${a.ortRuns} ${f1(row.ms)} ms; logits vs CPU reference: max |diff| ${check.maxAbs.toExponential(2)}` +
        ` (${(100 * check.rel).toFixed(3)}%), top-1 ${check.top1 ? "agrees" : "DIFFERS"}`);
      log(`  top-5 ${showTop(row.top5)}`);
      await session.session.release();
    }
  }

  // The table: forward ms (upload, GPU, read-back: what ORT's run() covers too) and ratios of this run.
  log(`\n| runtime (same Dawn adapter, one process) | first ms | median forward ms | time / ours dense |`);
  log(`|---|---|---|---|`);
  const d = R.ours.dense.forwardMs;
  log(`| wgsparse dense | ${f1(R.ours.dense.firstMs)} | ${f1(d)} | 1.00 |`);
  for (const r of R.pruned) log(`| wgsparse ${r.spec} | ${f1(r.firstMs)} | ${f1(r.forwardMs)} | ${(r.forwardMs / d).toFixed(2)} |`);
  for (const r of R.trained) log(`| wgsparse ${r.name} | ${f1(r.firstMs)} | ${f1(r.forwardMs)} | ${(r.forwardMs / d).toFixed(2)} |`);
  for (const r of R.peers) log(`| onnxruntime-web ${r.ep} | ${f1(r.firstMs)} | ${f1(r.ms)} | ${(r.ms / d).toFixed(2)} |`);

  R.loadavgEnd = loadavg();
  log(`load average at the end: ${R.loadavgEnd.map((x) => x.toFixed(2)).join(" ")}`);
  mkdirSync(dirname(resolve(ROOT, a.json)), { recursive: true });
  writeFileSync(resolve(ROOT, a.json), JSON.stringify(R, (k, v) => (v instanceof Float32Array ? undefined : v), 1));
  log(`\nbench/web: wrote ${a.json}`);
}

/** GPU time of every layer of the model as it runs now (Model.layerTimes), the 12 largest logged. */
async function kernels(model, label) {
  const t = await model.layerTimes({ runs: 3 });
  const total = t.reduce((s, l) => s + l.ms, 0);
  log(`  per-layer GPU time, ${label} (${t[0].source}, median of 3 per layer): ${f1(total)} ms over ${t.length} layers`);
  const kind = (n) => n.replace(/^blocks\.\d+\./, "");
  const byKind = {};
  for (const l of t) byKind[kind(l.name)] = (byKind[kind(l.name)] || 0) + l.ms;
  log("    by kind: " + Object.entries(byKind).sort((x, y) => y[1] - x[1])
    .map(([k, ms]) => `${k} ${f1(ms)} ms (${(100 * ms / total).toFixed(0)}%)`).join(", "));
  for (const l of [...t].sort((x, y) => y.ms - x.ms).slice(0, 12)) {
    log(`    ${l.name.padEnd(22)} ${f1(l.ms).padStart(8)} ms  ${(100 * l.ms / total).toFixed(1)}%`);
  }
  return { total, byKind, layers: t };
}

// Exit explicitly: V8 may otherwise spend a minute finishing background compiles of ORT's wasm.
main().then(() => process.exit(0), (e) => { console.error(`bench/web: ${e && e.stack ? e.stack : e}`); process.exit(1); });
