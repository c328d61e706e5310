//! A model reduced to its representation: the nodes and weights one output depends on, so
//! that ONNX Runtime neither computes nor copies out a model's other outputs (per-layer
//! feature maps, a projection head) on every batch.

use std::path::Path;

use crate::error::{Error, Result};

/// The model at `path` reduced to the one graph output `output` and the nodes and
/// initializers it depends on, serialised; `None` when there is nothing to remove, or when
/// the model keeps weights in external data files (they are found relative to the model's
/// file, which bytes in memory do not have) or has control-flow subgraphs.
///
/// Nodes are kept by walking the graph backwards from `output` (ONNX requires nodes in
/// topological order), so the reduced graph computes `output` with exactly the same
/// operators and weights as the whole one.
///
/// # Errors
/// [`Error::Model`] when the file is not a readable ONNX model.
pub fn representation_only(path: &Path, output: &str) -> Result<Option<Vec<u8>>> {
    use onnx_protobuf::Message;
    let model_err = |reason: String| Error::Model {
        model: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut model = onnx_protobuf::ModelProto::parse_from_bytes(&bytes)
        .map_err(|e| model_err(format!("not an ONNX model: {e}")))?;
    let Some(graph) = model.graph.as_mut() else {
        return Ok(None);
    };
    let external = graph
        .initializer
        .iter()
        .any(|t| !t.external_data.is_empty());
    let subgraphs = graph.node.iter().any(|n| {
        n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    });
    if external
        || subgraphs
        || graph.output.len() < 2
        || !graph.output.iter().any(|o| o.name == output)
    {
        return Ok(None);
    }
    let mut needed: std::collections::HashSet<String> = [output.to_string()].into();
    let mut keep = vec![false; graph.node.len()];
    for (k, node) in graph.node.iter().enumerate().rev() {
        if node.output.iter().any(|o| needed.contains(o)) {
            keep[k] = true;
            needed.extend(node.input.iter().filter(|i| !i.is_empty()).cloned());
        }
    }
    let mut flags = keep.into_iter();
    graph.node.retain(|_| flags.next().unwrap_or(true));
    graph.initializer.retain(|t| needed.contains(&t.name));
    graph.output.retain(|o| o.name == output);
    graph.value_info.retain(|v| needed.contains(&v.name));
    model
        .write_to_bytes()
        .map(Some)
        .map_err(|e| model_err(format!("cannot write the reduced graph: {e}")))
}
