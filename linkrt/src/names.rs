//! Container names: Docker's validation rule and its `adjective_surname` generator.
use rand::seq::SliceRandom;

use crate::error::{Error, Result};

const ADJECTIVES: &[&str] = &[
    "admiring",
    "adoring",
    "affectionate",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "beautiful",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "competent",
    "condescending",
    "confident",
    "cool",
    "cranky",
    "crazy",
    "dazzling",
    "determined",
    "distracted",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "eloquent",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "flamboyant",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "great",
    "happy",
    "hardcore",
    "heuristic",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "intelligent",
    "interesting",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "naughty",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pedantic",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "recursing",
    "relaxed",
    "reverent",
    "romantic",
    "sad",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "stupefied",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "unruffled",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];

const SURNAMES: &[&str] = &[
    "agnesi",
    "albattani",
    "allen",
    "almeida",
    "antonelli",
    "archimedes",
    "ardinghelli",
    "aryabhata",
    "austin",
    "babbage",
    "banach",
    "bardeen",
    "bartik",
    "bassi",
    "beaver",
    "bell",
    "benz",
    "bhabha",
    "bhaskara",
    "black",
    "blackburn",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "boyd",
    "brahmagupta",
    "brattain",
    "brown",
    "buck",
    "burnell",
    "cannon",
    "carson",
    "cartwright",
    "cerf",
    "chandrasekhar",
    "chaplygin",
    "chatelet",
    "chatterjee",
    "chebyshev",
    "cohen",
    "colden",
    "cori",
    "cray",
    "curie",
    "darwin",
    "davinci",
    "dewdney",
    "dhawan",
    "diffie",
    "dijkstra",
    "dirac",
    "driscoll",
    "dubinsky",
    "easley",
    "edison",
    "einstein",
    "elbakyan",
    "elgamal",
    "elion",
    "ellis",
    "engelbart",
    "euclid",
    "euler",
    "faraday",
    "feistel",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "gagarin",
    "galileo",
    "galois",
    "ganguly",
    "gates",
    "gauss",
    "germain",
    "goldberg",
    "goldstine",
    "goldwasser",
    "golick",
    "goodall",
    "gould",
    "greider",
    "grothendieck",
    "haibt",
    "hamilton",
    "haslett",
    "hawking",
    "heisenberg",
    "hellman",
    "hermann",
    "herschel",
    "hertz",
    "heyrovsky",
    "hodgkin",
    "hofstadter",
    "hoover",
    "hopper",
    "hugle",
    "hypatia",
    "ishizaka",
    "jackson",
    "jang",
    "jemison",
    "jennings",
    "jepsen",
    "johnson",
    "joliot",
    "jones",
    "kalam",
    "kapitsa",
    "kare",
    "keldysh",
    "keller",
    "kepler",
    "khayyam",
    "khorana",
    "kilby",
    "kirch",
    "knuth",
    "kowalevski",
    "lalande",
    "lamarr",
    "lamport",
    "leakey",
    "leavitt",
    "lederberg",
    "lehmann",
    "lewin",
    "lichterman",
    "liskov",
    "lovelace",
    "lumiere",
    "mahavira",
    "margulis",
    "matsumoto",
    "maxwell",
    "mayer",
    "mccarthy",
    "mcclintock",
    "mclaren",
    "mclean",
    "mcnulty",
    "meitner",
    "mendel",
    "mendeleev",
    "meninsky",
    "merkle",
    "mestorf",
    "mirzakhani",
    "montalcini",
    "moore",
    "morse",
    "moser",
    "murdock",
    "napier",
    "nash",
    "neumann",
    "newton",
    "nightingale",
    "nobel",
    "noether",
    "northcutt",
    "noyce",
    "panini",
    "pare",
    "pascal",
    "pasteur",
    "payne",
    "perlman",
    "pike",
    "poincare",
    "poitras",
    "proskuriakova",
    "ptolemy",
    "raman",
    "ramanujan",
    "rhodes",
    "ride",
    "ritchie",
    "robinson",
    "roentgen",
    "rosalind",
    "rubin",
    "saha",
    "sammet",
    "sanderson",
    "satoshi",
    "shamir",
    "shannon",
    "shaw",
    "shirley",
    "shockley",
    "shtern",
    "sinoussi",
    "snyder",
    "solomon",
    "spence",
    "stonebraker",
    "sutherland",
    "swanson",
    "swartz",
    "swirles",
    "taussig",
    "tesla",
    "tharp",
    "thompson",
    "torvalds",
    "tu",
    "turing",
    "varahamihira",
    "vaughan",
    "villani",
    "visvesvaraya",
    "volhard",
    "wescoff",
    "wilbur",
    "wiles",
    "williams",
    "williamson",
    "wilson",
    "wing",
    "wozniak",
    "wright",
    "wu",
    "yalow",
    "yonath",
    "zhukovsky",
];

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (a leading `/` is accepted and dropped).
pub fn validate(name: &str) -> Result<String> {
    let n = name.strip_prefix('/').unwrap_or(name);
    let b = n.as_bytes();
    let ok = b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if !ok {
        return Err(Error::user(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    // Docker sets no limit of its own, but a name goes into every recipient's /etc/hosts and
    // into file names: 255 bytes, a file name's limit, is where linkrt stops.
    if n.len() > MAX_NAME {
        return Err(Error::user(format!(
            "Invalid container name ({}...), the name is {} characters long; at most {MAX_NAME} are allowed",
            &n[..32],
            n.len()
        )));
    }
    Ok(n.to_string())
}

/// The longest container name linkrt accepts.
pub const MAX_NAME: usize = 255;

/// `--hostname`: RFC 1123 labels (letters, digits, inner hyphens, at most 63 each, separated
/// by dots), at most 64 bytes (the kernel's limit for a UTS name), in Docker's words.
pub fn validate_hostname(h: &str) -> Result<()> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if h.is_empty() || h.len() > 64 || !h.split('.').all(label_ok) {
        return Err(Error::user(format!("invalid hostname format: {}", h.escape_debug())));
    }
    Ok(())
}

/// A random `adjective_surname` not in `taken`; after a collision, a digit is appended as Docker does.
pub fn generate(taken: impl Fn(&str) -> bool) -> String {
    let mut rng = rand::thread_rng();
    for retry in 0..1000 {
        let adj = ADJECTIVES.choose(&mut rng).unwrap();
        let sur = SURNAMES.choose(&mut rng).unwrap();
        let mut name = format!("{adj}_{sur}");
        if name == "boring_wozniak" {
            continue; // Steve Wozniak is not boring (Docker's rule).
        }
        if retry > 0 {
            name.push_str(&rand::Rng::gen_range(&mut rng, 0..10).to_string());
        }
        if !taken(&name) {
            return name;
        }
    }
    unreachable!("more than 1000 name collisions")
}

#[cfg(test)]
mod hostname_tests {
    use super::*;

    #[test]
    fn hostnames_follow_rfc_1123() {
        for ok in ["db", "web-1", "foobar.example.com", "a", "0abc", &"x".repeat(63)] {
            assert!(validate_hostname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a_b",
            "evil\n6.6.6.6 injected",
            "a b",
            &"x".repeat(65),
            "ä",
        ] {
            let e = validate_hostname(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid hostname format: "), "{bad}: {e}");
            assert!(!e.contains('\n'), "no line break reaches the message: {e}");
        }
        assert!(validate(&"a".repeat(255)).is_ok());
        assert!(
            validate(&"a".repeat(70_000))
                .unwrap_err()
                .to_string()
                .contains("at most 255")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_matches_docker() {
        assert_eq!(validate("db").unwrap(), "db");
        assert_eq!(validate("/web.1_x-y").unwrap(), "web.1_x-y");
        for bad in ["a", "-db", "_x", "db!", "my db", "", "/"] {
            assert_eq!(
                validate(bad).unwrap_err().to_string(),
                format!("Invalid container name ({bad}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            );
        }
    }

    #[test]
    fn generated_names_are_valid_and_avoid_collisions() {
        for _ in 0..200 {
            let n = generate(|_| false);
            assert!(validate(&n).is_ok() && n.contains('_'), "{n}");
        }
        let first = std::cell::RefCell::new(None::<String>);
        let n = generate(|n| {
            let mut f = first.borrow_mut();
            if f.is_none() {
                *f = Some(n.to_string());
                return true;
            }
            false
        });
        assert!(n.chars().last().unwrap().is_ascii_digit(), "{n}");
    }
}
