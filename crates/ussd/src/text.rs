//! Every phrase of the menus, in English and Kiswahili. Plain GSM characters only; the screen
//! test renders every screen in both languages and checks length and alphabet.

use crate::model::{Frequency, Language};

#[derive(Debug)]
pub struct Phrases {
    pub welcome_new: &'static str,
    pub register_en: &'static str,
    pub register_sw: &'static str,
    pub ask_name: &'static str,
    pub bad_name: &'static str,
    pub choose_pin: &'static str,
    pub bad_pin: &'static str,
    pub pin_again: &'static str,
    pub pin_mismatch: &'static str,
    pub registered: &'static str,
    pub welcome: &'static str,
    pub menu: [&'static str; 8],
    pub invalid_choice: &'static str,
    pub choose_chama: &'static str,
    pub no_chama: &'static str,
    pub balance: &'static str,
    pub your_savings: &'static str,
    pub contribution: &'static str,
    pub pay: &'static str,
    pub other_amount: &'static str,
    pub amount_prompt: &'static str,
    pub digits_only: &'static str,
    pub amount_low: &'static str,
    pub amount_high: &'static str,
    pub confirm_contribute: &'static str,
    pub enter_pin: &'static str,
    pub wrong_pin: &'static str,
    pub pin_locked: &'static str,
    pub pin_not_set: &'static str,
    pub stk_sent: &'static str,
    pub statement_title: &'static str,
    pub no_entries: &'static str,
    pub withdraw_amount: &'static str,
    pub reason_prompt: &'static str,
    pub bad_reason: &'static str,
    pub confirm_withdraw: &'static str,
    pub withdraw_sent: &'static str,
    pub no_pending: &'static str,
    pub only_officials: &'static str,
    pub pending_title: &'static str,
    pub approve: &'static str,
    pub reject: &'static str,
    pub approvals_so_far: &'static str,
    pub confirm_decision: &'static str,
    pub counted: &'static str,
    pub approved: &'static str,
    pub unfunded: &'static str,
    pub rejected: &'static str,
    pub next_meeting: &'static str,
    pub no_meeting: &'static str,
    pub current_pin: &'static str,
    pub new_pin: &'static str,
    pub pin_changed: &'static str,
    pub choose_language: &'static str,
    pub language_set: &'static str,
    pub refused_rule: &'static str,
    pub refused_gone: &'static str,
    pub refused_decided: &'static str,
    pub refused_not_allowed: &'static str,
    pub mpesa_unavailable: &'static str,
    pub too_many_prompts: &'static str,
    pub back: &'static str,
    pub home: &'static str,
    pub more: &'static str,
    pub goodbye: &'static str,
    pub failure: &'static str,
    pub expired: &'static str,
    pub not_kenyan: &'static str,
    pub kind_contribution: &'static str,
    pub kind_reversal: &'static str,
    pub kind_other: &'static str,
    pub weekly: &'static str,
    pub biweekly: &'static str,
    pub monthly: &'static str,
}

pub const EN: Phrases = Phrases {
    welcome_new: "Welcome to PesaChama. This number is not registered.",
    register_en: "Register (English)",
    register_sw: "Jisajili (Kiswahili)",
    ask_name: "Enter your full name:",
    bad_name: "Use 2 to 40 letters for your name.",
    choose_pin: "Choose a 4-digit PIN:",
    bad_pin: "A PIN is exactly 4 digits.",
    pin_again: "Enter the same PIN again:",
    pin_mismatch: "The PINs did not match.",
    registered: "You are registered.",
    welcome: "Welcome",
    menu: [
        "My chamas",
        "Contribute",
        "Mini statement",
        "Request withdrawal",
        "Approve withdrawals",
        "Next meeting",
        "Change PIN",
        "Language",
    ],
    invalid_choice: "Invalid choice.",
    choose_chama: "Choose a chama:",
    no_chama: "You are not in any chama yet. Ask an official of your chama to add this number.",
    balance: "Chama balance",
    your_savings: "Your savings",
    contribution: "Contribution",
    pay: "Pay",
    other_amount: "Other amount",
    amount_prompt: "Enter amount (KES 10 - 250,000):",
    digits_only: "Enter the amount in digits.",
    amount_low: "The smallest amount is KES 10.",
    amount_high: "The largest M-Pesa amount is KES 250,000.",
    confirm_contribute: "Pay",
    enter_pin: "Enter PIN to confirm:",
    wrong_pin: "Wrong PIN. {n} tries left.",
    pin_locked: "Too many wrong PINs. Try again in {n} min.",
    pin_not_set: "You have no PIN yet. Set one in the PesaChama app.",
    stk_sent: "You will receive an M-Pesa prompt for {amount}. Enter your M-Pesa PIN to pay.",
    statement_title: "Statement",
    no_entries: "No entries yet.",
    withdraw_amount: "Withdraw from",
    reason_prompt: "Enter the reason (3-60 letters):",
    bad_reason: "The reason must be 3 to 60 letters.",
    confirm_withdraw: "Request",
    withdraw_sent: "Request sent. It needs {n} approvals from officials.",
    no_pending: "No withdrawals are waiting for you.",
    only_officials: "Only officials approve withdrawals.",
    pending_title: "Waiting for you:",
    approve: "Approve",
    reject: "Reject",
    approvals_so_far: "Approvals",
    confirm_decision: "Decision",
    counted: "Your approval is counted: {a} of {k}.",
    approved: "Approved. The money is being sent.",
    unfunded: "Approved, but the chama balance is too low to pay it now.",
    rejected: "You rejected the request.",
    next_meeting: "Next meeting",
    no_meeting: "No meeting is scheduled.",
    current_pin: "Enter your current PIN:",
    new_pin: "Enter your new PIN:",
    pin_changed: "Your PIN has been changed.",
    choose_language: "Choose language:",
    language_set: "Language set to English.",
    refused_rule: "Your chama cannot take this request now. Ask an official.",
    refused_gone: "That is no longer available.",
    refused_decided: "You have already decided on this request.",
    refused_not_allowed: "You are not allowed to do that.",
    mpesa_unavailable: "M-Pesa payments are not available right now. Nothing was charged. Please try again later.",
    too_many_prompts: "Too many M-Pesa prompts to this phone. Nothing was charged. Please try again in 10 minutes.",
    back: "0 Back",
    home: "00 Home",
    more: "98 More",
    goodbye: "Thank you for using PesaChama.",
    failure: "Sorry, something went wrong. Please try again later.",
    expired: "Your session has expired. Please dial again.",
    not_kenyan: "Sorry, PesaChama USSD is only for Kenyan mobile numbers.",
    kind_contribution: "Contribution",
    kind_reversal: "Reversal",
    kind_other: "Other",
    weekly: "weekly",
    biweekly: "every 2 weeks",
    monthly: "monthly",
};

pub const SW: Phrases = Phrases {
    welcome_new: "Karibu PesaChama. Nambari hii haijasajiliwa.",
    register_en: "Register (English)",
    register_sw: "Jisajili (Kiswahili)",
    ask_name: "Weka jina lako kamili:",
    bad_name: "Jina liwe na herufi 2 hadi 40.",
    choose_pin: "Chagua PIN ya tarakimu 4:",
    bad_pin: "PIN ni tarakimu 4 kamili.",
    pin_again: "Weka PIN hiyo tena:",
    pin_mismatch: "PIN hazilingani.",
    registered: "Umesajiliwa.",
    welcome: "Karibu",
    menu: [
        "Chama zangu",
        "Changia",
        "Taarifa fupi",
        "Omba kutoa pesa",
        "Idhinisha maombi",
        "Mkutano ujao",
        "Badilisha PIN",
        "Lugha",
    ],
    invalid_choice: "Chaguo si sahihi.",
    choose_chama: "Chagua chama:",
    no_chama: "Bado hujajiunga na chama. Omba kiongozi wa chama chako aongeze nambari hii.",
    balance: "Salio la chama",
    your_savings: "Akiba yako",
    contribution: "Mchango",
    pay: "Lipa",
    other_amount: "Kiasi kingine",
    amount_prompt: "Weka kiasi (KES 10 - 250,000):",
    digits_only: "Weka kiasi kwa tarakimu.",
    amount_low: "Kiasi cha chini ni KES 10.",
    amount_high: "Kiasi cha juu cha M-Pesa ni KES 250,000.",
    confirm_contribute: "Lipa",
    enter_pin: "Weka PIN kuthibitisha:",
    wrong_pin: "PIN si sahihi. Majaribio {n} yamebaki.",
    pin_locked: "Makosa mengi ya PIN. Jaribu tena baada ya dakika {n}.",
    pin_not_set: "Huna PIN bado. Weka PIN kwenye programu ya PesaChama.",
    stk_sent: "Utapokea ombi la M-Pesa la {amount}. Weka PIN yako ya M-Pesa kulipa.",
    statement_title: "Taarifa",
    no_entries: "Bado hakuna miamala.",
    withdraw_amount: "Toa kutoka",
    reason_prompt: "Weka sababu (herufi 3-60):",
    bad_reason: "Sababu iwe na herufi 3 hadi 60.",
    confirm_withdraw: "Omba",
    withdraw_sent: "Ombi limetumwa. Linahitaji idhini {n} za viongozi.",
    no_pending: "Hakuna maombi yanayokusubiri.",
    only_officials: "Viongozi pekee huidhinisha maombi.",
    pending_title: "Yanakusubiri:",
    approve: "Kubali",
    reject: "Kataa",
    approvals_so_far: "Idhini",
    confirm_decision: "Uamuzi",
    counted: "Idhini yako imehesabiwa: {a} kati ya {k}.",
    approved: "Imeidhinishwa. Pesa zinatumwa.",
    unfunded: "Imeidhinishwa, lakini salio la chama halitoshi kulipa sasa.",
    rejected: "Umekataa ombi hili.",
    next_meeting: "Mkutano ujao",
    no_meeting: "Hakuna mkutano uliopangwa.",
    current_pin: "Weka PIN yako ya sasa:",
    new_pin: "Weka PIN mpya:",
    pin_changed: "PIN yako imebadilishwa.",
    choose_language: "Chagua lugha:",
    language_set: "Lugha sasa ni Kiswahili.",
    refused_rule: "Chama chako hakiwezi kupokea ombi hili sasa. Ongea na kiongozi.",
    refused_gone: "Hilo halipatikani tena.",
    refused_decided: "Tayari umeamua ombi hili.",
    refused_not_allowed: "Huruhusiwi kufanya hivyo.",
    mpesa_unavailable: "Malipo ya M-Pesa hayapatikani sasa. Hujatozwa chochote. Tafadhali jaribu tena baadaye.",
    too_many_prompts: "Maombi mengi mno ya M-Pesa kwa simu hii. Hujatozwa chochote. Tafadhali jaribu tena baada ya dakika 10.",
    back: "0 Rudi",
    home: "00 Mwanzo",
    more: "98 Zaidi",
    goodbye: "Asante kwa kutumia PesaChama.",
    failure: "Samahani, hitilafu imetokea. Tafadhali jaribu tena baadaye.",
    expired: "Muda wa kikao umeisha. Tafadhali piga tena.",
    not_kenyan: "Samahani, huduma ya PesaChama ni kwa nambari za simu za Kenya pekee.",
    kind_contribution: "Mchango",
    kind_reversal: "Marekebisho",
    kind_other: "Mengine",
    weekly: "kila wiki",
    biweekly: "kila wiki 2",
    monthly: "kila mwezi",
};

pub fn phrases(language: Language) -> &'static Phrases {
    match language {
        Language::En => &EN,
        Language::Sw => &SW,
    }
}

impl Phrases {
    pub fn frequency(&self, frequency: Frequency) -> &'static str {
        match frequency {
            Frequency::Weekly => self.weekly,
            Frequency::Biweekly => self.biweekly,
            Frequency::Monthly => self.monthly,
        }
    }

    pub fn kind(&self, kind: &str) -> &'static str {
        match kind {
            "contribution" => self.kind_contribution,
            "reversal" => self.kind_reversal,
            _ => self.kind_other,
        }
    }
}

/// `KES 1,000` or `KES 1,000.50`: whole shillings without cents, as people read them.
pub fn kes(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match cents % 100 {
        0 => format!("{sign}KES {grouped}"),
        rest => format!("{sign}KES {grouped}.{rest:02}"),
    }
}

#[cfg(test)]
mod tests {
    use super::kes;

    #[test]
    fn shillings_are_grouped_and_cents_shown_only_when_there() {
        assert_eq!(kes(0), "KES 0");
        assert_eq!(kes(100_000), "KES 1,000");
        assert_eq!(kes(25_000_000), "KES 250,000");
        assert_eq!(kes(123_456_789_050), "KES 1,234,567,890.50");
        assert_eq!(kes(-5_000), "-KES 50");
    }
}
