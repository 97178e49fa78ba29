// The package's API as a web developer meets it, in a real browser (WebGPU on
// SwiftShader): options objects with clear errors, calls queued instead of
// rejected while one runs, classify's crop and what its `ms` covers, and the
// messages without WebGPU.
import { test } from "node:test";
import assert from "node:assert/strict";
import { serve } from "./server.mjs";
import { launch } from "./browser.mjs";

test("package API: options objects, queued calls, crop, timings", { timeout: 900_000 }, async () => {
  const { server, url } = await serve(".");
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`${url}/web/embed/`); // an origin that serves pkg/ and cache/
    page.setDefaultTimeout(890_000);
    const t0 = Date.now();
    const r = await page.evaluate(async () => {
      const { default: init, Runtime, Model } = await import("/pkg/wgsparse.js");
      await init();
      const rt = await Runtime.create();
      const model = await Model.load(rt, new Uint8Array(await (await fetch("/cache/lite0.safetensors")).arrayBuffer()));
      const bitmap = await createImageBitmap(await (await fetch("/cache/images/chelsea.png")).blob());
      const g = new OffscreenCanvas(bitmap.width, bitmap.height).getContext("2d");
      g.drawImage(bitmap, 0, 0);
      const full = g.getImageData(0, 0, bitmap.width, bitmap.height);
      const diff = (a, b) => { let d = 0; for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i])); return d; };
      const rejects = async (f) => { try { await f(); return "resolved"; } catch (e) { return e.message; } };
      const throws = (f) => { try { f(); return "returned"; } catch (e) { return e.message; } };
      const out = { errors: {} };

      // The network's view of the photo as RGBA: what a caller who crops it himself passes.
      const x = model.preprocess(full);
      const crop = new ImageData(224, 224);
      for (let i = 0; i < 224 * 224; i++) {
        for (let c = 0; c < 3; c++) crop.data[4 * i + c] = Math.round(x[c * 224 * 224 + i] * 128 + 127);
        crop.data[4 * i + 3] = 255;
      }
      out.sameTensor = diff(model.preprocess(crop, { crop: false }), x);
      out.tensorLength = x.length;

      let w = performance.now();
      const dense = await model.classify(full, { dense: true });
      out.seq = { wall: performance.now() - w, ms: dense.ms, forwardMs: dense.forwardMs, queuedMs: dense.queuedMs,
        top1: dense.top5[0].class, logits: dense.logits.length };
      const ref = await model.referenceLogits(full);
      out.vsReference = diff(dense.logits, ref) / Math.max(...ref.map(Math.abs));
      const uncropped = await model.classify(crop, { dense: true, crop: false });
      const recropped = await model.classify(crop, { dense: true });
      out.cropFalse = diff(uncropped.logits, dense.logits);
      out.cropTwice = diff(recropped.logits, dense.logits);

      for (const [k, f] of Object.entries({
        positional: () => model.classify(full, true),
        typo: () => model.classify(full, { desne: true }),
        notBool: () => model.classify(full, { dense: 1 }),
        noPattern: () => model.prune({ sparsity: 0.9 }),
        noSparsity: () => model.prune({ pattern: "unstructured" }),
        noBlockSparsity: () => model.prune({ pattern: "block:16x16" }),
        nmSparsity: () => model.prune({ pattern: "2:4", sparsity: 0.3 }),
        denseSparsity: () => model.prune({ pattern: "dense", sparsity: 0.5 }),
        stringSparsity: () => model.prune({ pattern: "unstructured", sparsity: "0.9" }),
        unknownPrune: () => model.prune({ pattern: "2:4", renorn: true }),
        badImage: () => model.classify({ width: 4, height: 4, data: new Uint8Array(7) }),
      })) out.errors[k] = await rejects(f);
      out.errors.matrix = throws(() => rt.sparseMatrix(new Float32Array(6), 2, 3, { pattern: "unstructured" }));

      // Concurrent calls: queued in call order, a bad one in the middle rejects alone.
      await model.prune({ pattern: "unstructured", sparsity: 0.9 });
      const order = [];
      const calls = [
        model.classify(full),
        model.classify(full, { dense: true }),
        model.prune({ pattern: "unstructured" }),
        model.classify(crop, { crop: false }),
        model.layerMask(0),
        model.classify(full),
      ].map((p, i) => p.then((v) => { order.push(i); return v; }, (e) => { order.push(i); return e; }));
      const [a, b, bad, c, mask, e] = await Promise.all(calls);
      out.all = { order, bad: bad.message, queued: [a, b, c, e].map((q) => q.queuedMs), forward: [a, b, c, e].map((q) => q.forwardMs),
        prunedVsDense: diff(a.logits, dense.logits), denseAgain: diff(b.logits, dense.logits),
        cropVsFull: diff(c.logits, a.logits), again: diff(e.logits, a.logits), maskKept: mask.kept / (mask.rows * mask.cols),
        ms: [a, b, c, e].map((q) => q.ms) };
      return out;
    });
    console.log(`  ${Date.now() - t0} ms; sequential classify: ms ${r.seq.ms.toFixed(1)} (forward ${r.seq.forwardMs.toFixed(1)},` +
      ` queued ${r.seq.queuedMs.toFixed(1)}), wall in the page ${r.seq.wall.toFixed(1)}`);
    console.log(`  crop:false on the 224x224 view: max |diff| ${r.cropFalse}; cropped twice: ${r.cropTwice.toFixed(3)}`);
    console.log(`  Promise.all: order ${r.all.order}, queuedMs ${r.all.queued.map((q) => q.toFixed(0))}, ms ${r.all.ms.map((q) => q.toFixed(0))}`);
    for (const [k, v] of Object.entries(r.errors)) console.log(`  ${k}: ${v}`);

    assert.equal(r.tensorLength, 3 * 224 * 224);
    assert.equal(r.sameTensor, 0, "the RGBA view round-trips to the same input tensor");
    assert.equal(r.seq.logits, 1000);
    assert.ok(r.vsReference < 1e-4, `GPU logits vs the CPU reference: ${r.vsReference}`);
    // ms is what the caller waits for: the forward pass and the preprocessing inside it, no more than the wall clock.
    assert.ok(r.seq.ms >= r.seq.forwardMs && r.seq.ms <= r.seq.wall + 1, JSON.stringify(r.seq));
    assert.ok(r.cropFalse < 1e-4, `crop:false runs the caller's 224x224 view as is: ${r.cropFalse}`);
    assert.ok(r.cropTwice > 1e-2, `cropping the crop again changes the input: ${r.cropTwice}`);

    assert.match(r.errors.positional, /^classify's second argument is an options object, e\.g\. \{ dense: true \}; got the boolean true$/);
    assert.match(r.errors.typo, /unknown option "desne" \(the options are dense, crop\)/);
    assert.match(r.errors.notBool, /classify's second argument\.dense must be a boolean, got number/);
    assert.match(r.errors.noPattern, /prune options\.pattern is required/);
    assert.match(r.errors.noSparsity, /prune options\.sparsity is required for "unstructured"/);
    assert.match(r.errors.noBlockSparsity, /prune options\.sparsity is required for "block:16x16"/);
    assert.match(r.errors.nmSparsity, /pattern "2:4" fixes the sparsity at 0\.5, but sparsity is 0\.3: leave sparsity out/);
    assert.match(r.errors.denseSparsity, /pattern "dense" prunes nothing, but sparsity is 0\.5/);
    assert.match(r.errors.stringSparsity, /sparsity must be a finite number, got the string "0\.9"/);
    assert.match(r.errors.unknownPrune, /unknown option "renorn"/);
    assert.match(r.errors.badImage, /7 RGBA bytes for a 4x4 image, expected 64/);
    assert.match(r.errors.matrix, /sparseMatrix options\.sparsity is required for "unstructured"/);

    assert.deepEqual(r.all.order, [0, 1, 2, 3, 4, 5], "calls settle in call order");
    assert.match(r.all.bad, /sparsity is required/, "the bad call in the middle rejects alone");
    for (let i = 1; i < r.all.queued.length; i++) assert.ok(r.all.queued[i] >= r.all.queued[i - 1], `queuedMs grows: ${r.all.queued}`);
    assert.ok(r.all.prunedVsDense > 1e-2, "classify() ran the pruned model");
    assert.ok(r.all.denseAgain < 1e-4, "{ dense: true } ran the dense model, as before the prune");
    assert.ok(r.all.cropVsFull < 1e-4 && r.all.again < 1e-4, `same view, same pruned logits: ${r.all.cropVsFull} ${r.all.again}`);
    assert.ok(Math.abs(r.all.maskKept - 0.1) < 0.01, `the queued layerMask saw the 90% prune: ${r.all.maskKept}`);
  } finally {
    await browser.close();
    server.close();
  }
});

test("package without WebGPU in the page: says WebGPU is missing and what to enable", { timeout: 120_000 }, async () => {
  const { server, url } = await serve(".");
  const browser = await launch();
  try {
    const page = await browser.newPage();
    // A browser without WebGPU (Firefox or Chrome where it is off): no navigator.gpu.
    await page.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
    await page.goto(`${url}/web/embed/`);
    const msg = await page.evaluate(async () => {
      const { default: init, Runtime } = await import("/pkg/wgsparse.js");
      await init();
      try { await Runtime.create(); return "created"; } catch (e) { return e.message; }
    });
    console.log(`  ${msg}`);
    assert.match(msg, /^WebGPU is not available here: this page has no navigator\.gpu\. .*chrome:\/\/flags\/#enable-unsafe-webgpu/);
    assert.doesNotMatch(msg, /vulkan support|install a Vulkan/i);
  } finally {
    await browser.close();
    server.close();
  }
});
