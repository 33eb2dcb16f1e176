//! brevo: adapter tests, one per fixture.
