// The package's TypeScript declarations, checked with the TypeScript compiler
// on a web developer's code (types-check.ts): typed options and results, and
// the misuses it must reject at compile time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";

test("package .d.ts: typed options and results, misuse is a type error", { timeout: 120_000 }, () => {
  const r = spawnSync(process.execPath, ["node_modules/typescript/bin/tsc", "--strict", "--noEmit", "--target", "es2022",
    "--module", "esnext", "--moduleResolution", "bundler", "--lib", "es2022,dom", "--skipLibCheck", "false",
    "tests/web/types-check.ts"], { encoding: "utf8" });
  assert.equal(r.status, 0, `tsc:\n${r.stdout}${r.stderr}`);
});
