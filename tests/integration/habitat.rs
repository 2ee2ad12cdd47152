//! Tests of the Habitat reference world.
