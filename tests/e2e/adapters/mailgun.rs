//! mailgun: adapter tests, one per fixture.
