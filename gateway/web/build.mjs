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

// ---- The admin pages' assets (dashboard and session player) ----------------
// gateway/web/app/ -> dist/dashboard.js, dist/player.js (minified IIFEs,
// ES2020, no source map), dist/app.css, dist/rrweb.css (rrweb's replayer
// CSS). The player takes the whole rrweb, unpatched: the record-only
// plugin above is the recorder's alone.
const { readdir } = await import("node:fs/promises");
const appDir = join(here, "app");
const distDir = join(here, "dist");
const appResult = await esbuild.build({
  absWorkingDir: root,
  entryPoints: { dashboard: join(appDir, "dashboard.js"), player: join(appDir, "player.js") },
  outdir: distDir,
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "es2020",
  minify: true,
  sourcemap: false,
  legalComments: "none",
  charset: "utf8",
  define: { "process.env.NODE_ENV": '"production"' },
  banner: { js: "/*! recording gateway admin pages; the player includes rrweb (MIT, github.com/rrweb-io/rrweb) */" },
  metafile: true,
  logLevel: "warning",
});
await esbuild.build({
  absWorkingDir: root,
  entryPoints: { app: join(appDir, "app.css"), rrweb: join(root, "node_modules", "rrweb", "dist", "style.css") },
  outdir: distDir,
  bundle: true,
  minify: true,
  sourcemap: false,
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
});

// Our sources never parse strings as HTML or code (recordings hold visitors'
// text); rrweb's own code is checked for eval in the bundle.
for (const name of await readdir(appDir)) {
  if (!name.endsWith(".js")) continue;
  const source = await readFile(join(appDir, name), "utf8");
  const bad = ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"].filter((s) =>
    source.includes(s),
  );
  if (bad.length) throw new Error(`gateway/web/app/${name} uses ${bad.join(", ")}`);
}
const appImports = Object.values(appResult.metafile.outputs).flatMap((o) => o.imports || []);
if (appImports.length) throw new Error(`external imports left: ${appImports.map((i) => i.path).join(", ")}`);
for (const name of ["dashboard.js", "player.js", "app.css", "rrweb.css"]) {
  const file = join(distDir, name);
  const text = await readFile(file, "utf8");
  // PostCSS inside rrweb mentions "sourceMappingURL" in regexes: only a
  // trailing source map comment counts.
  const found = ["eval(", "new Function("].filter((s) => text.includes(s));
  if (/[#@] sourceMappingURL=\S*\s*(\*\/)?\s*$/.test(text)) found.push("a source map comment");
  if (found.length) throw new Error(`forbidden in ${name}: ${found.join(", ")}`);
  const appGz = gzipSync(text, { level: 9 }).length;
  console.log(`${relative(root, file)}: ${(await stat(file)).size} bytes, ${appGz} gzipped`);
}
