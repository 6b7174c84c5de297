// Learning curves of several runs, drawn with uPlot (loaded just before this module).
// Streamlit's built-in charts load Vega (about 2 MB of JavaScript) before they draw; uPlot is
// 50 kB, which keeps the Compare page of 20 runs x 10,000 steps fast on a cold browser.
//
// data: {series: [{label, x: [...], y: [...]}], x_label, y_label, log, height, x_kind, y_kind}
// (a kind: number, bytes or seconds)

const PALETTE = [
  "#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6",
  "#9d755d", "#bab0ac", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#393b79",
];

const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 2 });
const precise = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 5 });
const fraction = (digits) => new Intl.NumberFormat(undefined, { maximumFractionDigits: digits });
const tenths = fraction(1);
const hundredths = fraction(2);

// Numbers by magnitude: 12K and 1.5M, 0.1337, 1.3e-7 (never 0.0000).
function formatNumber(v) {
  const a = Math.abs(v);
  if (a >= 10000) return compact.format(v);
  if (a !== 0 && a < 0.001) return v.toExponential(1).replace(".0e", "e");
  return precise.format(v);
}

// Bytes as the tables' byte columns show them (Streamlit's NumberColumn "bytes" format, the
// same Intl call): 950B, 106KB, 7.5MB, 1.2GB.
const bytes = new Intl.NumberFormat(undefined, {
  notation: "compact",
  style: "unit",
  unit: "byte",
  unitDisplay: "narrow",
  maximumFractionDigits: 1,
});

function formatBytes(v) {
  return bytes.format(v).replace("BB", "GB");
}

// Seconds with the digits that matter at their size: 0.42 s, 12.3 s, 4 min 05 s, 2 h 03 min.
function formatSeconds(v) {
  const a = Math.abs(v);
  const sign = v < 0 ? "-" : "";
  if (a < 10) return `${sign}${hundredths.format(a)} s`;
  if (a < 60) return `${sign}${tenths.format(a)} s`;
  const whole = Math.round(a);
  if (whole < 3600) {
    const m = Math.floor(whole / 60);
    return `${sign}${m} min ${String(whole - m * 60).padStart(2, "0")} s`;
  }
  const minutes = Math.round(a / 60);
  const h = Math.floor(minutes / 60);
  return `${sign}${h} h ${String(minutes - h * 60).padStart(2, "0")} min`;
}

const FORMATS = { bytes: formatBytes, seconds: formatSeconds, number: formatNumber };

function formatter(kind) {
  const format = FORMATS[kind] || formatNumber;
  return (v) => (v == null || !Number.isFinite(v) ? "--" : format(v));
}

// A log scale fitted to the data (uPlot's own snaps to whole decades, which squashes curves that
// live within one), with ticks that are round numbers of the range.
function logRange(u, min, max) {
  if (!(min > 0 && max > 0)) return [0.1, 1];
  if (min === max) return [min / 1.5, max * 1.5];
  const pad = (max / min) ** 0.05;
  return [min / pad, max * pad];
}

function round(v) {
  return Number(v.toPrecision(12));
}

function linearSplits(min, max, count) {
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(round(v));
  return out;
}

function logSplits(u, axisIdx, min, max) {
  const decades = Math.log10(max / min);
  if (decades < 1) return linearSplits(min, max, 5);
  const multiples = decades <= 2.5 ? [1, 2, 5] : [1];
  const every = Math.max(1, Math.ceil(decades / 8));
  const out = [];
  for (let k = Math.floor(Math.log10(min)); k <= Math.ceil(Math.log10(max)); k += 1) {
    if (k % every !== 0) continue;
    for (const m of multiples) {
      const v = round(m * 10 ** k);
      if (v >= min && v <= max) out.push(v);
    }
  }
  return out.length >= 3 ? out : linearSplits(min, max, 5);
}

// A run's value at x: its own point there, else the straight line between its two points
// around x; none outside the x it covers.
function valueAt(xs, ys, x) {
  const n = xs.length;
  if (x == null || !n || x < xs[0] || x > xs[n - 1]) return null;
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  if (xs[lo] === x || lo === 0) return ys[lo];
  const t = (x - xs[lo - 1]) / (xs[lo] - xs[lo - 1]);
  return ys[lo - 1] + t * (ys[lo] - ys[lo - 1]);
}

function themeColor(element, name, fallback) {
  const value = getComputedStyle(element).getPropertyValue(name).trim();
  return value || fallback;
}

const plots = new WeakMap();

export default function ({ parentElement, data }) {
  const root = parentElement.querySelector(".easgd-curves");
  const host = parentElement.host || parentElement;
  const previous = plots.get(root);
  if (previous) {
    previous.observer.disconnect();
    previous.plot.destroy();
  }
  root.dataset.drawn = "0";
  const series = data.series || [];
  root.dataset.series = String(series.length);
  root.dataset.y = data.y_label || "";
  if (!series.length) return undefined;

  const text = themeColor(root, "--st-text-color", "#31333f");
  const grid = themeColor(root, "--st-border-color", "rgba(128, 128, 128, 0.2)");
  const fmtX = formatter(data.x_kind);
  const fmtY = formatter(data.y_kind);
  const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
  const width = () => Math.max(root.clientWidth || host.clientWidth || 600, 300);
  // The x under the cursor: the data point it snapped to, of whichever run has one there.
  const cursorX = (u) => (u.cursor.idx == null ? null : u.data[0][u.cursor.idx]);
  const yAxis = { ...axis, label: data.y_label, size: 70, values: (u, splits) => splits.map(fmtY) };

  const opts = {
    width: width(),
    height: data.height || 380,
    scales: {
      x: { time: false },
      y: data.log ? { distr: 3, log: 10, range: logRange } : { auto: true },
    },
    axes: [
      { ...axis, label: data.x_label, values: (u, splits) => splits.map(fmtX) },
      data.log ? { ...yAxis, splits: logSplits } : yAxis,
    ],
    series: [
      { label: data.x_label, value: (u) => fmtX(cursorX(u)) },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: PALETTE[i % PALETTE.length],
        width: 1.6,
        spanGaps: true,
        points: { show: false },
        value: (u) => fmtY(valueAt(s.x, s.y, cursorX(u))),
      })),
    ],
    cursor: {
      drag: { x: true, y: false },
      points: { show: false },
      dataIdx: (u, seriesIdx, closestIdx) => closestIdx,
      // The cursor's line stands at the x the legend names, not between two points.
      move: (u, left, top) => {
        const x = left < 0 ? null : u.data[0][u.posToIdx(left)];
        return x == null ? [left, top] : [Math.round(u.valToPos(x, "x")), top];
      },
    },
    legend: { live: true },
    hooks: {
      draw: [
        () => {
          root.dataset.drawn = "1";
        },
      ],
      setCursor: [
        (u) => {
          const x = cursorX(u);
          root.dataset.cursorX = x == null ? "" : String(x);
        },
      ],
    },
  };
  // One x array for all runs: uPlot.join merges them, leaving gaps that spanGaps bridges.
  const aligned = uPlot.join(series.map((s) => [s.x, s.y]));
  const plot = new uPlot(opts, aligned, root);
  const observer = new ResizeObserver(() => {
    const w = width();
    if (Math.abs(w - plot.width) > 1) plot.setSize({ width: w, height: plot.height });
  });
  observer.observe(root);
  plots.set(root, { plot, observer });
  return () => {
    observer.disconnect();
    plot.destroy();
    plots.delete(root);
  };
}
