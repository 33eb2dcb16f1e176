//! mandrill: adapter tests, one per fixture.
