//! The admin API's OpenAPI 3.1 document, generated from the routes' `#[utoipa::path]`
//! attributes and the request and response types of [`super::ops`].
//!
//! `GET /v1/openapi.json` serves it; `docs/openapi.json` keeps a copy, which a test
//! compares with this one.

use std::sync::OnceLock;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use super::ops::ProblemBody;
use crate::{AttemptOutcome, EventId, State};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hookbox admin API",
        description = "Events, the dead-letter queue, replays, health and metrics of a \
            `hookbox serve`, on its own listener (`[admin]`). Every route but `/healthz` and \
            `/readyz` wants `Authorization: Bearer <token>`. Times are RFC 3339. Every \
            rejection is `application/problem+json`."
    ),
    paths(
        super::healthz,
        super::readyz,
        super::list_events,
        super::show_event,
        super::create_replay,
        super::replay_status,
        super::list_dlq,
        super::redrive,
        super::render_metrics,
        super::openapi_document,
    ),
    components(schemas(ProblemBody)),
    modifiers(&BearerToken),
    tags(
        (name = "events", description = "Journaled events, newest first"),
        (name = "replay", description = "New deliveries of a window of events"),
        (name = "dlq", description = "The dead-letter queue"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
struct ApiDoc;

/// Declares the `bearer` scheme the routes' `security` refers to.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("The `[admin] token` of the server's configuration"))
                        .build(),
                ),
            );
    }
}

/// The document as JSON: pretty, with a trailing newline, as `docs/openapi.json` keeps it.
pub(crate) fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let json = ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes to JSON");
        // utoipa 5 writes a Link's `operationId` as `operation_id` (6 fixes it, but wants
        // a newer Rust). The key appears nowhere else: the tests check that every link
        // names an operation.
        let mut json = json.replace("\"operation_id\": ", "\"operationId\": ");
        json.push('\n');
        json
    })
}

/// A string schema of the names `T`'s derived `Deserialize` accepts: the names its
/// variants are written with, read from the derive itself so none can be left out.
fn names<T: DeserializeOwned>(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(variants::<T>().iter().copied()))
        .description(Some(description))
        .into()
}

/// The variant names a derived enum `Deserialize` passes to `deserialize_enum`.
fn variants<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not an enum"))
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = variants;
            Err(de::Error::custom("only the names were wanted"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            struct identifier ignored_any
        }
    }

    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut names));
    names
}

impl PartialSchema for State {
    fn schema() -> RefOr<Schema> {
        names::<State>(
            "Where an event stands: `pending` (waiting for its first or a redriven attempt), \
             `retrying` (failed; waiting for its next attempt), `done` (delivered), `dead` \
             (gave up; in the dead-letter queue)",
        )
    }
}

impl ToSchema for State {}

impl PartialSchema for AttemptOutcome {
    fn schema() -> RefOr<Schema> {
        names::<AttemptOutcome>("How an attempt ended")
    }
}

impl ToSchema for AttemptOutcome {}

impl PartialSchema for EventId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^evt_[0-9a-f]{16}$"))
            .description(Some(
                "hookbox's id for an event: `evt_` and 16 hex digits, time-ordered",
            ))
            .examples([serde_json::json!("evt_0193b0c4f1a20000")])
            .into()
    }
}

impl ToSchema for EventId {}

/// The schema of a filter ([`crate::filter::FilterSpec`]) as the admin API takes it:
/// `where` of `POST /v1/replay`, and JSON in `where` of `GET /v1/events`.
pub(crate) struct FilterSchema;

impl PartialSchema for FilterSchema {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder};
        use utoipa::openapi::Ref;
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Which events to take, in the configuration's filter language: `types` and \
                 `when`, both optional; an event is taken when both hold",
            ))
            .property(
                "types",
                ArrayBuilder::new()
                    .items(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some(
                        "Event type patterns: exact (`invoice.paid`), a prefix (`invoice.*`), \
                         `*` (any type); `!` excludes",
                    )),
            )
            .property("when", Ref::from_schema_name(ConditionSchema::name()))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .examples([serde_json::json!({
                "types": ["invoice.*"],
                "when": {"pointer": "/data/object/amount", "gt": 100},
            })])
            .into()
    }
}

impl ToSchema for FilterSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "Filter".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ConditionSchema::name().into(), ConditionSchema::schema()));
    }
}

/// One condition of a filter ([`crate::filter::ConditionSpec`]).
pub(crate) struct ConditionSchema;

