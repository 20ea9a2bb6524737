//! Plain GSM characters: the 7-bit default alphabet's basic set, which every handset and telco
//! shows as typed. Characters of the extension table (`[`, `{`, `€`, ...) cost two septets and
//! some gateways mangle them, so screens use none of them.

/// Characters of the GSM 03.38 basic set (without the escape to the extension table).
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The most characters a Kenyan telco shows on one USSD screen.
pub const MAX_SCREEN: usize = 182;

pub fn is_basic(c: char) -> bool {
    BASIC.contains(c)
}

/// Whether `text` is all basic-set characters and fits one screen.
pub fn fits(text: &str) -> bool {
    text.chars().count() <= MAX_SCREEN && text.chars().all(is_basic)
}

/// Text from outside (a chama's name, a member's name) made safe to show: characters outside
/// the basic set become `?`, runs of whitespace one space, and at most `max` characters remain
/// (the last one a `.` when it was cut).
pub fn clean(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = true;
    for c in text.chars() {
        let c = if c.is_whitespace() { ' ' } else { c };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(if is_basic(c) { c } else { '?' });
        count += 1;
    }
    let out = out.trim_end().to_owned();
    if count <= max {
        return out;
    }
    let mut cut: String = out.chars().take(max.saturating_sub(1)).collect();
    cut = cut.trim_end().to_owned();
    cut.push('.');
    cut
}

/// The last resort before a screen leaves: never more than a screen, never a character a phone
/// cannot show. Screens are built to fit (the tests check every one), so this changes nothing
/// unless a bug slipped through.
pub fn fit(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if is_basic(c) { c } else { '?' })
        .collect();
    cleaned.chars().take(MAX_SCREEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_set_excludes_the_extension_table() {
        for c in ['[', ']', '{', '}', '\\', '^', '~', '|', '€', '’', '😀'] {
            assert!(!is_basic(c), "{c}");
        }
        assert!(
            "Karibu Mama Njeri, KES 1,000.00 (Jumamosi)"
                .chars()
                .all(is_basic)
        );
    }

    #[test]
    fn clean_replaces_squeezes_and_cuts() {
        assert_eq!(clean("  Umoja   {Women}  ", 30), "Umoja ?Women?");
        assert_eq!(
            clean("Wanawake wa Kesho Investment Group", 12),
            "Wanawake wa."
        );
        assert_eq!(clean("Jua Kali", 8), "Jua Kali");
    }
}
