//! How a figure of a run's JSON prints on the page.

use serde_json::Value;

/// A JSON value as the page prints it: integers as they are, other numbers
/// with at most three decimals, trailing zeros dropped.
pub(crate) fn number(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_f64() => {
            let text = format!("{:.3}", n.as_f64().unwrap_or(f64::NAN));
            let text = text.trim_end_matches('0').trim_end_matches('.');
            text.to_owned()
        }
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A bound's or a promise's verdict as the page prints it: "held" only
/// for `true`, anything else (false, missing) "BROKEN".
pub(crate) fn verdict(held: &Value) -> &'static str {
    if held == &Value::Bool(true) {
        "held"
    } else {
        "BROKEN"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_with_at_most_three_decimals() {
        assert_eq!(number(&serde_json::json!(62.83912)), "62.839");
        assert_eq!(number(&serde_json::json!(0.5)), "0.5");
        assert_eq!(number(&serde_json::json!(61.0)), "61");
        assert_eq!(number(&serde_json::json!(137645)), "137645");
        assert_eq!(number(&Value::Null), "-");
    }

    #[test]
    fn only_true_is_held() {
        assert_eq!(verdict(&Value::Bool(true)), "held");
        assert_eq!(verdict(&Value::Bool(false)), "BROKEN");
        assert_eq!(verdict(&Value::Null), "BROKEN");
    }
}
