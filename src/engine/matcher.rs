//! PromQL-style series selection: a metric name plus label matchers
//! (`=`, `!=`, `=~`, `!~`).
//!
//! Regular expressions follow Prometheus: they are fully anchored (`a.c` must
//! match the whole label value) and `.` matches any character, newlines
//! included. The crate has no `regex` dependency, so this module carries a small
//! RE2-style engine (Thompson NFA, linear in the input, no backtracking) that
//! supports the syntax label matchers use in practice: literals, `.`, character
//! classes (`[a-z0-9_]`, `[^...]`, `\d \w \s \D \W \S`), groups `( )` and
//! `(?: )`, alternation `|`, repetition `* + ? {n} {n,} {n,m}` (lazy forms are
//! accepted: for a full match they mean the same), and `^`/`$` at the ends.
//! Back-references, look-around and inline flags are rejected with a reason.

use std::fmt;

/// The comparison a [`LabelMatcher`] performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`: the value equals the literal.
    Equal,
    /// `!=`: the value differs from the literal.
    NotEqual,
    /// `=~`: the value matches the (anchored) regular expression.
    Regex,
    /// `!~`: the value does not match the (anchored) regular expression.
    NotRegex,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        })
    }
}

/// One label matcher such as `mode!="idle"`.
///
/// A label that a series does not have counts as the empty string, as in
/// Prometheus (`job=""` selects series without a `job` label).
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    /// Label name.
    pub label: String,
    /// Comparison.
    pub op: MatchOp,
    /// The literal or the regular expression source.
    pub value: String,
    regex: Option<Regex>,
}

impl LabelMatcher {
    /// Builds a matcher; compiles the regular expression for `=~` / `!~`.
    pub fn new(label: &str, op: MatchOp, value: &str) -> Result<Self, String> {
        if !is_label_name(label) {
            return Err(format!("`{label}` is not a valid label name"));
        }
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(Regex::new(value)?),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Self {
            label: label.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Parses `label op "value"` (value quoted with `"`, `'` or a backtick).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let name_end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| format!("`{text}`: expected `label op \"value\"`"))?;
        let label = &t[..name_end];
        let rest = t[name_end..].trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (MatchOp::Regex, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (MatchOp::NotRegex, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (MatchOp::NotEqual, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchOp::Equal, r)
        } else {
            return Err(format!(
                "`{text}`: expected one of the operators =, !=, =~, !~ after the label name"
            ));
        };
        let value = parse_quoted(rest.trim()).map_err(|e| format!("`{text}`: {e}"))?;
        Self::new(label, op, &value)
    }

    /// True when `value` (the series' label value, `""` when absent) passes.
    pub fn matches(&self, value: &str) -> bool {
        match (&self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(r)) => r.is_match(value),
            (MatchOp::NotRegex, Some(r)) => !r.is_match(value),
            // Built by `new`, which always compiles a regex for these ops.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

impl fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.label, self.op, self.value)
    }
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_quoted(s: &str) -> Result<String, String> {
    let mut chars = s.chars();
    let quote = match chars.next() {
        Some(q @ ('"' | '\'' | '`')) => q,
        _ => return Err("the value must be quoted with \", ' or `".to_string()),
    };
    let mut out = String::new();
    loop {
        match chars.next() {
            None => return Err("unterminated quoted value".to_string()),
            Some(c) if c == quote => break,
            Some('\\') if quote != '`' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('\\') => out.push('\\'),
                Some(c) if c == quote => out.push(c),
                // Keep unknown escapes verbatim so regex escapes like `\d` survive.
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => return Err("unterminated escape in quoted value".to_string()),
            },
            Some(c) => out.push(c),
        }
    }
    if chars.as_str().trim().is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "unexpected text after the quoted value: `{}`",
            chars.as_str()
        ))
    }
}

/// A metric name plus label matchers, evaluated against one series.
#[derive(Debug, Clone)]
pub struct Selector {
    /// Metric name (`__name__`) the series must have.
    pub metric: String,
    /// Label matchers, all of which must pass.
    pub matchers: Vec<LabelMatcher>,
}

impl Selector {
    /// Parses the matcher strings; errors name the index of the bad matcher.
    pub fn new(metric: &str, matchers: &[String]) -> Result<Self, (usize, String)> {
        let mut parsed = Vec::with_capacity(matchers.len());
        for (i, m) in matchers.iter().enumerate() {
            parsed.push(LabelMatcher::parse(m).map_err(|e| (i, e))?);
        }
        Ok(Self {
            metric: metric.to_string(),
            matchers: parsed,
        })
    }

