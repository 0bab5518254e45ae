//! The tokenizer of the setkey configuration language.
//!
//! It follows the token rules of setkey's `token.l` (ipsec-tools 0.8.2 and
//! FreeBSD `sbin/setkey`), including flex's matching discipline: at every
//! position the longest match wins, and between matches of equal length the
//! rule listed first wins. So `add` is a keyword but `address` is a string,
//! `0x4001` is a hexadecimal string, `8,0` is a string (the `[0-9,]+` rule),
//! and `192.0.2.1` is a string rather than the number `192`.
//!
//! Three lexical states, as in `token.l`:
//! * after `-E` the next word is looked up among the encryption algorithm
//!   names, after `-A` among the authentication algorithm names;
//! * after `-P` everything up to the terminating `;` is the policy text
//!   (read later by [`crate::policy`]); newlines inside it are counted.
//!
//! Two deliberate extensions: a backslash directly before a newline is a line
//! continuation (stock setkey rejects the backslash), and a carriage return
//! counts as white space, so scripts with CRLF line ends parse.

use crate::ast::{AuthAlg, CompAlg, EncAlg};

/// One token with the line it ends on and its text as written (the text is
/// what error messages quote, like setkey's `at [yytext]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) text: String,
    pub(crate) line: u32,
}

/// Token kinds (the `%token`s of setkey's `parse.y`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A command or other reserved word.
    Kw(Kw),
    /// `-4`, `-6`, `-n` and combinations (`F_AIFLAGS`).
    AiFlags(String),
    /// `-P`; the policy text follows as [`Tok::PolicyText`].
    FPolicy,
    /// Everything between `-P` and the `;` (`PL_REQUESTS`).
    PolicyText(String),
    /// A security protocol word (`ah`, `esp-old`, `esp-udp`, ...).
    Proto(ProtoKw),
    /// An encryption algorithm name, only right after `-E`.
    EncAlg(EncAlg),
    /// An authentication algorithm name, only right after `-A`.
    AuthAlg(AuthAlg),
    /// `oui`, `deflate`, `lzs`.
    CompAlg(CompAlg),
    /// An option flag such as `-m` or `-lh`.
    Flag(Flag),
    /// `transport` or `tunnel`.
    Mode(ModeKw),
    /// `random-pad`, `seq-pad`, `zero-pad`: an `sadb_sa_flags` bit.
    Extension(u32),
    /// `nocyclic-seq`.
    NoCyclicSeq,
    /// `any`.
    Any,
    /// `;` (`EOT`).
    Eot,
    /// `/`.
    Slash,
    /// `[`.
    Blcl,
    /// `]`.
    Elcl,
    /// A decimal number, digits only (`DECSTRING`).
    Dec(String),
    /// `0x...`; the digits after the prefix (`HEXSTRING`).
    Hex(String),
    /// `"..."`; the bytes between the quotes (`QUOTEDSTRING`).
    Quoted(Vec<u8>),
    /// Any other word: addresses, host names, `8,0` (`STRING`).
    Str(String),
    /// End of input.
    Eof,
}

/// Reserved words of the command language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kw {
    Add,
    Delete,
    DeleteAll,
    Get,
    GetSpi,
    Flush,
    Dump,
    Exit,
    SpdAdd,
    SpdUpdate,
    SpdDelete,
    SpdDump,
    SpdFlush,
    Tagged,
}

/// Security protocol words (`PR_ESP`, `PR_AH`, `PR_IPCOMP`, `PR_ESPUDP`,
/// `PR_TCP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtoKw {
    Ah,
    Esp,
    AhOld,
    EspOld,
    EspUdp,
    IpComp,
    Tcp,
}

/// `transport` / `tunnel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModeKw {
    Transport,
    Tunnel,
}

