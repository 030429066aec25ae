// Draws a pipeline's dataflow graph (datasets as nodes, flows as edges) as
// SVG, laid out by dagre (vendor/layout.js) left to right.
import { layoutGraph } from "../vendor/layout.js";

const NS = "http://www.w3.org/2000/svg";
const W = 230, H = 58;

function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function curve(points) {
  if (points.length < 2) return "";
  let d = `M${points[0].x},${points[0].y}`;
  for (let i = 1; i < points.length - 1; i++) {
    const mid = { x: (points[i].x + points[i + 1].x) / 2, y: (points[i].y + points[i + 1].y) / 2 };
    d += ` Q${points[i].x},${points[i].y} ${mid.x},${mid.y}`;
  }
  const last = points[points.length - 1];
  return d + ` L${last.x},${last.y}`;
}

// nodes: [{id, label, sub, status}], edges: [[from, to]]
export function drawGraph(nodes, edges) {
  const { pos, lines, width, height } = layoutGraph(nodes, edges, { width: W, height: H });
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `Dataflow graph of ${nodes.length} datasets`, class: "dag" });
  const defs = el("defs", {});
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.append(el("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
  defs.append(marker);
  svg.append(defs);
  for (const line of lines) {
    svg.append(el("path", { d: curve(line.points), class: "edge", "marker-end": "url(#arrow)", "data-from": line.from, "data-to": line.to }));
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
