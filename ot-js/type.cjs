// The server's OT type (src/core/ot, compiled to wasm into target/ot-js by scripts/build-ot.sh) in the shape of an
// ot-text-unicode type, so the npm package's tests and ot-fuzzer can drive it. Ops cross into
// wasm as JSON text.
const path = require("node:path");
const wasm = require(path.join(__dirname, "..", "target", "ot-js", "switchboard_ot_js.js"));

const json = JSON.stringify;

module.exports = {
  name: "switchboard-text",
  uri: "http://sharejs.org/types/text-unicode",
  create(initial = "") {
    if (typeof initial !== "string") throw Error("Initial data must be a string");
    return initial;
  },
  apply: (doc, op) => wasm.apply(doc, json(op)),
  transform: (op, other, side) => JSON.parse(wasm.transform(json(op), json(other), side)),
  compose: (a, b) => JSON.parse(wasm.compose(json(a), json(b))),
  normalize: (op) => JSON.parse(wasm.normalize(json(op))),
  checkOp: (op) => wasm.checkOp(json(op)),
  transformPosition: (cursor, op) => wasm.transformPosition(cursor, json(op)),
  transformSelection: (sel, op) =>
    typeof sel === "number" ? wasm.transformPosition(sel, json(op)) : sel.map((s) => wasm.transformPosition(s, json(op))),
  isNoop: (op) => op.length === 0,
};