    /// True when the series `name` with label lookup `label` is selected.
    pub fn matches<'a>(&self, name: &str, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        name == self.metric
            && self
                .matchers
                .iter()
                .all(|m| m.matches(label(&m.label).unwrap_or("")))
    }
}

// ---------------------------------------------------------------------------
// A small anchored regular-expression engine (Thompson NFA / Pike VM).
// ---------------------------------------------------------------------------

const MAX_PROGRAM: usize = 20_000;
const MAX_REPEAT: u32 = 1_000;

/// A compiled, fully anchored regular expression (see the module docs for
/// the supported syntax).
#[derive(Debug, Clone)]
pub struct Regex {
    prog: Vec<Inst>,
    classes: Vec<Class>,
}

#[derive(Debug, Clone)]
enum Inst {
    Char(char),
    Any,
    Class(usize),
    Split(usize, usize),
    Jmp(usize),
    Match,
}

#[derive(Debug, Clone, PartialEq)]
struct Class {
    ranges: Vec<(char, char)>,
    negated: bool,
}

impl Class {
    fn contains(&self, c: char) -> bool {
        self.ranges.iter().any(|&(a, b)| a <= c && c <= b) != self.negated
    }
}

#[derive(Debug, Clone)]
enum Node {
    Empty,
    Char(char),
    Any,
    Class(Class),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat(Box<Node>, u32, Option<u32>),
}

impl Regex {
    /// Compiles `pattern`; the error explains what is unsupported or malformed.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut p = Parser {
            chars: &chars,
            pos: 0,
        };
        // `^` / `$` at the ends are redundant: matching is always anchored.
        if p.peek() == Some('^') {
            p.pos += 1;
        }
        let node = p.parse_alt()?;
        if p.pos != chars.len() {
            return Err(format!(
                "invalid regular expression `{pattern}`: unexpected `{}` at {}",
                chars[p.pos], p.pos
            ));
        }
        let mut c = Compiler {
            prog: Vec::new(),
            classes: Vec::new(),
        };
        c.emit_node(&node)?;
        c.push(Inst::Match)?;
        Ok(Self {
            prog: c.prog,
            classes: c.classes,
        })
    }

    /// True when the whole of `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        let n = self.prog.len();
        let mut clist = ThreadList::new(n);
        let mut nlist = ThreadList::new(n);
        let mut stack = Vec::new();
        self.add_thread(&mut clist, 0, &mut stack);
        for c in text.chars() {
            if clist.dense.is_empty() {
                return false;
            }
            nlist.clear();
            for i in 0..clist.dense.len() {
                let pc = clist.dense[i];
                let ok = match &self.prog[pc] {
                    Inst::Char(x) => *x == c,
                    Inst::Any => true,
                    Inst::Class(k) => self.classes[*k].contains(c),
                    Inst::Split(..) | Inst::Jmp(_) | Inst::Match => false,
                };
                if ok {
                    self.add_thread(&mut nlist, pc + 1, &mut stack);
                }
            }
            std::mem::swap(&mut clist, &mut nlist);
        }
        clist
            .dense
            .iter()
            .any(|&pc| matches!(self.prog[pc], Inst::Match))
    }

    fn add_thread(&self, list: &mut ThreadList, pc: usize, stack: &mut Vec<usize>) {
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            if pc >= self.prog.len() || !list.insert(pc) {
                continue;
            }
            match self.prog[pc] {
                Inst::Jmp(t) => stack.push(t),
                Inst::Split(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
                _ => {}
            }
        }
    }
}

struct ThreadList {
    sparse: Vec<usize>,
    dense: Vec<usize>,
}

impl ThreadList {
    fn new(n: usize) -> Self {
        Self {
            sparse: vec![0; n],
            dense: Vec::with_capacity(n),
        }
    }
    fn clear(&mut self) {
        self.dense.clear();
    }
    fn insert(&mut self, pc: usize) -> bool {
        let i = self.sparse[pc];
        if i < self.dense.len() && self.dense[i] == pc {
            return false;
        }
        self.sparse[pc] = self.dense.len();
        self.dense.push(pc);
        true
    }
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn err(&self, what: &str) -> String {
        let src: String = self.chars.iter().collect();
        format!(
            "invalid regular expression `{src}`: {what} at position {}",
            self.pos
        )
    }

