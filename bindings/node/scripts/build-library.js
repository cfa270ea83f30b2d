#!/usr/bin/env node
// The package's install step: builds the iobus shared library with cargo
// when the package sits in the iobus source tree (bindings/node), and copies
// it into native/, where the package loads it from. With IOBUS_LIBRARY set,
// or with a library already in native/ and no source tree, there is nothing
// to build.

"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { spawnSync } = require("node:child_process");

const PACKAGE_DIR = path.resolve(__dirname, "..");
const REPO = path.resolve(PACKAGE_DIR, "..", "..");
const LIB_FILE = process.platform === "darwin" ? "libiobus.dylib" : "libiobus.so";
const NATIVE = path.join(PACKAGE_DIR, "native", LIB_FILE);

function say(message) {
  process.stderr.write(`iobus: ${message}\n`);
}

function isIobusTree(dir) {
  try {
    return /^\s*name\s*=\s*"iobus"\s*$/m.test(fs.readFileSync(path.join(dir, "Cargo.toml"), "utf8"));
  } catch {
    return false;
  }
}

function main() {
  if (process.env.IOBUS_LIBRARY) {
    say(`using IOBUS_LIBRARY=${process.env.IOBUS_LIBRARY}; nothing to build`);
    return 0;
  }
  if (!isIobusTree(REPO)) {
    if (fs.existsSync(NATIVE)) return 0;
    say(`no iobus source tree at ${REPO} and no ${path.relative(PACKAGE_DIR, NATIVE)}; set IOBUS_LIBRARY`);
    return 1;
  }
  const cargo = process.env.CARGO || "cargo";
  say(`building the library: ${cargo} build --release --lib (in ${REPO})`);
  const built = spawnSync(cargo, ["build", "--release", "--lib"], { cwd: REPO, stdio: ["ignore", 2, 2] });
  const target = process.env.CARGO_TARGET_DIR || path.join(REPO, "target");
  const output = path.join(target, "release", LIB_FILE);
  if (built.error || built.status !== 0) {
    say(`cargo failed (${built.error ? built.error.message : `exit ${built.status}`})`);
    if (fs.existsSync(NATIVE)) return 0;
    if (!fs.existsSync(output)) return 1;
    say(`using the existing ${output}`);
  }
  fs.mkdirSync(path.dirname(NATIVE), { recursive: true });
  // Copy then rename: a process that has the old file mapped keeps it intact.
  const partial = `${NATIVE}.${process.pid}.tmp`;
  fs.copyFileSync(output, partial);
  fs.renameSync(partial, NATIVE);
  say(`installed ${path.relative(PACKAGE_DIR, NATIVE)}`);
  return 0;
}

process.exitCode = main();
