// The demo page's camera: Chromium's fake camera (a synthetic video) classified
// frame after frame, the stop button, and the message when permission is denied.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { serve } from "./server.mjs";
import { launchWithCamera } from "./browser.mjs";

test("demo page: the camera's frames are classified continuously until stopped", { timeout: 900_000 }, async () => {
  const { server, url } = await serve(".");
  const browser = await launchWithCamera({ allow: true });
  const logs = [];
  try {
    const context = await browser.newContext({ permissions: ["camera"], viewport: { width: 1280, height: 1100 } });
    const page = await context.newPage();
    page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
    const t = Date.now();
    await page.goto(`${url}/web/`);
    await page.click("#camera"); // before the model is in: the page starts on the camera, not a sample
    await page.waitForFunction(() => window.demo.camera.frames >= 2 || document.getElementById("status").dataset.state === "error" ||
      document.getElementById("camera-msg").dataset.state === "error", null, { timeout: 800_000 })
      .catch((e) => assert.fail(`${e.message}\n${logs.join("\n")}`));
    const msg = await page.textContent("#camera-msg");
    const st = await page.$eval("#status", (e) => ({ state: e.dataset.state, text: e.textContent }));
    console.log(`  camera: ${msg} (${Date.now() - t} ms from page load); status: ${st.text}`);
    assert.equal(st.state, "ready", st.text);
    assert.match(msg, /^Camera: [2-9]\d* frames classified/);
    const top = await page.$$eval("#dense-top5 .pred, #sparse-top5 .pred", (r) => r.length);
    assert.equal(top, 10, "top-5 of the dense and the pruned model");
    const frames = await page.evaluate(() => ({
      size: `${document.getElementById("video").videoWidth}x${document.getElementById("video").videoHeight}`,
      sparse: window.demo.runs.filter((r) => !r.dense).length,
    }));
    console.log(`  camera frames ${frames.size}; pruned runs ${frames.sparse}`);
    assert.ok(frames.sparse >= 2, "every frame ran through the pruned model");
    mkdirSync("target/web", { recursive: true });
    await page.screenshot({ path: "target/web/camera.png", fullPage: true });

    await page.click("#camera-stop");
    const stopped = await page.evaluate(() => ({
      live: document.getElementById("video").srcObject !== null,
      button: !document.getElementById("camera").hidden,
      msg: document.getElementById("camera-msg").textContent,
    }));
    console.log(`  stopped: ${stopped.msg}`);
    assert.deepEqual([stopped.live, stopped.button], [false, true]);
    assert.match(stopped.msg, /^Camera stopped after \d+ frames?\.$/);
  } finally {
    await browser.close();
    server.close();
  }
});

test("demo page: camera permission denied gives a clear message", { timeout: 120_000 }, async () => {
  const { server, url } = await serve(".");
  const browser = await launchWithCamera({ allow: false });
  try {
    const page = await browser.newPage(); // a context with no permissions granted
    await page.goto(`${url}/web/`);
    await page.click("#camera");
    await page.waitForFunction(() => document.getElementById("camera-msg").dataset.state === "error", null,
      { timeout: 60_000 });
    const msg = await page.textContent("#camera-msg");
    console.log(`  denied: ${msg}`);
    assert.match(msg, /^Camera permission was denied\./);
    assert.ok(!(await page.isHidden("#camera")) && (await page.isHidden("#camera-stop")), "can try again, nothing to stop");
  } finally {
    await browser.close();
    server.close();
  }
});