/// Option flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flag {
    /// `-A`
    Auth,
    /// `-E`
    Enc,
    /// `-C`
    Comp,
    /// `-R`
    RawCpi,
    /// `-m`
    Mode,
    /// `-u`
    Reqid,
    /// `-f`
    Ext,
    /// `-r`
    Replay,
    /// `-lh`
    LifetimeHard,
    /// `-ls`
    LifetimeSoft,
    /// `-bh`
    LifebyteHard,
    /// `-bs`
    LifebyteSoft,
    /// `-ctx`
    SecCtx,
}

/// The error of the tokenizer: flex's `yyfatal("Syntax error")` on a
/// character no rule accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    pub(crate) line: u32,
    pub(crate) text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Initial,
    AuthAlg,
    EncAlg,
    Policy,
}

/// `sadb_sa_flags` padding bits (`SADB_X_EXT_PRAND`, `SADB_X_EXT_PZERO`,
/// `SADB_X_EXT_PSEQ`), KAME `pfkeyv2.h`.
pub(crate) const SADB_X_EXT_PRAND: u32 = 0x0100;
/// See [`SADB_X_EXT_PRAND`].
pub(crate) const SADB_X_EXT_PZERO: u32 = 0x0200;
/// See [`SADB_X_EXT_PRAND`] (sequential padding is the zero value).
pub(crate) const SADB_X_EXT_PSEQ: u32 = 0x0000;

/// Keywords of the initial state, each with its token. A keyword matches a
/// word only when the whole word is the keyword (flex: longest match).
const KEYWORDS: &[(&str, Tok)] = &[
    ("add", Tok::Kw(Kw::Add)),
    ("delete", Tok::Kw(Kw::Delete)),
    ("deleteall", Tok::Kw(Kw::DeleteAll)),
    ("get", Tok::Kw(Kw::Get)),
    ("getspi", Tok::Kw(Kw::GetSpi)),
    ("flush", Tok::Kw(Kw::Flush)),
    ("dump", Tok::Kw(Kw::Dump)),
    ("exit", Tok::Kw(Kw::Exit)),
    ("quit", Tok::Kw(Kw::Exit)),
    ("bye", Tok::Kw(Kw::Exit)),
    ("spdadd", Tok::Kw(Kw::SpdAdd)),
    ("spdupdate", Tok::Kw(Kw::SpdUpdate)),
    ("spddelete", Tok::Kw(Kw::SpdDelete)),
    ("spddump", Tok::Kw(Kw::SpdDump)),
    ("spdflush", Tok::Kw(Kw::SpdFlush)),
    ("tagged", Tok::Kw(Kw::Tagged)),
    ("ah", Tok::Proto(ProtoKw::Ah)),
    ("esp", Tok::Proto(ProtoKw::Esp)),
    ("ah-old", Tok::Proto(ProtoKw::AhOld)),
    ("esp-old", Tok::Proto(ProtoKw::EspOld)),
    ("esp-udp", Tok::Proto(ProtoKw::EspUdp)),
    ("ipcomp", Tok::Proto(ProtoKw::IpComp)),
    ("tcp", Tok::Proto(ProtoKw::Tcp)),
    ("oui", Tok::CompAlg(CompAlg::Oui)),
    ("deflate", Tok::CompAlg(CompAlg::Deflate)),
    ("lzs", Tok::CompAlg(CompAlg::Lzs)),
    ("transport", Tok::Mode(ModeKw::Transport)),
    ("tunnel", Tok::Mode(ModeKw::Tunnel)),
    ("random-pad", Tok::Extension(SADB_X_EXT_PRAND)),
    ("seq-pad", Tok::Extension(SADB_X_EXT_PSEQ)),
    ("zero-pad", Tok::Extension(SADB_X_EXT_PZERO)),
    ("nocyclic-seq", Tok::NoCyclicSeq),
    ("any", Tok::Any),
];

