//! The dependency graph of a spec: nodes are resources, data sources and
//! provider configurations; an edge `a → b` means "b needs a first".
//!
//! Edges come from references in attribute values, from `depends_on`, and from
//! provider configurations (every resource depends on its provider's node, which
//! depends on whatever its configuration references). Graph algorithms only; no
//! I/O.

pub mod dot;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::address::{Address, Mode};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::providers::Registry;
use crate::spec::model::{Reference, Spec};

/// A vertex of the graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// A provider configuration (`provider.<name>`).
    Provider(String),
    /// A resource or data source.
    Resource(Address),
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Provider(p) => write!(f, "provider.{p}"),
            Node::Resource(a) => write!(f, "{a}"),
        }
    }
}

/// The graph of one spec.
#[derive(Debug, Clone, Default)]
pub struct SpecGraph {
    /// petgraph storage; edge a→b: b depends on a.
    pub graph: DiGraph<Node, ()>,
    index: BTreeMap<Node, NodeIndex>,
    /// Where each node is declared (for cycle messages).
    pos: BTreeMap<Node, Pos>,
    /// Edges already added (petgraph's `find_edge` is linear in the degree,
    /// which made wide fan-outs quadratic).
    edges: std::collections::HashSet<(NodeIndex, NodeIndex)>,
}

impl SpecGraph {
    /// The index of a node.
    pub fn index_of(&self, n: &Node) -> Option<NodeIndex> {
        self.index.get(n).copied()
    }

    fn add(&mut self, n: Node, pos: Option<Pos>) -> NodeIndex {
        if let Some(p) = pos {
            self.pos.entry(n.clone()).or_insert(p);
        }
        if let Some(i) = self.index.get(&n) {
            return *i;
        }
        let i = self.graph.add_node(n.clone());
        self.index.insert(n, i);
        i
    }

    fn edge(&mut self, from: NodeIndex, to: NodeIndex) {
        // A self-edge is kept: it is a cycle of one, reported as such.
        if self.edges.insert((from, to)) {
            self.graph.add_edge(from, to, ());
        }
    }

    /// Direct dependencies of `n`.
    pub fn dependencies(&self, n: &Node) -> Vec<Node> {
        let Some(i) = self.index_of(n) else { return vec![] };
        let mut v: Vec<Node> =
            self.graph.neighbors_directed(i, Direction::Incoming).map(|j| self.graph[j].clone()).collect();
        v.sort();
        v
    }

    /// The resources a resource depends on, directly or through provider nodes
    /// (what state records, for delete ordering).
    pub fn resource_dependencies(&self, a: &Address) -> Vec<Address> {
        self.reached(&Node::Resource(a.clone())).into_iter().filter(|d| d.mode == Mode::Managed).collect()
    }

    /// The data sources a resource (or data source) of provider `provider` reads,
    /// directly or through the provider's configuration (a Kubernetes provider
    /// configured from a cluster data source): apply must have their values
    /// before its steps. A resource no longer in the spec (being deleted) has
    /// only its provider's.
    pub fn data_dependencies(&self, a: &Address, provider: &str) -> Vec<Address> {
        let mut out = self.reached(&Node::Resource(a.clone()));
        out.extend(self.reached(&Node::Provider(provider.to_string())));
        out.into_iter().filter(|d| d.mode == Mode::Data).collect()
    }

    /// The resources and data sources `n` depends on, directly or through provider nodes.
    fn reached(&self, n: &Node) -> BTreeSet<Address> {
        let mut out = BTreeSet::new();
        let mut stack = self.dependencies(n);
        while let Some(n) = stack.pop() {
            match n {
                Node::Resource(d) => {
                    out.insert(d);
                }
                Node::Provider(_) => stack.extend(self.dependencies(&n)),
            }
        }
        out
    }

    /// All nodes in a deterministic topological order (ties by node order).
    pub fn topo_order(&self) -> Vec<Node> {
        let mut indeg: BTreeMap<NodeIndex, usize> = BTreeMap::new();
        for i in self.graph.node_indices() {
            indeg.insert(i, self.graph.neighbors_directed(i, Direction::Incoming).count());
        }
        let mut ready: BTreeSet<(Node, NodeIndex)> =
            indeg.iter().filter(|(_, d)| **d == 0).map(|(i, _)| (self.graph[*i].clone(), *i)).collect();
        let mut out = Vec::with_capacity(self.graph.node_count());
        while let Some(first) = ready.pop_first() {
            let (n, i) = first;
            out.push(n);
            for j in self.graph.neighbors_directed(i, Direction::Outgoing) {
                let d = indeg.get_mut(&j).expect("node indexed");
                *d -= 1;
                if *d == 0 {
                    ready.insert((self.graph[j].clone(), j));
                }
            }
        }
        out
    }

