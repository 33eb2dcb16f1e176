//! How far back rules look: the windows passed to `count_events` and `stats`, found in a
//! rule's source so that `mailwarden check` can warn when one is longer than the events
//! are kept (the count would silently stop growing at the retention).

/// A call to a history function with its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryWindow {
    /// `count_events` or `stats`.
    pub function: &'static str,
    /// 1-based line of the call.
    pub line: usize,
    /// The window in seconds, when it is a constant expression (`days(30)`,
    /// `hours(24) * 2`, `3600`); `None` when it depends on variables.
    pub seconds: Option<i64>,
    /// The window as written.
    pub text: String,
}

/// Functions whose last argument is a window of time.
const HISTORY_FUNCTIONS: [&str; 2] = ["count_events", "stats"];

/// Returns every `count_events` and `stats` call in `source` with its window.
pub fn history_windows(source: &str) -> Vec<HistoryWindow> {
    let code = blank_comments_and_strings(source);
    let constant = ConstantEvaluator::new();
    let mut found = Vec::new();
    for function in HISTORY_FUNCTIONS {
        let mut from = 0;
        while let Some(at) = code[from..].find(function).map(|at| at + from) {
            from = at + function.len();
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
                continue;
            }
            let rest = code[from..].trim_start();
            let Some(arguments) = rest.strip_prefix('(').and_then(call_arguments) else {
                continue;
            };
            let Some(window) = arguments.last().map(|arg| arg.trim()) else {
                continue;
            };
            if window.is_empty() {
                continue;
            }
            found.push(HistoryWindow {
                function,
                line: code[..at].matches('\n').count() + 1,
                seconds: constant.eval(window),
                text: window.to_owned(),
            });
        }
    }
    found.sort_by_key(|window| window.line);
    found
}

/// The top-level arguments of a call whose `(` has been consumed, up to its `)`.
fn call_arguments(text: &str) -> Option<Vec<&str>> {
    let mut depth = 0usize;
    let mut start = 0;
    let mut arguments = Vec::new();
    for (at, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' if depth == 0 => {
                arguments.push(&text[start..at]);
                return Some(arguments);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                arguments.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    None
}

/// `source` with comments and the insides of string literals replaced by spaces (line
/// breaks kept), so that a search finds only code.
fn blank_comments_and_strings(source: &str) -> String {
    #[derive(PartialEq)]
    enum State {
        Code,
        LineComment,
        BlockComment,
        Quoted(char),
    }
    let mut state = State::Code;
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
        match state {
            State::Code => match c {
                '/' if chars.peek() == Some(&'/') => {
                    state = State::LineComment;
                    out.push(' ');
                }
                '/' if chars.peek() == Some(&'*') => {
                    state = State::BlockComment;
                    out.push(' ');
                }
                '"' | '`' | '\'' => {
                    state = State::Quoted(c);
                    out.push(c);
                }
                _ => out.push(c),
            },
            State::LineComment => {
                if c == '\n' {
                    state = State::Code;
                }
                out.push(blank(c));
            }
            State::BlockComment => {
                if c == '*' && chars.peek() == Some(&'/') {
                    chars.next();
                    out.push_str("  ");
                    state = State::Code;
                } else {
                    out.push(blank(c));
                }
            }
            State::Quoted(quote) => {
                if c == '\\' {
                    out.push(' ');
                    if let Some(next) = chars.next() {
                        out.push(blank(next));
                    }
                } else if c == quote {
                    state = State::Code;
                    out.push(c);
                } else {
                    out.push(blank(c));
                }
            }
        }
    }
    out
}

/// Evaluates window expressions made of integers, arithmetic and `minutes`, `hours` and
/// `days`; anything else (a variable, another call) is not a constant.
struct ConstantEvaluator(rhai::Engine);

impl ConstantEvaluator {
    fn new() -> Self {
        let mut engine = rhai::Engine::new_raw();
        engine.set_max_operations(1_000);
        super::engine::register_durations(&mut engine);
        ConstantEvaluator(engine)
    }

    fn eval(&self, expression: &str) -> Option<i64> {
        self.0.eval_expression::<i64>(expression).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(source: &str) -> Vec<(&'static str, usize, Option<i64>)> {
        history_windows(source)
            .into_iter()
            .map(|w| (w.function, w.line, w.seconds))
            .collect()
    }

    #[test]
    fn finds_constant_windows_of_both_functions() {
        let source = "// on: bounce\n\
                      let n = count_events(event.recipient, \"bounce\", days(7));\n\
                      let s = stats(hours(24));\n\
                      let t = stats(\"sendpulse\", hours(2) * 3 + 60);\n";
        assert_eq!(
            windows(source),
            [
                ("count_events", 2, Some(7 * 86_400)),
                ("stats", 3, Some(86_400)),
                ("stats", 4, Some(6 * 3_600 + 60))
            ]
        );
    }

    #[test]
    fn variables_comments_strings_and_lookalikes_are_not_constants() {
        let source = "let w = config.window;\n\
                      // stats(days(400)) in a comment\n\
                      let m = \"count_events(a, b, days(900))\";\n\
                      /* stats(days(500)) */ let x = my_stats(days(1));\n\
                      let n = count_events(event.recipient, \"bounce\", w);\n\
                      event.stats(days(3));\n\
                      let broken = stats(\n";
        assert_eq!(windows(source), [("count_events", 5, None)]);
    }
}
