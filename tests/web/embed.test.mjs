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
    assert.match(status, /^ERROR: .*(no GPU adapter|WebGPU)/i);
  } finally {
    await browser.close();
    server.close();
  }
});
