//! The grammar of setkey scripts (`parse.y` of ipsec-tools 0.8.2, with the
//! NetBSD `getspi` command and FreeBSD's `aes-gcm-16`), as a recursive
//! descent parser over [`crate::lexer`] tokens.
//!
//! Unlike setkey, which sends each command's messages as soon as the yacc
//! action runs, [`parse`] reads the whole script first and returns a
//! [`Script`] or the first error; nothing is sent for a script that does not
//! parse. The checks setkey makes while parsing that need no kernel answer
//! (SPI range, `-r` with the old protocols, `des-deriv`/`des-32iv` against
//! `esp-old`, the policy rules of libipsec) are made here; the key lengths
//! are checked later against the algorithm lists the kernel sends in its
//! SADB_REGISTER reply.

use core::fmt;

use crate::ast::{
    AddrOptions, Algorithms, Command, DeleteAllCommand, EncAlg, Endpoint, Family, Host, Key, Port,
    SADB_X_EXT_CYCSEQ, SADB_X_EXT_DERIV, SADB_X_EXT_IV4B, SADB_X_EXT_OLD, SADB_X_EXT_RAWCPI,
    SaCommand, SaProtocol, Script, SecCtx, Selector, SpdCommand, Statement, TaggedCommand,
    UpperProto,
};
use crate::lexer::{Flag, Kw, Lexer, ModeKw, ProtoKw, Tok, Token};
use crate::policy::{Policy, parse_policy};
use crate::protocols;

/// A script that does not parse: the line, the token at fault (as written)
/// and what is wrong. Displays as setkey does: `line 3: syntax error at [foo]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The line (1-based).
    pub line: u32,
    /// The offending token as written ("" at the end of the input).
    pub token: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: {} at [{}]",
            self.line, self.message, self.token
        )
    }
}

impl std::error::Error for ParseError {}

/// A non-fatal remark setkey prints while parsing (it reuses `yyerror`, so
/// the text reads like an error, but parsing goes on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The line.
    pub line: u32,
    /// The text (`WARNING: mode is obsolete`, ...).
    pub message: String,
}

/// `IPSEC_MODE_ANY`, `IPSEC_MODE_TRANSPORT`, `IPSEC_MODE_TUNNEL`.
const MODE_ANY: u8 = 0;
const MODE_TRANSPORT: u8 = 1;
const MODE_TUNNEL: u8 = 2;

/// Parses a whole setkey script. Total: every input, however malformed,
/// gives `Ok` or `Err`, never a panic.
pub fn parse(input: &str) -> Result<Script, ParseError> {
    parse_with_warnings(input).map(|(script, _)| script)
}

/// [`parse`], also returning the warnings setkey would print.
pub fn parse_with_warnings(input: &str) -> Result<(Script, Vec<Warning>), ParseError> {
    let mut p = Parser {
        lx: Lexer::new(input),
        la: None,
        warnings: Vec::new(),
        last_line: 1,
    };
    let mut statements = Vec::new();
    loop {
        let t = p.peek()?;
        if t.tok == Tok::Eof {
            break;
        }
        let command = p.command()?;
        let line = p.last_line;
        let exit = command == Command::Exit;
        statements.push(Statement { line, command });
        if exit {
            // `exit` accepts the script as read so far (YYACCEPT); the rest
            // is not even tokenized.
            break;
        }
    }
    Ok((Script { statements }, p.warnings))
}

struct Parser<'a> {
    lx: Lexer<'a>,
    la: Option<Token>,
    warnings: Vec<Warning>,
    /// Line of the last `;` read: the statement's line.
    last_line: u32,
}

/// Bookkeeping shared by the commands of one statement (setkey's `p_*`
/// globals, reset after every command by `parse_init`).
struct SaState {
    flags: u32,
}

impl<'a> Parser<'a> {
    fn peek(&mut self) -> Result<&Token, ParseError> {
        if self.la.is_none() {
            let t = self.lx.next_token().map_err(|e| ParseError {
                line: e.line,
                token: e.text,
                message: "Syntax error".into(),
            })?;
            self.la = Some(t);
        }
        match &self.la {
            Some(t) => Ok(t),
            None => Err(self.eof_error()),
        }
    }

    fn eof_error(&self) -> ParseError {
        ParseError {
            line: self.lx.line(),
            token: String::new(),
            message: "syntax error".into(),
        }
    }

