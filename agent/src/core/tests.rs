//! Core tests: inputs fed straight into a [`Core`] on a temp store, no sockets, with the clock
//! passed in.

use super::*;
