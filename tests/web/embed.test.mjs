// The web developer's view: the embed page imports the package and checks
// SpMM results against a JavaScript reference, in a real browser.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { serve } from "./server.mjs";
import { launch, launchWithoutWebGpu } from "./browser.mjs";

test("embed page: every pattern's SpMM matches the JS reference", { timeout: 180_000 }, async () => {
  const { server, url } = await serve(".");
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const logs = [];
    page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
    await page.goto(`${url}/web/embed/`);
    await page.waitForFunction(() => !document.getElementById("status").textContent.startsWith("running"), null, {
      timeout: 170_000,
    });
    const status = await page.textContent("#status");
    const rows = await page.$$eval("#results tbody tr", (trs) => trs.map((tr) => tr.innerText.replace(/\t/g, " | ")));
    console.log(await page.textContent("#adapter"));
    for (const r of rows) console.log("  " + r);
    mkdirSync("target/web", { recursive: true });
    await page.screenshot({ path: "target/web/embed.png", fullPage: true });
    assert.equal(status, "PASS", `status: ${status}\n${rows.join("\n")}\n${logs.join("\n")}`);
    assert.ok(rows.length >= 4, "every pattern ran");
  } finally {
    await browser.close();
    server.close();
  }
});

test("embed page without WebGPU: a clear error, not a blank page", { timeout: 120_000 }, async () => {
  const { server, url } = await serve(".");
  const browser = await launchWithoutWebGpu();
  try {
    const page = await browser.newPage();
    await page.goto(`${url}/web/embed/`);
    await page.waitForFunction(() => !document.getElementById("status").textContent.startsWith("running"), null, {
      timeout: 110_000,
    });
    const status = await page.textContent("#status");
    console.log("  without WebGPU: " + status);
    // Chromium with WebGPU off still has navigator.gpu; its requestAdapter() gives null.
    assert.match(status, /^ERROR: WebGPU is present, but navigator\.gpu\.requestAdapter\(\) gave no adapter: .*chrome:\/\/gpu/);
    assert.doesNotMatch(status, /vulkan support|install a Vulkan/i);
  } finally {
    await browser.close();
    server.close();
  }
});

// The model-level mask API as a web app calls it: prunableLayers, prune's
// per-layer report and layerMask agree, and bad indices reject with a message.
test("package: layerMask matches prune's per-layer report", { timeout: 600_000 }, async () => {
  const { server, url } = await serve(".");
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`${url}/web/embed/`); // an origin that serves pkg/ and cache/
    page.setDefaultTimeout(590_000);
    const t0 = Date.now();
    const r = await page.evaluate(async () => {
      const { default: init, Runtime, Model } = await import("/pkg/wgsparse.js");
      await init();
      const rt = await Runtime.create();
      const bytes = new Uint8Array(await (await fetch("/cache/lite0.safetensors")).arrayBuffer());
      const model = await Model.load(rt, bytes);
      const layers = model.prunableLayers;
      const n = layers.length;
      const pick = [0, n >> 1, n - 1]; // the first, a middle one, the classifier
      const masks = async () => {
        const out = [];
        for (const i of pick) {
          const m = await model.layerMask(i);
          let ones = 0, other = 0;
          for (const v of m.data) { if (v === 1) ones++; else if (v !== 0) other++; }
          out.push({ i, name: m.name, index: m.index, rows: m.rows, cols: m.cols, len: m.data.length, kept: m.kept,
            ones, other, isU8: m.data instanceof Uint8Array });
        }
        return out;
      };
      const dense = await masks();
      const runs = [];
      for (const [pattern, sparsity] of [["unstructured", 0.7], ["2:4", undefined]]) {
        const report = await model.prune({ pattern, sparsity, dispatch: "sparse" });
        runs.push({ pattern, report: pick.map((i) => report.layers[i]), masks: await masks() });
      }
      const errors = [];
      for (const bad of [999, -1, 1.5, "x", undefined]) {
        try { await model.layerMask(bad); errors.push(`${bad}: resolved`); } catch (e) { errors.push(`${bad}: ${e.message}`); }
      }
      return { n, layers: pick.map((i) => layers[i]), dense, runs, errors };
    });
    console.log(`  ${r.n} prunable layers; model load, 2 prunes and 9 masks: ${Date.now() - t0} ms`);
    assert.ok(r.n > 30, `prunable layers: ${r.n}`);
    for (const [k, l] of r.layers.entries()) {
      for (const m of [r.dense[k], ...r.runs.map((run) => run.masks[k])]) {
        assert.deepEqual([m.name, m.index, m.rows, m.cols], [l.name, l.index, l.rows, l.cols], "mask matches the layer");
        assert.ok(m.isU8 && m.len === l.rows * l.cols && m.other === 0 && m.ones === m.kept, JSON.stringify(m));
      }
      // Dense: everything kept except the checkpoint's own exact zeros (a few percent in some layers).
      console.log(`  dense ${l.name}: mask density ${(r.dense[k].ones / r.dense[k].len).toFixed(4)}`);
      assert.ok(r.dense[k].ones / r.dense[k].len > 0.9, `dense model: all kept, ${JSON.stringify(r.dense[k])}`);
    }
    for (const run of r.runs) {
      for (const [k, rep] of run.report.entries()) {
        const m = run.masks[k], density = m.ones / m.len;
        console.log(`  ${run.pattern} ${m.name} ${m.rows}x${m.cols}: mask density ${density.toFixed(4)},` +
          ` report ${(1 - rep.achieved).toFixed(4)}`);
        assert.equal(rep.name, m.name);
        assert.equal(m.len - m.ones, Math.round(rep.achieved * m.len), `${run.pattern} ${m.name}: pruned count`);
      }
    }
    console.log("  " + r.errors.join("\n  "));
    assert.match(r.errors[0], /^999: layerMask\(999\): no such layer, the model has \d+ prunable layers/);
    for (const e of r.errors.slice(1)) assert.match(e, /: layerMask takes a layer index 0\.\.\d+$/);
  } finally {
    await browser.close();
    server.close();
  }
});

