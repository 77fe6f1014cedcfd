// Builds the survey page into dist/: one minified ES module (the page's code with @divviup/prio3 and
// @cloudflare/blindrsa-ts), the HTML and the style sheet. `make web` runs it after `npm ci`.
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";

const here = new URL(".", import.meta.url).pathname;
await mkdir(`${here}dist`, { recursive: true });
await build({
  entryPoints: [`${here}src/main.js`],
  outfile: `${here}dist/page.js`,
  bundle: true,
  minify: true,
  format: "esm",
  platform: "browser",
  target: ["chrome109", "firefox115", "safari16"],
  legalComments: "external",
  logLevel: "warning",
});
for (const file of ["index.html", "style.css"]) await copyFile(`${here}src/${file}`, `${here}dist/${file}`);
