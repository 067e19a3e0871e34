//! Splits a line typed in the shell into words, as a POSIX shell would without expansions:
//! blanks separate words; `'…'` keeps everything literally; `"…"` keeps everything but `\"`
//! and `\\`; a backslash outside quotes escapes the next character. So
//! `run 0afe0000 "echo hi; ls /"` is three words.

#[derive(Debug, Default, PartialEq)]
pub struct Split {
    /// The words, unquoted.
    pub words: Vec<String>,
    /// Byte offset where the last word starts, when the line does not end between words
    /// (the word being typed, for completion).
    pub open_word_start: Option<usize>,
    /// The quote left open at the end of the line, if any.
    pub open_quote: Option<char>,
    /// The line ends in a backslash that escapes nothing.
    pub dangling_escape: bool,
}

pub fn split(line: &str) -> Split {
    let mut s = Split::default();
    let mut word = String::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<char> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match quote {
            Some('\'') => {
                if c == '\'' {
                    quote = None;
                } else {
                    word.push(c);
                }
            }
            Some(_) => match c {
                '"' => quote = None,
                '\\' => match chars.peek() {
                    Some(&(_, n)) if n == '"' || n == '\\' => {
                        word.push(n);
                        chars.next();
                    }
                    _ => word.push('\\'),
                },
                _ => word.push(c),
            },
            None => {
                if c.is_whitespace() {
                    if start.take().is_some() {
                        s.words.push(std::mem::take(&mut word));
                    }
                    continue;
                }
                start.get_or_insert(i);
                match c {
                    '\'' | '"' => quote = Some(c),
                    '\\' => match chars.next() {
                        Some((_, n)) => word.push(n),
                        None => s.dangling_escape = true,
                    },
                    _ => word.push(c),
                }
            }
        }
    }
    if start.is_some() {
        s.words.push(word);
    }
    s.open_word_start = start;
    s.open_quote = quote;
    s
}

/// The words of a complete line, or why it is not complete.
pub fn words(line: &str) -> Result<Vec<String>, String> {
    let s = split(line);
    if let Some(q) = s.open_quote {
        return Err(format!("unclosed quote {q}"));
    }
    if s.dangling_escape {
        return Err("the line ends in a backslash".into());
    }
    Ok(s.words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(
            words(r#"run 0afe0000 "echo hi; ls /""#).unwrap(),
            ["run", "0afe0000", "echo hi; ls /"]
        );
        assert_eq!(
            words(r#"  a  'b "c" \d'  "e \"f\" \\ \g" h\ i "" ''"#).unwrap(),
            ["a", r#"b "c" \d"#, r#"e "f" \ \g"#, "h i", "", ""]
        );
        assert_eq!(words("x'y'\"z\"").unwrap(), ["xyz"]);
        assert!(words("").unwrap().is_empty());
        assert!(words("run 'a").unwrap_err().contains("unclosed quote"));
        assert!(words("run a\\").is_err());
    }

    #[test]
    fn the_word_being_typed() {
        let s = split("info 0af");
        assert_eq!(s.words, ["info", "0af"]);
        assert_eq!(s.open_word_start, Some(5));
        let s = split("info ");
        assert_eq!(s.words, ["info"]);
        assert_eq!(s.open_word_start, None);
        let s = split("run h \"echo");
        assert_eq!(s.open_quote, Some('"'));
        assert_eq!(s.open_word_start, Some(6));
    }
}
