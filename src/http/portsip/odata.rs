//! PortSIP's list query options (rest-dialects.md §1.4): `filter`, `search`, `orderby`, `skip`
//! and `top`, applied to the JSON items of a collection.
//!
//! `filter` is the OData-style boolean language of PortSIP's documentation, parsed with nom:
//!
//! ```text
//! expr    = and ("or" and)*
//! and     = unary ("and" unary)*
//! unary   = "not" unary | "(" expr ")" | func | field op literal
//! func    = ("startswith" | "endswith" | "contains") "(" field "," 'text' ")"
//! op      = eq | ne | gt | ge | lt | le
//! literal = 'text' ('' is a quote) | number | true | false | null
//! ```
//!
//! Fields and literal types are checked against the collection's [`Field`] list before anything
//! is evaluated, so a typo is a clear error naming it, never an empty result.
//!
//! Every option is bounded before it is parsed: at most [`MAX_OPTION_LEN`] bytes, and a filter
//! nests parentheses and `not` at most [`MAX_DEPTH`] deep. The grammar is recursive, so without
//! the depth bound a URL of a few kilobytes of `(` would overflow the stack of the worker thread
//! and abort the whole daemon.

use std::cmp::Ordering;
use std::collections::HashMap;

use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_while, take_while1};
use nom::character::complete::{char, multispace0, multispace1};
use nom::combinator::{all_consuming, map, opt, recognize, value};
use nom::multi::{many0, separated_list1};
use nom::sequence::{delimited, preceded, terminated};
use nom::{IResult, Parser};
use serde_json::Value;

/// The type of a filterable field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Text,
    Number,
    Bool,
}

/// A field of a collection's items: its JSON name and type.
pub type Field = (&'static str, Type);

#[derive(Clone, Debug, PartialEq)]
enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Clone, Debug, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare(String, Op, Literal),
    Call(Func, String, String),
}

/// A query option the client got wrong; the message names it.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid(pub String);

/// The parsed query options of one list request.
#[derive(Debug, Default)]
pub struct ListQuery {
    filter: Option<Expr>,
    search: Vec<String>,
    order: Vec<(String, bool)>,
    skip: usize,
    top: usize,
}

/// Default and largest page size.
pub const MAX_TOP: usize = 100;

/// The longest `filter`, `search` or `orderby` accepted, in bytes; longer is `VALIDATE_FAILED`.
pub const MAX_OPTION_LEN: usize = 2048;

/// How deep parentheses and `not` may nest in a filter; deeper is `VALIDATE_FAILED`.
pub const MAX_DEPTH: usize = 32;

/// The error a parser gives when the filter nests deeper than [`MAX_DEPTH`]: a `Failure`, so
/// no alternative is tried.
fn too_deep(i: &str) -> nom::Err<nom::error::Error<&str>> {
    nom::Err::Failure(nom::error::Error::new(i, nom::error::ErrorKind::TooLarge))
}

fn ws<'a, O>(
    p: impl Parser<&'a str, Output = O, Error = nom::error::Error<&'a str>>,
) -> impl Parser<&'a str, Output = O, Error = nom::error::Error<&'a str>> {
    delimited(multispace0, p, multispace0)
}

fn ident(i: &str) -> IResult<&str, &str> {
    recognize((
        take_while1(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))
    .parse(i)
}

fn text(i: &str) -> IResult<&str, String> {
    let piece = alt((
        map(take_while1(|c| c != '\''), str::to_owned),
        value("'".to_owned(), tag("''")),
    ));
    map(delimited(char('\''), many0(piece), char('\'')), |parts| {
        parts.concat()
    })
    .parse(i)
}

fn number(i: &str) -> IResult<&str, f64> {
    nom::number::complete::double(i)
}

fn literal(i: &str) -> IResult<&str, Literal> {
    alt((
        map(text, Literal::Text),
        value(Literal::Bool(true), keyword("true")),
        value(Literal::Bool(false), keyword("false")),
        value(Literal::Null, keyword("null")),
        map(number, Literal::Number),
    ))
    .parse(i)
}

/// A word that is not the start of a longer identifier.
fn keyword<'a>(
    word: &'static str,
) -> impl Parser<&'a str, Output = &'a str, Error = nom::error::Error<&'a str>> {
    terminated(
        tag_no_case(word),
        nom::combinator::not(take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_')),
    )
}

fn op(i: &str) -> IResult<&str, Op> {
    alt((
        value(Op::Eq, keyword("eq")),
        value(Op::Ne, keyword("ne")),
        value(Op::Ge, keyword("ge")),
        value(Op::Gt, keyword("gt")),
        value(Op::Le, keyword("le")),
        value(Op::Lt, keyword("lt")),
    ))
    .parse(i)
}

