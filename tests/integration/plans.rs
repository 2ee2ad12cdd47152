//! Tests of the plan language: the invalid-plan corpus, hostile input, the schema and the shipped plans.
