// Parallel coordinates of a sweep's trials, or of compared runs: one vertical axis per parameter
// and the metric last, one line per trial or run, coloured by its metric (best dark blue, worst
// light orange). Trials stopped early are dashed; the best is drawn thick, on top. Plain SVG, no
// library.
//
// data: {axes: [{label, kind: number|log|category, min, max, ticks}], lines: [{label, values,
//        state, best}], goal: maximize|minimize, height, title}

const SVG = "http://www.w3.org/2000/svg";
const precise = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 4 });

function format(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a < 0.001 || a >= 100000)) return v.toExponential(1).replace(".0e", "e");
  return precise.format(v);
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

// Where a value lies on its axis, from 0 (bottom) to 1 (top).
function position(axis, v) {
  if (axis.kind === "category") {
    const n = axis.ticks.length;
    return n > 1 ? v / (n - 1) : 0.5;
  }
  let lo = axis.min;
  let hi = axis.max;
  let x = v;
  if (axis.kind === "log") {
    lo = Math.log(lo);
    hi = Math.log(hi);
    x = Math.log(v);
  }
  if (!(hi > lo)) return 0.5;
  return Math.min(1, Math.max(0, (x - lo) / (hi - lo)));
}

function ticks(axis) {
  if (axis.kind === "category") return axis.ticks.map((label, i) => [i, label]);
  if (axis.kind === "log") {
    const out = [];
    for (let e = Math.ceil(Math.log10(axis.min)); e <= Math.floor(Math.log10(axis.max)); e++) {
      out.push([10 ** e, format(10 ** e)]);
    }
    if (out.length < 2) return [[axis.min, format(axis.min)], [axis.max, format(axis.max)]];
    return out;
  }
  return [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const v = axis.min + f * (axis.max - axis.min);
    return [v, format(v)];
  });
}

// Light orange (worst) to dark blue (best).
function colour(f) {
  const a = [253, 174, 97];
  const b = [33, 102, 172];
  const c = a.map((x, i) => Math.round(x + (b[i] - x) * f));
  return `rgb(${c.join(",")})`;
}

export default function ({ parentElement, data }) {
  const root = parentElement.querySelector(".easgd-parallel");
  const host = parentElement.host || parentElement;
  root.dataset.drawn = "0";
  root.replaceChildren();
  const axes = data.axes || [];
  const lines = data.lines || [];
  root.dataset.lines = String(lines.length);
  root.dataset.axes = String(axes.length);
  if (axes.length < 2 || !lines.length) return undefined;

  // An axis is named by its key's last part (optimizer.learning_rate: learning_rate) unless two
  // axes end alike; the whole key is its tooltip.
  const lastPart = (label) => label.split(".").pop();
  const names = axes.map((a) => {
    const clash = axes.filter((b) => lastPart(b.label) === lastPart(a.label)).length > 1;
    return clash ? a.label : lastPart(a.label);
  });

  const draw = () => {
    root.replaceChildren();
    const width = Math.max(root.clientWidth || host.clientWidth || 600, 320);
    const side = 70;
    // Names wider than the room between axes are tilted, and the plot moves down (and in from
    // the right, for the last name) to make room (12 px sans-serif: about 7 px a character).
    const widest = Math.max(...names.map((n) => n.length * 7));
    const tilt = widest > (width - 2 * side) / (axes.length - 1) - 12;
    const last = Math.min(names[names.length - 1].length * 7, 240) * Math.cos(Math.PI / 6);
    const right = tilt ? Math.max(side, last + 8) : side;
    const step = (width - side - right) / (axes.length - 1);
    const rise = tilt ? Math.min(widest, 240) * Math.sin(Math.PI / 6) : 0;
    root.dataset.tilted = tilt ? "1" : "0";
    const top = 40 + rise;
    const bottom = 24;
    const height = (data.height || 360) + rise;
    const svg = el("svg", { width, height, role: "img" }, root);
    el("title", {}, svg).textContent = data.title || "Parallel coordinates";
    const x = (i) => side + i * step;
    const y = (axis, v) => top + (1 - position(axis, v)) * (height - top - bottom);
    const metric = axes[axes.length - 1];
    const good = (v) => {
      const f = position(metric, v);
      return data.goal === "minimize" ? 1 - f : f;
    };
    const ordered = [...lines].sort((p, q) => Number(p.best) - Number(q.best));
    for (const line of ordered) {
      const last = line.values[line.values.length - 1];
      const stopped = line.state === "stopped_early";
      const path = el(
        "polyline",
        {
          points: line.values.map((v, i) => `${x(i)},${y(axes[i], v)}`).join(" "),
          fill: "none",
          stroke: colour(good(last)),
          "stroke-width": line.best ? 3.5 : 1.6,
          "stroke-opacity": stopped ? 0.55 : 0.9,
          "stroke-dasharray": stopped ? "5 4" : "none",
          class: "trial",
          "data-trial": line.label,
        },
        svg,
      );
      const parts = axes.map((a, i) =>
        a.kind === "category" ? `${a.label} ${a.ticks[line.values[i]]}` : `${a.label} ${format(line.values[i])}`,
      );
      el("title", {}, path).textContent = `${line.label} (${line.state}): ${parts.join(", ")}`;
    }
    axes.forEach((axis, i) => {
      el("line", { x1: x(i), x2: x(i), y1: top, y2: height - bottom, class: "axis" }, svg);
      const anchor = tilt ? "start" : i === 0 ? "start" : i === axes.length - 1 ? "end" : "middle";
      const at = { x: x(i), y: top - 16, "text-anchor": anchor, "font-weight": 600, class: "axis-name" };
      if (tilt) at.transform = `rotate(-30 ${x(i)} ${top - 16})`;
      const named = el("g", { class: "axis-label" }, svg);
      el("title", {}, named).textContent = axis.label;
      el("text", at, named).textContent = names[i];
      // A tick's text fits between this axis and the one before it (cut, whole on hover).
      const room = Math.max(3, Math.floor((i === 0 ? side : step) / 7) - 1);
      for (const [v, text] of ticks(axis)) {
        const t = el("text", { x: x(i) - 6, y: y(axis, v) + 4, "text-anchor": "end" }, svg);
        t.textContent = text.length > room ? `${text.slice(0, room - 1)}…` : text;
        if (text.length > room) el("title", {}, t).textContent = text;
      }
    });
    root.dataset.drawn = "1";
  };
  draw();
  const observer = new ResizeObserver(() => {
    const svg = root.querySelector("svg");
    const w = Math.max(root.clientWidth || 0, 320);
    if (!svg || Math.abs(w - Number(svg.getAttribute("width"))) > 1) draw();
  });
  observer.observe(root);
  return () => observer.disconnect();
}
