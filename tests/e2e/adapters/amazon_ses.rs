//! amazon_ses: adapter tests, one per fixture.
