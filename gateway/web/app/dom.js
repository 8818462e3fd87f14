// Tiny DOM helpers. Text always goes in through textContent/text nodes:
// recordings hold text from visitors' pages, never parsed as HTML here.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function setText(el, text) {
  el.textContent = text;
}

// A <time> element: readable text, the exact instant in datetime and title.
export function timeEl(iso, text, title) {
  return h("time", { datetime: iso || null, title: title || null, text });
}
