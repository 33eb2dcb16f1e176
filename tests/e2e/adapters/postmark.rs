//! postmark: adapter tests, one per fixture.
