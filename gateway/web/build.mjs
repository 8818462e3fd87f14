// Builds gateway/web/dist/recorder.js: one minified IIFE (ES2017), no source
// map, no external imports, no eval, no workers. `npm run build`.
import { readFile, stat } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const outfile = join(here, "dist", "recorder.js");

// rrweb's dist/rrweb.js is one file holding recorder and replayer. Three
// rewrites let esbuild drop what record() does not use, and the worker:
//  - PostCSS (replay-only) is required through `__toESM(__commonJSMin(...)())`
//    whose inner call is not marked pure, plus bare `import_postcss.default.X;`
//    statements: mark the call pure, delete the statements;
//  - the canvas worker (inlined source, Blob URL, `new Worker`) only runs with
//    recordCanvas + a canvas FPS sampling, which the loader never enables:
//    replace it by a function that throws.
// Each rewrite must apply, so that an rrweb upgrade changing them fails the
// build instead of silently growing the bundle.
const rrwebPatch = {
  name: "rrweb-record-only",
  setup(build) {
    build.onLoad({ filter: /[\\/]rrweb[\\/]dist[\\/]rrweb\.js$/ }, async (args) => {
      let code = await readFile(args.path, "utf8");
      const rewrites = [
        [/^import_postcss(?:\$\d+)?(?:\.[\w$]+)+;\n/gm, ""],
        [/^var ([\w$]+) = (import_postcss(?:\$\d+)?)\.default;$/gm, "var $1 = /* @__PURE__ */ (() => $2.default)();"],
        [/(__toESM(?:\$\d+)?\()(\(\/\* @__PURE__ \*\/ __commonJSMin)/g, "$1/* @__PURE__ */ $2"],
        [
          /^var jsContent = ".*";\nvar blob = .*\nfunction WorkerWrapper\(options\) \{\n[\s\S]*?\n\}\n/m,
          'function WorkerWrapper() {\n\tthrow new Error("rrweb canvas worker disabled");\n}\n',
        ],
      ];
      for (const [pattern, replacement] of rewrites) {
        const before = code;
        code = code.replace(pattern, replacement);
        if (code === before) throw new Error(`rrweb patch did not apply: ${pattern}`);
      }
      return { contents: code, loader: "js" };
    });
  },
};

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: [join(here, "src", "loader.js")],
  outfile,
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "es2017",
  minify: true,
  sourcemap: false,
  legalComments: "none",
  charset: "utf8",
  define: { "process.env.NODE_ENV": '"production"' },
  // Even an exception while the bundle's modules initialise stays ours.
  banner: { js: "/*! recorder: rrweb (MIT, github.com/rrweb-io/rrweb) + gateway loader */try{" },
  footer: { js: "}catch(e){}" },
  plugins: [rrwebPatch],
  metafile: true,
  logLevel: "warning",
});

const code = await readFile(outfile, "utf8");
const forbidden = ["eval(", "new Function(", "importScripts", "new Worker", "createObjectURL", "sourceMappingURL"];
const found = forbidden.filter((s) => code.includes(s));
if (found.length) throw new Error(`forbidden in the bundle: ${found.join(", ")}`);
const imports = Object.values(result.metafile.outputs).flatMap((o) => o.imports || []);
if (imports.length) throw new Error(`external imports left: ${imports.map((i) => i.path).join(", ")}`);

const size = (await stat(outfile)).size;
const gz = gzipSync(code, { level: 9 }).length;
console.log(`${relative(root, outfile)}: ${size} bytes, ${gz} gzipped`);
