// Minified + gzipped size of the SDK beside socket.io-client's and partysocket's, each bundled
// for browsers with esbuild from one import, as an app would. `npm run size -w clients/js`
// (after `npm run build`). Prints a Markdown table for README.md.
import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const entries = [
  ["@switchboard/client (everything: rooms, user, documents, with ot-text-unicode)", `export * from ${JSON.stringify(join(here, "../dist/index.js"))};`],
  ["@switchboard/client without ot-text-unicode (its only dependency, left external)", `export * from ${JSON.stringify(join(here, "../dist/index.js"))};`, ["ot-text-unicode"]],
  ["@switchboard/client/socket.io (the facade, with the whole SDK)", `export { io } from ${JSON.stringify(join(here, "../dist/socket.io.js"))};`],
  ["socket.io-client 4.8.1 (`io`)", `export { io } from "socket.io-client";`],
  ["partysocket 1.3.0 (`PartySocket`)", `export { default } from "partysocket";`],
];

console.log("| bundle | minified | min + gzip |\n|---|---:|---:|");
for (const [name, contents, external = []] of entries) {
  const out = await build({
    stdin: { contents, resolveDir: here, loader: "js" },
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    write: false,
    treeShaking: true,
    external,
    logLevel: "silent",
  });
  const code = out.outputFiles[0].contents;
  const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
  console.log(`| ${name} | ${kb(code.length)} | ${kb(gzipSync(code, { level: 9 }).length)} |`);
}
