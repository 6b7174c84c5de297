// Learning curves of several runs, drawn with uPlot (loaded just before this module).
// Streamlit's built-in charts load Vega (about 2 MB of JavaScript) before they draw; uPlot is
// 50 kB, which keeps the Compare page of 20 runs x 10,000 steps fast on a cold browser.
//
// data: {series: [{label, x: [...], y: [...]}], x_label, y_label, log, height, x_kind}

const PALETTE = [
  "#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6",
  "#9d755d", "#bab0ac", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#393b79",
];

const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 2 });
const precise = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 5 });

function formatBytes(v) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let n = Math.abs(v);
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${Math.sign(v) * Math.round(n * 100) / 100} ${units[i]}`;
}

function formatter(kind) {
  if (kind === "bytes") return formatBytes;
  if (kind === "seconds") return (v) => `${precise.format(v)} s`;
  return (v) => (Math.abs(v) >= 10000 ? compact.format(v) : precise.format(v));
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
  const fmtY = formatter("number");
  const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
  const width = () => Math.max(root.clientWidth || host.clientWidth || 600, 300);

  const opts = {
    width: width(),
    height: data.height || 380,
    scales: { x: { time: false }, y: data.log ? { distr: 3, log: 10 } : { auto: true } },
    axes: [
      { ...axis, label: data.x_label, values: (u, splits) => splits.map(fmtX) },
      { ...axis, label: data.y_label, size: 70, values: (u, splits) => splits.map(fmtY) },
    ],
    series: [
      { label: data.x_label, value: (u, v) => (v == null ? "--" : fmtX(v)) },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: PALETTE[i % PALETTE.length],
        width: 1.6,
        spanGaps: true,
        points: { show: false },
        value: (u, v) => (v == null ? "--" : precise.format(v)),
      })),
    ],
    cursor: { drag: { x: true, y: false } },
    legend: { live: true },
    hooks: {
      draw: [
        () => {
          root.dataset.drawn = "1";
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
