//! `replay`: declarative, checkpointed event replays.
