//! Reading JSON request bodies with serde: where a syntax error is, which field does not fit,
//! and lists whose length is bounded while they are read.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize as DeriveDeserialize;
use serde_json::error::Category;

use super::response::HttpResponse;
use crate::error::{ApiError, ErrorCode};

/// A JSON list of which at most `N` items are built; the rest are read past without being
/// built, and counted. A hostile `[0,0,0,…]` of millions of items costs a pass over its
/// bytes, not millions of values, and the caller still says how long the list was.
#[derive(Debug)]
pub(crate) struct Capped<T, const N: usize> {
    pub items: Vec<T>,
    /// How many items the list had.
    pub len: usize,
}

impl<T, const N: usize> Capped<T, N> {
    /// More items than `N` were given.
    pub fn is_over(&self) -> bool {
        self.len > N
    }
}

impl<T, const N: usize> Default for Capped<T, N> {
    fn default() -> Self {
        Capped { items: Vec::new(), len: 0 }
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Capped<T, N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(CappedVisitor(PhantomData))
    }
}

pub(crate) struct CappedVisitor<T, const N: usize>(pub PhantomData<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for CappedVisitor<T, N> {
    type Value = Capped<T, N>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(N));
        while items.len() < N {
            match seq.next_element()? {
                Some(item) => items.push(item),
                None => return Ok(Capped { len: items.len(), items }),
            }
        }
        let mut len = N;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            len += 1;
        }
        Ok(Capped { items, len })
    }
}

/// A `T` read from a JSON object only. serde's derive also reads a struct from a list of its
/// fields in order (`"dsn": [null, "headers"]`), which no client means and json.rs refused.
#[derive(Debug)]
pub(crate) struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// Why a body could not be read as the type asked for.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Not JSON: the error says where (`… at line 3 column 14`).
    Syntax(serde_json::Error),
    /// JSON, but not the kind of value wanted at the top (an object, a list).
    NotA,
    /// Of the right kind, but a field is unknown, repeated, missing or of another type: what
    /// serde says, after the path to it (`` `to[1].email`: invalid type: … at line 1 column 40``).
    Shape(String),
}

/// Reads `body` as a `T` whose JSON starts with `open` (`b'{'` or `b'['`). A syntax error
/// anywhere in the body wins over a field that does not fit, and a field that does not fit is
/// named by its path: the passes that find out run only when reading failed, so a valid body
/// is read once.
pub(crate) fn from_body<'a, T: Deserialize<'a>>(body: &'a [u8], open: u8) -> Result<T, BodyError> {
    let syntax_error = || serde_json::from_slice::<IgnoredAny>(body).err();
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&open) {
        return Err(syntax_error().map_or(BodyError::NotA, BodyError::Syntax));
    }
    serde_json::from_slice(body).map_err(|error| match error.classify() {
        Category::Data => syntax_error().map_or_else(|| BodyError::Shape(located::<T>(body, error)), BodyError::Syntax),
        _ => BodyError::Syntax(error),
    })
}

