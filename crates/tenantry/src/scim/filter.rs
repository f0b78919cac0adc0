//! SCIM 2.0 filters (RFC 7644 §3.4.2.2) and PATCH paths (RFC 7644 §3.5.2):
//! parsing into an AST and evaluation against a resource held as `serde_json::Value`.

use serde_json::{Map, Value};
use std::cmp::Ordering;

/// The longest filter or path accepted, in bytes.
pub const MAX_INPUT_LEN: usize = 8192;
/// The deepest nesting of parentheses, `not(...)` and value filters accepted.
pub const MAX_DEPTH: usize = 32;
/// Attributes whose path starts with this URN prefix live at the top level of a resource.
pub const CORE_SCHEMA_PREFIX: &str = "urn:ietf:params:scim:schemas:core:";

/// A filter or path that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct FilterError {
    /// Byte offset in the input where the problem was found.
    pub position: usize,
    /// What was expected and what was found instead.
    pub message: String,
    in_path: bool,
}

impl FilterError {
    /// The SCIM `scimType` for this error: `invalidFilter` for filters, `invalidPath` for PATCH paths.
    #[must_use]
    pub fn scim_type(&self) -> &'static str {
        if self.in_path {
            "invalidPath"
        } else {
            "invalidFilter"
        }
    }
}

/// A comparison operator of an attribute expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// Equal.
    Eq,
    /// Not equal; true when no value of the attribute is equal, so also when it is absent.
    Ne,
    /// Contains (strings only).
    Co,
    /// Starts with (strings only).
    Sw,
    /// Ends with (strings only).
    Ew,
    /// Greater than (strings lexicographically, numbers numerically).
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
}

/// An attribute path such as `userName`, `name.givenName` or
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN written before the attribute name, without the final colon.
    pub urn: Option<String>,
    /// The attribute name, as written.
    pub attr: String,
    /// The sub-attribute name after a dot, as written.
    pub sub: Option<String>,
}

/// A parsed SCIM filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `path op value`.
    Compare {
        /// The attribute compared.
        path: AttrPath,
        /// The operator.
        op: CompareOp,
        /// The literal compared with: a string, number, boolean or null.
        value: Value,
    },
    /// `path pr`: the attribute has a non-null, non-empty value.
    Present(AttrPath),
    /// All of the filters match (two or more).
    And(Vec<Filter>),
    /// Any of the filters matches (two or more).
    Or(Vec<Filter>),
    /// `not (filter)`.
    Not(Box<Filter>),
    /// `attr[filter]`: some element of `attr` matches `filter`, whose paths name sub-attributes.
    /// `attr[f].sub op value` is parsed as `attr[f and sub op value]`.
    ValuePath {
        /// The multi-valued (or complex) attribute; `sub` is always `None`.
        path: AttrPath,
        /// The filter applied to each element.
        filter: Box<Filter>,
    },
}

/// A PATCH operation path: `attr`, `attr.sub`, `attr[filter]` or `attr[filter].sub`,
/// optionally prefixed by a schema URN.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// The schema URN written before the attribute name, without the final colon.
    pub urn: Option<String>,
    /// The attribute name, as written.
    pub attr: String,
    /// The value filter selecting elements of a multi-valued attribute.
    pub filter: Option<Filter>,
    /// The sub-attribute, written after a dot (after the filter if there is one).
    pub sub: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBrack,
    RBrack,
    Word(String),
    Str(String),
    Num(Value),
}

