// Builds the demo page into demo/dist/ (gitignored), the Worker's static assets (wrangler.toml
// `[assets]`): demo/app.tsx with the client SDK and React bundled by esbuild into one ESM file,
// next to demo/index.html and demo/style.css. Takes well under a second; run by scripts/build.sh,
// so `npm run dev`, `npm test` and `npm run build` (before `wrangler deploy`) all serve it.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "demo");
const out = join(src, "dist");
const sdk = join(root, "clients", "js", "src");

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(src, "app.tsx")],
  outfile: join(out, "app.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  jsx: "automatic",
  minify: true,
  sourcemap: true,
  // The SDK from its sources, so the page never runs a stale `tsc` build of it.
  alias: { "@switchboard/client/react": join(sdk, "react.ts"), "@switchboard/client": join(sdk, "index.ts") },
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
});
for (const file of ["index.html", "style.css"]) copyFileSync(join(src, file), join(out, file));
console.log("build-demo: demo/dist/ (index.html, style.css, app.js)");
