//! Zoom's transcript languages: the numbers of `src_language` (transcript media params)
//! and of `language` (transcript data, msg 17).
//!
//! Zoom numbers its transcript languages from 0 (Arabic) to 36 (Vietnamese), in the
//! alphabetical order of their English names, with -1 for "no language". Zoom's SDK
//! names them in capitals (`ENGLISH`, `FRENCH_CANADA`); Zoom gives no language tags, so
//! the BCP 47 tag beside each name ([`Language::tag`]: `en`, `fr-CA`, `zh-Hans`, `yue`)
//! is zoomhost's, chosen as the plain tag of the language the name denotes.
//!
//! `src_language` fixes the language for a stream's first 30 s; language detection
//! (`enable_lid`, on unless turned off) takes over after that. A number outside the table
//! is refused with status 43 (`INVALID_MEDIA_TRANSCRIPT_SOURCE_LANGUAGE`).
//!
//! [`parse`] reads a language as people write it (a number, a name or a tag), and
//! [`text_of`] turns a transcript message's `language` into the text handed to plugins.

use std::fmt;

use serde_json::Value;

/// One language of Zoom's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language {
    /// Zoom's number (`src_language`, `language`).
    pub number: i32,
    /// Zoom's name, in capitals (`ENGLISH`).
    pub name: &'static str,
    /// The BCP 47 tag (`en`): zoomhost's choice, Zoom gives none.
    pub tag: &'static str,
}

/// No source language (`-1`).
pub const NONE: i32 = -1;

macro_rules! language_table {
    ($($number:literal $name:ident $tag:literal,)*) => {
        $(
            #[doc = concat!("`", stringify!($name), "` (`", $tag, "`).")]
            pub const $name: i32 = $number;
        )*

        /// Every language, in number order (0 to 36; [`NONE`] is not a language).
        pub const TABLE: &[Language] = &[$(Language {
            number: $number,
            name: stringify!($name),
            tag: $tag,
        }),*];
    };
}

language_table! {
    0 ARABIC "ar",
    1 BENGALI "bn",
    2 CANTONESE "yue",
    3 CATALAN "ca",
    4 CHINESE_SIMPLIFIED "zh-Hans",
    5 CHINESE_TRADITIONAL "zh-Hant",
    6 CZECH "cs",
    7 DANISH "da",
    8 DUTCH "nl",
    9 ENGLISH "en",
    10 ESTONIAN "et",
    11 FINNISH "fi",
    12 FRENCH_CANADA "fr-CA",
    13 FRENCH_FRANCE "fr-FR",
    14 GERMAN "de",
    15 HEBREW "he",
    16 HINDI "hi",
    17 HUNGARIAN "hu",
    18 INDONESIAN "id",
    19 ITALIAN "it",
    20 JAPANESE "ja",
    21 KOREAN "ko",
    22 MALAY "ms",
    23 PERSIAN "fa",
    24 POLISH "pl",
    25 PORTUGUESE "pt",
    26 ROMANIAN "ro",
    27 RUSSIAN "ru",
    28 SPANISH "es",
    29 SWEDISH "sv",
    30 TAGALOG "tl",
    31 TAMIL "ta",
    32 TELUGU "te",
    33 THAI "th",
    34 TURKISH "tr",
    35 UKRAINIAN "uk",
    36 VIETNAMESE "vi",
}

/// Whether `n` is a number Zoom accepts as `src_language` ([`NONE`] or a language).
pub fn is_valid(n: i64) -> bool {
    n == i64::from(NONE) || by_number(n).is_some()
}

/// The language numbered `n` (`None` for [`NONE`] and numbers outside the table).
pub fn by_number(n: i64) -> Option<&'static Language> {
    usize::try_from(n).ok().and_then(|i| TABLE.get(i))
}

