//! Filters: which events a destination (or a handler's [`Route`](crate::Route)) takes,
//! by event type and by payload.
//!
//! A [`Filter`] is a tree of conditions combined with `all`, `any` and `not`. Its leaves
//! test the event type against patterns, or a value in the JSON body found by a JSON
//! pointer (RFC 6901):
//!
//! ```toml
//! [[source]]
//! name = "stripe"
//! destinations = [
//!   "audit",                                                 # everything
//!   { name = "billing", types = ["invoice.*", "!invoice.upcoming"] },
//!   { name = "warehouse", types = ["order.*"], when = { all = [
//!       { pointer = "/data/object/status", equals = "paid" },
//!       { pointer = "/data/object/amount", gt = 100 },
//!   ] } },
//! ]
//! ```
//!
//! - **Types**: `invoice.paid` (exact), `invoice.*` (prefix), `*` (any event with a
//!   type); a pattern starting with `!` excludes. An event matches when some included
//!   pattern matches (or only exclusions are listed) and no excluded one does. An event
//!   without a type matches only a list of exclusions alone.
//! - **Payload**: `{ pointer = "/a/b/0", OP = VALUE }` with one OP: `equals` (any TOML
//!   value; numbers compare by value, so `100` equals `100.0`), `one_of` (a list),
//!   `exists` (`true`: the pointer finds a value, `false`: it does not), `gt`, `gte`,
//!   `lt`, `lte` (numbers; a value that is not a number does not match), `matches` (a
//!   regular expression, [`regex`] syntax, searched in a string value).
//! - **Combinators**: `{ all = [..] }`, `{ any = [..] }`, `{ not = {..} }`.
//! - **Bodies that are not JSON**: every payload condition is false on them (and so
//!   `not` of one is true). A filter on types alone never reads the body.
//!
//! A filter and its [`negation`](Filter::negate) split every set of events in two: each
//! event is taken by exactly one of them.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

/// Which events to take: a tree of conditions on the type and the JSON body.
#[derive(Clone)]
pub struct Filter {
    root: Node,
}

/// One node of a filter's tree.
#[derive(Clone)]
enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    Types(Arc<Types>),
    Payload(Arc<Payload>),
    /// A predicate given as code (library users).
    Code(Arc<dyn Fn(&FilterInput<'_>) -> bool + Send + Sync>),
}

/// Type patterns: included and excluded.
#[derive(Debug)]
struct Types {
    include: Vec<String>,
    exclude: Vec<String>,
}

/// A test on the value a JSON pointer finds.
#[derive(Debug)]
struct Payload {
    pointer: String,
    /// The pointer's reference tokens, unescaped (`~1` is `/`, `~0` is `~`).
    path: Vec<String>,
    test: Test,
}

#[derive(Debug)]
enum Test {
    Equals(Value),
    OneOf(Vec<Value>),
    Exists(bool),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Matches(regex::Regex),
}

/// What a filter looks at: the event's type and its body.
#[derive(Debug, Clone, Copy)]
pub struct FilterInput<'a> {
    /// The provider's event type, if stated.
    pub event_type: Option<&'a str>,
    /// The raw body.
    pub body: &'a [u8],
}

/// A filter that does not make sense, with the key it is at (`when.all[1].gt`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct FilterError {
    /// Where in the filter, relative to it.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

