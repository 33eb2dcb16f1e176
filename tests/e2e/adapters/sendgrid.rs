//! sendgrid: adapter tests, one per fixture.
