// Line charts drawn as SVG: the connections and traffic graphs of a NodeBalancer.
// Redrawn at the container's real width, so text keeps its size on any screen.

import {h, id, replace, fmtNumber} from './dom.js';

/** niceStep rounds v up to 1, 2 or 5 times a power of ten, and to at least min. */
export function niceStep(v, min = 0) {
  if (!(v > min)) return min > 0 ? min : 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p * (1 + 1e-9)) return m * p;
  return 10 * p;
}

/** decimalsFor is how many decimals tick labels need at a step of size step. */
export function decimalsFor(step) {
  return Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
}

/** fmtBits shows a bits-per-second rate with a unit prefix. */
export function fmtBits(v, _decimals) {
  const units = ['b/s', 'Kb/s', 'Mb/s', 'Gb/s', 'Tb/s'];
  let i = 0;
  let x = Math.abs(v);
  while (x >= 1000 && i < units.length - 1) { x /= 1000; i++; }
  return `${fmtNumber(Math.sign(v) * x, x < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}

const pad2 = (n) => String(n).padStart(2, '0');
function fmtTime(ms, withSeconds) {
  const d = new Date(ms);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}${withSeconds ? `:${pad2(d.getSeconds())}` : ''}`;
}

/** LineChart is one graph: a title, series of [ms, value] points, a legend. */
export class LineChart {
  /**
   * opts: {title, format(v, decimals), minStep, series: [{key, label, cls}]};
   * format shows a value, with the decimals a tick step needs when given.
   */
  constructor({title, format = (v, d = 2) => fmtNumber(v, d), minStep = 0, series}) {
    this.title = title;
    this.format = format;
    this.minStep = minStep;
    this.series = series;
    this.data = null;
    this.message = 'Loading…';
    const capId = id('chart-title');
    this.descId = id('chart-desc');
    this.svg = h('svg:svg', {class: 'chart-svg', role: 'img', 'aria-labelledby': `${capId} ${this.descId}`, focusable: 'false'});
    this.legend = h('ul', {class: 'legend'});
    this.caption = h('figcaption', {id: capId}, title);
    this.el = h('figure', {class: 'chart'}, this.caption, this.svg, this.legend);
    this.width = 0;
    this.ro = new ResizeObserver(() => {
      const w = Math.round(this.svg.getBoundingClientRect().width);
      if (w && w !== this.width) {
        this.width = w;
        this.draw();
      }
    });
    this.ro.observe(this.el);
  }

  /** setData shows series {key: [[ms, v], …]}; null with a message shows the message. */
  setData(data, message = '') {
    this.data = data;
    this.message = message;
    this.draw();
  }

  /** destroy stops watching the container's size. */
  destroy() { this.ro.disconnect(); }

  draw() {
    const W = this.width || 600;
    const H = W < 480 ? 170 : 210;
    const m = {l: 64, r: 12, t: 10, b: 26};
    const iw = Math.max(10, W - m.l - m.r);
    const ih = H - m.t - m.b;
    const svg = this.svg;
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('height', H);
    const kids = [h('svg:desc', {id: this.descId})];
    const pts = this.series.map((s) => (this.data?.[s.key] ?? [])
      .filter((p) => Array.isArray(p) && Number.isFinite(+p[0]) && Number.isFinite(+p[1]))
      .map(([t, v]) => [+t, +v]).sort((a, b) => a[0] - b[0]));
    const any = pts.some((p) => p.length > 0);
    const frame = h('svg:rect', {x: m.l, y: m.t, width: iw, height: ih, class: 'chart-frame'});
    kids.push(frame);
    if (!any) {
      const text = this.message || 'No data yet';
      kids.push(h('svg:text', {x: m.l + iw / 2, y: m.t + ih / 2, class: 'chart-empty', 'text-anchor': 'middle'}, text));
      kids[0].textContent = text;
      replace(svg, kids);
        replace(this.legend, this.series.map((s) => h('li', {class: s.cls}, h('span', {class: 'swatch'}), `${s.label}: no data`)));
      this.el.dataset.state = 'empty';
      this.el.dataset.points = '0';
      this.el.dataset.max = '0';
      return;
    }
    const all = pts.flat();
    const t0 = Math.min(...all.map((p) => p[0]));
    const t1 = Math.max(...all.map((p) => p[0]));
    const span = Math.max(1, t1 - t0);
    const vmax = Math.max(...all.map((p) => p[1]));
    const step = niceStep(vmax / 4, this.minStep);
    const ymax = step * 4;
    const decimals = decimalsFor(step);
    const x = (t) => m.l + ((t - t0) / span) * iw;
    const y = (v) => m.t + ih - (v / ymax) * ih;
    for (let i = 0; i <= 4; i++) {
      const v = (ymax * i) / 4;
      kids.push(h('svg:line', {x1: m.l, x2: m.l + iw, y1: y(v), y2: y(v), class: 'chart-grid'}));
      kids.push(h('svg:text', {x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'chart-label'}, this.format(v, decimals)));
    }
    const withSeconds = span < 10 * 60 * 1000;
    // One label per ~110 px, never two alike (a single point has one).
    const ticks = t1 === t0 ? 0 : Math.max(1, Math.min(6, Math.floor(iw / 110), Math.floor(span / (withSeconds ? 1000 : 60000))));
    let prevLabel = '';
    for (let i = 0; i <= ticks; i++) {
      const t = ticks ? t0 + (span * i) / ticks : t0;
      const text = fmtTime(t, withSeconds);
      if (text === prevLabel) continue;
      prevLabel = text;
      const anchor = i === 0 ? 'start' : i === ticks ? 'end' : 'middle';
      kids.push(h('svg:text', {x: x(t), y: H - 6, 'text-anchor': anchor, class: 'chart-label'}, text));
    }
    this.series.forEach((s, i) => {
      const p = pts[i];
      if (!p.length) return;
      if (p.length === 1) {
        kids.push(h('svg:circle', {cx: x(p[0][0]), cy: y(p[0][1]), r: 3, class: `chart-line ${s.cls}`}));
        return;
      }
      const d = p.map(([t, v], j) => `${j ? 'L' : 'M'}${x(t).toFixed(1)} ${y(v).toFixed(1)}`).join(' ');
      if (i === 0) {
        kids.push(h('svg:path', {d: `${d} L${x(p.at(-1)[0]).toFixed(1)} ${y(0)} L${x(p[0][0]).toFixed(1)} ${y(0)} Z`, class: `chart-area ${s.cls}`}));
      }
      kids.push(h('svg:path', {d, class: `chart-line ${s.cls}`}));
    });
    const summary = this.series.map((s, i) => {
      const p = pts[i];
      if (!p.length) return `${s.label}: no data`;
      const last = p.at(-1)[1];
      const max = Math.max(...p.map((q) => q[1]));
      return `${s.label}: now ${this.format(last)}, max ${this.format(max)}`;
    });
    kids[0].textContent = `${summary.join('; ')}. From ${fmtTime(t0, withSeconds)} to ${fmtTime(t1, withSeconds)}.`;
    replace(svg, kids);
    replace(this.legend, this.series.map((s, i) => h('li', {class: s.cls}, h('span', {class: 'swatch'}), summary[i])));
    this.el.dataset.state = 'data';
    this.el.dataset.points = String(all.length);
    this.el.dataset.max = String(vmax);
  }
}