fn error(key: &str, reason: impl Into<String>) -> FilterError {
    FilterError {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

impl Filter {
    /// Takes every event.
    pub fn all() -> Self {
        Filter {
            root: Node::All(Vec::new()),
        }
    }

    /// Events whose type matches `patterns` (see the [module docs](self)); an empty list
    /// takes every event.
    pub fn types<I, S>(patterns: I) -> Result<Self, FilterError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let patterns: Vec<String> = patterns.into_iter().map(Into::into).collect();
        Ok(Filter {
            root: types_node(&patterns, "types")?,
        })
    }

    /// Events for which `predicate` holds, given the type and the raw body.
    pub fn from_fn(predicate: impl Fn(&FilterInput<'_>) -> bool + Send + Sync + 'static) -> Self {
        Filter {
            root: Node::Code(Arc::new(predicate)),
        }
    }

    /// The declarative form, as in the configuration: `types` (patterns) and `when` (a
    /// condition tree); both optional.
    pub fn from_spec(spec: &FilterSpec) -> Result<Self, FilterError> {
        let mut parts = Vec::new();
        if !spec.types.is_empty() {
            parts.push(types_node(&spec.types, "types")?);
        }
        if let Some(when) = &spec.when {
            parts.push(condition(when, "when")?);
        }
        let root = if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Node::All(parts)
        };
        Ok(Filter { root })
    }

    /// Events both filters take.
    pub fn and(self, other: Filter) -> Self {
        Filter {
            root: Node::All(vec![self.root, other.root]),
        }
    }

    /// The events this filter does not take.
    pub fn negate(self) -> Self {
        Filter {
            root: negate(self.root),
        }
    }

    /// Whether the event is taken. The body is parsed (once) only if a payload
    /// condition needs it.
    pub fn accepts(&self, input: &FilterInput<'_>) -> bool {
        let mut body = Body::Unread;
        eval(&self.root, input, &mut body)
    }

    /// Whether every event is taken (an empty filter).
    pub fn is_all(&self) -> bool {
        matches!(&self.root, Node::All(v) if v.is_empty())
    }

    /// Whether [`accepts`](Filter::accepts) may look at the body: the filter has a
    /// payload condition or a predicate given as code. When false, any body (an empty
    /// one too) gives the same answer, so a caller need not read it.
    pub fn needs_body(&self) -> bool {
        fn node(n: &Node) -> bool {
            match n {
                Node::All(v) | Node::Any(v) => v.iter().any(node),
                Node::Not(c) => node(c),
                Node::Types(_) => false,
                Node::Payload(_) | Node::Code(_) => true,
            }
        }
        node(&self.root)
    }
}

/// Filters are equal when their trees are: the same conditions in the same order, and
/// predicates given as code only when they are the very same one (a clone's).
impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

impl Eq for Filter {}

impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Node::All(a), Node::All(b)) | (Node::Any(a), Node::Any(b)) => a == b,
            (Node::Not(a), Node::Not(b)) => a == b,
            (Node::Types(a), Node::Types(b)) => a.include == b.include && a.exclude == b.exclude,
            (Node::Payload(a), Node::Payload(b)) => a.pointer == b.pointer && a.test == b.test,
            (Node::Code(a), Node::Code(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl PartialEq for Test {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Test::Equals(a), Test::Equals(b)) => a == b,
            (Test::OneOf(a), Test::OneOf(b)) => a == b,
            (Test::Exists(a), Test::Exists(b)) => a == b,
            // Numbers are finite (checked when compiled), so this is an equivalence.
            (Test::Gt(a), Test::Gt(b))
            | (Test::Gte(a), Test::Gte(b))
            | (Test::Lt(a), Test::Lt(b))
            | (Test::Lte(a), Test::Lte(b)) => a == b,
            (Test::Matches(a), Test::Matches(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Default for Filter {
    fn default() -> Self {
        Filter::all()
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn node(n: &Node, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let list = |f: &mut fmt::Formatter<'_>, name: &str, v: &[Node]| {
                write!(f, "{name}(")?;
                for (i, c) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    node(c, f)?;
                }
                f.write_str(")")
            };
            match n {
                Node::All(v) => list(f, "all", v),
                Node::Any(v) => list(f, "any", v),
                Node::Not(c) => {
                    f.write_str("not(")?;
                    node(c, f)?;
                    f.write_str(")")
                }
                Node::Types(t) => write!(f, "types(+{:?} -{:?})", t.include, t.exclude),
                Node::Payload(p) => write!(f, "{} {:?}", p.pointer, p.test),
                Node::Code(_) => f.write_str("fn(..)"),
            }
        }
        node(&self.root, f)
    }
}

/// What is known of the body during one evaluation.
enum Body {
    Unread,
    Json,
    NotJson,
}

fn eval(n: &Node, input: &FilterInput<'_>, body: &mut Body) -> bool {
    match n {
        Node::All(v) => v.iter().all(|c| eval(c, input, body)),
        Node::Any(v) => v.iter().any(|c| eval(c, input, body)),
        Node::Not(c) => !eval(c, input, body),
        Node::Types(t) => t.matches(input.event_type),
        Node::Code(f) => f(input),
        Node::Payload(p) => {
            if let Body::NotJson = body {
                return false;
            }
            match seek(input.body, &p.path) {
                Ok(found) => {
                    *body = Body::Json;
                    p.test.holds(found.as_ref())
                }
                Err(_) => {
                    *body = Body::NotJson;
                    false
                }
            }
        }
    }
}

fn negate(n: Node) -> Node {
    match n {
        Node::Not(c) => *c,
        Node::All(v) => Node::Any(v.into_iter().map(negate).collect()),
        Node::Any(v) => Node::All(v.into_iter().map(negate).collect()),
        leaf => Node::Not(Box::new(leaf)),
    }
}

impl Types {
    fn matches(&self, event_type: Option<&str>) -> bool {
        let included = self.include.is_empty()
            || self
                .include
                .iter()
                .any(|p| crate::journal::type_matches(p, event_type));
        included
            && !self
                .exclude
                .iter()
                .any(|p| crate::journal::type_matches(p, event_type))
    }
}

impl Test {
    fn holds(&self, found: Option<&Value>) -> bool {
        let number = || found.and_then(Value::as_f64);
        match self {
            Test::Exists(want) => found.is_some() == *want,
            Test::Equals(v) => found.is_some_and(|f| same(f, v)),
            Test::OneOf(vs) => found.is_some_and(|f| vs.iter().any(|v| same(f, v))),
            Test::Gt(x) => number().is_some_and(|n| n > *x),
            Test::Gte(x) => number().is_some_and(|n| n >= *x),
            Test::Lt(x) => number().is_some_and(|n| n < *x),
            Test::Lte(x) => number().is_some_and(|n| n <= *x),
            Test::Matches(re) => found
                .and_then(Value::as_str)
                .is_some_and(|s| re.is_match(s)),
        }
    }
}

/// JSON equality, with numbers compared by value (`100` and `100.0` are equal).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

fn types_node(patterns: &[String], key: &str) -> Result<Node, FilterError> {
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    for (i, p) in patterns.iter().enumerate() {
        let (list, pattern) = match p.strip_prefix('!') {
            Some(rest) => (&mut exclude, rest),
            None => (&mut include, p.as_str()),
        };
        if pattern.is_empty() {
            return Err(error(&format!("{key}[{i}]"), "an empty type pattern"));
        }
        if pattern.strip_suffix('*').unwrap_or(pattern).contains('*') {
            return Err(error(
                &format!("{key}[{i}]"),
                format!("`{p}`: `*` may only end a pattern (`invoice.*`)"),
            ));
        }
        list.push(pattern.to_owned());
    }
    Ok(Node::Types(Arc::new(Types { include, exclude })))
}

/// The declarative form of a filter: what a destination reference in the configuration
/// carries besides its name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// Event type patterns: exact, `prefix*`, `!excluded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// A condition on the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<ConditionSpec>,
}

/// One condition of a [`FilterSpec`], as written: exactly one of `all`, `any`, `not`,
/// or `pointer` with one test.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ConditionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<ConditionSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<ConditionSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<ConditionSpec>>,
    /// Also `types`, to combine type patterns with payload tests under `any`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
}