    /// Every node `n` needs (transitively), plus `n` itself.
    pub fn closure_of(&self, roots: &[Node]) -> BTreeSet<Node> {
        let mut out = BTreeSet::new();
        let mut stack: Vec<Node> = roots.to_vec();
        while let Some(n) = stack.pop() {
            if out.insert(n.clone()) {
                stack.extend(self.dependencies(&n));
            }
        }
        out
    }

    /// Cycles, each as its nodes with their positions.
    pub fn cycles(&self) -> Vec<Vec<(Node, Option<Pos>)>> {
        let mut out = Vec::new();
        for scc in tarjan_scc(&self.graph) {
            let is_cycle = scc.len() > 1 || scc.iter().any(|&i| self.graph.find_edge(i, i).is_some());
            if is_cycle {
                let mut nodes: Vec<(Node, Option<Pos>)> = scc
                    .iter()
                    .map(|&i| {
                        let n = self.graph[i].clone();
                        let p = self.pos.get(&n).cloned();
                        (n, p)
                    })
                    .collect();
                nodes.sort_by(|a, b| a.0.cmp(&b.0));
                out.push(nodes);
            }
        }
        out.sort();
        out
    }
}

/// The provider name that owns a resource block.
pub fn provider_of(spec: &Spec, registry: &Registry, a: &Address) -> String {
    if let Some(p) = spec.resources.get(a).and_then(|r| r.provider.clone()) {
        return p;
    }
    registry
        .provider_for_type(&a.type_name)
        .map(|f| f.schema().name.to_string())
        .unwrap_or_else(|| a.type_name.split('_').next().unwrap_or_default().to_string())
}

/// Builds the graph of `spec`. References to things that do not exist are left
/// to validation; a cycle is an error naming every node on it with positions.
pub fn build(spec: &Spec, registry: &Registry) -> Result<SpecGraph, Diagnostics> {
    let mut g = SpecGraph::default();
    for (name, p) in &spec.providers {
        g.add(Node::Provider(name.clone()), Some(p.pos.clone()));
    }
    for (a, r) in &spec.resources {
        g.add(Node::Resource(a.clone()), Some(r.pos.clone()));
    }
    for (name, p) in &spec.providers {
        let me = g.add(Node::Provider(name.clone()), None);
        for r in p.config.node.references() {
            if let Reference::Resource { address, .. } = &r.node
                && spec.resources.contains_key(address)
            {
                let dep = g.add(Node::Resource(address.clone()), None);
                g.edge(dep, me);
            }
        }
    }
    for (a, r) in &spec.resources {
        let me = g.add(Node::Resource(a.clone()), None);
        let provider = provider_of(spec, registry, a);
        let pn = g.add(Node::Provider(provider), None);
        g.edge(pn, me);
        for rf in r.body.node.references() {
            if let Reference::Resource { address, .. } = &rf.node
                && spec.resources.contains_key(address)
            {
                let dep = g.add(Node::Resource(address.clone()), None);
                g.edge(dep, me);
            }
        }
        for d in &r.depends_on {
            if spec.resources.contains_key(&d.node) {
                let dep = g.add(Node::Resource(d.node.clone()), None);
                g.edge(dep, me);
            }
        }
    }
    let cycles = g.cycles();
    if cycles.is_empty() {
        return Ok(g);
    }
    let mut diags = Diagnostics::default();
    for c in cycles {
        let names: Vec<String> = c.iter().map(|(n, _)| n.to_string()).collect();
        let places: Vec<String> = c
            .iter()
            .map(|(n, p)| match p {
                Some(p) => format!("{n} at {p}"),
                None => n.to_string(),
            })
            .collect();
        diags.push(
            Diagnostic::error(
                c.iter().find_map(|(_, p)| p.clone()),
                format!("dependency cycle: {}", names.join(" -> ")),
            )
            .with_hint(format!(
                "break the cycle by removing one of the references or depends_on entries between: {}",
                places.join("; ")
            )),
        );
    }
    Err(diags)
}
