//! Unit tests of the async layer.
