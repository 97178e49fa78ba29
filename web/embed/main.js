// The web developer's view: import the package, run SpMMs, check the numbers.
import init, { Runtime } from "../../pkg/wgsparse.js";

const TOL = 1e-4; // max |gpu - js| / (sum |w x| + tiny), f32 vs f64-free JS sums

function random(n, seed) {
  let s = seed >>> 0 || 1;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    a[i] = (s / 4294967296) * 2 - 1;
  }
  return a;
}

function reference(w, x, m, k, n) {
  const y = new Float64Array(m * n), mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let p = 0; p < k; p++) {
      const a = w[i * k + p];
      if (a === 0) continue;
      for (let j = 0; j < n; j++) { y[i * n + j] += a * x[p * n + j]; mag[i * n + j] += Math.abs(a * x[p * n + j]); }
    }
  return { y, mag };
}

async function check(rt, pattern, sparsity, m, k, n, tbody) {
  const w = random(m * k, 7), x = random(k * n, 11);
  // sparsity null: the pattern fixes it (N:M) or there is none (dense).
  const mat = rt.sparseMatrix(w, m, k, sparsity === null ? { pattern } : { pattern, sparsity });
  const t0 = performance.now();
  const y = await mat.matmul(x, n);
  const ms = performance.now() - t0;
  const pruned = await mat.toDense();
  const ref = reference(pruned, x, m, k, n);
  let err = 0;
  for (let i = 0; i < y.length; i++) err = Math.max(err, Math.abs(y[i] - ref.y[i]) / (ref.mag[i] + 1e-30));
  // The pruned matrix must keep the original values where it keeps anything.
  let faithful = true;
  for (let i = 0; i < w.length; i++) if (pruned[i] !== 0 && pruned[i] !== w[i]) faithful = false;
  const ok = y.length === m * n && err <= TOL && faithful;
  const row = document.createElement("tr");
  row.innerHTML = `<td>${mat.pattern}</td><td>${(100 * mat.sparsity).toFixed(1)}%</td>` +
    `<td>${(mat.bytes / mat.denseBytes).toFixed(3)}</td><td>${err.toExponential(2)}</td>` +
    `<td>${ms.toFixed(1)}</td><td class="${ok ? "pass" : "fail"}">${ok ? "PASS" : "FAIL"}</td>`;
  tbody.appendChild(row);
  mat.free();
  return ok;
}

async function main() {
  const status = document.getElementById("status");
  try {
    await init();
    const rt = await Runtime.create();
    const info = rt.adapterInfo;
    document.getElementById("adapter").textContent =
      `Adapter: ${info.name || "(unnamed)"} — ${info.backend}, ${info.deviceType}, f16 ${info.shaderF16}`;
    const tbody = document.querySelector("#results tbody");
    const cases = [["dense", null], ["block:4x4", 0.5], ["block:16x16", 0.9], ["2:4", null], ["1:4", null], ["unstructured", 0.9]];
    let all = true;
    for (const [p, s] of cases) all = (await check(rt, p, s, 67, 93, 29, tbody)) && all;
    // Bad input must reject with a readable message, not crash the page.
    let rejected = "";
    try { rt.sparseMatrix(new Float32Array(6), 2, 3, { pattern: "5:4" }); } catch (e) { rejected = String(e.message || e); }
    const badOk = rejected.includes("N:M");
    all = all && badOk;
    status.textContent = (all ? "PASS" : "FAIL") + (badOk ? "" : ` (bad pattern gave: ${rejected})`);
    status.className = all ? "pass" : "fail";
  } catch (e) {
    status.textContent = "ERROR: " + (e && e.message ? e.message : e);
    status.className = "fail";
  }
}
main();
