// V8's compile and instantiation of a Worker's code, as node's V8 does it (scripts/bench
// --startup runs it with the Node 22 of bench/v8/package.json). For a wasm module:
// WebAssembly.compile of its bytes, then an Instance whose imports are empty functions
// (instantiation runs no Rust code: wasm-bindgen's start is an export the glue calls later). For a JavaScript bundle: the source compiled as a
// module (vm.SourceTextModule, which parses and compiles without linking or running it).
//
//   node --experimental-vm-modules --experimental-wasm-exnref bench/v8/compile.mjs <file> [runs]
//
// Prints one JSON line: {"compile_ms": [...], "instantiate_ms": [...]}.
import { readFileSync } from "node:fs";
import vm from "node:vm";

const [file, runsArg] = process.argv.slice(2);
const runs = Number(runsArg ?? 10);
const compile = [];
const instantiate = [];

if (file.endsWith(".wasm")) {
  const bytes = readFileSync(file);
  for (let i = 0; i < runs; i++) {
    let started = performance.now();
    const module = await WebAssembly.compile(bytes);
    compile.push(performance.now() - started);
    const imports = {};
    for (const { module: name, name: field, kind } of WebAssembly.Module.imports(module)) {
      imports[name] ??= {};
      if (kind === "function") imports[name][field] = () => {};
      else if (kind === "table") imports[name][field] = new WebAssembly.Table({ initial: 128, element: "anyfunc" });
      else if (kind === "memory") imports[name][field] = new WebAssembly.Memory({ initial: 17 });
      else if (kind === "global") imports[name][field] = new WebAssembly.Global({ value: "i32", mutable: true }, 0);
      // wasm-bindgen imports JavaScript's exception tag to catch what imported functions throw.
      else if (kind === "tag") imports[name][field] = WebAssembly.JSTag ?? new WebAssembly.Tag({ parameters: ["externref"] });
    }
    started = performance.now();
    new WebAssembly.Instance(module, imports);
    instantiate.push(performance.now() - started);
  }
} else {
  const source = readFileSync(file, "utf8");
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    new vm.SourceTextModule(source, { identifier: `${file}#${i}` });
    compile.push(performance.now() - started);
  }
}
console.log(JSON.stringify({ compile_ms: compile, instantiate_ms: instantiate }));
