// Seeded random documents and ops for the OT tests: astral characters, combining marks and CJK
// next to ASCII, so every length is counted in code points, never UTF-16 units.

/** mulberry32: a small, fast, seedable PRNG returning [0, 1). */
export function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Code points, not UTF-16 units: a combining acute, an astral emoji, a skin-tone modifier, a
// musical symbol (astral), CJK, and plain letters.
const ALPHABET = ["a", "b", "c", " ", "é", "\u0301", "\u0308", "中", "文", "😀", "👍", "\u{1F3FD}", "𝄞", "\n", "z"];

export function generator(rand) {
  const int = (n) => Math.floor(rand() * n);
  const text = (n) => Array.from({ length: n }, () => ALPHABET[int(ALPHABET.length)]).join("");
  const cps = (s) => Array.from(s);

  /** A random document of up to `max` code points. */
  const doc = (max = 30) => text(int(max + 1));

  /**
   * Random raw components for `doc` (unnormalized: neighbours of one kind, trailing skips), and
   * the document they produce, computed here without any OT library.
   */
  function rawOp(docText) {
    const chars = cps(docText);
    const components = [];
    const out = [];
    let pos = 0;
    const steps = 1 + int(5);
    for (let i = 0; i < steps; i++) {
      const left = chars.length - pos;
      const kind = int(3);
      if (kind === 0 && left > 0) {
        const n = 1 + int(left);
        components.push(n);
        out.push(...chars.slice(pos, pos + n));
        pos += n;
      } else if (kind === 1 || left === 0) {
        const s = text(1 + int(4));
        components.push(s);
        out.push(...cps(s));
      } else {
        const n = 1 + int(left);
        const deleted = chars.slice(pos, pos + n).join("");
        components.push(rand() < 0.5 ? { d: n } : { d: deleted });
        pos += n;
      }
    }
    if (rand() < 0.3 && pos < chars.length) components.push(chars.length - pos); // a trailing skip
    out.push(...chars.slice(pos));
    return { components, result: out.join("") };
  }

  return { int, doc, rawOp, cps };
}
