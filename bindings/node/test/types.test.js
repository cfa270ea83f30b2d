// index.d.ts compiles, and socket.io-style code type-checks against it.
"use strict";

const { it } = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { spawnSync } = require("node:child_process");

it("the TypeScript declarations accept socket.io-style code", { timeout: 60000 }, () => {
  const tsc = require.resolve("typescript/bin/tsc");
  const out = spawnSync(process.execPath, [tsc, "-p", path.join(__dirname, "types")], { encoding: "utf8" });
  assert.equal(out.status, 0, `${out.stdout}${out.stderr}`);
});