fn lex(input: &str, in_path: bool) -> Result<Vec<(usize, Tok)>, FilterError> {
    let err = |position, message: String| FilterError {
        position,
        message,
        in_path,
    };
    if input.len() > MAX_INPUT_LEN {
        return Err(err(
            0,
            format!("input is longer than {MAX_INPUT_LEN} bytes"),
        ));
    }
    let b = input.as_bytes();
    let (mut toks, mut i) = (Vec::new(), 0);
    while i < b.len() {
        let start = i;
        let tok = match b[i] {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBrack,
            b']' => Tok::RBrack,
            b'"' => {
                let mut j = i + 1;
                loop {
                    match b.get(j) {
                        None => return Err(err(start, "unterminated string".into())),
                        Some(b'\\') => j += 2,
                        Some(b'"') => break,
                        Some(_) => j += 1,
                    }
                }
                let s = serde_json::from_str(&input[i..=j])
                    .map_err(|e| err(start, format!("invalid string literal ({e})")))?;
                i = j;
                Tok::Str(s)
            }
            c if c == b'-' || c.is_ascii_digit() => {
                let n = b[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit() || b".eE+-".contains(*c))
                    .count();
                let num = serde_json::from_str::<Value>(&input[i..i + n])
                    .ok()
                    .filter(Value::is_number)
                    .ok_or_else(|| err(start, format!("invalid number '{}'", &input[i..i + n])))?;
                i += n - 1;
                Tok::Num(num)
            }
            c if c.is_ascii_alphabetic() || c == b'$' || c == b'.' => {
                let n = b[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || b"_-.:$".contains(*c))
                    .count();
                i += n - 1;
                Tok::Word(input[start..start + n].to_string())
            }
            _ => {
                let c = input[i..].chars().next().unwrap_or('?');
                return Err(err(start, format!("unexpected character '{c}'")));
            }
        };
        toks.push((start, tok));
        i += 1;
    }
    Ok(toks)
}