test("package: fine-tuning in the browser lowers the loss and yields a sparse-trained file", { timeout: 900_000 }, async () => {
  const { server, url } = await serve(".");
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`${url}/web/embed/`);
    page.setDefaultTimeout(890_000);
    const t0 = Date.now();
    const r = await page.evaluate(async () => {
      const { default: init, Runtime, Model, Finetuner } = await import("/pkg/wgsparse.js");
      await init();
      const rt = await Runtime.create();
      const bytes = new Uint8Array(await (await fetch("/cache/lite0.safetensors")).arrayBuffer());
      const images = [];
      for (const name of ["coffee.png", "chelsea.png"]) {
        const bitmap = await createImageBitmap(await (await fetch(`/cache/images/${name}`)).blob());
        const c = new OffscreenCanvas(bitmap.width, bitmap.height);
        const g = c.getContext("2d");
        g.drawImage(bitmap, 0, 0);
        images.push(g.getImageData(0, 0, bitmap.width, bitmap.height));
      }
      const errors = [];
      for (const bad of [{ pattern: "2:4", steps: 0 }, { pattern: "dense", steps: 2 }, { steps: 2 },
        { pattern: "unstructured", sparsity: 1.5, steps: 2 }]) {
        try { await Finetuner.create(rt, bytes, images, bad); errors.push("created"); } catch (e) { errors.push(e.message); }
      }
      try { await Finetuner.create(rt, bytes, [], { pattern: "2:4", steps: 2 }); errors.push("created"); } catch (e) { errors.push(e.message); }
      const ft = await Finetuner.create(rt, bytes, images,
        { pattern: "2:4", steps: 4, batch: 2, resolution: 64, lr: 1e-3 });
      const before = await ft.evaluate(images);
      let early = null;
      try { await ft.toSafetensors(); early = "wrote"; } catch (e) { early = e.message; }
      const last = await ft.train(10);
      const after = await ft.evaluate(images);
      const file = await ft.toSafetensors();
      const model = await Model.load(rt, file);
      const info = model.info;
      return { errors, before, last, after, step: ft.step, size: file.length, info: { pattern: info.pattern,
        sparseTrained: info.sparseTrained, layers: info.layers.length }, dense: (await Model.load(rt, bytes)).info, early };
    });
    console.log(`  browser fine-tune: KL ${r.before.kd.toFixed(4)} -> ${r.after.kd.toFixed(4)} in ${r.step} steps,` +
      ` ${Date.now() - t0} ms incl. load; ${r.size} B file; ${r.info.sparseTrained}`);
    console.log("  " + r.errors.join("\n  "));
    assert.equal(r.step, 4, "train(10) stops at the recipe's 4 steps");
    assert.ok(r.after.kd < r.before.kd, `KL ${r.before.kd} -> ${r.after.kd}`);
    assert.equal(r.info.pattern, "2:4");
    assert.match(r.info.sparseTrained, /^sparse-trained: 4 of 4 steps, batch 2, 64x64/);
    assert.ok(r.info.layers > 30);
    assert.equal(r.dense, null, "the dense checkpoint is no sparse file");
    assert.match(r.errors[0], /steps must be at least 1/);
    assert.match(r.errors[1], /needs a sparse pattern/);
    assert.match(r.errors[2], /options\.pattern is required/);
    assert.match(r.errors[3], /sparsity 1\.5 is out of range/);
    assert.match(r.errors[4], /no training images|expected an array/);
  } finally {
    await browser.close();
    server.close();
  }
});