impl PartialSchema for ConditionSchema {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, SchemaType};
        use utoipa::openapi::Ref;
        let me = || Ref::from_schema_name(ConditionSchema::name());
        let of = |t: Type, d: &str| ObjectBuilder::new().schema_type(t).description(Some(d));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Exactly one of `all`, `any`, `not`, `types`, or `pointer` with one test \
                 (`equals`, `one_of`, `exists`, `gt`, `gte`, `lt`, `lte`, `matches`). A \
                 payload test is false on a body that is not JSON",
            ))
            .property(
                "all",
                ArrayBuilder::new()
                    .items(me())
                    .description(Some("Every condition holds")),
            )
            .property(
                "any",
                ArrayBuilder::new()
                    .items(me())
                    .description(Some("Some condition holds")),
            )
            .property("not", me())
            .property(
                "types",
                ArrayBuilder::new()
                    .items(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("Event type patterns, as the filter's `types`")),
            )
            .property(
                "pointer",
                of(
                    Type::String,
                    "A JSON pointer (RFC 6901) into the body: `/data/object/id`",
                ),
            )
            .property(
                "equals",
                ObjectBuilder::new()
                    .schema_type(SchemaType::AnyValue)
                    .description(Some(
                        "The value found equals this one (numbers compare by value)",
                    )),
            )
            .property(
                "one_of",
                ArrayBuilder::new()
                    .items(ObjectBuilder::new().schema_type(SchemaType::AnyValue))
                    .description(Some("The value found equals one of these")),
            )
            .property(
                "exists",
                of(
                    Type::Boolean,
                    "`true`: the pointer finds a value; `false`: it does not",
                ),
            )
            .property(
                "gt",
                of(Type::Number, "The value found is a number above this"),
            )
            .property("gte", of(Type::Number, "A number at or above this"))
            .property("lt", of(Type::Number, "A number below this"))
            .property("lte", of(Type::Number, "A number at or below this"))
            .property(
                "matches",
                of(
                    Type::String,
                    "A regular expression searched in the string found",
                ),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for ConditionSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "Condition".into()
    }
}

/// A problem+json response with `description`.
fn problem_response(description: &str) -> utoipa::openapi::ResponseBuilder {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ProblemBody::name())))
            .build(),
    )
}

/// The answer of every guarded route without the admin token: 401 with
/// `WWW-Authenticate`.
pub(crate) struct Unauthorized;

impl utoipa::IntoResponses for Unauthorized {
    fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        use utoipa::openapi::{HeaderBuilder, ObjectBuilder};
        let header = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "`Bearer realm=\"hookbox-admin\"`, with `error=\"invalid_token\"` for a wrong token",
            ))
            .build();
        let response = problem_response("No bearer token, or not the admin token")
            .header("WWW-Authenticate", header)
            .build();
        [("401".to_owned(), RefOr::T(response))].into()
    }
}

/// The answers of every route that reads or writes the journal when it cannot: 500 and
/// 503.
pub(crate) struct JournalFailure;

impl utoipa::IntoResponses for JournalFailure {
    fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        [
            ("500", "The journal failed to read or write a record"),
            ("503", "The journal cannot answer now"),
        ]
        .into_iter()
        .map(|(status, description)| {
            (
                status.to_owned(),
                RefOr::T(problem_response(description).build()),
            )
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_schemas_list_the_serialized_names() {
        assert_eq!(variants::<State>(), ["pending", "retrying", "done", "dead"]);
        assert_eq!(
            variants::<AttemptOutcome>(),
            ["done", "retry", "fail", "timeout", "crashed", "filtered"]
        );
        for s in variants::<State>() {
            assert!(State::parse(s).is_some_and(|st| st.as_str() == *s));
        }
    }

    #[test]
    fn every_link_names_an_operation() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let mut ids = Vec::new();
        let mut links = Vec::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                ids.push(op["operationId"].as_str().unwrap().to_owned());
                for res in op["responses"].as_object().unwrap().values() {
                    for link in res["links"]
                        .as_object()
                        .into_iter()
                        .flat_map(|l| l.values())
                    {
                        links.push(link.clone());
                    }
                }
            }
        }
        assert!(links.len() >= 3, "{links:?}");
        for link in links {
            let target = link["operationId"].as_str().unwrap_or_default();
            assert!(ids.iter().any(|id| id == target), "{link}");
            assert_eq!(link.as_object().unwrap().len(), 3, "{link}");
        }
        assert!(!document().contains("operation_id"));
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
