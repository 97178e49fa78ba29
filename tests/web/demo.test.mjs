// The demo page in a real browser (WebGPU on SwiftShader): load Lite0, classify,
// move the sparsity slider, switch the pattern, and a corrupted model file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { serve } from "./server.mjs";
import { launch } from "./browser.mjs";

const CATS = [281, 282, 283, 284, 285]; // tabby, tiger cat, Persian, Siamese, Egyptian cat

/** Waits until the status line is "Ready: <prefix>…" (or fails fast on an error). */
async function ready(page, prefix, timeout) {
  await page.waitForFunction(
    (p) => {
      const s = document.getElementById("status");
      return s.dataset.state === "error" || (s.dataset.state === "ready" && s.textContent.startsWith(`Ready: ${p}`));
    },
    prefix,
    { timeout },
  );
  const s = await page.$eval("#status", (e) => ({ state: e.dataset.state, text: e.textContent }));
  assert.equal(s.state, "ready", s.text);
}

const densities = (page) => page.$$eval("#layers .layer", (rows) => rows.map((r) => Number(r.dataset.density)));
const classes = (page, id) => page.$$eval(`#${id} .pred`, (rows) => rows.map((r) => Number(r.dataset.class)));

test("demo page: classify, prune with the slider, switch the pattern", { timeout: 900_000 }, async () => {
  const { server, url } = await serve(".");
  const browser = await launch();
  const logs = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
    let t = Date.now();
    await page.goto(`${url}/web/`);
    await ready(page, "unstructured at 0%", 400_000).catch((e) => assert.fail(`${e.message}\n${logs.join("\n")}`));
    console.log(`  ${await page.textContent("#adapter")}`);
    console.log(`  load + dense and first classify: ${Date.now() - t} ms`);
    const dense = await classes(page, "dense-top5");
    console.log(`  dense top-5 of chelsea: ${dense.join(", ")}`);
    assert.ok(dense.some((c) => CATS.includes(c)), `a cat class in the dense top-5: ${dense}`);
    const before = await page.textContent("#sparse-ms");

    t = Date.now();
    await page.$eval("#sparsity", (el) => { el.value = "90"; el.dispatchEvent(new Event("input")); });
    await ready(page, "unstructured at 90%", 300_000);
    const wall = Date.now() - t;
    const after = await page.textContent("#sparse-ms");
    console.log(`  slider to 90% unstructured: re-prune + classify ${wall} ms wall (incl. ${150} ms debounce;` +
      ` page says ${await page.textContent("#reprune-ms")}), pruned latency ${before} -> ${after},` +
      ` dense ${await page.textContent("#dense-ms")}`);
    assert.notEqual(after, before, "the pruned latency figure changes");
    const d90 = await densities(page);
    assert.ok(d90.length > 30, `per-layer densities shown: ${d90.length}`);
    assert.ok(d90.every((d) => d > 0 && d < 0.15), `every layer ~10% dense: ${d90}`);
    console.log(`  pruned top-5 at 90%: ${(await classes(page, "sparse-top5")).join(", ")}`);

    t = Date.now();
    await page.selectOption("#pattern", "2:4");
    await ready(page, "2:4", 300_000);
    const d24 = await densities(page);
    console.log(`  pattern 2:4: ${Date.now() - t} ms, pruned ${await page.textContent("#sparse-ms")},` +
      ` top-5 ${(await classes(page, "sparse-top5")).join(", ")}`);
    assert.ok(d24.every((d) => Math.abs(d - 0.5) < 1e-3), `every layer 50% dense: ${d24}`);
    assert.ok(await page.isDisabled("#sparsity"), "the slider is off for N:M");
    const pred = await classes(page, "sparse-top5");
    assert.equal(pred.length, 5);

    mkdirSync("target/web", { recursive: true });
    await page.screenshot({ path: "target/web/demo.png", fullPage: true });
  } finally {
    await browser.close();
    server.close();
  }
});

test("demo page with a corrupted model file: an error message, not a blank page", { timeout: 240_000 }, async () => {
  const { server, url } = await serve(".");
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const truncated = readFileSync("cache/lite0.safetensors").subarray(0, 1 << 20);
    await page.route("**/cache/lite0.safetensors", (route) =>
      route.fulfill({ status: 200, contentType: "application/octet-stream", body: truncated }));
    await page.goto(`${url}/web/`);
    await page.waitForFunction(() => document.getElementById("status").dataset.state === "error", null, {
      timeout: 200_000,
    });
    const text = await page.textContent("#status");
    console.log(`  corrupted model: ${text.replace(/\n/g, " / ")}`);
    assert.match(text, /^Could not load the model: .+/);
  } finally {
    await browser.close();
    server.close();
  }
});