fn condition(c: &ConditionSpec, key: &str) -> Result<Node, FilterError> {
    let tests = [
        ("equals", c.equals.is_some()),
        ("one_of", c.one_of.is_some()),
        ("exists", c.exists.is_some()),
        ("gt", c.gt.is_some()),
        ("gte", c.gte.is_some()),
        ("lt", c.lt.is_some()),
        ("lte", c.lte.is_some()),
        ("matches", c.matches.is_some()),
    ];
    let given: Vec<&str> = tests.iter().filter(|t| t.1).map(|t| t.0).collect();
    let forms = [
        ("all", c.all.is_some()),
        ("any", c.any.is_some()),
        ("not", c.not.is_some()),
        ("types", c.types.is_some()),
        ("pointer", c.pointer.is_some() || !given.is_empty()),
    ];
    let form: Vec<&str> = forms.iter().filter(|f| f.1).map(|f| f.0).collect();
    let [form] = form[..] else {
        return Err(error(
            key,
            if form.is_empty() {
                "an empty condition: give one of `all`, `any`, `not`, `types` or `pointer`"
                    .to_owned()
            } else {
                format!("one condition per table, found {}", form.join(", "))
            },
        ));
    };
    let list = |v: &[ConditionSpec], name: &str| {
        v.iter()
            .enumerate()
            .map(|(i, c)| condition(c, &format!("{key}.{name}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match form {
        "all" => Node::All(list(c.all.as_deref().unwrap_or_default(), "all")?),
        "any" => Node::Any(list(c.any.as_deref().unwrap_or_default(), "any")?),
        "not" => Node::Not(Box::new(condition(
            c.not.as_deref().expect("not"),
            &format!("{key}.not"),
        )?)),
        "types" => types_node(
            c.types.as_deref().unwrap_or_default(),
            &format!("{key}.types"),
        )?,
        _ => {
            let pointer = c
                .pointer
                .clone()
                .ok_or_else(|| error(key, format!("`{}` needs a `pointer`", given[0])))?;
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return Err(error(
                    &format!("{key}.pointer"),
                    format!(
                        "`{pointer}` is not a JSON pointer: it starts with `/` (`/data/object/id`)"
                    ),
                ));
            }
            let [test] = given[..] else {
                return Err(error(
                    key,
                    if given.is_empty() {
                        "a `pointer` needs one test: equals, one_of, exists, gt, gte, lt, lte or matches".to_owned()
                    } else {
                        format!("one test per condition, found {}", given.join(", "))
                    },
                ));
            };
            let number = |v: Option<f64>, name: &str| {
                let v = v.expect("given");
                if v.is_finite() {
                    Ok(v)
                } else {
                    Err(error(&format!("{key}.{name}"), "not a finite number"))
                }
            };
            let test = match test {
                "equals" => Test::Equals(c.equals.clone().expect("given")),
                "one_of" => Test::OneOf(c.one_of.clone().expect("given")),
                "exists" => Test::Exists(c.exists.expect("given")),
                "gt" => Test::Gt(number(c.gt, "gt")?),
                "gte" => Test::Gte(number(c.gte, "gte")?),
                "lt" => Test::Lt(number(c.lt, "lt")?),
                "lte" => Test::Lte(number(c.lte, "lte")?),
                _ => Test::Matches(
                    regex::RegexBuilder::new(c.matches.as_deref().expect("given"))
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| error(&format!("{key}.matches"), e.to_string()))?,
                ),
            };
            let path = pointer
                .split('/')
                .skip(1)
                .map(|t| t.replace("~1", "/").replace("~0", "~"))
                .collect();
            Node::Payload(Arc::new(Payload {
                pointer,
                path,
                test,
            }))
        }
    })
}

