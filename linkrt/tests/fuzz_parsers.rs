//! Property tests of every parser of user input: no panic on any input, Docker's error texts,
//! and valid inputs accepted with their values intact.
use linkrt::{format, image::Image, lifecycle::env as container, links, names, ports};
use proptest::prelude::*;

const PORT_ERRORS: [&str; 6] = [
    "Invalid containerPort: ",
    "Invalid hostPort: ",
    "Invalid ranges specified",
    "No port specified: ",
    "Invalid ip address",
    "Invalid proto: ",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn publish_specs_never_panic_and_fail_in_dockers_words(s in "[0-9a-z:./\\[\\]-]{0,24}") {
        match ports::parse_publish(&s) {
            Ok(bs) => prop_assert!(!bs.is_empty()),
            Err(e) => {
                let m = e.to_string();
                prop_assert!(PORT_ERRORS.iter().any(|p| m.starts_with(p)), "{:?}: {}", s, m);
            }
        }
    }

    #[test]
    fn valid_publish_specs_round_trip(
        ip in prop::option::of(prop_oneof![Just("127.0.0.1".to_string()), Just("10.1.2.3".to_string()), Just("[::1]".to_string())]),
        host in prop::option::of(1u16..=65535),
        cport in 1u16..=65535,
        proto in prop_oneof![Just("tcp"), Just("udp"), Just("sctp")],
    ) {
        let spec = match (&ip, host) {
            (Some(ip), Some(h)) => format!("{ip}:{h}:{cport}/{proto}"),
            (Some(ip), None) => format!("{ip}::{cport}/{proto}"),
            (None, Some(h)) => format!("{h}:{cport}/{proto}"),
            (None, None) => format!("{cport}/{proto}"),
        };
        let b = ports::parse_publish(&spec).unwrap();
        prop_assert_eq!(b.len(), 1);
        prop_assert_eq!(b[0].container.port, cport);
        prop_assert_eq!(b[0].container.proto.as_str(), proto);
        prop_assert_eq!(b[0].host_start, host.unwrap_or(0));
        prop_assert_eq!(b[0].host_ip.as_str(), ip.as_deref().unwrap_or("").trim_start_matches('[').trim_end_matches(']'));
    }

    #[test]
    fn expose_and_link_specs_never_panic(s in "\\PC{0,20}") {
        let _ = ports::parse_expose(&s);
        // Docker's opts.ParseLink: only "" and more than one colon are refused (an empty name
        // or alias is the daemon step's to judge); whitespace in the alias too (/etc/hosts).
        if let Ok((name, alias)) = links::parse_link(&s) {
            prop_assert!(!name.contains(':') && !alias.contains(':'));
            if let Some(a) = links::clean_alias(&alias) {
                prop_assert!(!a.is_empty() && !a.starts_with('/') && !a.contains("//"));
            }
        } else {
            let m = links::parse_link(&s).unwrap_err().to_string();
            let want = if s.is_empty() {
                "empty string specified for links".to_string()
            } else {
                format!("bad format for links: {}", s)
            };
            prop_assert!(m.ends_with(&want), "{} / {}", m, want);
        }
    }

    #[test]
    fn names_follow_dockers_rule(s in "\\PC{0,12}") {
        let n = s.strip_prefix('/').unwrap_or(&s);
        let b = n.as_bytes();
        let ok = b.len() >= 2 && b[0].is_ascii_alphanumeric() && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
        prop_assert_eq!(names::validate(&s).is_ok(), ok);
    }

    #[test]
    fn env_files_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let p = std::env::temp_dir().join(format!("linkrt-fuzz-{}.env", std::process::id()));
        std::fs::write(&p, &bytes).unwrap();
        if let Ok(vars) = container::parse_env_file(&p) {
            prop_assert!(vars.iter().all(|v| v.contains('=')));
        }
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn image_definitions_never_panic(s in "\\PC{0,80}") {
        let _ = Image::parse(&s);
        let _ = Image::parse(&format!("name = 'x'\ncmd = ['a']\n{s}"));
    }

    #[test]
    fn image_references_never_panic(s in "[a-zA-Z0-9:/@._-]{0,40}") {
        if let Ok(r) = linkrt::image::Reference::parse(&s) {
            // What parses prints back as a reference that parses to the same.
            let again = linkrt::image::Reference::parse(&r.to_string()).unwrap();
            prop_assert_eq!((again.repo, again.tag), (r.repo, r.tag));
        }
    }

    #[test]
    fn templates_never_panic(t in "[{}. a-zA-Z\"|()$]{0,24}") {
        let doc = serde_json::json!({"Name": "/web", "HostConfig": {"Links": ["/db:/web/db"]}, "State": {"Pid": 3}});
        let _ = format::render_template(&t, &doc);
    }
}
