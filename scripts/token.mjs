// Prints a dev token: `npm run token -- alice [seconds]`. HS256 with JWT_SECRET from .dev.vars
// (or the environment), valid for one hour unless told otherwise. Dev use only.
import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { signHs256 } from "../miniflare/jwt.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function devSecret() {
  if (process.env.JWT_SECRET) return process.env.JWT_SECRET;
  for (const file of [".dev.vars", ".dev.vars.example"]) {
    const path = join(root, file);
    if (!existsSync(path)) continue;
    const line = readFileSync(path, "utf8").split("\n").find((l) => l.startsWith("JWT_SECRET="));
    if (line) return line.slice("JWT_SECRET=".length).trim().replace(/^"|"$/g, "");
  }
  throw new Error("JWT_SECRET not found in the environment, .dev.vars or .dev.vars.example");
}

const [user, seconds = "3600"] = process.argv.slice(2);
if (!user) {
  console.error("usage: npm run token -- <user> [seconds]");
  process.exit(2);
}
const now = Math.floor(Date.now() / 1000);
console.log(signHs256({ sub: user, iat: now, exp: now + Number(seconds) }, devSecret()));
