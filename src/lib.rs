//! Alloy: move Apache Arrow data between Go and Rust on one machine.
#![deny(unsafe_op_in_unsafe_fn)]