/// `error` again, with the path to where it happened (none for the top level). An unknown
/// field's path is that of the object it is in: serde's message names the field itself.
fn located<'a, T: Deserialize<'a>>(body: &'a [u8], error: serde_json::Error) -> String {
    use serde_path_to_error::Segment;
    let Err(located) = serde_path_to_error::deserialize::<_, T>(&mut serde_json::Deserializer::from_slice(body)) else {
        return error.to_string();
    };
    let mut segments: Vec<&Segment> = located.path().iter().collect();
    if located.inner().to_string().starts_with("unknown field") {
        segments.pop();
    }
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => path += &format!("[{index}]"),
            Segment::Map { key } | Segment::Enum { variant: key } if path.is_empty() => path += key,
            Segment::Map { key } | Segment::Enum { variant: key } => path += &format!(".{key}"),
            Segment::Unknown => path += ".?",
        }
    }
    match path.is_empty() {
        true => located.inner().to_string(),
        false => format!("`{path}`: {}", located.inner()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_list_builds_at_most_its_limit_and_counts_the_rest() {
        let list: Capped<String, 2> = serde_json::from_str(r#"["a", "b", "c", {"d": [1]}]"#).unwrap();
        assert_eq!((list.items, list.len), (vec!["a".to_string(), "b".to_string()], 4));
        let list: Capped<u8, 2> = serde_json::from_str("[1]").unwrap();
        assert_eq!((list.is_over(), list.items, list.len), (false, vec![1], 1));
        // The items past the limit are read past whatever they are, but they must be JSON.
        assert!(serde_json::from_str::<Capped<u8, 1>>("[1, 2, nul]").is_err());
    }

    #[test]
    fn an_object_is_not_read_from_a_list() {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Pair {
            a: u8,
            b: Option<u8>,
        }
        assert!(serde_json::from_str::<Pair>("[1, 2]").is_ok(), "what serde's derive does alone");
        let error = serde_json::from_str::<Object<Pair>>("[1, 2]").unwrap_err();
        assert_eq!(error.to_string(), "invalid type: sequence, expected an object at line 1 column 0");
        let Object(pair) = serde_json::from_str::<Object<Pair>>(r#"{"a": 1}"#).unwrap();
        assert_eq!(pair, Pair { a: 1, b: None });
    }

    #[test]
    fn syntax_errors_win_over_shape_errors_and_say_where() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            a: Option<u8>,
            b: Option<Vec<Inner>>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            c: String,
        }
        let error = |text: &str| match from_body::<Body>(text.as_bytes(), b'{') {
            Err(BodyError::Syntax(e)) => format!("syntax: {e}"),
            Err(BodyError::Shape(why)) => format!("shape: {why}"),
            Err(BodyError::NotA) => "not an object".into(),
            Ok(_) => "ok".into(),
        };
        assert_eq!(error(r#"{"d": 1}"#), "shape: unknown field `d`, expected `a` or `b` at line 1 column 4");
        assert_eq!(
            error(r#"{"b": [{"c": "x"}, {"c": 5}]}"#),
            "shape: `b[1].c`: invalid type: integer `5`, expected a string at line 1 column 26"
        );
        assert_eq!(error(r#"{"b": [{"e": 1}]}"#), "shape: `b[0]`: unknown field `e`, expected `c` at line 1 column 11");
        assert_eq!(error(r#"{"b": 1,"#), "syntax: EOF while parsing an object at line 1 column 8");
        assert_eq!(error(r#"{"a": 1, "a": 2}"#), "shape: duplicate field `a` at line 1 column 12");
        assert_eq!(error("\n [1]"), "not an object");
        assert_eq!(error("\n [1"), "syntax: EOF while parsing a list at line 2 column 3");
        assert_eq!(error(r#"{"a": 1}"#), "ok");
    }
}

/// `validation_failed` for the body as a whole.
fn invalid_body(why: String) -> HttpResponse {
    let mut error = ApiError::new(ErrorCode::ValidationFailed, format!("body {why}"));
    error.details = vec![("body".to_string(), why)];
    HttpResponse::error(&error)
}

/// A flat JSON object: serde_json's own message names the member, so no path is needed (and
/// none of [`from_body`]'s second, path-finding reader is built for these types).
pub(crate) fn flat_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpResponse> {
    match serde_json::from_slice(body) {
        Ok(Object(input)) => Ok(input),
        Err(e) if e.is_data() => Err(invalid_body(e.to_string())),
        Err(e) => Err(HttpResponse::error(&ApiError::new(ErrorCode::InvalidRequest, format!("not JSON: {e}")))),
    }
}

/// The small JSON bodies that carry a listing's query or one address instead of the URL
/// (`POST /v1/messages/search`, `/v1/suppressions/list`, `/v1/suppressions/delete`): one type
/// for the three, each route taking only its own members.
#[derive(DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryBody {
    status: Option<String>,
    q: Option<String>,
    limit: Option<u64>,
    after: Option<String>,
    address: Option<String>,
}

impl QueryBody {
    /// Reads `body` as a flat object of `members` (any other is refused, as an unknown one).
    pub fn read(body: &[u8], members: &[&str]) -> Result<QueryBody, HttpResponse> {
        let input: QueryBody = flat_object(body)?;
        let unknown = input.pairs().map(|(name, _)| name).find(|name| !members.contains(name));
        match unknown {
            Some(name) => Err(invalid_body(format!("unknown field `{name}`, expected one of {}", members.join(", ")))),
            None => Ok(input),
        }
    }

    /// The members given, as a query's name and value (`limit` as its digits).
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, Cow<'_, str>)> {
        fn text(value: &Option<String>) -> Option<Cow<'_, str>> {
            value.as_deref().map(Cow::Borrowed)
        }
        [
            ("status", text(&self.status)),
            ("q", text(&self.q)),
            ("limit", self.limit.map(|n| Cow::Owned(n.to_string()))),
            ("after", text(&self.after)),
            ("address", text(&self.address)),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
    }

    pub fn address(&self) -> Option<&str> {
        self.address.as_deref()
    }
}
