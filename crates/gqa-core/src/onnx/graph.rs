//! A small builder for ONNX graphs: nodes with generated unique names, constant initializers,
//! typed attributes.

use super::proto::{attr_type, AttributeProto, NodeProto, TensorProto, DOUBLE, FLOAT, INT64};

/// Nodes and initializers under construction (topological order = insertion order).
#[derive(Default)]
pub(crate) struct Graph {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    counter: usize,
    /// Bytes of initializer data so far.
    pub bytes: u64,
}

/// An integer attribute.
pub(crate) fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INT,
        i,
        ..Default::default()
    }
}

/// An integer-list attribute.
pub(crate) fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INTS,
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// A float attribute.
pub(crate) fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::FLOAT,
        f,
        ..Default::default()
    }
}

/// A string attribute.
#[allow(dead_code)]
pub(crate) fn string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::STRING,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

impl Graph {
    /// A fresh value name `{hint}_{n}`.
    pub fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// Adds a node of the standard domain with one output named `out` (fresh when `None`);
    /// returns the output name.
    pub fn op(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        out: Option<&str>,
    ) -> String {
        let out = out
            .map(str::to_string)
            .unwrap_or_else(|| self.fresh(&op.to_ascii_lowercase()));
        self.op_multi(op, "", inputs, attrs, &[&out]);
        out
    }

    /// Shorthand for [`Graph::op`] with a fresh output and no attributes.
    pub fn op1(&mut self, op: &str, inputs: &[&str]) -> String {
        self.op(op, inputs, Vec::new(), None)
    }

    /// Adds a node with given outputs in `domain`.
    pub fn op_multi(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        outputs: &[&str],
    ) {
        let name = format!("{}/{}", op, outputs.first().copied().unwrap_or(""));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name,
            op_type: op.into(),
            attribute: attrs,
            domain: domain.into(),
        });
    }

    /// Adds an initializer; a name already present is reused (initializer names must be unique,
    /// and the shared constants are requested once per layer), its data must then be the same.
    fn init(&mut self, name: &str, dims: &[usize], data_type: i32, raw: Vec<u8>) -> String {
        if let Some(t) = self.initializers.iter().find(|t| t.name == name) {
            debug_assert!(
                t.raw_data == raw && t.data_type == data_type,
                "initializer {name} redefined with other data"
            );
            return name.to_string();
        }
        self.bytes += raw.len() as u64;
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type,
            name: name.into(),
            raw_data: raw,
        });
        name.to_string()
    }

    /// An f32 initializer of shape `dims` (empty = scalar).
    pub fn f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        self.init(
            name,
            dims,
            FLOAT,
            data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    /// An f64 initializer of shape `dims`.
    pub fn f64(&mut self, name: &str, dims: &[usize], data: &[f64]) -> String {
        self.init(
            name,
            dims,
            DOUBLE,
            data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    /// An i64 initializer of shape `dims`.
    pub fn i64(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        self.init(
            name,
            dims,
            INT64,
            data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }
}
