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
// around x; none outside the x it covers, nor next to a point that has none (a band's edge
// where a group's point averages one run).
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
  if (ys[lo] == null || ys[lo - 1] == null) return null;
  const t = (x - xs[lo - 1]) / (xs[lo] - xs[lo - 1]);
  return ys[lo - 1] + t * (ys[lo] - ys[lo - 1]);
}

function themeColor(element, name, fallback) {
  const value = getComputedStyle(element).getPropertyValue(name).trim();
  return value || fallback;
}

// A colour with an alpha, for a group's band under its mean line.
function translucent(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

// One chart in `root`; returns what undoes it. `sync`: the key of the charts whose cursors move
// together (uPlot.sync), or null.
function drawChart(root, host, data, sync) {
  root.dataset.drawn = "0";
  const series = data.series || [];
  root.dataset.series = String(series.length);
  root.dataset.y = data.y_label || "";
  root.dataset.marked = String(series.filter((s) => s.marks).length);
  if (!series.length) return () => {};

  const text = themeColor(root, "--st-text-color", "#31333f");
  const grid = themeColor(root, "--st-border-color", "rgba(128, 128, 128, 0.2)");
  const fmtX = formatter(data.x_kind);
  const fmtY = formatter(data.y_kind);
  const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
  const width = () => Math.max(root.clientWidth || host.clientWidth || 600, 300);
  // The x under the cursor: the data point it snapped to, of whichever run has one there.
  const cursorX = (u) => (u.cursor.idx == null ? null : u.data[0][u.cursor.idx]);
  const yAxis = { ...axis, label: data.y_label, size: 70, values: (u, splits) => splits.map(fmtY) };

  // A series with a band (a group's mean over its runs) brings two hidden series, its lower and
  // upper edges, which uPlot fills between; their legend rows are removed below.
  const plotted = [{ label: data.x_label, value: (u) => fmtX(cursorX(u)) }];
  const columns = [];
  const bands = [];
  const hidden = [];
  const edgesOf = new Map();
  series.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length];
    const banded = Array.isArray(s.lo) && Array.isArray(s.hi);
    plotted.push({
      label: s.label,
      stroke: colour,
      width: 1.6,
      spanGaps: true,
      // Sparse points (evaluations) are marked: the line between two is not a measurement.
      points: s.marks ? { show: true, size: 6, fill: colour, stroke: colour } : { show: false },
      value: (u) => {
        const x = cursorX(u);
        const mean = fmtY(valueAt(s.x, s.y, x));
        if (mean === "--") return mean;
        const lo = banded ? valueAt(s.x, s.lo, x) : null;
        const hi = banded ? valueAt(s.x, s.hi, x) : null;
        const spread = lo == null || hi == null ? "" : ` [${fmtY(lo)}, ${fmtY(hi)}]`;
        // A group's point that averages fewer than all its runs says so.
        const i = Array.isArray(s.n) ? s.x.indexOf(x) : -1;
        const some = i >= 0 && s.n[i] < s.of ? ` (${s.n[i]} of ${s.of} runs)` : "";
        return `${mean}${spread}${some}`;
      },
    });
    columns.push([s.x, s.y]);
    if (banded) {
      const mean = plotted.length - 1;
      // No spanning of the edges' gaps: where a point averages one run there is no band.
      for (const edge of [s.lo, s.hi]) {
        plotted.push({ label: "", stroke: "transparent", width: 0, spanGaps: false, points: { show: false } });
        columns.push([s.x, edge]);
        hidden.push(plotted.length - 1);
      }
      edgesOf.set(mean, [mean + 1, mean + 2]);
      bands.push({ series: [mean + 2, mean + 1], fill: translucent(colour, 0.18) });
      root.dataset.bands = String(bands.length);
      root.dataset.bandsShown = String(bands.length);
    }
  });

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
    series: plotted,
    bands,
    cursor: {
      drag: { x: true, y: false },
      points: { show: false },
      dataIdx: (u, seriesIdx, closestIdx) => closestIdx,
      // The cursor's line stands at the x the legend names, not between two points.
      move: (u, left, top) => {
        const x = left < 0 ? null : u.data[0][u.posToIdx(left)];
        return x == null ? [left, top] : [Math.round(u.valToPos(x, "x")), top];
      },
      ...(sync ? { sync: { key: sync, setSeries: false } } : {}),
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
      // A group hidden from its legend row takes its band along.
      setSeries: [
        (u, idx, change) => {
          if (!change || !("show" in change)) return;
          for (const edge of edgesOf.get(idx) || []) {
            if (u.series[edge].show !== change.show) u.setSeries(edge, { show: change.show });
          }
          const shown = [...edgesOf.values()].filter(([lo]) => u.series[lo].show).length;
          root.dataset.bandsShown = String(shown);
        },
      ],
    },
  };
  // One x array for all runs: uPlot.join merges them, leaving gaps that spanGaps bridges.
  const aligned = uPlot.join(columns);
  const plot = new uPlot(opts, aligned, root);
  const rows = plot.root.querySelectorAll(".u-legend .u-series");
  for (const idx of hidden) rows[idx]?.remove();
  const observer = new ResizeObserver(() => {
    const w = width();
    if (Math.abs(w - plot.width) > 1) plot.setSize({ width: w, height: plot.height });
  });
  observer.observe(root);
  return () => {
    observer.disconnect();
    plot.destroy();
  };
}

const drawn = new WeakMap();
// One sync key per grid, kept across its redraws: uPlot keeps every key it was given.
const syncKeys = new WeakMap();
let grids = 0;

// What a drawing leaves on the component's root, cleared before the next: a page or a test
// reads the data attributes, and a grid is no chart (its charts are inside it).
const MARKS = ["drawn", "series", "y", "marked", "bands", "bandsShown", "cursorX", "charts"];

function reset(root) {
  for (const name of MARKS) delete root.dataset[name];
  root.classList.remove("easgd-curve-grid");
  root.style.removeProperty("--easgd-columns");
  root.replaceChildren();
}

// data: one chart's payload, or {charts: [payload, ...], columns} for a grid of charts whose
// cursors move together (each chart a .easgd-curves of its own inside the grid).
export default function ({ parentElement, data }) {
  const root = parentElement.querySelector(".easgd-curves");
  const host = parentElement.host || parentElement;
  drawn.get(root)?.();
  reset(root);
  let undo;
  if (!Array.isArray(data.charts)) {
    undo = drawChart(root, host, data, null);
  } else {
    root.classList.add("easgd-curve-grid");
    root.dataset.charts = String(data.charts.length);
    root.style.setProperty("--easgd-columns", String(data.columns || 1));
    if (!syncKeys.has(root)) {
      grids += 1;
      syncKeys.set(root, `easgd-grid-${grids}`);
    }
    const undos = data.charts.map((chart) => {
      const cell = document.createElement("div");
      cell.className = "easgd-curves";
      root.appendChild(cell);
      return drawChart(cell, host, chart, syncKeys.get(root));
    });
    undo = () => undos.forEach((u) => u());
  }
  drawn.set(root, undo);
  return () => {
    undo();
    drawn.delete(root);
  };
}
