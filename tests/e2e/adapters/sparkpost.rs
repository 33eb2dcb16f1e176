//! sparkpost: adapter tests, one per fixture.