/// Flags introduced by a hyphen, matched longest first.
const FLAGS: &[(&str, Flag)] = &[
    ("-ctx", Flag::SecCtx),
    ("-lh", Flag::LifetimeHard),
    ("-ls", Flag::LifetimeSoft),
    ("-bh", Flag::LifebyteHard),
    ("-bs", Flag::LifebyteSoft),
    ("-A", Flag::Auth),
    ("-E", Flag::Enc),
    ("-C", Flag::Comp),
    ("-R", Flag::RawCpi),
    ("-m", Flag::Mode),
    ("-u", Flag::Reqid),
    ("-f", Flag::Ext),
    ("-r", Flag::Replay),
];

fn is_str_first(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b':'
}

fn is_str_rest(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b':' | b'%' | b'.' | b'-')
}

/// Characters the policy text may contain (`token.l`'s `S_PL` rule, plus
/// `\r`).
fn is_policy_char(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b':' | b'.'
                | b'%'
                | b'-'
                | b'+'
                | b'_'
                | b'/'
                | b' '
                | b'\n'
                | b'\t'
                | b'\r'
                | b'['
                | b']'
        )
}

/// Length of the run of bytes from `start` satisfying `pred`.
fn run(bytes: &[u8], start: usize, pred: impl Fn(u8) -> bool) -> usize {
    bytes
        .get(start..)
        .map_or(0, |rest| rest.iter().take_while(|&&c| pred(c)).count())
}

