//! The menus screen by screen, in both languages: table-driven walks through every path, each
//! hop's input, the action the handler is asked to perform, the outcome fed back and the
//! screen that follows. Every screen any walk produces is checked to fit one USSD screen of
//! plain GSM characters; so are worst-case screens (longest names, largest amounts, full pages).

use chrono::{TimeZone, Utc};
use pesachama_ussd::gsm;
use pesachama_ussd::model::{
    ChamaFacts, Decision, Frequency, Meeting, Member, PendingWithdrawal, PinRefusal, Refusal,
    StatementLine,
};
use pesachama_ussd::state::Purpose;
use pesachama_ussd::{Action, Facts, Language, Outcome, Reply, Screen, State, resume, start, step};
use uuid::Uuid;

const A: Uuid = Uuid::from_u128(0xa);
const B: Uuid = Uuid::from_u128(0xb);
const R: Uuid = Uuid::from_u128(0x1);

fn chama(id: Uuid, name: &str, official: bool) -> ChamaFacts {
    ChamaFacts {
        id,
        name: name.to_owned(),
        balance: 12_345_600,
        contributed: 500_000,
        contribution: 100_000,
        frequency: Frequency::Monthly,
        official,
    }
}

fn member(chamas: Vec<ChamaFacts>) -> Facts {
    Facts {
        member: Some(Member {
            first_name: "Wanjiru".into(),
            chamas,
        }),
    }
}

fn two_chamas() -> Facts {
    member(vec![
        chama(A, "Umoja Women", true),
        chama(B, "Jua Kali Savers", false),
    ])
}

fn pending(n: usize) -> Vec<PendingWithdrawal> {
    (0..n)
        .map(|i| PendingWithdrawal {
            id: Uuid::from_u128(i as u128 + 1),
            chama_name: "Umoja Women".into(),
            requester: "Achieng".into(),
            amount: 500_000,
            reason: "school fees".into(),
            approvals: 0,
            required: 2,
        })
        .collect()
}

/// One hop of a walk: the input, and either the screen expected or the action expected with
/// the outcome to feed back and the screen after it. Screens are matched on a fragment.
enum Hop {
    Screen(&'static str, &'static str),
    Act(&'static str, &'static str, Outcome, &'static str),
}
use Hop::{Act, Screen as S};

struct Walk {
    state: State,
    language: Language,
    facts: Facts,
    seen: Vec<Screen>,
}

impl Walk {
    fn begin(language: Language, facts: Facts) -> (Self, Screen) {
        let first = start(language, &facts);
        let Reply::Show(screen) = first.reply else {
            panic!("the first hop shows a screen")
        };
        let walk = Self {
            state: first.state,
            language: first.language,
            facts,
            seen: vec![screen.clone()],
        };
        (walk, screen)
    }

    fn send(&mut self, input: &str) -> Reply {
        let next = step(&self.state, self.language, input, &self.facts);
        self.state = next.state;
        self.language = next.language;
        if let Reply::Show(screen) = &next.reply {
            self.seen.push(screen.clone());
        }
        next.reply
    }

    fn feed(&mut self, outcome: Outcome) -> Screen {
        let next = resume(&self.state, self.language, outcome, &self.facts);
        self.state = next.state;
        self.language = next.language;
        let Reply::Show(screen) = next.reply else {
            panic!("resume shows a screen")
        };
        self.seen.push(screen.clone());
        screen
    }