    fn bump(&mut self) -> Result<Token, ParseError> {
        self.peek()?;
        self.la.take().ok_or_else(|| self.eof_error())
    }

    fn error_at(&mut self, message: &str) -> ParseError {
        match self.peek() {
            Ok(t) => ParseError {
                line: t.line,
                token: t.text.clone(),
                message: message.into(),
            },
            Err(e) => e,
        }
    }

    fn error_on(t: &Token, message: &str) -> ParseError {
        ParseError {
            line: t.line,
            token: t.text.clone(),
            message: message.into(),
        }
    }

    fn syntax(&mut self) -> ParseError {
        self.error_at("syntax error")
    }

    fn warn(&mut self, line: u32, message: &str) {
        self.warnings.push(Warning {
            line,
            message: message.into(),
        });
    }

    fn eot(&mut self) -> Result<(), ParseError> {
        if self.peek()?.tok == Tok::Eot {
            let t = self.bump()?;
            self.last_line = t.line;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn command(&mut self) -> Result<Command, ParseError> {
        let t = self.bump()?;
        let Tok::Kw(kw) = t.tok else {
            return Err(Self::error_on(&t, "syntax error"));
        };
        match kw {
            Kw::Add => Ok(Command::Add(self.sa_command(SaKind::Add)?)),
            Kw::Get => Ok(Command::Get(self.sa_command(SaKind::Get)?)),
            Kw::Delete => Ok(Command::Delete(self.sa_command(SaKind::Delete)?)),
            Kw::GetSpi => Ok(Command::GetSpi(self.sa_command(SaKind::GetSpi)?)),
            Kw::DeleteAll => self.deleteall(),
            Kw::Flush | Kw::Dump => {
                let mut st = SaState {
                    flags: SADB_X_EXT_CYCSEQ,
                };
                let proto = self.protocol_spec(&mut st)?;
                self.eot()?;
                Ok(if kw == Kw::Flush {
                    Command::Flush(proto)
                } else {
                    Command::Dump(proto)
                })
            }
            Kw::SpdAdd | Kw::SpdUpdate | Kw::SpdDelete => self.spd(kw),
            Kw::SpdDump => {
                self.eot()?;
                Ok(Command::SpdDump)
            }
            Kw::SpdFlush => {
                self.eot()?;
                Ok(Command::SpdFlush)
            }
            Kw::Exit => {
                self.eot()?;
                Ok(Command::Exit)
            }
            Kw::Tagged => Err(Self::error_on(&t, "syntax error")),
        }
    }

    /// `ipaddropts`: any number of `-4`/`-6`/`-n` groups.
    fn addr_options(&mut self) -> Result<AddrOptions, ParseError> {
        let mut opts = AddrOptions::default();
        while let Tok::AiFlags(flags) = &self.peek()?.tok {
            let flags = flags.clone();
            self.bump()?;
            for c in flags.chars().skip(1) {
                match c {
                    '4' => opts.family = Some(Family::Inet),
                    '6' => opts.family = Some(Family::Inet6),
                    _ => opts.numeric = true,
                }
            }
        }
        Ok(opts)
    }

    fn host(&mut self) -> Result<Host, ParseError> {
        let t = self.bump()?;
        match t.tok {
            Tok::Str(name) => Ok(Host { name, line: t.line }),
            _ => Err(Self::error_on(&t, "syntax error")),
        }
    }

    /// `portstr`: nothing, `[any]`, `[N]` or `[name]`.
    fn port(&mut self) -> Result<Port, ParseError> {
        if self.peek()?.tok != Tok::Blcl {
            return Ok(Port::Any);
        }
        self.bump()?;
        let t = self.bump()?;
        let port = match t.tok {
            Tok::Any => Port::Any,
            Tok::Dec(d) => Port::Number(parse_ulong(&d)),
            Tok::Str(s) => Port::Name(s),
            _ => return Err(Self::error_on(&t, "syntax error")),
        };
        if self.peek()?.tok != Tok::Elcl {
            return Err(self.syntax());
        }
        self.bump()?;
        Ok(port)
    }

    fn endpoint(&mut self) -> Result<Endpoint, ParseError> {
        let host = self.host()?;
        let port = self.port()?;
        Ok(Endpoint { host, port })
    }

    /// `protocol_spec`, updating the flags as setkey does.
    fn protocol_spec(&mut self, st: &mut SaState) -> Result<SaProtocol, ParseError> {
        let Tok::Proto(p) = self.peek()?.tok.clone() else {
            return Ok(SaProtocol::Unspec);
        };
        self.bump()?;
        Ok(match p {
            ProtoKw::Esp | ProtoKw::Ah | ProtoKw::EspOld | ProtoKw::AhOld => {
                if matches!(p, ProtoKw::EspOld | ProtoKw::AhOld) {
                    st.flags |= SADB_X_EXT_OLD;
                } else {
                    st.flags &= !SADB_X_EXT_OLD;
                }
                if matches!(p, ProtoKw::Esp | ProtoKw::EspOld) {
                    SaProtocol::Esp
                } else {
                    SaProtocol::Ah
                }
            }
            ProtoKw::IpComp => SaProtocol::IpComp,
            ProtoKw::Tcp => SaProtocol::Tcp,
            ProtoKw::EspUdp => {
                st.flags &= !SADB_X_EXT_OLD;
                let oa = if matches!(self.peek()?.tok, Tok::Str(_)) {
                    Some(self.host()?)
                } else {
                    None
                };
                SaProtocol::EspUdp(oa)
            }
        })
    }

    fn spi(&mut self) -> Result<u32, ParseError> {
        let t = self.bump()?;
        let value = match &t.tok {
            Tok::Dec(d) => parse_ulong(d),
            Tok::Hex(h) => u64::from_str_radix(h, 16).unwrap_or(u64::MAX),
            _ => return Err(Self::error_on(&t, "syntax error")),
        };
        u32::try_from(value).map_err(|_| Self::error_on(&t, "SPI too big."))
    }

    fn dec(&mut self) -> Result<(u64, Token), ParseError> {
        let t = self.bump()?;
        match &t.tok {
            Tok::Dec(d) => Ok((parse_ulong(d), t)),
            _ => Err(Self::error_on(&t, "syntax error")),
        }
    }

    fn dec_u32(&mut self, what: &str) -> Result<u32, ParseError> {
        let (v, t) = self.dec()?;
        u32::try_from(v).map_err(|_| Self::error_on(&t, &format!("{what} out of range")))
    }

    fn dec_u8(&mut self, what: &str) -> Result<u8, ParseError> {
        let (v, t) = self.dec()?;
        u8::try_from(v).map_err(|_| Self::error_on(&t, &format!("{what} out of range")))
    }

    fn sec_ctx(&mut self) -> Result<SecCtx, ParseError> {
        let doi = self.dec_u8("security context DOI")?;
        let alg = self.dec_u8("security context algorithm")?;
        let t = self.bump()?;
        let Tok::Quoted(context) = t.tok else {
            return Err(Self::error_on(&t, "syntax error"));
        };
        Ok(SecCtx { doi, alg, context })
    }

    fn key(&mut self) -> Result<Key, ParseError> {
        let t = self.bump()?;
        let bytes = match &t.tok {
            Tok::Quoted(b) => b.clone(),
            Tok::Hex(h) => hex_key(h),
            _ => return Err(Self::error_on(&t, "syntax error")),
        };
        Ok(Key {
            bytes,
            text: t.text,
            line: t.line,
        })
    }

    fn sa_command(&mut self, kind: SaKind) -> Result<SaCommand, ParseError> {
        let mut st = SaState {
            flags: SADB_X_EXT_CYCSEQ,
        };
        let opts = self.addr_options()?;
        let src = self.endpoint()?;
        let dst = self.endpoint()?;
        let proto = self.protocol_spec(&mut st)?;
        let spi = self.spi()?;
        let mut cmd = SaCommand {
            opts,
            src,
            dst,
            proto,
            spi,
            flags: 0,
            mode: MODE_ANY,
            mode_given: false,
            reqid: 0,
            replay: 0,
            lifetime_hard: 0,
            lifetime_soft: 0,
            lifebyte_hard: 0,
            lifebyte_soft: 0,
            sec_ctx: None,
            algs: None,
        };
        // extension_spec
        while let Tok::Flag(flag) = self.peek()?.tok.clone() {
            match flag {
                Flag::Ext => {
                    self.bump()?;
                    let t = self.bump()?;
                    match t.tok {
                        Tok::Extension(bit) => st.flags |= bit,
                        Tok::NoCyclicSeq => st.flags &= !SADB_X_EXT_CYCSEQ,
                        _ => return Err(Self::error_on(&t, "syntax error")),
                    }
                }
                Flag::Mode => {
                    self.bump()?;
                    let t = self.bump()?;
                    cmd.mode = match t.tok {
                        Tok::Mode(ModeKw::Transport) => MODE_TRANSPORT,
                        Tok::Mode(ModeKw::Tunnel) => MODE_TUNNEL,
                        Tok::Any => MODE_ANY,
                        _ => return Err(Self::error_on(&t, "syntax error")),
                    };
                    cmd.mode_given = true;
                }
                Flag::Reqid => {
                    self.bump()?;
                    cmd.reqid = self.dec_u32("reqid")?;
                }
                Flag::Replay => {
                    let flag_tok = self.bump()?;
                    if st.flags & SADB_X_EXT_OLD != 0 {
                        return Err(Self::error_on(
                            &flag_tok,
                            "replay prevention cannot be used with ah/esp-old",
                        ));
                    }
                    cmd.replay = self.dec_u32("replay window")?;
                }
                Flag::LifetimeHard => {
                    self.bump()?;
                    cmd.lifetime_hard = self.dec()?.0;
                }
                Flag::LifetimeSoft => {
                    self.bump()?;
                    cmd.lifetime_soft = self.dec()?.0;
                }
                Flag::LifebyteHard => {
                    self.bump()?;
                    cmd.lifebyte_hard = self.dec()?.0;
                }
                Flag::LifebyteSoft => {
                    self.bump()?;
                    cmd.lifebyte_soft = self.dec()?.0;
                }
                Flag::SecCtx => {
                    self.bump()?;
                    cmd.sec_ctx = Some(self.sec_ctx()?);
                }
                Flag::Auth | Flag::Enc | Flag::Comp | Flag::RawCpi => break,
            }
        }
        if kind == SaKind::Add {
            cmd.algs = Some(self.algorithms(&mut st)?);
        }
        let eot_line = self.peek()?.line;
        self.eot()?;
        if matches!(kind, SaKind::Get | SaKind::Delete) && cmd.mode_given && cmd.mode != MODE_ANY {
            self.warn(eot_line, "WARNING: mode is obsolete");
        }
        cmd.flags = st.flags;
        Ok(cmd)
    }

    /// `algorithm_spec`: `-E alg [key] [-A alg [key]]`, `-A alg [key]`, or
    /// `-C alg [-R]`.
    fn algorithms(&mut self, st: &mut SaState) -> Result<Algorithms, ParseError> {
        let mut algs = Algorithms::default();
        let t = self.bump()?;
        match t.tok {
            Tok::Flag(Flag::Enc) => {
                algs.enc = Some(self.enc_alg(st)?);
                if self.peek()?.tok == Tok::Flag(Flag::Auth) {
                    self.bump()?;
                    algs.auth = Some(self.auth_alg()?);
                }
            }
            Tok::Flag(Flag::Auth) => algs.auth = Some(self.auth_alg()?),
            Tok::Flag(Flag::Comp) => {
                let a = self.bump()?;
                let Tok::CompAlg(alg) = a.tok else {
                    return Err(Self::error_on(&a, "syntax error"));
                };
                algs.comp = Some(alg);
                if self.peek()?.tok == Tok::Flag(Flag::RawCpi) {
                    self.bump()?;
                    st.flags |= SADB_X_EXT_RAWCPI;
                }
            }
            _ => return Err(Self::error_on(&t, "syntax error")),
        }
        Ok(algs)
    }

    fn enc_alg(&mut self, st: &mut SaState) -> Result<(EncAlg, Option<Key>), ParseError> {
        let t = self.bump()?;
        let Tok::EncAlg(alg) = t.tok else {
            return Err(Self::error_on(&t, "syntax error"));
        };
        match alg {
            EncAlg::Null => Ok((alg, None)),
            EncAlg::Simple => {
                self.warn(t.line, "WARNING: obsolete algorithm");
                Ok((alg, None))
            }
            EncAlg::DesDeriv => {
                let key = self.key()?;
                if st.flags & SADB_X_EXT_OLD != 0 {
                    return Err(Self::error_on(&t, "algorithm mismatched"));
                }
                st.flags |= SADB_X_EXT_DERIV;
                Ok((alg, Some(key)))
            }
            EncAlg::Des32Iv => {
                let key = self.key()?;
                if st.flags & SADB_X_EXT_OLD == 0 {
                    return Err(Self::error_on(&t, "algorithm mismatched"));
                }
                st.flags |= SADB_X_EXT_IV4B;
                Ok((alg, Some(key)))
            }
            _ => Ok((alg, Some(self.key()?))),
        }
    }

    fn auth_alg(&mut self) -> Result<(crate::ast::AuthAlg, Option<Key>), ParseError> {
        let t = self.bump()?;
        let Tok::AuthAlg(alg) = t.tok else {
            return Err(Self::error_on(&t, "syntax error"));
        };
        if alg == crate::ast::AuthAlg::Null {
            return Ok((alg, None));
        }
        Ok((alg, Some(self.key()?)))
    }

    fn deleteall(&mut self) -> Result<Command, ParseError> {
        let mut st = SaState {
            flags: SADB_X_EXT_CYCSEQ,
        };
        let opts = self.addr_options()?;
        let src = self.host()?;
        let dst = self.host()?;
        let proto = self.protocol_spec(&mut st)?;
        self.eot()?;
        Ok(Command::DeleteAll(DeleteAllCommand {
            opts,
            src,
            dst,
            proto,
            flags: st.flags,
        }))
    }

    fn selector(&mut self) -> Result<Selector, ParseError> {
        let host = self.host()?;
        let prefix = if self.peek()?.tok == Tok::Slash {
            self.bump()?;
            Some(self.dec()?.0)
        } else {
            None
        };
        let port = self.port()?;
        Ok(Selector { host, prefix, port })
    }

    fn policy(&mut self) -> Result<Policy, ParseError> {
        let t = self.bump()?;
        if t.tok != Tok::FPolicy {
            return Err(Self::error_on(&t, "syntax error"));
        }
        let start_line = t.line;
        let pt = self.bump()?;
        let Tok::PolicyText(text) = &pt.tok else {
            return Err(Self::error_on(&pt, "syntax error"));
        };
        parse_policy(text).map_err(|e| ParseError {
            line: start_line.saturating_add(e.line_offset),
            token: e.token,
            message: e.message,
        })
    }

    fn spd(&mut self, kw: Kw) -> Result<Command, ParseError> {
        if kw != Kw::SpdDelete && self.peek()?.tok == Tok::Kw(Kw::Tagged) {
            self.bump()?;
            let t = self.bump()?;
            let Tok::Quoted(tag) = t.tok else {
                return Err(Self::error_on(&t, "syntax error"));
            };
            let policy = self.policy()?;
            self.eot()?;
            let cmd = TaggedCommand { tag, policy };
            return Ok(if kw == Kw::SpdAdd {
                Command::SpdAddTagged(cmd)
            } else {
                Command::SpdUpdateTagged(cmd)
            });
        }
        let opts = self.addr_options()?;
        let mut src = self.selector()?;
        let mut dst = self.selector()?;
        // upper_spec
        let t = self.bump()?;
        let upper = match &t.tok {
            Tok::Dec(d) => UpperProto::Number(
                u8::try_from(parse_ulong(d))
                    .map_err(|_| Self::error_on(&t, "invalid upper layer protocol"))?,
            ),
            Tok::Any => UpperProto::Any,
            Tok::Proto(ProtoKw::Tcp) => UpperProto::Number(6),
            // FreeBSD's setkey also takes `esp` here; ah and ipcomp are
            // accepted likewise (their protocol numbers).
            Tok::Proto(ProtoKw::Esp) => UpperProto::Number(50),
            Tok::Proto(ProtoKw::Ah) => UpperProto::Number(51),
            Tok::Proto(ProtoKw::IpComp) => UpperProto::Number(108),
            Tok::Str(name) => UpperProto::Number(
                protocols::by_name(name)
                    .ok_or_else(|| Self::error_on(&t, "invalid upper layer protocol"))?,
            ),
            _ => return Err(Self::error_on(&t, "syntax error")),
        };
        // upper_misc_spec: ICMP type[,code], GRE key. A bare number (which
        // setkey's grammar refuses) is taken as an ICMP type.
        let misc = match &self.peek()?.tok {
            Tok::Str(s) | Tok::Dec(s) => {
                let s = s.clone();
                Some((s, self.bump()?))
            }
            _ => None,
        };
        let upper_ports = match misc {
            Some((spec, tok)) => Some(
                fix_portstr(upper, &spec)
                    .ok_or_else(|| Self::error_on(&tok, "invalid an upper layer protocol spec"))?,
            ),
            None => None,
        };
        if let Some((sp, dp)) = upper_ports {
            src.port = Port::Number(u64::from(sp));
            dst.port = Port::Number(u64::from(dp));
        }
        // context_spec
        let sec_ctx = if self.peek()?.tok == Tok::Flag(Flag::SecCtx) {
            self.bump()?;
            Some(self.sec_ctx()?)
        } else {
            None
        };
        let policy = self.policy()?;
        self.eot()?;
        let cmd = SpdCommand {
            opts,
            src,
            dst,
            upper,
            upper_ports,
            sec_ctx,
            policy,
        };
        Ok(match kw {
            Kw::SpdAdd => Command::SpdAdd(cmd),
            Kw::SpdUpdate => Command::SpdUpdate(cmd),
            _ => Command::SpdDelete(cmd),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SaKind {
    Add,
    Get,
    Delete,
    GetSpi,
}

/// `strtoul(s, NULL, 10)` for a digit string: saturates at `u64::MAX`
/// (ULONG_MAX on LP64) when out of range.
fn parse_ulong(digits: &str) -> u64 {
    digits.parse::<u64>().unwrap_or(u64::MAX)
}

/// setkey's HEXSTRING key conversion: an odd number of digits puts the
/// first digit alone in the first byte.
fn hex_key(digits: &str) -> Vec<u8> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    };
    let b = digits.as_bytes();
    let mut out = Vec::with_capacity(b.len().div_ceil(2));
    let rest = if b.len() % 2 == 1 {
        out.push(b.first().map_or(0, |&c| nibble(c)));
        b.get(1..).unwrap_or_default()
    } else {
        b
    };
    for pair in rest.chunks(2) {
        let hi = pair.first().map_or(0, |&c| nibble(c));
        let lo = pair.get(1).map_or(0, |&c| nibble(c));
        out.push((hi << 4) | lo);
    }
    out
}

/// setkey's `fix_portstr`: the ICMP/ICMPv6/MH type and code, or the GRE key,
/// carried in the selector's port fields.
fn fix_portstr(upper: UpperProto, spec: &str) -> Option<(u16, u16)> {
    /// sscanf("%d"): an optional sign and leading digits; the rest is left.
    fn leading_int(s: &str) -> Option<(i64, &str)> {
        let t = s.trim_start();
        let (neg, digits) = match t.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let n = digits.bytes().take_while(u8::is_ascii_digit).count();
        let num: i64 = digits.get(..n)?.parse().ok()?;
        Some((
            if neg { -num } else { num },
            digits.get(n..).unwrap_or_default(),
        ))
    }
    let port = |v: i64| u16::try_from(v).ok();
    match upper {
        // ICMP, ICMPv6, Mobility Header: type[,code]
        UpperProto::Number(1 | 58 | 135) => {
            let (a, rest) = leading_int(spec)?;
            let b = rest
                .strip_prefix(',')
                .and_then(leading_int)
                .map_or(0, |(b, _)| b);
            Some((port(a)?, port(b)?))
        }
        // GRE: a.b.c.d or a 32-bit number, split in two 16-bit halves.
        UpperProto::Number(47) => {
            let parts: Vec<&str> = spec.split('.').collect();
            if parts.len() == 4 {
                let mut v = [0i64; 4];
                for (slot, part) in v.iter_mut().zip(&parts) {
                    *slot = leading_int(part)?.0;
                }
                let [a, b, c, d] = v;
                Some((port((a << 8) + b)?, port((c << 8) + d)?))
            } else {
                let (u, _) = leading_int(spec)?;
                let u = u32::try_from(u).ok()?;
                Some((port(i64::from(u >> 16))?, port(i64::from(u & 0xffff))?))
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys() {
        assert_eq!(hex_key("0102"), vec![1, 2]);
        assert_eq!(hex_key("abc"), vec![0x0a, 0xbc]);
    }

    #[test]
    fn portstr_folding() {
        assert_eq!(fix_portstr(UpperProto::Number(1), "8,0"), Some((8, 0)));
        assert_eq!(fix_portstr(UpperProto::Number(58), "135"), Some((135, 0)));
        assert_eq!(
            fix_portstr(UpperProto::Number(47), "1.2.3.4"),
            Some((258, 772))
        );
        assert_eq!(fix_portstr(UpperProto::Number(47), "65537"), Some((1, 1)));
        assert_eq!(fix_portstr(UpperProto::Number(6), "80"), None);
    }
}