    fn parse_alt(&mut self) -> Result<Node, String> {
        let mut alts = vec![self.parse_concat()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alts.push(self.parse_concat()?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(Node::Empty)
        } else {
            Node::Alt(alts)
        })
    }

    fn parse_concat(&mut self) -> Result<Node, String> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            if c == '$' {
                // Only allowed at the very end (of the pattern or of a group
                // that ends the pattern); matching is anchored anyway.
                if self.pos + 1 == self.chars.len() {
                    self.pos += 1;
                    break;
                }
                return Err(self.err("`$` is only supported at the end"));
            }
            let atom = self.parse_atom()?;
            let atom = self.parse_repeat(atom)?;
            items.push(atom);
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.pop().unwrap_or(Node::Empty),
            _ => Node::Concat(items),
        })
    }

    fn parse_repeat(&mut self, mut atom: Node) -> Result<Node, String> {
        let mut repeated = false;
        loop {
            if repeated && matches!(self.peek(), Some('*' | '+' | '?' | '{')) {
                // RE2 rejects `a**`, `a+*`, ...; a literal `{` after a repetition is fine.
                if self.peek() != Some('{') {
                    return Err(self.err("repeated repetition operator"));
                }
            }
            let (min, max) = match self.peek() {
                Some('*') => {
                    self.pos += 1;
                    (0, None)
                }
                Some('+') => {
                    self.pos += 1;
                    (1, None)
                }
                Some('?') => {
                    self.pos += 1;
                    (0, Some(1))
                }
                Some('{') => match self.parse_counts()? {
                    Some(mm) => mm,
                    None => return Ok(atom),
                },
                _ => return Ok(atom),
            };
            // Lazy forms (`*?`, `+?`, ...) match the same strings when anchored.
            if self.peek() == Some('?') {
                self.pos += 1;
            }
            atom = Node::Repeat(Box::new(atom), min, max);
            repeated = true;
        }
    }

    /// Parses `{n}`, `{n,}` or `{n,m}`; `None` when `{` is a literal.
    fn parse_counts(&mut self) -> Result<Option<(u32, Option<u32>)>, String> {
        let start = self.pos;
        let rest: String = self.chars[self.pos..].iter().collect();
        let Some(close) = rest.find('}') else {
            return Ok(None);
        };
        let inner = &rest[1..close];
        let parse = |s: &str| s.trim().parse::<u32>().ok();
        let (min, max) = if let Some((a, b)) = inner.split_once(',') {
            let Some(a) = parse(a) else { return Ok(None) };
            if b.trim().is_empty() {
                (a, None)
            } else {
                let Some(b) = parse(b) else { return Ok(None) };
                (a, Some(b))
            }
        } else {
            let Some(a) = parse(inner) else {
                return Ok(None);
            };
            (a, Some(a))
        };
        self.pos = start + inner.chars().count() + 2;
        if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT) {
            return Err(self.err("repetition count above 1000"));
        }
        if max.is_some_and(|m| m < min) {
            return Err(self.err("repetition range with max < min"));
        }
        Ok(Some((min, max)))
    }

    fn parse_atom(&mut self) -> Result<Node, String> {
        let Some(c) = self.peek() else {
            return Err(self.err("unexpected end"));
        };
        self.pos += 1;
        match c {
            '.' => Ok(Node::Any),
            '(' => {
                if self.peek() == Some('?') {
                    if self.chars.get(self.pos + 1) == Some(&':') {
                        self.pos += 2;
                    } else {
                        return Err(self.err("inline flags and look-around are not supported"));
                    }
                }
                let inner = self.parse_alt()?;
                if self.peek() != Some(')') {
                    return Err(self.err("missing `)`"));
                }
                self.pos += 1;
                Ok(inner)
            }
            ')' => Err(self.err("unbalanced `)`")),
            '[' => self.parse_class(),
            '*' | '+' | '?' => Err(self.err("repetition operator without operand")),
            '^' => Err(self.err("`^` is only supported at the start")),
            '\\' => self.parse_escape(false).map(|e| match e {
                Escaped::Char(c) => Node::Char(c),
                Escaped::Class(cl) => Node::Class(cl),
            }),
            c => Ok(Node::Char(c)),
        }
    }

    fn parse_escape(&mut self, in_class: bool) -> Result<Escaped, String> {
        let Some(c) = self.peek() else {
            return Err(self.err("trailing backslash"));
        };
        self.pos += 1;
        let digits = vec![('0', '9')];
        let word = vec![('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
        let space = vec![
            ('\t', '\t'),
            ('\n', '\n'),
            ('\u{b}', '\u{c}'),
            ('\r', '\r'),
            (' ', ' '),
        ];
        let class = |ranges, negated| Ok(Escaped::Class(Class { ranges, negated }));
        match c {
            'd' => class(digits, false),
            'D' => class(digits, true),
            'w' => class(word, false),
            'W' => class(word, true),
            's' => class(space, false),
            'S' => class(space, true),
            'n' => Ok(Escaped::Char('\n')),
            't' => Ok(Escaped::Char('\t')),
            'r' => Ok(Escaped::Char('\r')),
            'f' => Ok(Escaped::Char('\u{c}')),
            'v' => Ok(Escaped::Char('\u{b}')),
            c if c.is_ascii_alphanumeric() => {
                let _ = in_class;
                Err(self.err(&format!("unsupported escape `\\{c}`")))
            }
            c => Ok(Escaped::Char(c)),
        }
    }

    fn parse_class(&mut self) -> Result<Node, String> {
        let mut negated = false;
        if self.peek() == Some('^') {
            negated = true;
            self.pos += 1;
        }
        let mut ranges: Vec<(char, char)> = Vec::new();
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("missing `]`"));
            };
            if c == ']' && !first {
                self.pos += 1;
                break;
            }
            first = false;
            self.pos += 1;
            let lo = if c == '\\' {
                match self.parse_escape(true)? {
                    Escaped::Char(c) => c,
                    Escaped::Class(cl) => {
                        if cl.negated {
                            return Err(self.err("negated escape inside a class"));
                        }
                        ranges.extend(cl.ranges);
                        continue;
                    }
                }
            } else if c == '[' && self.peek() == Some(':') {
                return Err(self.err("POSIX classes like [:alpha:] are not supported"));
            } else {
                c
            };
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&n| n != ']') {
                self.pos += 1;
                let Some(h) = self.peek() else {
                    return Err(self.err("missing `]`"));
                };
                self.pos += 1;
                let hi = if h == '\\' {
                    match self.parse_escape(true)? {
                        Escaped::Char(c) => c,
                        Escaped::Class(_) => return Err(self.err("class escape as range end")),
                    }
                } else {
                    h
                };
                if hi < lo {
                    return Err(self.err("character range out of order"));
                }
                ranges.push((lo, hi));
            } else {
                ranges.push((lo, lo));
            }
        }
        Ok(Node::Class(Class { ranges, negated }))
    }
}

