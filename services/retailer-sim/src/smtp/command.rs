//! Parsing an SMTP command line (RFC 5321 §4.1) into a `Command`, before the session's state
//! decides the answer. Only what the sink implements is understood; the `MAIL` parameters of the
//! extensions it advertises (`SIZE`, `BODY`) are read, any other is refused.

use super::session::MAX_MESSAGE_BYTES;

/// A command as understood, before the session's state decides the reply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Ehlo(String),
    Helo(String),
    Mail {
        from: String,
        size: Option<u64>,
    },
    Rcpt(String),
    Data,
    Rset,
    Noop,
    Quit,
    /// A known command with unusable arguments: the reply to give.
    Bad(&'static str),
    Unknown,
}

impl Command {
    pub(crate) fn parse(line: &str) -> Command {
        let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
        let args = args.trim();
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" if args.is_empty() => {
                Command::Bad("501 5.5.4 EHLO and HELO need a domain or address literal")
            }
            "EHLO" => Command::Ehlo(args.to_owned()),
            "HELO" => Command::Helo(args.to_owned()),
            "MAIL" => match path(args, "FROM:") {
                None => Command::Bad("501 5.5.4 syntax: MAIL FROM:<address> [SIZE=n] [BODY=..]"),
                Some((from, params)) => match mail_params(params) {
                    Ok(size) => Command::Mail { from, size },
                    Err(reply) => Command::Bad(reply),
                },
            },
            "RCPT" => match path(args, "TO:") {
                Some((to, "")) if !to.is_empty() => Command::Rcpt(to),
                Some((_, params)) if !params.is_empty() => {
                    Command::Bad("555 5.5.4 RCPT parameters are not supported")
                }
                _ => Command::Bad("501 5.5.4 syntax: RCPT TO:<address>"),
            },
            "DATA" if !args.is_empty() => Command::Bad("501 5.5.4 DATA takes no arguments"),
            "DATA" => Command::Data,
            "RSET" => Command::Rset,
            "NOOP" => Command::Noop,
            "QUIT" => Command::Quit,
            _ => Command::Unknown,
        }
    }
}

/// `FROM:<address> params` (with `keyword` `FROM:` or `TO:`): the address and what follows it.
fn path<'a>(args: &'a str, keyword: &str) -> Option<(String, &'a str)> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args[keyword.len()..].trim_start().strip_prefix('<')?;
    let (address, params) = rest.split_once('>')?;
    let clean = !address
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '<');
    clean.then(|| (address.to_owned(), params.trim()))
}

/// The `MAIL` parameters of the extensions advertised: `SIZE=n` (returned) and `BODY=`.
fn mail_params(params: &str) -> Result<Option<u64>, &'static str> {
    let mut size = None;
    for param in params.split_whitespace() {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key.to_ascii_uppercase().as_str() {
            "SIZE" => match value.parse::<u64>() {
                Ok(n) if n > MAX_MESSAGE_BYTES as u64 => {
                    return Err("552 5.3.4 message size exceeds fixed maximum message size")
                }
                Ok(n) => size = Some(n),
                Err(_) => return Err("501 5.5.4 SIZE needs a number of bytes"),
            },
            "BODY" if value.eq_ignore_ascii_case("7BIT") => {}
            "BODY" if value.eq_ignore_ascii_case("8BITMIME") => {}
            _ => return Err("555 5.5.4 MAIL parameter not recognized or not implemented"),
        }
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_case_insensitively_with_their_arguments() {
        assert_eq!(
            Command::parse("ehlo client.test"),
            Command::Ehlo("client.test".into())
        );
        assert_eq!(
            Command::parse("MAIL FROM:<a@x.test> SIZE=120 BODY=8BITMIME"),
            Command::Mail {
                from: "a@x.test".into(),
                size: Some(120)
            }
        );
        assert_eq!(
            Command::parse("mail from: <>"),
            Command::Mail {
                from: String::new(),
                size: None
            }
        );
        assert_eq!(
            Command::parse("RCPT TO:<b@y.test>"),
            Command::Rcpt("b@y.test".into())
        );
        assert_eq!(Command::parse("data"), Command::Data);
        assert_eq!(Command::parse("STARTTLS"), Command::Unknown);
        assert_eq!(Command::parse("VRFY x"), Command::Unknown);
    }

    #[test]
    fn bad_arguments_get_the_matching_reply() {
        let code = |line: &str| match Command::parse(line) {
            Command::Bad(reply) => reply[..3].to_owned(),
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(code("EHLO"), "501");
        assert_eq!(code("MAIL FROM:a@x.test"), "501");
        assert_eq!(code("MAIL TO:<a@x.test>"), "501");
        assert_eq!(code("MAIL FROM:<a@x.test> SIZE=99999999"), "552");
        assert_eq!(code("MAIL FROM:<a@x.test> SMTPUTF8"), "555");
        assert_eq!(code("RCPT TO:<>"), "501");
        assert_eq!(code("RCPT TO:<a b@x.test>"), "501");
        assert_eq!(code("RCPT TO:<b@y.test> NOTIFY=NEVER"), "555");
        assert_eq!(code("DATA now"), "501");
    }
}
