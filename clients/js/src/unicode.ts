/**
 * Positions in documents: the wire counts Unicode code points (`"😀"` is 1), a textarea's
 * `selectionStart` counts UTF-16 units (`"😀"` is 2). These convert between the two for a given
 * text. A UTF-16 index inside a surrogate pair rounds down to the pair's start.
 */

/** The code-point position of UTF-16 index `index16` in `text`. */
export function toCodePoints(text: string, index16: number): number {
  let cp = 0;
  const end = Math.max(0, Math.min(index16, text.length));
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      if (i + 1 >= end) break; // inside the pair: round down
      i++;
    }
    cp++;
  }
  return cp;
}

/** The UTF-16 index of code-point position `cp` in `text` (clamped to the text). */
export function toUtf16(text: string, cp: number): number {
  let i = 0;
  for (let n = 0; n < cp && i < text.length; n++) {
    const c = text.charCodeAt(i);
    i += c >= 0xd800 && c <= 0xdbff && i + 1 < text.length ? 2 : 1;
  }
  return i;
}