fn valid_name(n: &str) -> bool {
    n == "$ref"
        || (n.starts_with(|c: char| c.is_ascii_alphabetic())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
}

fn split_path(word: &str) -> Result<AttrPath, String> {
    let (urn, rest) = match word.rsplit_once(':') {
        Some((u, r)) if starts_with_ci(u, "urn:") => (Some(u.to_string()), r),
        Some((u, _)) => return Err(format!("'{u}' is not a schema URN")),
        None => (None, word),
    };
    let mut parts = rest.split('.');
    let attr = parts.next().unwrap_or_default();
    let sub = parts.next();
    if parts.next().is_some() {
        return Err(format!("'{word}' has more than one sub-attribute"));
    }
    if let Some(bad) = std::iter::once(attr).chain(sub).find(|n| !valid_name(n)) {
        return Err(format!(
            "expected an attribute name, found '{bad}' in '{word}'"
        ));
    }
    Ok(AttrPath {
        urn,
        attr: attr.to_string(),
        sub: sub.map(str::to_string),
    })
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    depth: usize,
    end: usize,
    in_path: bool,
}

impl Parser {
    fn new(input: &str, in_path: bool) -> Result<Self, FilterError> {
        Ok(Parser {
            toks: lex(input, in_path)?,
            pos: 0,
            depth: 0,
            end: input.len(),
            in_path,
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }

    fn err<T>(&self, message: String) -> Result<T, FilterError> {
        let position = self.toks.get(self.pos).map_or(self.end, |t| t.0);
        Err(FilterError {
            position,
            message,
            in_path: self.in_path,
        })
    }

    fn expected<T>(&self, what: &str) -> Result<T, FilterError> {
        let found = match self.peek() {
            None => "end of input".to_string(),
            Some(Tok::LParen) => "'('".into(),
            Some(Tok::RParen) => "')'".into(),
            Some(Tok::LBrack) => "'['".into(),
            Some(Tok::RBrack) => "']'".into(),
            Some(Tok::Word(w)) => format!("'{w}'"),
            Some(Tok::Str(s)) => format!("string {s:?}"),
            Some(Tok::Num(n)) => format!("number {n}"),
        };
        self.err(format!("expected {what}, found {found}"))
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    /// Parses `open inner close` where `inner` is an or-expression, guarding the depth.
    fn nested(&mut self, inner: bool, close: &Tok, what: &str) -> Result<Filter, FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(format!(
                "filter is nested more than {MAX_DEPTH} levels deep"
            ));
        }
        let f = self.or_expr(inner)?;
        if self.peek() != Some(close) {
            return self.expected(what);
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(f)
    }

    fn or_expr(&mut self, inner: bool) -> Result<Filter, FilterError> {
        let first = self.and_expr(inner)?;
        if !self.keyword("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.keyword("or") {
            self.pos += 1;
            items.push(self.and_expr(inner)?);
        }
        Ok(Filter::Or(items))
    }

    fn and_expr(&mut self, inner: bool) -> Result<Filter, FilterError> {
        let first = self.unary(inner)?;
        if !self.keyword("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.keyword("and") {
            self.pos += 1;
            items.push(self.unary(inner)?);
        }
        Ok(Filter::And(items))
    }

    fn unary(&mut self, inner: bool) -> Result<Filter, FilterError> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            return self.nested(inner, &Tok::RParen, "')'");
        }
        if self.keyword("not") && matches!(self.toks.get(self.pos + 1), Some((_, Tok::LParen))) {
            self.pos += 2;
            let inside = self.nested(inner, &Tok::RParen, "')'")?;
            return Ok(Filter::Not(Box::new(inside)));
        }
        let path = self.attr_path(inner)?;
        if self.peek() != Some(&Tok::LBrack) {
            return self.comparison(path);
        }
        if inner {
            return self.err("value filters cannot be nested".into());
        }
        if path.sub.is_some() {
            return self.err(
                "a value filter must follow an attribute name without a sub-attribute".into(),
            );
        }
        self.pos += 1;
        let mut filter = self.nested(true, &Tok::RBrack, "']'")?;
        if let Some(sub) = self.sub_attr()? {
            let rest = self.comparison(AttrPath {
                urn: None,
                attr: sub,
                sub: None,
            })?;
            filter = Filter::And(vec![filter, rest]);
        }
        Ok(Filter::ValuePath {
            path,
            filter: Box::new(filter),
        })
    }

    /// Parses an optional `.sub` written right after `]`.
    fn sub_attr(&mut self) -> Result<Option<String>, FilterError> {
        let Some(Tok::Word(w)) = self.peek() else {
            return Ok(None);
        };
        let Some(sub) = w.strip_prefix('.') else {
            return Ok(None);
        };
        if !valid_name(sub) {
            return self.expected("a sub-attribute name after ']'");
        }
        let sub = sub.to_string();
        self.pos += 1;
        Ok(Some(sub))
    }

    fn attr_path(&mut self, inner: bool) -> Result<AttrPath, FilterError> {
        let word = match self.peek() {
            Some(Tok::Word(w)) if !w.starts_with('.') => w.clone(),
            _ => return self.expected("an attribute name"),
        };
        let path = split_path(&word).or_else(|m| self.err(m))?;
        if inner && path.urn.is_some() {
            return self.err("schema URNs are not allowed inside a value filter".into());
        }
        self.pos += 1;
        Ok(path)
    }

    fn comparison(&mut self, path: AttrPath) -> Result<Filter, FilterError> {
        const OPS: &str = "an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)";
        let Some(Tok::Word(w)) = self.peek() else {
            return self.expected(OPS);
        };
        let op = match w.to_ascii_lowercase().as_str() {
            "pr" => {
                self.pos += 1;
                return Ok(Filter::Present(path));
            }
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return self.expected(OPS),
        };
        self.pos += 1;
        let value = match self.peek() {
            Some(Tok::Str(s)) => Value::String(s.clone()),
            Some(Tok::Num(n)) => n.clone(),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
            _ => return self.expected("a value (string, number, true, false or null)"),
        };
        self.pos += 1;
        Ok(Filter::Compare { path, op, value })
    }

    fn finish(&self, what: &str) -> Result<(), FilterError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.expected(what),
        }
    }
}

