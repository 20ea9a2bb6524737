//! Africa's Talking sends the whole session's inputs each hop, joined by `*`: `""`, then `"1"`,
//! then `"1*2"`. The latest input is what the gateway added since the text we saw last.
//!
//! Splitting at the last `*` is not enough: a member may type `*` inside an input (`5*0` for an
//! amount), and gateways differ in what they send first (a dial string with extra digits,
//! `*384*1#`, arrives as a first text of `"1"`). So the text of the previous hop is kept and the
//! new input is the part after it; only when the new text does not extend the old one (a gateway
//! that lost or rewrote its history) does the part after the last `*` count.

/// The longest input taken as one: longer is no menu answer, PIN, amount or name.
pub const MAX_INPUT: usize = 64;

/// What one hop carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// The same text as last time: the gateway repeated a request (a timeout and retry).
    Repeat,
    /// A new input, trimmed (it may be empty: a member pressed send on nothing).
    Input(String),
}

/// The input of this hop, given the text of the previous one (`None` on a session's first hop).
pub fn latest(previous: Option<&str>, text: &str) -> Hop {
    let Some(previous) = previous else {
        return Hop::Input(String::new());
    };
    if text == previous {
        return Hop::Repeat;
    }
    let added = if previous.is_empty() {
        Some(text)
    } else {
        text.strip_prefix(previous)
            .and_then(|rest| rest.strip_prefix('*'))
    };
    let input = match added {
        Some(added) => added,
        None => text.rsplit('*').next().unwrap_or(""),
    };
    Hop::Input(input.trim().to_owned())
}

/// The input when the previous text is not known (a gateway that rewrote its history): the
/// part after the last `*`.
pub fn last(text: &str) -> Hop {
    Hop::Input(text.rsplit('*').next().unwrap_or("").trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_input_is_what_the_gateway_appended() {
        assert_eq!(latest(None, ""), Hop::Input(String::new()));
        assert_eq!(latest(None, "1*2"), Hop::Input(String::new()));
        assert_eq!(latest(Some(""), "1"), Hop::Input("1".into()));
        assert_eq!(latest(Some("1"), "1*2"), Hop::Input("2".into()));
        assert_eq!(latest(Some("1*2"), "1*2*"), Hop::Input(String::new()));
        assert_eq!(latest(Some("1*2"), "1*2*5*0"), Hop::Input("5*0".into()));
        assert_eq!(latest(Some("1*2"), "1*2"), Hop::Repeat);
        // History rewritten: the part after the last star.
        assert_eq!(latest(Some("1*2"), "9*7"), Hop::Input("7".into()));
        assert_eq!(latest(Some("12"), "123"), Hop::Input("123".into()));
        assert_eq!(last("1*2* 34 "), Hop::Input("34".into()));
    }
}