// ---- finding one value without building the document ----------------------------------

/// The value at `path` in the JSON document `body` (`Ok(None)`: there is none), found
/// in one pass that builds only that value and skips the rest; an error when `body` is
/// not JSON. Of duplicate keys the last counts, as with [`Value`].
fn seek(body: &[u8], path: &[String]) -> Result<Option<Value>, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut d = serde_json::Deserializer::from_slice(body);
    let found = Seek(path).deserialize(&mut d)?;
    d.end()?;
    Ok(found)
}

struct Seek<'p>(&'p [String]);

impl<'de> serde::de::DeserializeSeed<'de> for Seek<'_> {
    type Value = Option<Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.0.is_empty() {
            return Value::deserialize(d).map(Some);
        }
        d.deserialize_any(self)
    }
}

/// A map key, borrowed from the body when it has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::de::Visitor<'de> for Seek<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (head, rest) = (&self.0[0], &self.0[1..]);
        let mut found = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == head.as_str() {
                found = map.next_value_seed(Seek(rest))?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (head, rest) = (&self.0[0], &self.0[1..]);
        // RFC 6901: an index is `0` or digits without a leading zero.
        let index = (head == "0" || !head.starts_with('0'))
            .then(|| head.parse::<usize>().ok())
            .flatten();
        let mut found = None;
        let mut i = 0usize;
        loop {
            if Some(i) == index {
                match seq.next_element_seed(Seek(rest))? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element::<serde::de::IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z\"\\\\/~é]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 5, |inner| {
            let key = prop::sample::select(vec!["a", "b", "0", "1", "a/b", "~", "é\"", ""]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                prop::collection::btree_map(key, inner, 0..5).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        /// The one-pass lookup finds exactly what `Value::pointer` finds in the parsed
        /// document.
        #[test]
        fn seek_agrees_with_value_pointer(
            doc in json(),
            path in prop::collection::vec(
                prop::sample::select(vec!["a", "b", "0", "1", "01", "a/b", "~", "é\"", ""]),
                0..4,
            ),
        ) {
            let pointer: String = path
                .iter()
                .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
                .collect();
            let body = serde_json::to_vec(&doc).unwrap();
            let tokens: Vec<String> = path.iter().map(|t| (*t).to_owned()).collect();
            // Against the document parsed back: floats need not survive the round trip.
            let parsed: Value = serde_json::from_slice(&body).unwrap();
            prop_assert_eq!(seek(&body, &tokens).unwrap(), parsed.pointer(&pointer).cloned());
        }
    }

    proptest! {
        /// Any type pattern, multi-byte characters included, compiles or is refused
        /// with an error; none panics.
        #[test]
        fn any_type_pattern_compiles_or_is_refused(patterns in proptest::collection::vec(".{0,12}", 0..4)) {
            let spec = FilterSpec { types: patterns, when: None };
            let _ = Filter::from_spec(&spec);
        }
    }

    #[test]
    fn a_pattern_ending_in_a_multibyte_character_is_not_cut_inside_it() {
        for p in ["Ú$¨sÉ(ü", "é", "a*é", "é*"] {
            let spec = FilterSpec {
                types: vec![p.to_owned()],
                when: None,
            };
            let r = Filter::from_spec(&spec);
            assert_eq!(r.is_err(), p == "a*é", "{p}: {:?}", r.err());
        }
    }

    #[test]
    fn seek_refuses_what_is_not_json() {
        for body in [&b"{"[..], b"", b"{\"a\":1} x", b"\xff", b"[1,]"] {
            assert!(seek(body, &["a".to_owned()]).is_err(), "{body:?}");
        }
    }
}
