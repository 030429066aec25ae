// Lays out a dataflow graph (datasets as nodes, flows as edges) in layers —
// each node one layer right of its deepest input — and draws it as SVG.
const NS = "http://www.w3.org/2000/svg";
const W = 230, H = 58, GAP_X = 70, GAP_Y = 22;

export function layout(nodes, edges) {
  const inputs = new Map(nodes.map((n) => [n.id, []]));
  for (const [from, to] of edges) if (inputs.has(to) && inputs.has(from)) inputs.get(to).push(from);
  const depth = new Map();
  const visiting = new Set();
  const depthOf = (id) => {
    if (depth.has(id)) return depth.get(id);
    if (visiting.has(id)) return 0; // a cycle: cut it
    visiting.add(id);
    const d = Math.max(-1, ...inputs.get(id).map(depthOf)) + 1;
    visiting.delete(id);
    depth.set(id, d);
    return d;
  };
  nodes.forEach((n) => depthOf(n.id));
  const layers = [];
  for (const n of nodes) (layers[depth.get(n.id)] ||= []).push(n);
  const pos = new Map();
  layers.forEach((layer, x) => {
    // order by the mean row of the inputs, to keep edges short
    layer.sort((a, b) => mean(a) - mean(b) || a.id.localeCompare(b.id));
    layer.forEach((n, y) => pos.set(n.id, { x: x * (W + GAP_X) + 10, y: y * (H + GAP_Y) + 10 }));
  });
  function mean(n) {
    const ys = inputs.get(n.id).map((i) => pos.get(i)?.y ?? 0);
    return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : 0;
  }
  const width = layers.length * (W + GAP_X) + 20;
  const height = Math.max(...layers.map((l) => l.length), 1) * (H + GAP_Y) + 20;
  return { pos, width, height };
}

function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// nodes: [{id, label, sub, status}], edges: [[from, to]]
export function drawGraph(nodes, edges) {
  const { pos, width, height } = layout(nodes, edges);
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `Dataflow graph of ${nodes.length} datasets`, class: "dag" });
  const defs = el("defs", {});
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.append(el("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
  defs.append(marker);
  svg.append(defs);
  for (const [from, to] of edges) {
    const a = pos.get(from), b = pos.get(to);
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    svg.append(el("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: "edge", "marker-end": "url(#arrow)" }));
  }
  for (const n of nodes) {
    const p = pos.get(n.id);
    const g = el("g", { class: `node status-${(n.status || "none").toLowerCase()}`, transform: `translate(${p.x},${p.y})`,
      "data-dataset": n.id });
    g.append(el("rect", { width: W, height: H, rx: 8 }));
    g.append(el("text", { x: 10, y: 22, class: "name" }, clip(n.label, 30)));
    g.append(el("text", { x: 10, y: 42, class: "sub" }, clip(n.sub || "", 36)));
    g.append(el("title", {}, `${n.label}\n${n.sub || ""}`));
    svg.append(g);
  }
  return svg;
}

function clip(s, n) {
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}
