/**
 * The architecture, checked on the sources: each layer imports only from itself and the
 * layers below it (lifecycle -> wal -> timeline -> walreceiver -> remote -> service), and
 * `lifecycle` imports nothing but Node's built-ins, so `tideline/lifecycle` has zero
 * runtime dependencies. Every layer folder has its face, `index.ts`.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";

const SRC = resolve("src");
const LAYERS = ["lifecycle", "wal", "timeline", "walreceiver", "remote", "service"];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return name.endsWith(".ts") ? [path] : [];
  });
}

/** Every module specifier a file imports or re-exports (static and dynamic). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"/g))
    out.push(m[1]!);
  for (const m of text.matchAll(/\bimport\(\s*"([^"]+)"\s*\)/g)) out.push(m[1]!);
  for (const m of text.matchAll(/(?:^|\n)\s*import\s+"([^"]+)"/g)) out.push(m[1]!);
  return out;
}

function layerOf(file: string): string | undefined {
  const top = relative(SRC, file).split("/")[0]!;
  return LAYERS.includes(top) ? top : undefined;
}

describe("architecture", () => {
  const files = sources(SRC);

  it("finds the sources", () => {
    assert.ok(files.length > 50, `${files.length} files under src/`);
  });

  it("each layer imports only from itself and the layers below it", () => {
    const wrong: string[] = [];
    for (const file of files) {
      const from = layerOf(file);
      if (from === undefined) continue;
      for (const spec of importsOf(file)) {
        if (!spec.startsWith(".")) continue;
        const to = layerOf(resolve(dirname(file), spec));
        if (to === undefined) continue;
        if (LAYERS.indexOf(to) > LAYERS.indexOf(from))
          wrong.push(`${relative(SRC, file)} (${from}) imports ${spec} (${to})`);
      }
    }
    assert.deepEqual(wrong, []);
  });

  it("lifecycle imports nothing outside itself but Node's built-ins", () => {
    const wrong: string[] = [];
    for (const file of files.filter((f) => layerOf(f) === "lifecycle")) {
      for (const spec of importsOf(file)) {
        const ok =
          spec.startsWith("node:") ||
          (spec.startsWith(".") && layerOf(resolve(dirname(file), spec)) === "lifecycle");
        if (!ok) wrong.push(`${relative(SRC, file)} imports ${spec}`);
      }
    }
    assert.deepEqual(wrong, []);
  });

  it("every layer has its face, index.ts, and each is a subpath export", () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as {
      exports: Record<string, string>;
    };
    for (const layer of LAYERS) {
      assert.ok(existsSync(join(SRC, layer, "index.ts")), `src/${layer}/index.ts`);
      assert.equal(pkg.exports[`./${layer}`], `./dist/${layer}/index.js`, `exports["./${layer}"]`);
    }
  });
});