/// Parses a SCIM filter such as `userName eq "bjensen" and emails[type eq "work"]`.
/// Keywords and operators are case-insensitive; `not` binds tighter than `and`, which binds tighter than `or`.
///
/// # Errors
/// Returns a [`FilterError`] (`invalidFilter`) giving the position and what was expected when the
/// input is not a valid filter, is longer than [`MAX_INPUT_LEN`] or nests deeper than [`MAX_DEPTH`].
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    let mut p = Parser::new(input, false)?;
    let f = p.or_expr(false)?;
    p.finish("'and', 'or' or end of filter")?;
    Ok(f)
}

/// Parses a PATCH path such as `members[value eq "2819c223"]` or `emails[type eq "work"].value`.
///
/// # Errors
/// Returns a [`FilterError`] (`invalidPath`) when the input is not a valid path.
pub fn parse_path(input: &str) -> Result<Path, FilterError> {
    let mut p = Parser::new(input, true)?;
    let base = p.attr_path(false)?;
    let mut path = Path {
        urn: base.urn,
        attr: base.attr,
        filter: None,
        sub: base.sub,
    };
    if p.peek() == Some(&Tok::LBrack) {
        if path.sub.is_some() {
            return p.err(
                "a value filter must follow an attribute name without a sub-attribute".into(),
            );
        }
        p.pos += 1;
        path.filter = Some(p.nested(true, &Tok::RBrack, "']'")?);
        path.sub = p.sub_attr()?;
    }
    p.finish("end of path")?;
    Ok(path)
}

pub(crate) fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// Looks up `key` in an object, ignoring ASCII case.
pub(crate) fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// Returns the key of `map` equal to `key` ignoring ASCII case, with its stored casing.
pub(crate) fn key_ci(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned()
}

/// Whether attributes under `urn` live in an object keyed by the URN (an extension)
/// rather than at the top level: true when the resource has such a key or the URN is not a core schema.
pub(crate) fn is_extension(resource: &Value, urn: &str) -> bool {
    get_ci(resource, urn).is_some() || !starts_with_ci(urn, CORE_SCHEMA_PREFIX)
}

/// The elements of a multi-valued attribute, or the value itself when it is not an array.
pub(crate) fn elements(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        other => std::slice::from_ref(other),
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(present),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare_one(a: &Value, op: CompareOp, b: &Value, exact: bool) -> bool {
    use CompareOp::*;
    let ord = match (a, b) {
        (Value::String(x), Value::String(y)) => {
            let (x, y) = if exact {
                (x.clone(), y.clone())
            } else {
                (x.to_lowercase(), y.to_lowercase())
            };
            match op {
                Co => return x.contains(&y),
                Sw => return x.starts_with(&y),
                Ew => return x.ends_with(&y),
                _ => Some(x.cmp(&y)),
            }
        }
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x
                .as_f64()
                .zip(y.as_f64())
                .and_then(|(x, y)| x.partial_cmp(&y)),
        },
        (Value::Bool(x), Value::Bool(y)) => return matches!(op, Eq | Ne) && x == y,
        _ => None,
    };
    matches!(
        (op, ord),
        (Eq | Ne | Ge | Le, Some(Ordering::Equal))
            | (Gt | Ge, Some(Ordering::Greater))
            | (Lt | Le, Some(Ordering::Less))
    )
}

impl Filter {
    /// Evaluates the filter against a SCIM resource.
    ///
    /// Attribute names match ignoring case. `case_exact` receives the lowercase dotted path
    /// of the attribute compared, without URN (e.g. `username`, `emails.value`, `id`) and says
    /// whether its strings compare case-exactly; otherwise they compare ignoring case.
    /// A multi-valued attribute matches when any element matches.
    #[must_use]
    pub fn matches(&self, resource: &Value, case_exact: &dyn Fn(&str) -> bool) -> bool {
        self.eval(resource, None, case_exact)
    }

    /// Evaluates the inner filter of `parent[...]` against one element of the attribute `parent`.
    #[must_use]
    pub fn matches_element(
        &self,
        element: &Value,
        parent: &str,
        case_exact: &dyn Fn(&str) -> bool,
    ) -> bool {
        self.eval(element, Some(&parent.to_ascii_lowercase()), case_exact)
    }

