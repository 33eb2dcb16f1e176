//! Amazon SES: adapter tests, one per fixture.
