// Layered DAG layout (dagre) for the pipeline graph: nodes of a fixed size,
// left to right; returns node positions and edge polylines.
import dagre from "@dagrejs/dagre";

export function layoutGraph(nodes, edges, { width, height }) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 22, ranksep: 70, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) g.setNode(n.id, { width, height });
  for (const [from, to] of edges) if (g.hasNode(from) && g.hasNode(to)) g.setEdge(from, to);
  dagre.layout(g);
  const pos = new Map(nodes.map((n) => {
    const p = g.node(n.id);
    return [n.id, { x: p.x - width / 2, y: p.y - height / 2 }];
  }));
  const lines = g.edges().map((e) => ({ from: e.v, to: e.w, points: g.edge(e).points }));
  const graph = g.graph();
  return { pos, lines, width: graph.width, height: graph.height };
}