/// Why [`parse`] refused a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Neither a number of the table, nor a name, nor a tag.
    Unknown,
    /// A bare language that Zoom splits by region or script (`fr`, `zh`): the tags
    /// that would fit.
    Ambiguous(Vec<&'static str>),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unknown => write!(
                f,
                "not one of Zoom's transcript languages: give its number (-1 to 36), name \
                 (ENGLISH, FRENCH_CANADA ...) or language tag (en, fr-CA ...)"
            ),
            ParseError::Ambiguous(tags) => {
                write!(f, "Zoom has several of this language: ")?;
                write!(f, "{}", tags.join(", "))
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// A language as people write it, to its number: the number itself (`9`, `"-1"`), Zoom's
/// name in any case with `_`, `-` or spaces between words (`ENGLISH`, `french canada`),
/// `none`, or a tag of the table in any case (`en`, `fr-ca`). A tag with a region the
/// table does not split by is read as its language (`en-US` is `en`).
pub fn parse(text: &str) -> Result<i32, ParseError> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return match i32::try_from(n) {
            Ok(n) if is_valid(n.into()) => Ok(n),
            _ => Err(ParseError::Unknown),
        };
    }
    let name: String = text
        .chars()
        .map(|c| match c {
            '-' | ' ' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    if name == "NONE" {
        return Ok(NONE);
    }
    if let Some(l) = TABLE.iter().find(|l| l.name == name) {
        return Ok(l.number);
    }
    if let Some(l) = TABLE.iter().find(|l| l.tag.eq_ignore_ascii_case(text)) {
        return Ok(l.number);
    }
    // `en-US`, `pt-BR`: the language, when the table has it only once.
    let primary = text.split(['-', '_']).next().unwrap_or_default();
    let fits: Vec<&Language> = TABLE
        .iter()
        .filter(|l| {
            l.tag
                .split('-')
                .next()
                .is_some_and(|p| p.eq_ignore_ascii_case(primary))
        })
        .collect();
    match fits.as_slice() {
        [] => Err(ParseError::Unknown),
        [one] => Ok(one.number),
        many => Err(ParseError::Ambiguous(many.iter().map(|l| l.tag).collect())),
    }
}

/// A transcript message's `language` as handed to plugins: a number of the table becomes
/// its tag (`9` is `"en"`), [`NONE`] and `null` become nothing; text (what servers sent
/// before the numbers) passes through unchanged, and a number outside the table is kept
/// as its digits, so nothing Zoom says is lost.
pub fn text_of(language: &Value) -> Option<String> {
    match language {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => match n.as_i64() {
            Some(i) if i == i64::from(NONE) => None,
            Some(i) => Some(by_number(i).map_or_else(|| i.to_string(), |l| l.tag.into())),
            None => Some(n.to_string()),
        },
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_is_zooms_numbering() {
        assert_eq!(TABLE.len(), 37);
        for (i, l) in TABLE.iter().enumerate() {
            assert_eq!(l.number as usize, i, "{}", l.name);
            assert_eq!(by_number(i as i64), Some(l));
        }
        // Spot checks against Zoom's SDK table.
        assert_eq!((ARABIC, ENGLISH, VIETNAMESE), (0, 9, 36));
        assert_eq!((FRENCH_CANADA, FRENCH_FRANCE, GERMAN), (12, 13, 14));
        assert_eq!((PORTUGUESE, SPANISH, TAGALOG), (25, 28, 30));
        assert_eq!(
            by_number(9).map(|l| (l.name, l.tag)),
            Some(("ENGLISH", "en"))
        );
        assert_eq!(by_number(-1), None);
        assert_eq!(by_number(37), None);
        assert!(is_valid(-1) && is_valid(0) && is_valid(36));
        assert!(!is_valid(-2) && !is_valid(37) && !is_valid(i64::MAX));
    }

    #[test]
    fn names_and_tags_are_unique() {
        for (i, a) in TABLE.iter().enumerate() {
            for b in &TABLE[i + 1..] {
                assert_ne!(a.name, b.name);
                assert!(!a.tag.eq_ignore_ascii_case(b.tag), "{} {}", a.tag, b.tag);
            }
        }
    }

    #[test]
    fn every_entry_parses_by_number_name_and_tag() {
        for l in TABLE {
            assert_eq!(parse(&l.number.to_string()), Ok(l.number));
            assert_eq!(parse(l.name), Ok(l.number));
            assert_eq!(parse(&l.name.to_ascii_lowercase()), Ok(l.number));
            assert_eq!(parse(l.tag), Ok(l.number), "{}", l.tag);
            assert_eq!(parse(&l.tag.to_ascii_uppercase()), Ok(l.number));
        }
    }

    #[test]
    fn parse_reads_what_people_write() {
        assert_eq!(parse("en"), Ok(ENGLISH));
        assert_eq!(parse(" english "), Ok(ENGLISH));
        assert_eq!(parse("ENGLISH"), Ok(ENGLISH));
        assert_eq!(parse("en-US"), Ok(ENGLISH));
        assert_eq!(parse("pt_BR"), Ok(PORTUGUESE));
        assert_eq!(parse("french canada"), Ok(FRENCH_CANADA));
        assert_eq!(parse("Chinese-Simplified"), Ok(CHINESE_SIMPLIFIED));
        assert_eq!(parse("zh-hant"), Ok(CHINESE_TRADITIONAL));
        assert_eq!(parse("none"), Ok(NONE));
        assert_eq!(parse("-1"), Ok(NONE));
        assert_eq!(parse("36"), Ok(VIETNAMESE));
    }

    #[test]
    fn parse_refuses_what_is_not_in_the_table() {
        for bad in ["37", "-2", "99999999999", "klingon", "", "e", "x-en"] {
            assert_eq!(parse(bad), Err(ParseError::Unknown), "{bad:?}");
        }
        assert_eq!(
            parse("fr"),
            Err(ParseError::Ambiguous(vec!["fr-CA", "fr-FR"]))
        );
        assert_eq!(
            parse("zh-CN").map_err(|e| e.to_string()),
            Err("Zoom has several of this language: zh-Hans, zh-Hant".into())
        );
        assert!(ParseError::Unknown.to_string().contains("-1 to 36"));
    }

    #[test]
    fn transcript_languages_become_tags_and_text_passes_through() {
        assert_eq!(text_of(&json!(9)), Some("en".into()));
        assert_eq!(text_of(&json!(12)), Some("fr-CA".into()));
        assert_eq!(text_of(&json!(0)), Some("ar".into()));
        assert_eq!(text_of(&json!(-1)), None);
        assert_eq!(text_of(&Value::Null), None);
        assert_eq!(text_of(&json!("en-US")), Some("en-US".into()));
        assert_eq!(text_of(&json!(40)), Some("40".into()));
        assert_eq!(text_of(&json!(1.5)), Some("1.5".into()));
        assert_eq!(text_of(&json!(true)), Some("true".into()));
    }
}