enum Escaped {
    Char(char),
    Class(Class),
}

struct Compiler {
    prog: Vec<Inst>,
    classes: Vec<Class>,
}

impl Compiler {
    fn push(&mut self, inst: Inst) -> Result<usize, String> {
        if self.prog.len() >= MAX_PROGRAM {
            return Err("regular expression too large".to_string());
        }
        self.prog.push(inst);
        Ok(self.prog.len() - 1)
    }

    fn emit_node(&mut self, node: &Node) -> Result<(), String> {
        match node {
            Node::Empty => {}
            Node::Char(c) => {
                self.push(Inst::Char(*c))?;
            }
            Node::Any => {
                self.push(Inst::Any)?;
            }
            Node::Class(cl) => {
                let k = match self.classes.iter().position(|x| x == cl) {
                    Some(k) => k,
                    None => {
                        self.classes.push(cl.clone());
                        self.classes.len() - 1
                    }
                };
                self.push(Inst::Class(k))?;
            }
            Node::Concat(items) => {
                for n in items {
                    self.emit_node(n)?;
                }
            }
            Node::Alt(alts) => {
                let mut jumps = Vec::new();
                for (i, alt) in alts.iter().enumerate() {
                    if i + 1 < alts.len() {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.emit_node(alt)?;
                        jumps.push(self.push(Inst::Jmp(0))?);
                        let next = self.prog.len();
                        self.prog[split] = Inst::Split(split + 1, next);
                    } else {
                        self.emit_node(alt)?;
                    }
                }
                let end = self.prog.len();
                for j in jumps {
                    self.prog[j] = Inst::Jmp(end);
                }
            }
            Node::Repeat(inner, min, max) => {
                for _ in 0..*min {
                    self.emit_node(inner)?;
                }
                match max {
                    None => {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.emit_node(inner)?;
                        self.push(Inst::Jmp(split))?;
                        let end = self.prog.len();
                        self.prog[split] = Inst::Split(split + 1, end);
                    }
                    Some(max) => {
                        let mut splits = Vec::new();
                        for _ in *min..*max {
                            splits.push(self.push(Inst::Split(0, 0))?);
                            self.emit_node(inner)?;
                        }
                        let end = self.prog.len();
                        for s in splits {
                            self.prog[s] = Inst::Split(s + 1, end);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &str) -> Regex {
        match Regex::new(p) {
            Ok(r) => r,
            Err(e) => panic!("{p}: {e}"),
        }
    }

    #[test]
    fn regex_is_anchored_and_supports_common_syntax() {
        assert!(re("idle").is_match("idle"));
        assert!(!re("idle").is_match("idler"));
        assert!(!re("dle").is_match("idle"));
        assert!(re("5..").is_match("503"));
        assert!(!re("5..").is_match("5030"));
        assert!(re("user|system|iowait").is_match("system"));
        assert!(!re("user|system").is_match("idle"));
        assert!(re("(?:sda|nvme[0-9]+n1)p?[0-9]*").is_match("nvme0n1p2"));
        assert!(re("[^i].*").is_match("user"));
        assert!(!re("[^i].*").is_match("idle"));
        assert!(re(r"\d{2,3}").is_match("123"));
        assert!(!re(r"\d{2,3}").is_match("1234"));
        assert!(re(r"a\.b").is_match("a.b"));
        assert!(!re(r"a\.b").is_match("axb"));
        assert!(re("^.*$").is_match("any\nthing"));
        assert!(re("").is_match(""));
        assert!(!re("").is_match("x"));
        assert!(re("x*").is_match(""));
        assert!(re("(a*)*b").is_match("aaab"));
        assert!(re(r"[\w-]+").is_match("kube-system_1"));
        assert!(re("a{2}").is_match("aa"));
        assert!(re("x{").is_match("x{"));
        // Pathological for backtracking engines, linear here.
        let long = "a".repeat(5_000);
        assert!(!re("(a+)+b").is_match(&long));
    }

    #[test]
    fn regex_errors_are_reported() {
        for bad in [
            "(", "a)", "[a", "*a", "a**", r"\1", "(?i)a", "a{5,2}", "[z-a]", "a^",
        ] {
            assert!(Regex::new(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn matcher_parsing_and_semantics() {
        let m = LabelMatcher::parse(r#"mode!="idle""#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.op, MatchOp::NotEqual);
        assert!(m.matches("user"));
        assert!(!m.matches("idle"));
        let m = LabelMatcher::parse("code =~ '5..'").unwrap_or_else(|e| panic!("{e}"));
        assert!(m.matches("500") && !m.matches("200"));
        let m = LabelMatcher::parse(r#"job!~"node|prom""#).unwrap_or_else(|e| panic!("{e}"));
        assert!(m.matches("") && !m.matches("node"));
        let m = LabelMatcher::parse(r#"path=~`/api/\d+`"#).unwrap_or_else(|e| panic!("{e}"));
        assert!(m.matches("/api/42"));
        let m = LabelMatcher::parse(r#"x="a\"b""#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.value, "a\"b");
        for bad in [
            "mode",
            "mode==idle",
            "mode=idle",
            r#"9x="a""#,
            r#"m="a" b"#,
            r#"m=~"(""#,
        ] {
            assert!(
                LabelMatcher::parse(bad).is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn selector_treats_missing_labels_as_empty() {
        let sel = Selector::new(
            "node_cpu_seconds_total",
            &[r#"mode="idle""#.to_string(), r#"job="""#.to_string()],
        )
        .unwrap_or_else(|(i, e)| panic!("{i}: {e}"));
        let labels = [("mode", "idle")];
        let get = |k: &str| labels.iter().find(|(a, _)| *a == k).map(|(_, v)| *v);
        assert!(sel.matches("node_cpu_seconds_total", get));
        assert!(!sel.matches("node_cpu_guest_seconds_total", get));
        let bad = Selector::new("m", &["a=\"1\"".to_string(), "oops".to_string()]);
        assert_eq!(bad.err().map(|(i, _)| i), Some(1));
    }
}