    fn eval(&self, ctx: &Value, prefix: Option<&str>, ce: &dyn Fn(&str) -> bool) -> bool {
        let lookup = |p: &AttrPath| {
            let base = match p.urn.as_deref() {
                Some(u) if is_extension(ctx, u) => get_ci(ctx, u)?,
                _ => ctx,
            };
            get_ci(base, &p.attr)
        };
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.eval(ctx, prefix, ce)),
            Filter::Or(fs) => fs.iter().any(|f| f.eval(ctx, prefix, ce)),
            Filter::Not(f) => !f.eval(ctx, prefix, ce),
            Filter::Present(p) => match (lookup(p), &p.sub) {
                (Some(v), None) => present(v),
                (Some(v), Some(sub)) => elements(v)
                    .iter()
                    .filter_map(|e| get_ci(e, sub))
                    .any(present),
                (None, _) => false,
            },
            Filter::ValuePath { path, filter } => {
                let name = path.attr.to_ascii_lowercase();
                lookup(path).is_some_and(|v| {
                    elements(v)
                        .iter()
                        .any(|e| e.is_object() && filter.eval(e, Some(&name), ce))
                })
            }
            Filter::Compare { path, op, value } => {
                let mut name = match prefix {
                    Some(pre) => format!("{pre}.{}", path.attr),
                    None => path.attr.clone(),
                };
                let mut cands: Vec<&Value> = Vec::new();
                if let Some(top) = lookup(path) {
                    let sub = match &path.sub {
                        Some(s) => Some(s.as_str()),
                        None if elements(top).iter().any(Value::is_object) => Some("value"),
                        None => None,
                    };
                    match sub {
                        Some(s) => {
                            name = format!("{name}.{s}");
                            let subs = elements(top).iter().filter_map(|e| get_ci(e, s));
                            cands.extend(subs.flat_map(elements));
                        }
                        None => cands.extend(elements(top)),
                    }
                }
                cands.retain(|v| !v.is_null());
                if value.is_null() {
                    return match op {
                        CompareOp::Eq => cands.is_empty(),
                        CompareOp::Ne => !cands.is_empty(),
                        _ => false,
                    };
                }
                let exact = ce(&name.to_ascii_lowercase());
                let any = |op| cands.iter().any(|c| compare_one(c, op, value, exact));
                match op {
                    CompareOp::Ne => !any(CompareOp::Eq),
                    op => any(*op),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::RefCell;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn ce(p: &str) -> bool {
        matches!(p, "id" | "externalid" | "members.value")
    }

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
            "id": "2819c223", "externalId": "Ext-1", "userName": "Bjensen", "active": true,
            "title": "Tour Guide", "nickName": null, "loginCount": 5, "phoneNumbers": [],
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                       {"value": "babs@jensen.org", "type": "home"}],
            "meta": {"lastModified": "2011-05-13T04:42:34Z", "resourceType": "User"},
            ENT: {"employeeNumber": "701984", "manager": {"value": "26118915"}}
        })
    }

    fn m(filter: &str) -> bool {
        parse(filter)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
            .matches(&user(), &ce)
    }

    fn ap(attr: &str) -> AttrPath {
        AttrPath {
            urn: None,
            attr: attr.into(),
            sub: None,
        }
    }

    fn pr(attr: &str) -> Filter {
        Filter::Present(ap(attr))
    }

    #[test]
    fn each_operator() {
        for (f, want) in [
            (r#"userName eq "bjensen""#, true),
            (r#"userName ne "bjensen""#, false),
            (r#"userName ne "other""#, true),
            (r#"title co "our g""#, true),
            (r#"title co "xyz""#, false),
            (r#"title sw "tour""#, true),
            (r#"title ew "GUIDE""#, true),
            (r#"title ew "tour""#, false),
            (r#"meta.lastModified gt "2011-05-13T04:42:33Z""#, true),
            (r#"meta.lastModified gt "2011-05-13T04:42:34Z""#, false),
            (r#"meta.lastModified ge "2011-05-13T04:42:34Z""#, true),
            (r#"meta.lastModified lt "2012-01-01T00:00:00Z""#, true),
            (r#"meta.lastModified le "2011-01-01T00:00:00Z""#, false),
            ("loginCount eq 5", true),
            ("loginCount eq 5.0", true),
            ("loginCount gt 4.5", true),
            ("loginCount ge 5", true),
            ("loginCount lt 5", false),
            ("loginCount le 5", true),
            ("loginCount gt -1e3", true),
            ("loginCount co 5", false),
            (r#"loginCount eq "5""#, false),
            ("active eq true", true),
            ("active ne true", false),
            ("active ne false", true),
            ("active gt false", false),
            ("active eq True", true),
            ("title pr", true),
            ("nickName pr", false),
            ("phoneNumbers pr", false),
            ("missing pr", false),
            ("emails pr", true),
            ("emails.type pr", true),
            ("name.middleName pr", false),
        ] {
            assert_eq!(m(f), want, "{f}");
        }
    }

    #[test]
    fn null_and_absent() {
        assert!(m("nickName eq null"));
        assert!(m("missing eq null"));
        assert!(!m("title eq null"));
        assert!(m("title ne null"));
        assert!(!m("missing ne null"));
        assert!(m(r#"missing ne "x""#));
        assert!(!m(r#"missing eq "x""#));
        assert!(!m("missing gt 1"));
    }

    #[test]
    fn precedence_and_grouping() {
        let f = parse("a pr or b pr and c pr").unwrap();
        assert_eq!(
            f,
            Filter::Or(vec![pr("a"), Filter::And(vec![pr("b"), pr("c")])])
        );
        let f = parse("not (a pr) and b pr or c pr and d pr").unwrap();
        let not_a = Filter::Not(Box::new(pr("a")));
        assert_eq!(
            f,
            Filter::Or(vec![
                Filter::And(vec![not_a, pr("b")]),
                Filter::And(vec![pr("c"), pr("d")])
            ])
        );
        let f = parse("(a pr or b pr) and c pr").unwrap();
        assert_eq!(
            f,
            Filter::And(vec![Filter::Or(vec![pr("a"), pr("b")]), pr("c")])
        );
        assert!(m(
            r#"userName eq "bjensen" or title eq "x" and active eq false"#
        ));
        assert!(!m(
            r#"(userName eq "bjensen" or title eq "x") and active eq false"#
        ));
        assert!(m(r#"((userName eq "bjensen"))"#));
        assert!(m(r#"not (active eq false)"#));
        assert!(!m(r#"NOT(userName eq "bjensen")"#));
        assert!(m(r#"not(not(userName eq "bjensen"))"#));
        assert!(m(
            r#"title pr AND userName Eq "BJENSEN" Or loginCount lt 0"#
        ));
    }

    #[test]
    fn value_filters_and_multi_valued() {
        assert!(m(r#"emails[type eq "work" and primary eq true]"#));
        assert!(!m(r#"emails[type eq "home" and primary eq true]"#));
        assert!(m(
            r#"emails[type eq "work" and primary eq true].value eq "bjensen@example.com""#
        ));
        assert!(!m(r#"emails[type eq "home"].value co "example""#));
        assert!(m(r#"emails[type eq "home"].value pr"#));
        assert!(m(r#"emails[not(type eq "work")]"#));
        assert!(m(r#"name[givenName sw "barb"]"#));
        assert!(m(r#"emails.value eq "babs@jensen.org""#));
        assert!(m(r#"emails eq "BABS@jensen.org""#));
        assert!(m(r#"emails.value ew ".org""#));
        assert!(!m(r#"emails.type eq "other""#));
        assert!(
            !m(r#"emails.type ne "work""#),
            "ne means no element is equal"
        );
        let f = parse(r#"emails[type eq "work"].value eq "x""#).unwrap();
        let Filter::ValuePath { path, filter } = f else {
            panic!()
        };
        assert_eq!(path, ap("emails"));
        assert!(matches!(*filter, Filter::And(ref v) if v.len() == 2));
        let group = json!({"displayName": "G", "members": [{"value": "abc"}, {"value": "def"}]});
        assert!(parse(r#"members[value eq "abc"]"#)
            .unwrap()
            .matches(&group, &ce));
        assert!(!parse(r#"members[value eq "ABC"]"#)
            .unwrap()
            .matches(&group, &ce));
        assert!(!parse(r#"members[value eq "xyz"]"#)
            .unwrap()
            .matches(&group, &ce));
        assert!(parse(r#"members eq "def""#).unwrap().matches(&group, &ce));
    }

    #[test]
    fn urn_paths() {
        let f = parse(&format!("{ENT}:employeeNumber eq \"701984\"")).unwrap();
        let Filter::Compare { path, .. } = &f else {
            panic!()
        };
        assert_eq!(path.urn.as_deref(), Some(ENT));
        assert_eq!(path.attr, "employeeNumber");
        assert!(f.matches(&user(), &ce));
        assert!(m(&format!("{ENT}:manager.value eq \"26118915\"")));
        assert!(!m(&format!("{ENT}:userName pr")));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bjensen""#
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:name.familyName eq "jensen""#
        ));
        assert!(m(&format!("{}:employeeNumber pr", ENT.to_uppercase())));
        assert!(!m("urn:example:custom:1.0:User:employeeNumber pr"));
    }

    #[test]
    fn case_rules() {
        assert!(m(r#"userName eq "BJENSEN""#));
        assert!(m(r#"USERNAME eq "bjensen""#));
        assert!(m(r#"EMAILS.VALUE co "EXAMPLE""#));
        assert!(m(r#"id eq "2819c223""#));
        assert!(!m(r#"id eq "2819C223""#));
        assert!(m(r#"externalId eq "Ext-1""#));
        assert!(!m(r#"externalId eq "ext-1""#));
        assert!(!m(r#"externalId sw "ext""#));
        let seen = RefCell::new(Vec::new());
        let rec = |p: &str| {
            if !seen.borrow().iter().any(|s| s == p) {
                seen.borrow_mut().push(p.to_string());
            }
            false
        };
        for f in [
            r#"emails[Type eq "work"]"#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x""#,
            r#"emails eq "x""#,
            r#"name.givenName eq "x""#,
            &format!("{ENT}:manager.value eq \"x\""),
            r#"externalId eq "x""#,
        ] {
            let _ = parse(f).unwrap().matches(&user(), &rec);
        }
        let want = [
            "emails.type",
            "username",
            "emails.value",
            "name.givenname",
            "manager.value",
            "externalid",
        ];
        assert_eq!(*seen.borrow(), want);
    }

    #[test]
    fn literals() {
        let v = |s: &str| match parse(&format!("a eq {s}")).unwrap() {
            Filter::Compare { value, .. } => value,
            _ => panic!(),
        };
        assert_eq!(v(r#""a\"b\\c""#), json!("a\"b\\c"));
        assert_eq!(v(r#""\u00e9\n""#), json!("é\n"));
        assert_eq!(v(r#""日本""#), json!("日本"));
        assert_eq!(v("-1.5e2"), json!(-150.0));
        assert_eq!(v("42"), json!(42));
        assert_eq!(v("FALSE"), json!(false));
        assert_eq!(v("Null"), Value::Null);
        assert!(parse(r#"$ref eq "x""#).is_ok());
    }

    #[test]
    fn errors_are_reported_not_panics() {
        for bad in [
            "",
            "   ",
            "userName",
            "userName eq",
            "eq \"x\"",
            "userName zz \"x\"",
            "userName eq \"x\" and",
            ")",
            "(userName pr",
            "userName pr)",
            "userName eq \"x\")",
            "a[b eq 1",
            "a[b eq 1]]",
            "a.b.c eq 1",
            "foo:bar eq 1",
            "üser eq 1",
            "\"abc",
            "userName eq \"abc",
            "userName eq 1.2.3",
            "userName eq -",
            "a eq 1e99999",
            "userName eq \"\\x\"",
            "userName eq bare",
            "a[b[c eq 1]]",
            "a.b[c eq 1]",
            "a[urn:x:y:z eq 1]",
            "a[b eq 1].",
            "a[b eq 1].c",
            "1a eq 1",
            "a eq 1 2",
            "not userName pr",
            "a pr or or b pr",
            "userName eq \"x\" \u{0}",
            "a eq \"line\nbreak\"",
            "[",
            "a ] pr",
            ".a pr",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.scim_type(), "invalidFilter");
            assert!(e.position <= bad.len(), "{bad}: {e}");
        }
        let e = parse("userName xx \"a\"").unwrap_err();
        assert_eq!(e.position, 9);
        assert!(e.to_string().contains("expected an operator"), "{e}");
        assert!(e.to_string().contains("found 'xx'"), "{e}");
        assert!(parse("userName eq \"abc")
            .unwrap_err()
            .message
            .contains("unterminated"));
        assert!(parse("(a pr")
            .unwrap_err()
            .to_string()
            .contains("found end of input"));
    }

    #[test]
    fn hostile_inputs() {
        let deep = format!("{}a pr{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
        let ok = format!("{}a pr{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let nots = format!("{}a pr{}", "not(".repeat(2000), ")".repeat(100));
        assert!(parse(&nots).is_err());
        assert!(parse(&"(".repeat(5000)).is_err());
        assert!(parse(&format!("a eq \"{}\"", "x".repeat(MAX_INPUT_LEN))).is_err());
        let long_or = vec!["a pr"; 1000].join(" or ");
        assert!(!parse(&long_or).unwrap().matches(&user(), &ce));
        let sample = r#"emails[type eq "work" and value co "@"].value pr or not (userName eq "日本" and x ge -1.5)"#;
        for (i, _) in sample.char_indices() {
            let _ = parse(&sample[..i]);
            let _ = parse_path(&sample[..i]);
        }
        assert!(parse(sample).is_ok());
    }

    #[test]
    fn paths() {
        let p = parse_path("name.givenName").unwrap();
        assert_eq!(
            (p.urn, p.attr.as_str(), p.filter, p.sub.as_deref()),
            (None, "name", None, Some("givenName"))
        );
        let p = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.attr, "emails");
        assert_eq!(p.sub.as_deref(), Some("value"));
        assert_eq!(p.filter, Some(parse(r#"type eq "work""#).unwrap()));
        let p = parse_path(r#"members[value eq "abc"]"#).unwrap();
        assert!(p.filter.is_some() && p.sub.is_none());
        let p = parse_path(&format!("{ENT}:manager.value")).unwrap();
        assert_eq!(
            (p.urn.as_deref(), p.attr.as_str(), p.sub.as_deref()),
            (Some(ENT), "manager", Some("value"))
        );
        let p = parse_path("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName").unwrap();
        assert_eq!(
            p.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:core:2.0:User")
        );
        assert_eq!(
            (p.attr.as_str(), p.sub.as_deref()),
            ("name", Some("givenName"))
        );
        let p = parse_path(r#"emails[type eq "work" and primary eq true]"#).unwrap();
        assert!(matches!(p.filter, Some(Filter::And(_))));
        for bad in [
            "",
            "a b",
            "a.b.c",
            "emails[type eq",
            "emails[]",
            "a[b pr] c",
            "a eq 1",
            "name.x[y pr]",
            "x:y",
        ] {
            assert_eq!(
                parse_path(bad).expect_err(bad).scim_type(),
                "invalidPath",
                "{bad}"
            );
        }
    }
}
