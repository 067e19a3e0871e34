//! The container's users and groups, read from its own `/etc/passwd` and `/etc/group`.
//!
//! No NSS: the container's libc (if it has one) is not ours, and the host's NSS modules must
//! never look at the container's files, so the two files are parsed here (passwd(5),
//! group(5)).

/// One line of passwd(5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// The well-formed entries of a passwd(5) file; other lines are skipped.
pub fn parse_passwd(text: &str) -> impl Iterator<Item = User> + '_ {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 7 || f[0].is_empty() || line.starts_with('#') {
            return None;
        }
        Some(User {
            name: f[0].to_string(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: if f[5].is_empty() {
                "/".to_string()
            } else {
                f[5].to_string()
            },
            shell: if f[6].is_empty() {
                "/bin/sh".to_string()
            } else {
                f[6].to_string()
            },
        })
    })
}

/// Finds `spec`, a user name or a numeric uid, in the passwd file `passwd`.
///
/// A name is looked up first (a user may be called "1000"); then a number is looked up as a
/// uid. A uid with no entry is still accepted, as Docker does, with its own number as gid,
/// home `/` and shell `/bin/sh`.
pub fn resolve(passwd: &str, spec: &str) -> Option<User> {
    if let Some(u) = parse_passwd(passwd).find(|u| u.name == spec) {
        return Some(u);
    }
    let uid: u32 = spec.parse().ok()?;
    Some(parse_passwd(passwd).find(|u| u.uid == uid).unwrap_or(User {
        name: spec.to_string(),
        uid,
        gid: uid,
        home: "/".to_string(),
        shell: "/bin/sh".to_string(),
    }))
}

/// The groups of `user`: its primary group, then every group of the group(5) file `group`
/// that lists it as a member, each once.
pub fn groups(group: &str, user: &str, primary: u32) -> Vec<u32> {
    let mut gids = vec![primary];
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 4 || line.starts_with('#') {
            continue;
        }
        let Ok(gid) = f[2].parse::<u32>() else {
            continue;
        };
        if f[3].split(',').any(|m| m.trim() == user) && !gids.contains(&gid) {
            gids.push(gid);
        }
    }
    gids
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment:x:1:1::/:/bin/sh
broken line
vcap:x:10000:10001:vcap:/home/vcap:/bin/ash
1234:x:5:5::/h:
bad:x:notanumber:1::/:/bin/sh
nohome:x:77:77:::
";

    #[test]
    fn parses_well_formed_lines() {
        let names: Vec<String> = parse_passwd(PASSWD).map(|u| u.name).collect();
        assert_eq!(names, ["root", "vcap", "1234", "nohome"]);
    }

    #[test]
    fn resolves_by_name() {
        let u = resolve(PASSWD, "vcap").unwrap();
        assert_eq!(
            u,
            User {
                name: "vcap".into(),
                uid: 10000,
                gid: 10001,
                home: "/home/vcap".into(),
                shell: "/bin/ash".into()
            }
        );
        assert_eq!(resolve(PASSWD, "root").unwrap().home, "/root");
    }

    #[test]
    fn resolves_by_uid() {
        assert_eq!(resolve(PASSWD, "10000").unwrap().name, "vcap");
        assert_eq!(resolve(PASSWD, "0").unwrap().name, "root");
    }

    #[test]
    fn a_name_that_is_a_number_wins_over_the_uid() {
        assert_eq!(resolve(PASSWD, "1234").unwrap().uid, 5);
    }

    #[test]
    fn unknown_uid_gets_defaults_and_unknown_name_is_none() {
        let u = resolve(PASSWD, "4242").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.home.as_str(), u.shell.as_str()),
            (4242, 4242, "/", "/bin/sh")
        );
        assert_eq!(resolve(PASSWD, "nosuchuser"), None);
        assert_eq!(resolve("", "vcap"), None);
    }

    #[test]
    fn empty_home_and_shell_get_defaults() {
        let u = resolve(PASSWD, "nohome").unwrap();
        assert_eq!((u.home.as_str(), u.shell.as_str()), ("/", "/bin/sh"));
    }

    #[test]
    fn groups_lists_memberships_once() {
        let group = "root:x:0:\nwheel:x:10:root,vcap\naudio:x:29: vcap \nvcap:x:10001:vcap\nbroken\nx:x:y:vcap\n";
        assert_eq!(groups(group, "vcap", 10001), [10001, 10, 29]);
        assert_eq!(groups(group, "root", 0), [0, 10]);
        assert_eq!(groups("", "vcap", 7), [7]);
    }
}
