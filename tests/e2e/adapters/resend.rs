//! resend: adapter tests, one per fixture.
