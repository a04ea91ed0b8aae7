// Building the pages' elements (the rider app, its station board, the operator's flow page):
// text is always set with textContent, never parsed as markup, so API text cannot inject any.

/** `el("td", {class: "num", text: "3", "data-x": "y"}, ...children)`: an element with its class,
 * text, attributes and children. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
