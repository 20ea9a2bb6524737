//! Text that other people read: names of members and chamas.
//!
//! A name is shown in the app, in SMS and on USSD screens, to people deciding about money.
//! Characters that change how the text around them is drawn (a right-to-left override makes
//! `Treasurer<U+202E>gnp.exe` show as `Treasurerexe.png`), or that draw nothing at all (a
//! zero-width space makes two different chamas both read `Umoja`), have no place there.
//!
//! Zero-width joiners and non-joiners are the exception the world needs: they build emoji
//! sequences (👩‍👩‍👧) and are part of how some scripts are written. They are accepted between
//! two non-ASCII characters and refused next to ASCII or at either end, where they only make
//! look-alikes. `internal.is_visible_name` in the schema applies the same rule, so the Data
//! API refuses what the HTTP API refuses.

/// The first character of `text` that a name may not hold, if any.
pub fn hidden_character(text: &str) -> Option<char> {
    let chars: Vec<char> = text.chars().collect();
    chars.iter().enumerate().find_map(|(at, &c)| {
        let refused = if is_joiner(c) {
            let before = at.checked_sub(1).and_then(|i| chars.get(i));
            let after = chars.get(at + 1);
            !matches!((before, after), (Some(b), Some(a)) if !b.is_ascii() && !a.is_ascii())
        } else {
            is_hidden(c)
        };
        refused.then_some(c)
    })
}

/// `text` without the characters [`hidden_character`] refuses: for data that was written
/// before the rule (the legacy import), where there is nobody to ask.
pub fn without_hidden(text: &str) -> String {
    let mut kept = text.to_owned();
    while let Some(c) = hidden_character(&kept) {
        kept = kept.replacen(c, "", 1);
    }
    kept
}

fn is_joiner(c: char) -> bool {
    matches!(c, '\u{200C}' | '\u{200D}')
}

/// Control characters, direction marks, embeddings, overrides and isolates, and characters
/// that draw nothing.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{180E}'
                | '\u{200B}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{3164}'
                | '\u{FEFF}'
                | '\u{FFA0}'
        )
}

#[cfg(test)]
mod tests {
    use super::{hidden_character, without_hidden};

    #[test]
    fn ordinary_names_in_any_script_pass() {
        for name in [
            "Wanjiru Kamau",
            "Mama Mboga Self-Help Group",
            "Akinyi O'Brien",
            "Zoë Njeri",
            "محمد عبدالله",
            "Wamama 👩‍👩‍👧",
            "नमस्ते",
            "Kikundi cha Umoja (2024)",
        ] {
            assert_eq!(hidden_character(name), None, "{name}");
        }
    }

    #[test]
    fn overrides_and_invisible_characters_are_found() {
        for (name, bad) in [
            ("Treasurer\u{202E}gnp.exe", '\u{202E}'),
            ("Umo\u{200B}ja", '\u{200B}'),
            ("\u{FEFF}Umoja", '\u{FEFF}'),
            ("Umoja\u{2066}", '\u{2066}'),
            ("Jane\u{200E}", '\u{200E}'),
            ("tab\there", '\t'),
            ("new\nline", '\n'),
            ("soft\u{00AD}hyphen", '\u{00AD}'),
        ] {
            assert_eq!(hidden_character(name), Some(bad), "{name:?}");
        }
    }

    #[test]
    fn joiners_pass_only_between_non_ascii_characters() {
        assert_eq!(hidden_character("Umo\u{200D}ja"), Some('\u{200D}'));
        assert_eq!(hidden_character("\u{200C}Umoja"), Some('\u{200C}'));
        assert_eq!(hidden_character("Umoja 👍\u{200D}"), Some('\u{200D}'));
        assert_eq!(hidden_character("👩\u{200D}👧"), None);
    }

    #[test]
    fn cleaning_leaves_a_name_that_passes() {
        assert_eq!(without_hidden("Umo\u{200B}ja\u{202E}"), "Umoja");
        assert_eq!(without_hidden("Wamama 👩‍👩‍👧"), "Wamama 👩‍👩‍👧");
        assert_eq!(
            hidden_character(&without_hidden("a\u{200D}\u{200D}b")),
            None
        );
    }
}
