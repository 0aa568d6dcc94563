//! Graph questions about a workflow's steps: cycles, topological order, layers.

use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};

/// Edges are `(parent, child)` indices into `0..n`.
fn graph(n: usize, edges: &[(usize, usize)]) -> DiGraph<(), ()> {
    let mut g = DiGraph::with_capacity(n, edges.len());
    for _ in 0..n {
        g.add_node(());
    }
    for &(a, b) in edges {
        g.add_edge(NodeIndex::new(a), NodeIndex::new(b), ());
    }
    g
}

/// Returns one cycle as a closed path of node indices (`[a, b, a]`), or `None` for a DAG.
pub fn find_cycle(n: usize, edges: &[(usize, usize)]) -> Option<Vec<usize>> {
    let g = graph(n, edges);
    let start = toposort(&g, None).err()?.node_id().index();
    // Walk from a node known to sit on a cycle until we come back to a visited node.
    let mut path = vec![start];
    let mut on_path = vec![None; n];
    on_path[start] = Some(0);
    let mut current = start;
    loop {
        // Follow an edge that stays inside a cycle: a child from which `current` is reachable.
        let next = g
            .neighbors(NodeIndex::new(current))
            .map(|c| c.index())
            .find(|&c| {
                petgraph::algo::has_path_connecting(&g, NodeIndex::new(c), NodeIndex::new(current), None)
            })?;
        if let Some(pos) = on_path[next] {
            // Start the cycle at the step declared first, so the message reads in file order.
            let mut cycle = path[pos..].to_vec();
            let first = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
            cycle.rotate_left(first);
            cycle.push(cycle[0]);
            return Some(cycle);
        }
        on_path[next] = Some(path.len());
        path.push(next);
        current = next;
    }
}

/// Depth of each node (roots are 0; a node sits one past its deepest parent). `None` on a cycle.
pub fn levels(n: usize, edges: &[(usize, usize)]) -> Option<Vec<usize>> {
    let g = graph(n, edges);
    let order = toposort(&g, None).ok()?;
    let mut level = vec![0usize; n];
    for node in order {
        for child in g.neighbors(node) {
            level[child.index()] = level[child.index()].max(level[node.index()] + 1);
        }
    }
    Some(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_two_cycle() {
        assert_eq!(find_cycle(3, &[(0, 1), (1, 0), (1, 2)]), Some(vec![0, 1, 0]));
    }

    #[test]
    fn finds_a_cycle_behind_a_root() {
        assert_eq!(
            find_cycle(4, &[(0, 1), (1, 2), (2, 3), (3, 1)]),
            Some(vec![1, 2, 3, 1])
        );
    }

    #[test]
    fn diamond_levels() {
        assert_eq!(
            levels(4, &[(0, 1), (0, 2), (1, 3), (2, 3)]),
            Some(vec![0, 1, 1, 2])
        );
        assert_eq!(find_cycle(4, &[(0, 1), (0, 2), (1, 3), (2, 3)]), None);
    }
}
