//! The Habitat reference world: schema, data generator and reference worker (test and demo infrastructure).
