// Reproducible build of the browser bundles (no CDN at run time):
//   recorder:  ../services/sink/static/dist/replaypipe-recorder.min.js (sites host it)
//   viewer:    ../services/sink/static/dist/viewer.js + viewer.css (served by the sink)
// Inputs are package-lock.json and src/; the output depends on nothing else.
import { build } from "esbuild";
import { readFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = join(here, "..", "services", "sink", "static", "dist");
const pkg = JSON.parse(readFileSync(join(here, "package.json"), "utf8"));
mkdirSync(outdir, { recursive: true });

const common = {
  bundle: true,
  minify: true,
  sourcemap: false,
  legalComments: "none",
  target: "es2020",
  logLevel: "warning",
  absWorkingDir: here,
};

await build({
  ...common,
  entryPoints: ["src/recorder.js"],
  outfile: join(outdir, "replaypipe-recorder.min.js"),
  format: "iife",
  define: { __REPLAYPIPE_VERSION__: JSON.stringify(pkg.version) },
});
await build({
  ...common,
  entryPoints: ["src/viewer.js"],
  outfile: join(outdir, "viewer.js"),
  format: "iife",
});
await build({
  ...common,
  entryPoints: ["src/viewer.css"],
  outfile: join(outdir, "viewer.css"),
});
console.log(`replaypipe web bundles written to ${outdir}`);
