// A React 18 root for hook tests in Node without a DOM: react-dom's concurrent root (the one
// whose StrictMode really mounts, unmounts and remounts effects) over a stand-in container. The
// components under test render null, so no DOM node is ever created; the stand-in only has to
// satisfy what createRoot reads from a container.
import { createElement as h, StrictMode, act } from "react";

class HTMLIFrameElement {}
globalThis.window ??= { event: undefined, HTMLIFrameElement };
const { createRoot } = await import("react-dom/client");

const noop = () => {};
const html = "http://www.w3.org/1999/xhtml";
const document = { nodeType: 9, addEventListener: noop, removeEventListener: noop, defaultView: globalThis.window, activeElement: null, documentElement: { namespaceURI: html, tagName: "HTML" } };

/** act() for mounting and unmounting; updates that arrive later from sockets run outside it. */
function inAct(fn) {
  globalThis.IS_REACT_ACT_ENVIRONMENT = true;
  try {
    act(fn);
  } finally {
    globalThis.IS_REACT_ACT_ENVIRONMENT = false;
  }
}

/** Renders `element` inside StrictMode; returns `unmount`. */
export function renderStrict(element) {
  const container = { nodeType: 1, nodeName: "DIV", tagName: "DIV", namespaceURI: html, ownerDocument: document, firstChild: null, addEventListener: noop, removeEventListener: noop, appendChild: noop, removeChild: noop };
  const root = createRoot(container);
  inAct(() => root.render(h(StrictMode, null, element)));
  return { unmount: () => inAct(() => root.unmount()) };
}
