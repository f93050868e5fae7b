//! `claudemesh-broker runner`: the per-mesh process that prepares and runs a mesh's MCP servers
//! as children and speaks JSON lines with the broker over stdio (DESIGN §7, [`wire`]).

pub mod log;
pub mod prepare;
pub mod wire;
