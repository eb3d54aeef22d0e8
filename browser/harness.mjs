// Launches Debian's Chromium through playwright-core for the real-browser suites
// (scripts/setup-browser.sh installs it when missing; nothing downloads a browser build).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** Screenshots and other artifacts of the browser suites (gitignored). */
export const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), "..", "artifacts");

export async function launch() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    // Root on CI machines needs --no-sandbox; the rest keep the browser off the network.
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  });
}
