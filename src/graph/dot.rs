//! DOT export (`skyform graph`).

use petgraph::visit::EdgeRef;

use super::{Node, SpecGraph};

/// Renders the graph as DOT, nodes and edges in a stable order.
pub fn to_dot(g: &SpecGraph) -> String {
    let mut nodes: Vec<&Node> = g.graph.node_weights().collect();
    nodes.sort();
    let mut edges: Vec<(String, String)> = g
        .graph
        .edge_references()
        .map(|e| (g.graph[e.source()].to_string(), g.graph[e.target()].to_string()))
        .collect();
    edges.sort();
    let mut out = String::from("digraph skyform {\n  rankdir = \"LR\";\n");
    for n in nodes {
        let shape = match n {
            Node::Provider(_) => "diamond",
            Node::Resource(a) if a.mode == crate::address::Mode::Data => "ellipse",
            Node::Resource(_) => "box",
        };
        out.push_str(&format!("  \"{n}\" [shape = {shape}];\n"));
    }
    for (a, b) in edges {
        out.push_str(&format!("  \"{a}\" -> \"{b}\";\n"));
    }
    out.push_str("}\n");
    out
}