/// The tokenizer over one script.
#[derive(Debug)]
pub(crate) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: u32,
    state: State,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src`, line 1.
    pub(crate) fn new(src: &'a str) -> Lexer<'a> {
        Lexer {
            src: src.as_bytes(),
            pos: 0,
            line: 1,
            state: State::Initial,
        }
    }

    /// The current line (flex's `lineno`).
    pub(crate) fn line(&self) -> u32 {
        self.line
    }

    fn peek(&self, off: usize) -> Option<u8> {
        self.src.get(self.pos.checked_add(off)?).copied()
    }

    fn text(&self, start: usize, end: usize) -> String {
        String::from_utf8_lossy(self.src.get(start..end).unwrap_or_default()).into_owned()
    }

    fn token(&self, tok: Tok, start: usize) -> Token {
        Token {
            tok,
            text: self.text(start, self.pos),
            line: self.line,
        }
    }

    fn bump_line(&mut self) {
        self.line = self.line.saturating_add(1);
    }

    /// Skips white space, newlines, comments and line continuations.
    fn skip_blank(&mut self) {
        while let Some(c) = self.peek(0) {
            match c {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\n' => {
                    self.pos += 1;
                    self.bump_line();
                }
                b'\\' if self.peek(1) == Some(b'\n') => {
                    self.pos += 2;
                    self.bump_line();
                }
                b'\\' if self.peek(1) == Some(b'\r') && self.peek(2) == Some(b'\n') => {
                    self.pos += 3;
                    self.bump_line();
                }
                b'#' => self.pos += run(self.src, self.pos, |c| c != b'\n'),
                _ => return,
            }
        }
    }

    /// The next token, or the lexical error flex reports as "Syntax error".
    pub(crate) fn next_token(&mut self) -> Result<Token, LexError> {
        if self.state == State::Policy {
            self.state = State::Initial;
            return self.policy_text();
        }
        self.skip_blank();
        let state = self.state;
        self.state = State::Initial;
        let start = self.pos;
        let Some(c) = self.peek(0) else {
            return Ok(Token {
                tok: Tok::Eof,
                text: String::new(),
                line: self.line,
            });
        };
        let single = |tok: Tok, lx: &mut Lexer<'a>| {
            lx.pos += 1;
            Ok(lx.token(tok, start))
        };
        match c {
            b';' => single(Tok::Eot, self),
            b'/' => single(Tok::Slash, self),
            b'[' => single(Tok::Blcl, self),
            b']' => single(Tok::Elcl, self),
            b'"' => self.quoted(start),
            b'-' => self.hyphen(start),
            c if is_str_first(c) || c == b',' => Ok(self.word(start, state)),
            _ => Err(self.syntax_error(start)),
        }
    }

    fn syntax_error(&self, start: usize) -> LexError {
        let end = start.saturating_add(1).min(self.src.len());
        LexError {
            line: self.line,
            text: self.text(start, end),
        }
    }

    fn quoted(&mut self, start: usize) -> Result<Token, LexError> {
        let body = start + 1;
        let len = run(self.src, body, |c| c != b'"');
        if self.src.get(body + len) != Some(&b'"') {
            return Err(self.syntax_error(start));
        }
        let content = self.src.get(body..body + len).unwrap_or_default().to_vec();
        let newlines = content.iter().filter(|&&c| c == b'\n').count();
        self.pos = body + len + 1;
        self.line = self
            .line
            .saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX));
        Ok(self.token(Tok::Quoted(content), start))
    }

    fn hyphen(&mut self, start: usize) -> Result<Token, LexError> {
        let rest = self.src.get(start..).unwrap_or_default();
        // `-[n46]+` (F_AIFLAGS) against the fixed flags: longest wins, the
        // fixed flags come first in token.l on a tie (none share a length
        // with a flag-letter run, as no fixed flag uses n, 4 or 6).
        let ai = run(self.src, start + 1, |c| matches!(c, b'n' | b'4' | b'6'));
        let fixed = FLAGS.iter().find(|(s, _)| rest.starts_with(s.as_bytes()));
        if rest.starts_with(b"-P") && ai == 0 {
            self.pos = start + 2;
            self.state = State::Policy;
            return Ok(self.token(Tok::FPolicy, start));
        }
        match fixed {
            Some((s, flag)) if s.len() > ai => {
                self.pos = start + s.len();
                match flag {
                    Flag::Auth => self.state = State::AuthAlg,
                    Flag::Enc => self.state = State::EncAlg,
                    _ => {}
                }
                Ok(self.token(Tok::Flag(*flag), start))
            }
            _ if ai > 0 => {
                self.pos = start + 1 + ai;
                let text = self.text(start, self.pos);
                Ok(self.token(Tok::AiFlags(text), start))
            }
            _ => Err(self.syntax_error(start)),
        }
    }

    fn word(&mut self, start: usize, state: State) -> Token {
        let first = self.src.get(start).copied().unwrap_or(0);
        let l_str = if is_str_first(first) {
            1 + run(self.src, start + 1, is_str_rest)
        } else {
            0
        };
        let l_dec = run(self.src, start, |c| c.is_ascii_digit());
        let l_hex = if first == b'0' && matches!(self.src.get(start + 1), Some(b'x' | b'X')) {
            match run(self.src, start + 2, |c| c.is_ascii_hexdigit()) {
                0 => 0,
                n => n + 2,
            }
        } else {
            0
        };
        let l_com = run(self.src, start, |c| c.is_ascii_digit() || c == b',');
        let best = l_str.max(l_dec).max(l_hex).max(l_com);
        let word = self.text(start, start + l_str);
        // Rule order: keywords and algorithm names, then DECSTRING,
        // HEXSTRING, STRING, and last the `[0-9,]+` rule.
        if l_str == best && l_str > 0 {
            let special = match state {
                State::EncAlg => EncAlg::from_name(&word).map(Tok::EncAlg),
                State::AuthAlg => AuthAlg::from_name(&word).map(Tok::AuthAlg),
                _ => None,
            };
            let kw = KEYWORDS
                .iter()
                .find(|(k, _)| *k == word)
                .map(|(_, t)| t.clone());
            if let Some(tok) = kw.or(special) {
                self.pos = start + l_str;
                return self.token(tok, start);
            }
        }
        if l_dec == best {
            self.pos = start + l_dec;
            let text = self.text(start, self.pos);
            return self.token(Tok::Dec(text), start);
        }
        if l_hex == best {
            self.pos = start + l_hex;
            let text = self.text(start + 2, self.pos);
            return self.token(Tok::Hex(text), start);
        }
        if l_str == best {
            self.pos = start + l_str;
            return self.token(Tok::Str(word), start);
        }
        self.pos = start + l_com;
        let text = self.text(start, self.pos);
        self.token(Tok::Str(text), start)
    }

    /// Reads the policy text after `-P` up to (not including) the `;`.
    /// Comments inside it are dropped; newlines are counted.
    fn policy_text(&mut self) -> Result<Token, LexError> {
        let start = self.pos;
        let mut text = String::new();
        loop {
            let Some(c) = self.peek(0) else {
                return Err(LexError {
                    line: self.line,
                    text: String::new(),
                });
            };
            match c {
                b';' => break,
                b'#' => self.pos += run(self.src, self.pos, |c| c != b'\n'),
                b'\\' if self.peek(1) == Some(b'\n') => {
                    text.push(' ');
                    self.pos += 2;
                    self.bump_line();
                }
                c if is_policy_char(c) => {
                    if c == b'\n' {
                        self.bump_line();
                    }
                    text.push(char::from(c));
                    self.pos += 1;
                }
                _ => return Err(self.syntax_error(self.pos)),
            }
        }
        let _ = start;
        let line = self.line;
        let shown = text.trim().to_string();
        Ok(Token {
            tok: Tok::PolicyText(text),
            text: shown,
            line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        let mut lx = Lexer::new(s);
        let mut out = Vec::new();
        loop {
            let t = lx.next_token().unwrap();
            if t.tok == Tok::Eof {
                return out;
            }
            out.push(t.tok);
        }
    }

    #[test]
    fn longest_match_rules() {
        assert_eq!(
            toks("add address 0x4001 0x4001g 8,0 192.0.2.1 12"),
            vec![
                Tok::Kw(Kw::Add),
                Tok::Str("address".into()),
                Tok::Hex("4001".into()),
                Tok::Str("0x4001g".into()),
                Tok::Str("8,0".into()),
                Tok::Str("192.0.2.1".into()),
                Tok::Dec("12".into()),
            ]
        );
        assert_eq!(toks("esp-udp esp esp-old"), {
            vec![
                Tok::Proto(ProtoKw::EspUdp),
                Tok::Proto(ProtoKw::Esp),
                Tok::Proto(ProtoKw::EspOld),
            ]
        });
    }

    #[test]
    fn algorithm_state_only_after_flag() {
        assert_eq!(
            toks("-E 3des-cbc 3des-cbc -A null null"),
            vec![
                Tok::Flag(Flag::Enc),
                Tok::EncAlg(EncAlg::TripleDesCbc),
                Tok::Str("3des-cbc".into()),
                Tok::Flag(Flag::Auth),
                Tok::AuthAlg(AuthAlg::Null),
                Tok::Str("null".into()),
            ]
        );
    }

    #[test]
    fn policy_text_counts_lines() {
        let mut lx = Lexer::new("-P out ipsec\n esp/transport//require # c\n;");
        assert_eq!(lx.next_token().unwrap().tok, Tok::FPolicy);
        let t = lx.next_token().unwrap();
        assert_eq!(
            t.tok,
            Tok::PolicyText(" out ipsec\n esp/transport//require \n".into())
        );
        assert_eq!(lx.next_token().unwrap().line, 3);
    }

    #[test]
    fn flags_and_errors() {
        assert_eq!(
            toks("-4n -lh -ctx -m"),
            vec![
                Tok::AiFlags("-4n".into()),
                Tok::Flag(Flag::LifetimeHard),
                Tok::Flag(Flag::SecCtx),
                Tok::Flag(Flag::Mode)
            ]
        );
        let mut lx = Lexer::new("\n\n  -x");
        let e = lx.next_token().unwrap_err();
        assert_eq!((e.line, e.text.as_str()), (3, "-"));
        let mut lx = Lexer::new("\"open");
        assert_eq!(lx.next_token().unwrap_err().text, "\"");
    }
}
