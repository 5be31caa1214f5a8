// Small DOM helpers: elements are built with h() from data, never from HTML strings,
// so labels, tags and API reasons are always text.

const SVG_NS = 'http://www.w3.org/2000/svg';
const PROPS = new Set(['value', 'checked', 'selected', 'disabled', 'hidden', 'open', 'indeterminate']);

/**
 * h('button', {class: 'btn', onclick: fn}, 'Save') builds an element. Attributes
 * named on* become listeners; value/checked/… are set as properties; null, undefined
 * and false are skipped; children may be strings, nodes, arrays or null.
 */
export function h(tag, attrs, ...children) {
  const svg = tag.startsWith('svg:');
  const el = svg ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (!svg && PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** append adds children (strings, nodes, nested arrays; null skipped) to el. */
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** replace empties el and fills it with children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let uid = 0;
/** id returns a document-unique id with a readable prefix. */
export function id(prefix = 'x') {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** announce tells screen-reader users something that changed out of their focus. */
export function announce(text) {
  const el = document.getElementById('announcer');
  if (!el) return;
  el.textContent = '';
  // A new text node in a cleared region is what makes readers speak it again.
  setTimeout(() => { el.textContent = text; }, 50);
}

/** toast shows a short, polite message that fades by itself. */
export function toast(text, kind = 'ok') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const t = h('div', {class: `toast ${kind}`}, text);
  box.append(t);
  setTimeout(() => t.remove(), kind === 'ok' ? 4000 : 8000);
}

/** fmtNumber shows n with at most `digits` decimals, grouped for reading. */
export function fmtNumber(n, digits = 2) {
  return Number(n).toLocaleString('en-US', {maximumFractionDigits: digits});
}

/** fmtMB shows a transfer amount given in megabytes. */
export function fmtMB(mb) {
  const v = Number(mb) || 0;
  if (v >= 1024 * 1024) return `${fmtNumber(v / 1024 / 1024)} TB`;
  if (v >= 1024) return `${fmtNumber(v / 1024)} GB`;
  return `${fmtNumber(v)} MB`;
}