fn func(i: &str) -> IResult<&str, Expr> {
    let name = alt((
        value(Func::StartsWith, keyword("startswith")),
        value(Func::EndsWith, keyword("endswith")),
        value(Func::Contains, keyword("contains")),
    ));
    map(
        (
            name,
            ws(char('(')),
            ident,
            ws(char(',')),
            text,
            ws(char(')')),
        ),
        |(f, _, field, _, arg, _)| Expr::Call(f, field.to_owned(), arg),
    )
    .parse(i)
}

fn compare(i: &str) -> IResult<&str, Expr> {
    map((ident, ws(op), literal), |(field, op, lit)| {
        Expr::Compare(field.to_owned(), op, lit)
    })
    .parse(i)
}

/// `unary` at nesting `depth` (each `not` and each `(` is one level deeper).
fn unary(i: &str, depth: usize) -> IResult<&str, Expr> {
    if depth > MAX_DEPTH {
        return Err(too_deep(i));
    }
    ws(alt((
        map(
            preceded((keyword("not"), multispace1), |i| unary(i, depth + 1)),
            |e| Expr::Not(Box::new(e)),
        ),
        delimited(char('('), |i| expr(i, depth + 1), char(')')),
        func,
        compare,
    )))
    .parse(i)
}

fn and(i: &str, depth: usize) -> IResult<&str, Expr> {
    let (i, first) = unary(i, depth)?;
    let (i, rest) = many0(preceded(ws(keyword("and")), |i| unary(i, depth))).parse(i)?;
    Ok((
        i,
        rest.into_iter()
            .fold(first, |a, b| Expr::And(Box::new(a), Box::new(b))),
    ))
}

fn expr(i: &str, depth: usize) -> IResult<&str, Expr> {
    let (i, first) = and(i, depth)?;
    let (i, rest) = many0(preceded(ws(keyword("or")), |i| and(i, depth))).parse(i)?;
    Ok((
        i,
        rest.into_iter()
            .fold(first, |a, b| Expr::Or(Box::new(a), Box::new(b))),
    ))
}

fn order_item(i: &str) -> IResult<&str, (String, bool)> {
    map(
        (
            ws(ident),
            opt(ws(alt((
                value(false, keyword("asc")),
                value(true, keyword("desc")),
            )))),
        ),
        |(f, desc)| (f.to_owned(), desc.unwrap_or(false)),
    )
    .parse(i)
}