    fn play(&mut self, name: &str, hops: Vec<Hop>) {
        for (i, hop) in hops.into_iter().enumerate() {
            match hop {
                S(input, want) => match self.send(input) {
                    Reply::Show(screen) => assert!(
                        screen.text.contains(want),
                        "{name} hop {i} ({input:?}): {:?} lacks {want:?}",
                        screen.text
                    ),
                    Reply::Run(action) => panic!("{name} hop {i}: unexpected action {action:?}"),
                },
                Act(input, want_action, outcome, want) => {
                    match self.send(input) {
                        Reply::Run(action) => {
                            let debug = format!("{action:?}");
                            assert!(
                                debug.contains(want_action),
                                "{name} hop {i}: {debug} lacks {want_action}"
                            );
                            assert!(
                                !debug.contains(input) || input.len() < 4,
                                "{name}: a PIN leaked into {debug}"
                            );
                        }
                        Reply::Show(screen) => {
                            panic!("{name} hop {i}: expected an action, got {:?}", screen.text)
                        }
                    }
                    let screen = self.feed(outcome);
                    assert!(
                        screen.text.contains(want),
                        "{name} hop {i}: {:?} lacks {want:?}",
                        screen.text
                    );
                }
            }
        }
    }
}

fn assert_fits(screens: &[Screen]) {
    for screen in screens {
        assert!(
            gsm::fits(&screen.text),
            "does not fit ({} chars): {:?}",
            screen.text.chars().count(),
            screen.text
        );
        assert_eq!(
            screen.body()[4..],
            screen.text,
            "the last-resort guard changed a screen"
        );
    }
}

fn cases(language: Language) -> Vec<(&'static str, Facts, Vec<Hop>)> {
    let en = language == Language::En;
    let t = |e: &'static str, s: &'static str| if en { e } else { s };
    let lines = [
        StatementLine {
            at: Utc.with_ymd_and_hms(2026, 11, 30, 21, 30, 0).unwrap(),
            kind: "contribution".into(),
            amount: 100_000,
        },
        StatementLine {
            at: Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap(),
            kind: "reversal".into(),
            amount: -5_000,
        },
    ];
    vec![
        (
            "balances",
            two_chamas(),
            vec![
                S(
                    "1",
                    t(
                        "Choose a chama:\n1. Umoja Women\n2. Jua Kali Savers\n0 Back 00 Home",
                        "Chagua chama:\n1. Umoja Women\n2. Jua Kali Savers\n0 Rudi 00 Mwanzo",
                    ),
                ),
                // No balance before the PIN.
                S(
                    "2",
                    t(
                        "Chama balance: Jua Kali Savers\nEnter PIN to confirm:\n0 Back",
                        "Weka PIN kuthibitisha:",
                    ),
                ),
                S(
                    "12",
                    t("A PIN is exactly 4 digits.", "PIN ni tarakimu 4 kamili."),
                ),
                Act(
                    "9999",
                    "VerifyPin",
                    Outcome::Pin(PinRefusal::Wrong { remaining: 2 }),
                    t(
                        "Wrong PIN. 2 tries left.",
                        "PIN si sahihi. Majaribio 2 yamebaki.",
                    ),
                ),
                Act(
                    "4321",
                    "VerifyPin",
                    Outcome::PinVerified,
                    t(
                        "Jua Kali Savers\nChama balance: KES 123,456\nYour savings: KES 5,000\nContribution: KES 1,000 monthly",
                        "Salio la chama: KES 123,456\nAkiba yako: KES 5,000\nMchango: KES 1,000 kila mwezi",
                    ),
                ),
                S("0", t("Choose a chama:", "Chagua chama:")),
                S(
                    "00",
                    t(
                        "Welcome Wanjiru\n1. My chamas\n2. Contribute",
                        "Karibu Wanjiru\n1. Chama zangu\n2. Changia",
                    ),
                ),
                S("0", t("Thank you", "Asante")),
            ],
        ),
        (
            "contribute the usual amount",
            two_chamas(),
            vec![
                S("2", t("Choose a chama:", "Chagua chama:")),
                S(
                    "1",
                    t(
                        "Umoja Women\n1. Pay KES 1,000\n2. Other amount",
                        "Umoja Women\n1. Lipa KES 1,000\n2. Kiasi kingine",
                    ),
                ),
                S(
                    "1",
                    t(
                        "Pay KES 1,000 -> Umoja Women\nEnter PIN to confirm:",
                        "Lipa KES 1,000 -> Umoja Women\nWeka PIN kuthibitisha:",
                    ),
                ),
                Act(
                    "4321",
                    "Contribute",
                    Outcome::ContributionQueued,
                    t(
                        "You will receive an M-Pesa prompt for KES 1,000.",
                        "Utapokea ombi la M-Pesa la KES 1,000.",
                    ),
                ),
            ],
        ),
        (
            "contribute another amount, bad amounts first",
            two_chamas(),
            vec![
                S("2", ""),
                S("2", ""),
                S(
                    "2",
                    t(
                        "Enter amount (KES 10 - 250,000):",
                        "Weka kiasi (KES 10 - 250,000):",
                    ),
                ),
                S(
                    "abc",
                    t("Enter the amount in digits.", "Weka kiasi kwa tarakimu."),
                ),
                S(
                    "5*0",
                    t("Enter the amount in digits.", "Weka kiasi kwa tarakimu."),
                ),
                S(
                    "9",
                    t(
                        "The smallest amount is KES 10.",
                        "Kiasi cha chini ni KES 10.",
                    ),
                ),
                S(
                    "0000",
                    t(
                        "The smallest amount is KES 10.",
                        "Kiasi cha chini ni KES 10.",
                    ),
                ),
                S(
                    "250001",
                    t(
                        "The largest M-Pesa amount is KES 250,000.",
                        "Kiasi cha juu cha M-Pesa ni KES 250,000.",
                    ),
                ),
                S(
                    "99999999999999999999999",
                    t("The largest M-Pesa amount", "Kiasi cha juu cha M-Pesa"),
                ),
                S("10.50", t("digits", "tarakimu")),
                S(
                    "250000",
                    t(
                        "Pay KES 250,000 -> Jua Kali Savers",
                        "Lipa KES 250,000 -> Jua Kali Savers",
                    ),
                ),
                S(
                    "12a4",
                    t("A PIN is exactly 4 digits.", "PIN ni tarakimu 4 kamili."),
                ),
                Act(
                    "1234",
                    "amount: Money { minor: 25000000",
                    Outcome::Pin(PinRefusal::Wrong { remaining: 2 }),
                    t(
                        "Wrong PIN. 2 tries left.\nPay KES 250,000",
                        "PIN si sahihi. Majaribio 2 yamebaki.\nLipa KES 250,000",
                    ),
                ),
                Act(
                    "1235",
                    "Contribute",
                    Outcome::Pin(PinRefusal::Wrong { remaining: 1 }),
                    t("1 tries left", "Majaribio 1"),
                ),
                Act(
                    "1236",
                    "Contribute",
                    Outcome::Pin(PinRefusal::Locked { minutes: 30 }),
                    t(
                        "Too many wrong PINs. Try again in 30 min.",
                        "Makosa mengi ya PIN. Jaribu tena baada ya dakika 30.",
                    ),
                ),
                S("1", t("Thank you", "Asante")),
            ],
        ),
        (
            "mini statement with pages",
            two_chamas(),
            vec![
                S("3", ""),
                S(
                    "1",
                    t(
                        "Statement: Umoja Women\nEnter PIN to confirm:",
                        "Taarifa: Umoja Women\nWeka PIN kuthibitisha:",
                    ),
                ),
                Act(
                    "4321",
                    "Statement",
                    Outcome::Statement {
                        lines: lines.iter().cloned().cycle().take(6).collect(),
                        balance: 95_000,
                    },
                    t(
                        "Umoja Women\nYour savings: KES 950\n01/12 Contribution KES 1,000\n01/11 Reversal -KES 50",
                        "Umoja Women\nAkiba yako: KES 950\n01/12 Mchango KES 1,000\n01/11 Marekebisho -KES 50",
                    ),
                ),
                S("98", t("0 Back 00 Home", "0 Rudi 00 Mwanzo")),
                S("98", t("Invalid choice.", "Chaguo si sahihi.")),
                S("0", t("01/12", "01/12")),
            ],
        ),
        (
            "empty statement",
            two_chamas(),
            vec![
                S("3", ""),
                S("2", ""),
                Act(
                    "4321",
                    "Statement",
                    Outcome::Statement {
                        lines: vec![],
                        balance: 0,
                    },
                    t("No entries yet.", "Bado hakuna miamala."),
                ),
            ],
        ),
        (
            "withdrawal request",
            two_chamas(),
            vec![
                S("4", ""),
                S(
                    "1",
                    t(
                        "Withdraw from Umoja Women\nEnter amount",
                        "Toa kutoka Umoja Women\nWeka kiasi",
                    ),
                ),
                S(
                    "5000",
                    t(
                        "Enter the reason (3-60 letters):",
                        "Weka sababu (herufi 3-60):",
                    ),
                ),
                S(
                    "ab",
                    t(
                        "The reason must be 3 to 60 letters.",
                        "Sababu iwe na herufi 3 hadi 60.",
                    ),
                ),
                S(
                    "school fees",
                    t(
                        "Request KES 5,000 (Umoja Women): school fees\nEnter PIN to confirm:",
                        "Omba KES 5,000 (Umoja Women): school fees\nWeka PIN kuthibitisha:",
                    ),
                ),
                Act(
                    "4321",
                    "reason: \"school fees\"",
                    Outcome::WithdrawalRequested { required: 2 },
                    t(
                        "Request sent. It needs 2 approvals from officials.",
                        "Ombi limetumwa. Linahitaji idhini 2 za viongozi.",
                    ),
                ),
            ],
        ),
        (
            "withdrawal refused by the chama's rules",
            two_chamas(),
            vec![
                S("4", ""),
                S("2", ""),
                S("100", ""),
                S("rent", ""),
                Act(
                    "4321",
                    "RequestWithdrawal",
                    Outcome::Refused(Refusal::Rule),
                    t(
                        "Your chama cannot take this request now.",
                        "Chama chako hakiwezi kupokea ombi hili sasa.",
                    ),
                ),
            ],
        ),
        (
            "approve with pages",
            two_chamas(),
            vec![
                Act(
                    "5",
                    "LoadPending",
                    Outcome::Pending(pending(4)),
                    t(
                        "Waiting for you:\n1. KES 5,000 Achieng: school fees\n2.",
                        "Yanakusubiri:\n1. KES 5,000 Achieng: school fees\n2.",
                    ),
                ),
                S("98", t("1. KES 5,000", "1. KES 5,000")),
                S(
                    "1",
                    t(
                        "Umoja Women: Achieng KES 5,000 - school fees. Approvals 0/2\n1. Approve\n2. Reject",
                        "Umoja Women: Achieng KES 5,000 - school fees. Idhini 0/2\n1. Kubali\n2. Kataa",
                    ),
                ),
                S(
                    "1",
                    t(
                        "Decision: Approve KES 5,000 Achieng\nEnter PIN",
                        "Uamuzi: Kubali KES 5,000 Achieng\nWeka PIN",
                    ),
                ),
                Act(
                    "4321",
                    "request: 00000000-0000-0000-0000-000000000004, approve: true",
                    Outcome::Decided(Decision::Counted {
                        approvals: 1,
                        required: 2,
                    }),
                    t(
                        "Your approval is counted: 1 of 2.",
                        "Idhini yako imehesabiwa: 1 kati ya 2.",
                    ),
                ),
            ],
        ),
        (
            "reject",
            two_chamas(),
            vec![
                Act("5", "LoadPending", Outcome::Pending(pending(1)), ""),
                S("1", ""),
                S("2", ""),
                Act(
                    "4321",
                    "approve: false",
                    Outcome::Decided(Decision::Rejected),
                    t("You rejected the request.", "Umekataa ombi hili."),
                ),
            ],
        ),
        (
            "last approval pays, or cannot",
            two_chamas(),
            vec![
                Act("5", "LoadPending", Outcome::Pending(pending(1)), ""),
                S("1", ""),
                S("1", ""),
                Act(
                    "4321",
                    "Decide",
                    Outcome::Decided(Decision::Approved),
                    t(
                        "Approved. The money is being sent.",
                        "Imeidhinishwa. Pesa zinatumwa.",
                    ),
                ),
            ],
        ),
        (
            "nothing pending",
            two_chamas(),
            vec![Act(
                "5",
                "LoadPending",
                Outcome::Pending(vec![]),
                t(
                    "No withdrawals are waiting for you.",
                    "Hakuna maombi yanayokusubiri.",
                ),
            )],
        ),
        (
            "only officials approve",
            member(vec![chama(B, "Jua Kali Savers", false)]),
            vec![S(
                "5",
                t(
                    "Only officials approve withdrawals.\n1. My chamas",
                    "Viongozi pekee huidhinisha maombi.\n1. Chama zangu",
                ),
            )],
        ),
        (
            "next meeting",
            two_chamas(),
            vec![
                S("6", ""),
                S(
                    "1",
                    t(
                        "Next meeting: Umoja Women\nEnter PIN to confirm:",
                        "Mkutano ujao: Umoja Women\nWeka PIN kuthibitisha:",
                    ),
                ),
                Act(
                    "4321",
                    "NextMeeting",
                    Outcome::Meeting {
                        chama: A,
                        meeting: Some(Meeting {
                            title: "Monthly meeting".into(),
                            at: Utc.with_ymd_and_hms(2026, 12, 12, 11, 0, 0).unwrap(),
                            venue: Some("Kasarani Hall".into()),
                        }),
                    },
                    t(
                        "Next meeting: Umoja Women\nMonthly meeting\n12/12/2026 14:00\nKasarani Hall",
                        "Mkutano ujao: Umoja Women\nMonthly meeting\n12/12/2026 14:00\nKasarani Hall",
                    ),
                ),
                S("0", ""),
                S("2", ""),
                Act(
                    "4321",
                    "NextMeeting",
                    Outcome::Meeting {
                        chama: B,
                        meeting: None,
                    },
                    t("No meeting is scheduled.", "Hakuna mkutano uliopangwa."),
                ),
            ],
        ),
        (
            "change PIN",
            two_chamas(),
            vec![
                S("7", t("Enter your current PIN:", "Weka PIN yako ya sasa:")),
                Act(
                    "4321",
                    "VerifyPin",
                    Outcome::PinVerified,
                    t("Enter your new PIN:", "Weka PIN mpya:"),
                ),
                Act(
                    "9876",
                    "HoldPin",
                    Outcome::PinHeld,
                    t("Enter the same PIN again:", "Weka PIN hiyo tena:"),
                ),
                Act(
                    "9875",
                    "ChangePin",
                    Outcome::PinMismatch,
                    t(
                        "The PINs did not match.\nEnter your new PIN:",
                        "PIN hazilingani.\nWeka PIN mpya:",
                    ),
                ),
                Act("9876", "HoldPin", Outcome::PinHeld, ""),
                Act(
                    "9876",
                    "ChangePin",
                    Outcome::PinChanged,
                    t("Your PIN has been changed.", "PIN yako imebadilishwa."),
                ),
            ],
        ),
        (
            "change language",
            two_chamas(),
            vec![
                S(
                    "8",
                    t(
                        "Choose language:\n1. English\n2. Kiswahili",
                        "Chagua lugha:\n1. English\n2. Kiswahili",
                    ),
                ),
                Act(
                    "2",
                    "language: Sw",
                    Outcome::LanguageSet(Language::Sw),
                    "Lugha sasa ni Kiswahili.\n1. Chama zangu",
                ),
                S("8", "Chagua lugha:"),
                Act(
                    "1",
                    "language: En",
                    Outcome::LanguageSet(Language::En),
                    "Language set to English.\n1. My chamas",
                ),
            ],
        ),
        (
            "member of no chama",
            member(vec![]),
            vec![
                S(
                    "2",
                    t("You are not in any chama yet.", "Bado hujajiunga na chama."),
                ),
                S("1", t("Invalid choice.", "Chaguo si sahihi.")),
                S("00", t("1. My chamas", "1. Chama zangu")),
            ],
        ),
        (
            "bad menu inputs",
            two_chamas(),
            vec![
                S(
                    "",
                    t(
                        "Invalid choice.\n1. My chamas",
                        "Chaguo si sahihi.\n1. Chama zangu",
                    ),
                ),
                S("9", t("Invalid choice.", "Chaguo si sahihi.")),
                S("abc", t("Invalid choice.", "Chaguo si sahihi.")),
                S("1*2", t("Invalid choice.", "Chaguo si sahihi.")),
                S(
                    "11111111111111111111111111111111111111111111111111111111111111111",
                    t("Invalid choice.", "Chaguo si sahihi."),
                ),
                S("98", t("Invalid choice.", "Chaguo si sahihi.")),
            ],
        ),
    ]
}

#[test]
fn every_path_in_english_and_kiswahili() {
    for language in [Language::En, Language::Sw] {
        for (name, facts, hops) in cases(language) {
            let (mut walk, first) = Walk::begin(language, facts);
            assert!(!first.end, "{name}");
            walk.play(name, hops);
            assert_fits(&walk.seen);
        }
    }
}

#[test]
fn a_new_number_registers_with_a_name_and_a_pin_typed_twice() {
    for (choice, language, greeting) in [
        ("1", Language::En, "You are registered.\n1. My chamas"),
        ("2", Language::Sw, "Umesajiliwa.\n1. Chama zangu"),
    ] {
        let (mut walk, first) = Walk::begin(Language::En, Facts::default());
        assert_eq!(
            first.text,
            "Welcome to PesaChama. This number is not registered.\n1. Register (English)\n2. Jisajili (Kiswahili)"
        );
        let ask = if language == Language::En {
            "Enter your full name:"
        } else {
            "Weka jina lako kamili:"
        };
        walk.play(
            "register",
            vec![
                S("3", "Invalid choice."),
                S(choice, ask),
                S(
                    "J",
                    if language == Language::En {
                        "Use 2 to 40 letters"
                    } else {
                        "herufi 2 hadi 40"
                    },
                ),
                S("Juma 7", "2"),
                S(
                    "  Juma   Otieno  Baraka ",
                    if language == Language::En {
                        "Choose a 4-digit PIN:"
                    } else {
                        "Chagua PIN ya tarakimu 4:"
                    },
                ),
                S(
                    "123",
                    if language == Language::En {
                        "A PIN is exactly 4 digits."
                    } else {
                        "PIN ni tarakimu 4 kamili."
                    },
                ),
                Act(
                    "2468",
                    "HoldPin { pin: Pin(****) }",
                    Outcome::PinHeld,
                    if language == Language::En {
                        "Enter the same PIN again:"
                    } else {
                        "Weka PIN hiyo tena:"
                    },
                ),
                Act(
                    "2469",
                    "Register",
                    Outcome::PinMismatch,
                    if language == Language::En {
                        "The PINs did not match."
                    } else {
                        "PIN hazilingani."
                    },
                ),
                Act("2468", "HoldPin", Outcome::PinHeld, ""),
            ],
        );
        let Reply::Run(action) = walk.send("2468") else {
            panic!("register")
        };
        assert_eq!(
            action,
            Action::Register {
                first_name: "Juma".into(),
                last_name: Some("Otieno Baraka".into()),
                language,
                confirm: pesachama_domain::Pin::parse("2468").unwrap(),
            }
        );
        let home = walk.feed(Outcome::Registered);
        assert!(home.text.starts_with(greeting), "{:?}", home.text);
        assert_eq!(walk.state, State::Home);
        assert_fits(&walk.seen);
    }
}

#[test]
fn the_state_never_holds_a_pin() {
    let (mut walk, _) = Walk::begin(Language::En, two_chamas());
    for input in ["2", "1", "1"] {
        walk.send(input);
    }
    assert!(matches!(
        walk.send("8642"),
        Reply::Run(Action::Contribute { .. })
    ));
    let stored = serde_json::to_string(&walk.state).unwrap();
    assert!(!stored.contains("8642"), "{stored}");
    let (mut walk, _) = Walk::begin(Language::En, Facts::default());
    for input in ["1", "Juma Otieno"] {
        walk.send(input);
    }
    walk.send("8642");
    walk.feed(Outcome::PinHeld);
    let stored = serde_json::to_string(&walk.state).unwrap();
    assert!(!stored.contains("8642"), "{stored}");
    // The state round-trips through JSON, as it does through ussd_sessions between hops.
    let back: State = serde_json::from_str(&stored).unwrap();
    assert_eq!(back, walk.state);
}

#[test]
fn long_lists_page_with_98_and_back_with_0() {
    let chamas: Vec<_> = (0..12)
        .map(|i| chama(Uuid::from_u128(100 + i), &format!("Chama number {i}"), true))
        .collect();
    let (mut walk, _) = Walk::begin(Language::En, member(chamas));
    walk.play("pages", vec![
        S("1", "1. Chama number 0\n2. Chama number 1\n3. Chama number 2\n4. Chama number 3\n5. Chama number 4\n98 More\n0 Back 00 Home"),
        S("98", "1. Chama number 5"),
        S("98", "1. Chama number 10\n2. Chama number 11\n0 Back"),
        S("98", "Invalid choice."),
        S("0", "1. Chama number 5"),
        S("2", "Chama balance: Chama number 6\nEnter PIN"),
        Act("4321", "VerifyPin", Outcome::PinVerified, "Chama number 6\nChama balance"),
    ]);
    assert_eq!(
        walk.state,
        State::Balance {
            chama: Uuid::from_u128(106)
        }
    );
    assert!(
        matches!(step(&State::Chamas { purpose: Purpose::Balances, page: 2 }, Language::En, "3", &walk.facts).reply, Reply::Show(ref s) if s.text.starts_with("Invalid choice."))
    );
}

#[test]
fn worst_case_screens_fit_in_both_languages() {
    let long = "Wanawake wa Kesho Investment Group of Githurai Forty Four {Phase 2} 😀";
    let mut big = chama(A, long, true);
    // The largest amount the domain accepts anywhere (KES 10 billion).
    big.balance = pesachama_domain::money::MAX_MINOR;
    big.contributed = pesachama_domain::money::MAX_MINOR;
    big.contribution = 25_000_000;
    big.frequency = Frequency::Biweekly;
    let facts = Facts {
        member: Some(Member {
            first_name: "Nyambura-Wairimu Christabel".into(),
            chamas: vec![big.clone(); 7],
        }),
    };
    let item = PendingWithdrawal {
        id: R,
        chama_name: long.into(),
        requester: long.into(),
        amount: 25_000_000,
        reason: "x".repeat(60),
        approvals: 10,
        required: 10,
    };
    let lines = vec![
        StatementLine {
            at: Utc::now(),
            kind: "opening_balance".into(),
            amount: -25_000_000
        };
        9
    ];
    let meeting = Meeting {
        title: long.into(),
        at: Utc::now(),
        venue: Some(long.into()),
    };
    let states = vec![
        State::Welcome,
        State::RegisterName,
        State::RegisterPin {
            first_name: "x".into(),
            last_name: None,
        },
        State::RegisterConfirm {
            first_name: "x".into(),
            last_name: None,
        },
        State::Home,
        State::Chamas {
            purpose: Purpose::Contribute,
            page: 0,
        },
        State::Chamas {
            purpose: Purpose::Contribute,
            page: 1,
        },
        State::BalancePin { chama: A },
        State::Balance { chama: A },
        State::MeetingPin { chama: A },
        State::ContributeAmount { chama: A },
        State::ContributeOther { chama: A },
        State::ContributePin {
            chama: A,
            amount: 25_000_000,
        },
        State::StatementPin { chama: A },
        State::Statement {
            chama: A,
            lines: lines.clone(),
            balance: -pesachama_domain::money::MAX_MINOR,
            page: 0,
        },
        State::Statement {
            chama: A,
            lines,
            balance: 0,
            page: 2,
        },
        State::WithdrawAmount { chama: A },
        State::WithdrawReason {
            chama: A,
            amount: 1,
        },
        State::WithdrawPin {
            chama: A,
            amount: 25_000_000,
            reason: "y".repeat(60),
        },
        State::Approvals {
            items: vec![item.clone(); 7],
            page: 0,
        },
        State::Approvals {
            items: vec![],
            page: 0,
        },
        State::Approval {
            items: vec![item.clone()],
            page: 0,
            index: 0,
        },
        State::ApprovalPin {
            items: vec![item],
            page: 0,
            index: 0,
            approve: false,
        },
        State::Meeting {
            chama: A,
            meeting: Some(meeting),
        },
        State::Meeting {
            chama: A,
            meeting: None,
        },
        State::ChangePinCurrent,
        State::ChangePinNew,
        State::ChangePinConfirm,
        State::Language,
        State::Ended,
    ];
    let mut screens = vec![];
    for language in [Language::En, Language::Sw] {
        let p = pesachama_ussd::text::phrases(language);
        let wrong = p.wrong_pin.replace("{n}", "2");
        for state in &states {
            // Every notice the machine can put on this state's screen.
            let mut notices = vec![None, Some(p.invalid_choice)];
            match state {
                State::Home => notices.extend([
                    Some(p.only_officials),
                    Some(p.registered),
                    Some(p.language_set),
                    Some(p.refused_gone),
                ]),
                State::RegisterName => notices.push(Some(p.bad_name)),
                State::RegisterPin { .. } | State::ChangePinNew => {
                    notices.extend([Some(p.bad_pin), Some(p.pin_mismatch)])
                }
                State::ContributeOther { .. } | State::WithdrawAmount { .. } => {
                    notices.extend([Some(p.digits_only), Some(p.amount_low), Some(p.amount_high)])
                }
                State::WithdrawReason { .. } => notices.push(Some(p.bad_reason)),
                State::ContributePin { .. }
                | State::BalancePin { .. }
                | State::MeetingPin { .. }
                | State::StatementPin { .. }
                | State::WithdrawPin { .. }
                | State::ApprovalPin { .. }
                | State::ChangePinCurrent
                | State::RegisterConfirm { .. }
                | State::ChangePinConfirm => {
                    notices.extend([Some(p.bad_pin), Some(wrong.as_str())])
                }
                _ => {}
            }
            for notice in notices {
                screens.push(pesachama_ussd::render::state(
                    state, language, &facts, notice,
                ));
            }
        }
        // Every END text.
        for text in [
            p.goodbye,
            p.failure,
            p.expired,
            p.not_kenyan,
            p.pin_not_set,
            p.pin_changed,
            p.approved,
            p.unfunded,
            p.rejected,
            p.refused_rule,
            p.refused_gone,
            p.refused_decided,
            p.refused_not_allowed,
        ] {
            screens.push(Screen::end(text));
        }
        screens.push(Screen::end(p.pin_locked.replace("{n}", "30")));
        screens.push(Screen::end(p.stk_sent.replace("{amount}", "KES 250,000")));
        screens.push(Screen::end(p.withdraw_sent.replace("{n}", "10")));
        screens.push(Screen::end(
            p.counted.replace("{a}", "10").replace("{k}", "10"),
        ));
        screens.push(pesachama_ussd::machine::failure(language));
        screens.push(pesachama_ussd::machine::expired(language));
    }
    screens.push(pesachama_ussd::machine::not_kenyan());
    assert_fits(&screens);
}
