//! DOT export (`skyform graph`).

use std::collections::BTreeMap;

use petgraph::visit::EdgeRef;

use super::{Node, SpecGraph};

/// A DOT quoted string (`"` and `\` escaped: instance keys are quoted strings).
fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Renders the graph as DOT, nodes and edges in a stable order. Every
/// instance is a node; the resources of each module instance are drawn in a
/// cluster labelled with its path (`module.team["ml"]`).
pub fn to_dot(g: &SpecGraph) -> String {
    let mut nodes: Vec<&Node> = g.graph.node_weights().collect();
    nodes.sort();
    let mut edges: Vec<(String, String)> =
        g.graph.edge_references().map(|e| (g.graph[e.source()].to_string(), g.graph[e.target()].to_string())).collect();
    edges.sort();
    let mut out = String::from("digraph skyform {\n  rankdir = \"LR\";\n");
    let mut modules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in nodes {
        let shape = match n {
            Node::Provider(_) => "diamond",
            Node::Resource(a) if a.mode == crate::address::Mode::Data => "ellipse",
            Node::Resource(_) => "box",
        };
        let line = format!("{} [shape = {shape}];", q(&n.to_string()));
        match n {
            Node::Resource(a) if !a.module.is_empty() => {
                let path: Vec<String> = a.module.iter().map(|m| m.to_string()).collect();
                modules.entry(path.join(".")).or_default().push(line);
            }
            _ => out.push_str(&format!("  {line}\n")),
        }
    }
    for (path, lines) in modules {
        out.push_str(&format!("  subgraph {} {{\n    label = {};\n", q(&format!("cluster_{path}")), q(&path)));
        for l in lines {
            out.push_str(&format!("    {l}\n"));
        }
        out.push_str("  }\n");
    }
    for (a, b) in edges {
        out.push_str(&format!("  {} -> {};\n", q(&a), q(&b)));
    }
    out.push_str("}\n");
    out
}