fn field_type(fields: &[Field], name: &str) -> Result<Type, Invalid> {
    fields
        .iter()
        .find(|(f, _)| *f == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            Invalid(format!(
                "unknown field {name:?} (known: {})",
                fields
                    .iter()
                    .map(|(f, _)| *f)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

fn check(e: &Expr, fields: &[Field]) -> Result<(), Invalid> {
    match e {
        Expr::Or(a, b) | Expr::And(a, b) => {
            check(a, fields)?;
            check(b, fields)
        }
        Expr::Not(a) => check(a, fields),
        Expr::Call(_, field, _) => match field_type(fields, field)? {
            Type::Text => Ok(()),
            _ => Err(Invalid(format!("{field} is not text"))),
        },
        Expr::Compare(field, op, lit) => {
            let t = field_type(fields, field)?;
            let ok = match (t, lit) {
                (_, Literal::Null) => matches!(op, Op::Eq | Op::Ne),
                (Type::Text, Literal::Text(_)) | (Type::Number, Literal::Number(_)) => true,
                (Type::Bool, Literal::Bool(_)) => matches!(op, Op::Eq | Op::Ne),
                _ => false,
            };
            if ok {
                Ok(())
            } else {
                Err(Invalid(format!(
                    "{field} cannot be compared with {lit:?} using {op:?}"
                )))
            }
        }
    }
}

fn compare_values(v: &Value, lit: &Literal) -> Option<Ordering> {
    match (v, lit) {
        (Value::String(a), Literal::Text(b)) => Some(a.as_str().cmp(b.as_str())),
        (Value::Number(a), Literal::Number(b)) => a.as_f64()?.partial_cmp(b),
        (Value::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        (Value::Null, Literal::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn eval(e: &Expr, item: &Value) -> bool {
    match e {
        Expr::Or(a, b) => eval(a, item) || eval(b, item),
        Expr::And(a, b) => eval(a, item) && eval(b, item),
        Expr::Not(a) => !eval(a, item),
        Expr::Call(f, field, arg) => {
            let Some(s) = item.get(field).and_then(Value::as_str) else {
                return false;
            };
            match f {
                Func::StartsWith => s.starts_with(arg.as_str()),
                Func::EndsWith => s.ends_with(arg.as_str()),
                Func::Contains => s.contains(arg.as_str()),
            }
        }
        Expr::Compare(field, op, lit) => {
            let v = item.get(field).unwrap_or(&Value::Null);
            let ord = compare_values(v, lit);
            match op {
                Op::Eq => ord == Some(Ordering::Equal),
                Op::Ne => ord != Some(Ordering::Equal),
                Op::Gt => ord == Some(Ordering::Greater),
                Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                Op::Lt => ord == Some(Ordering::Less),
                Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
            }
        }
    }
}

fn order_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

impl ListQuery {
    /// Parses the query parameters (also with OData's `$` prefix) against the fields of the
    /// collection.
    pub fn parse(params: &HashMap<String, String>, fields: &[Field]) -> Result<Self, Invalid> {
        let get = |name: &str| {
            params
                .get(name)
                .or_else(|| params.get(&format!("${name}")))
                .map(String::as_str)
        };
        let mut q = ListQuery {
            top: MAX_TOP,
            ..ListQuery::default()
        };
        for name in ["filter", "search", "orderby"] {
            if get(name).is_some_and(|v| v.len() > MAX_OPTION_LEN) {
                return Err(Invalid(format!(
                    "{name}: longer than {MAX_OPTION_LEN} bytes"
                )));
            }
        }
        if let Some(f) = get("filter").filter(|f| !f.trim().is_empty()) {
            let (_, e) = all_consuming(ws(|i| expr(i, 0)))
                .parse(f)
                .map_err(|e| match e {
                    nom::Err::Failure(e) if e.code == nom::error::ErrorKind::TooLarge => {
                        Invalid(format!("filter: nested deeper than {MAX_DEPTH} levels"))
                    }
                    _ => Invalid(format!("filter: cannot parse {f:?}")),
                })?;
            check(&e, fields).map_err(|Invalid(m)| Invalid(format!("filter: {m}")))?;
            q.filter = Some(e);
        }
        if let Some(s) = get("search").map(str::trim).filter(|s| !s.is_empty()) {
            q.search = s
                .split(" or ")
                .map(|t| t.trim().to_lowercase())
                .filter(|t| !t.is_empty())
                .collect();
        }
        if let Some(o) = get("orderby").filter(|o| !o.trim().is_empty()) {
            let (_, order) = all_consuming(separated_list1(char(','), order_item))
                .parse(o)
                .map_err(|_| Invalid(format!("orderby: cannot parse {o:?}")))?;
            for (f, _) in &order {
                field_type(fields, f).map_err(|Invalid(m)| Invalid(format!("orderby: {m}")))?;
            }
            q.order = order;
        }
        if let Some(s) = get("skip") {
            // An int32 in PortSIP's file, like `top`.
            q.skip = s
                .trim()
                .parse::<i32>()
                .ok()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    Invalid(format!("skip: {s:?} is not a number from 0 to 2147483647"))
                })?;
        }
        if let Some(t) = get("top") {
            q.top = t
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=MAX_TOP).contains(n))
                .ok_or_else(|| Invalid(format!("top: {t:?} is not a number from 1 to 100")))?;
        }
        Ok(q)
    }

    /// Filters, searches, sorts and pages `items`: `(count of matches, the page)`.
    pub fn apply(&self, items: Vec<Value>, fields: &[Field]) -> (usize, Vec<Value>) {
        let mut matched: Vec<Value> = items
            .into_iter()
            .filter(|item| self.filter.as_ref().is_none_or(|e| eval(e, item)))
            .filter(|item| {
                self.search.is_empty()
                    || self.search.iter().any(|term| {
                        fields
                            .iter()
                            .filter(|(_, t)| *t == Type::Text)
                            .filter_map(|(f, _)| item.get(f).and_then(Value::as_str))
                            .any(|v| v.to_lowercase().contains(term.as_str()))
                    })
            })
            .collect();
        if !self.order.is_empty() {
            matched.sort_by(|a, b| {
                self.order
                    .iter()
                    .map(|(f, desc)| {
                        let o = order_values(
                            a.get(f).unwrap_or(&Value::Null),
                            b.get(f).unwrap_or(&Value::Null),
                        );
                        if *desc {
                            o.reverse()
                        } else {
                            o
                        }
                    })
                    .find(|o| *o != Ordering::Equal)
                    .unwrap_or(Ordering::Equal)
            });
        }
        let count = matched.len();
        let page = matched.into_iter().skip(self.skip).take(self.top).collect();
        (count, page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIELDS: &[Field] = &[
        ("name", Type::Text),
        ("extension_number", Type::Text),
        ("ring_time", Type::Number),
        ("enabled", Type::Bool),
    ];

    fn items() -> Vec<Value> {
        vec![
            json!({"name": "Sales", "extension_number": "8001", "ring_time": 20, "enabled": true}),
            json!({"name": "Support", "extension_number": "8002", "ring_time": 15, "enabled": false}),
            json!({"name": "It's VIP", "extension_number": "9001", "ring_time": 30, "enabled": true}),
        ]
    }

    fn run(params: &[(&str, &str)]) -> Result<(usize, Vec<String>), Invalid> {
        let params = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let q = ListQuery::parse(&params, FIELDS)?;
        let (count, page) = q.apply(items(), FIELDS);
        Ok((
            count,
            page.iter()
                .map(|v| v["name"].as_str().unwrap_or_default().to_owned())
                .collect(),
        ))
    }

    #[test]
    fn the_documented_expressions_work() {
        assert_eq!(
            run(&[("filter", "extension_number eq '8001'")]).unwrap(),
            (1, vec!["Sales".into()])
        );
        assert_eq!(
            run(&[(
                "filter",
                "startswith(extension_number,'80') and ring_time gt 15"
            )])
            .unwrap(),
            (1, vec!["Sales".into()])
        );
        assert_eq!(
            run(&[("filter", "contains(name,'p') or enabled eq false")])
                .unwrap()
                .0,
            1
        );
        assert_eq!(
            run(&[("filter", "not (enabled eq true)")]).unwrap().1,
            vec!["Support".to_owned()]
        );
        assert_eq!(
            run(&[("filter", "name eq 'It''s VIP'")]).unwrap().1,
            vec!["It's VIP".to_owned()]
        );
        assert_eq!(
            run(&[("filter", "endswith(name,'t') and ring_time le 15.0")])
                .unwrap()
                .1,
            vec!["Support".to_owned()]
        );
    }

    #[test]
    fn nesting_up_to_the_limit_is_fine() {
        let deep = format!("{}name eq 'Sales'{}", "(".repeat(32), ")".repeat(32));
        assert_eq!(run(&[("filter", &deep)]).unwrap().0, 1);
        let nots = format!("{}name eq 'Sales'", "not ".repeat(32));
        assert_eq!(run(&[("filter", &nots)]).unwrap().0, 1); // an even number of nots
    }

    /// The issue's crash: 3,000 parentheses overflowed the worker's stack.
    #[test]
    fn thousands_of_parentheses_are_refused_not_a_stack_overflow() {
        let f = format!("{}name eq 'x'{}", "(".repeat(3000), ")".repeat(3000));
        let params = [("filter".to_owned(), f)].into_iter().collect();
        assert!(ListQuery::parse(&params, FIELDS).is_err());
    }

    #[test]
    fn search_order_and_paging() {
        assert_eq!(run(&[("search", "sales or vip")]).unwrap().0, 2);
        let (count, page) =
            run(&[("orderby", "ring_time desc"), ("skip", "1"), ("top", "1")]).unwrap();
        assert_eq!((count, page), (3, vec!["Sales".to_owned()]));
        let (_, page) = run(&[("$orderby", "enabled, name desc")]).unwrap();
        assert_eq!(page, ["Support", "Sales", "It's VIP"]);
    }

    #[test]
    fn mistakes_are_named() {
        for (k, v, needle) in [
            ("filter", "nmae eq 'x'", "nmae"),
            ("filter", "name eq", "cannot parse"),
            ("filter", "ring_time eq 'x'", "ring_time"),
            ("filter", "contains(ring_time,'1')", "ring_time"),
            ("filter", "name eq 'open", "cannot parse"),
            ("orderby", "name sideways", "cannot parse"),
            ("orderby", "colour", "colour"),
            ("top", "0", "top"),
            ("top", "101", "top"),
            ("skip", "-1", "skip"),
            ("skip", "2147483648", "skip"),
            (
                "filter",
                format!("{}name eq 'x'{}", "(".repeat(33), ")".repeat(33)).as_str(),
                "nested deeper than 32",
            ),
            (
                "filter",
                format!("{}name eq 'x'", "not ".repeat(33)).as_str(),
                "nested deeper than 32",
            ),
            (
                "search",
                "a".repeat(MAX_OPTION_LEN + 1).as_str(),
                "longer than 2048",
            ),
            ("orderby", "name,".repeat(500).as_str(), "longer than 2048"),
        ] {
            let Invalid(m) = run(&[(k, v)]).unwrap_err();
            assert!(m.contains(needle), "{k}={v}: {m}");
        }
    }
}
