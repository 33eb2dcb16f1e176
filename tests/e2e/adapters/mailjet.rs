//! mailjet: adapter tests, one per fixture.
